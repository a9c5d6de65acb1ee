"""Tests of memjax.regularizers, hidden noise and their use in training."""

from __future__ import annotations

import dataclasses
import itertools

from absl.testing import absltest
from absl.testing import parameterized
import chex
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from memjax import complexity
from memjax import engine
from memjax import keys
from memjax import models
from memjax import regularizers
from memjax import training

Regularization = regularizers.Regularization
ALL_INPUT_PERTURBATIONS = Regularization(
    input_dropout=0.3, input_noise=0.5, shift=1, flip=True, color_jitter=0.5)


def shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
  """``image`` moved down by dy and right by dx with zero fill (plain numpy)."""
  h, w, _ = image.shape
  out = np.zeros_like(image)
  out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = (
      image[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)])
  return out


def tiny_data(n=32, side=6, channels=1, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, side, side, channels)).astype(np.float32)
  y = rng.integers(0, 3, n).astype(np.int32)
  return training.TrainData(x, y, x[:16] + 1.0, y[:16], 3)


class ValidationTest(parameterized.TestCase):

  @parameterized.parameters(
      dict(field="input_dropout", value=1.0),
      dict(field="input_dropout", value=-0.1),
      dict(field="input_noise", value=-1.0),
      dict(field="hidden_noise", value=-0.1),
      dict(field="shift", value=-1),
      dict(field="shift", value=1.5),
      dict(field="color_jitter", value=1.5),
      dict(field="input_noise", value=float("inf")),
      dict(field="hidden_noise", value=float("inf")),
      dict(field="input_noise", value=float("nan")),
      dict(field="color_jitter", value=float("nan")))
  def test_bad_regularization_strength_is_a_clear_error(self, field, value):
    with self.assertRaisesRegex(ValueError, f"{field}={value!r}"):
      Regularization(**{field: value})

  @parameterized.parameters(
      dict(name="weight_decay", strength=-0.1),
      dict(name="dropout", strength=1.0),
      dict(name="dropout", strength=1.5),
      dict(name="input_dropout", strength=1.0),
      dict(name="input_noise", strength=-2.0),
      dict(name="shift", strength=0.5),
      dict(name="weight_decay", strength=float("inf")),
      dict(name="weight_decay", strength=float("nan")),
      dict(name="input_noise", strength=float("inf")),
      dict(name="hidden_noise", strength=float("inf")),
      dict(name="shift", strength=float("inf")),
      dict(name="shift", strength=float("nan")))
  def test_with_strength_refuses_out_of_range(self, name, strength):
    with self.assertRaisesRegex(ValueError, name):
      regularizers.with_strength(training.TrainConfig(), name, strength)

  def test_unknown_regularizer_lists_the_valid_ones(self):
    with self.assertRaisesRegex(ValueError, "'mixup'.*weight_decay.*dropout"):
      regularizers.validate("mixup", 0.1)

  def test_train_config_refuses_negative_weight_decay_and_dropout_of_one(self):
    with self.assertRaisesRegex(ValueError, "weight_decay=-0.001"):
      training.TrainConfig(weight_decay=-1e-3)
    with self.assertRaisesRegex(ValueError, "dropout=1.0"):
      training.TrainConfig(dropout=1.0)

  def test_hidden_regularizers_refused_on_models_without_dense_layers(self):
    with self.assertRaisesRegex(ValueError, "inception"):
      regularizers.check_model("inception", 0.5, Regularization())
    with self.assertRaisesRegex(ValueError, "hidden_noise"):
      models.build("inception_nobn", (8, 8, 1), 3, nnx.Rngs(0),
                   hidden_noise=0.1)
    regularizers.check_model("inception", 0.0, Regularization(shift=2))

  def test_with_strength_sets_one_regularizer(self):
    base = training.TrainConfig(regularization=Regularization(shift=2))
    self.assertEqual(regularizers.with_strength(base, "dropout", 0.5).dropout,
                     0.5)
    self.assertEqual(
        regularizers.with_strength(base, "weight_decay", 0.1).weight_decay, 0.1)
    noisy = regularizers.with_strength(base, "input_noise", 2)
    self.assertEqual(noisy.regularization,
                     Regularization(shift=2, input_noise=2.0))

  def test_shift_must_be_smaller_than_the_image(self):
    regularizers.check_input_shape(Regularization(shift=27), (28, 28, 1))
    regularizers.check_input_shape(Regularization(), (8, 8, 3))
    for shift, shape in ((28, (28, 28, 1)), (1000, (28, 28, 1)),
                         (8, (32, 8, 3))):
      with self.assertRaisesRegex(ValueError, f"shift={shift}.*side"):
        regularizers.check_input_shape(Regularization(shift=shift), shape)

  def test_crop_augmentation_flips_natural_images_only(self):
    self.assertEqual(regularizers.crop_augmentation("mnist5k", 28),
                     Regularization(shift=2))
    self.assertEqual(regularizers.crop_augmentation("digits", 8),
                     Regularization(shift=1))
    self.assertEqual(regularizers.crop_augmentation("cifar10", 28),
                     Regularization(shift=2, flip=True))


class PerturbTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.x = jax.random.normal(jax.random.key(0), (16, 6, 6, 3))

  def test_no_regularizer_returns_the_batch_unchanged(self):
    self.assertIs(regularizers.perturb(Regularization(hidden_noise=0.3),
                                       jax.random.key(1), self.x), self.x)

  def test_pure_function_of_the_key(self):
    a = regularizers.perturb(ALL_INPUT_PERTURBATIONS, jax.random.key(1), self.x)
    b = regularizers.perturb(ALL_INPUT_PERTURBATIONS, jax.random.key(1), self.x)
    c = regularizers.perturb(ALL_INPUT_PERTURBATIONS, jax.random.key(2), self.x)
    chex.assert_shape(a, self.x.shape)
    chex.assert_trees_all_equal(a, b)
    self.assertGreater(float(jnp.abs(a - c).max()), 0.1)

  def test_shift_matches_a_plain_zero_filled_translation(self):
    shift = 2
    seen = set()
    for k in range(6):
      out = np.asarray(regularizers.perturb(Regularization(shift=shift),
                                            jax.random.key(k), self.x))
      for image, moved in zip(np.asarray(self.x), out):
        matches = [(dy, dx) for dy, dx in itertools.product(
            range(-shift, shift + 1), repeat=2)
                   if np.array_equal(shifted(image, dy, dx), moved)]
        self.assertLen(matches, 1)
        seen.add(matches[0])
    self.assertLen(seen, (2 * shift + 1) ** 2)  # every offset is drawn

  def test_flip_mirrors_some_images_and_keeps_the_others(self):
    out = np.asarray(regularizers.perturb(Regularization(flip=True),
                                          jax.random.key(3), self.x))
    x = np.asarray(self.x)
    flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x)]
    kept = [np.array_equal(o, i) for o, i in zip(out, x)]
    self.assertTrue(all(f or k for f, k in zip(flipped, kept)))
    self.assertTrue(any(flipped) and any(kept))

  def test_input_dropout_zeroes_a_fraction_and_rescales_the_rest(self):
    x = jnp.ones((64, 8, 8, 1))
    out = np.asarray(regularizers.perturb(Regularization(input_dropout=0.25),
                                          jax.random.key(4), x))
    self.assertTrue(np.all((out == 0) | np.isclose(out, 1 / 0.75)))
    self.assertAlmostEqual(float((out == 0).mean()), 0.25, delta=0.02)

  def test_input_noise_has_the_requested_std(self):
    x = jnp.zeros((64, 8, 8, 1))
    out = regularizers.perturb(Regularization(input_noise=2.0),
                               jax.random.key(5), x)
    self.assertAlmostEqual(float(out.std()), 2.0, delta=0.05)

  def test_color_jitter_on_grey_images_is_an_affine_map_per_image(self):
    x = self.x[..., :1]
    out = regularizers.perturb(Regularization(color_jitter=0.5),
                               jax.random.key(6), x)
    for image, jittered in zip(np.asarray(x), np.asarray(out)):
      slope, intercept = np.polyfit(image.ravel(), jittered.ravel(), 1)
      np.testing.assert_allclose(slope * image + intercept, jittered,
                                 atol=1e-4)
      self.assertBetween(slope, 0.5, 1.5)

  def test_color_jitter_on_rgb_images_keeps_shape_and_is_finite(self):
    out = regularizers.perturb(Regularization(color_jitter=1.0),
                               jax.random.key(7), self.x)
    chex.assert_shape(out, self.x.shape)
    chex.assert_tree_all_finite(out)
    self.assertGreater(float(jnp.abs(out - self.x).max()), 0.1)

  def test_vmapped_over_seed_keys_matches_a_loop(self):
    keys = jax.vmap(jax.random.key)(jnp.arange(3))
    perturb = lambda k: regularizers.perturb(ALL_INPUT_PERTURBATIONS, k, self.x)
    chex.assert_trees_all_close(
        jax.jit(jax.vmap(perturb))(keys),
        jnp.stack([perturb(keys[i]) for i in range(3)]), atol=1e-5)


class HiddenNoiseTest(absltest.TestCase):

  def test_noise_only_in_training_and_from_the_rngs(self):
    x = jax.random.normal(jax.random.key(0), (4, 6, 6, 1))
    noisy = models.build("mlp2x8", (6, 6, 1), 3, nnx.Rngs(0), hidden_noise=0.5)
    clean = models.build("mlp2x8", (6, 6, 1), 3, nnx.Rngs(0))
    rngs = lambda: nnx.Rngs(dropout=jax.random.key(1))
    chex.assert_trees_all_equal(noisy(x), clean(x))
    chex.assert_trees_all_equal(clean(x, train=True, rngs=rngs()), clean(x))
    a, b = noisy(x, train=True, rngs=rngs()), noisy(x, train=True, rngs=rngs())
    chex.assert_trees_all_equal(a, b)
    self.assertGreater(float(jnp.abs(a - clean(x)).max()), 1e-3)


class TrainingTest(absltest.TestCase):
  """Input perturbations reach the train step only, per seed and step."""

  def test_train_step_trains_on_the_perturbed_batch(self):
    data = tiny_data()
    plain = training.Trainer(training.TrainConfig(model="mlp1x8"), (6, 6, 1), 3)
    config = training.TrainConfig(model="mlp1x8",
                                  regularization=ALL_INPUT_PERTURBATIONS)
    augmented = training.Trainer(config, (6, 6, 1), 3)
    key = jax.random.key(0)
    state = dataclasses.replace(plain.init_one(key), step=jnp.int32(5))
    x, y = jnp.asarray(data.x_train[:8]), jnp.asarray(data.y_train[:8])
    step_key = jax.random.fold_in(jax.random.fold_in(key, keys.PERTURB), 5)
    x_seen = regularizers.perturb(ALL_INPUT_PERTURBATIONS, step_key, x)
    augmented_step, plain_step = (jax.jit(t.train_step)
                                  for t in (augmented, plain))
    chex.assert_trees_all_close(augmented_step(state, key, x, y),
                                plain_step(state, key, x_seen, y), atol=1e-6)
    self.assertGreater(abs(float(augmented_step(state, key, x, y)[1]) -
                           float(plain_step(state, key, x, y)[1])), 1e-4)

  def test_adversarial_training_adds_the_lass_points_to_the_batch(self):
    data = tiny_data()
    lass = complexity.LassConfig(radius=0.5, alpha=0.2, beta=0.1,
                                 max_iterations=4)
    with self.assertRaisesRegex(ValueError, "LassConfig"):
      Regularization(adversarial=0.5)
    plain = training.Trainer(training.TrainConfig(model="mlp1x8"), (6, 6, 1), 3)
    adversarial = training.Trainer(
        training.TrainConfig(model="mlp1x8",
                             regularization=Regularization(adversarial=lass)),
        (6, 6, 1), 3)
    key = jax.random.key(0)
    state = dataclasses.replace(plain.init_one(key), step=jnp.int32(2))
    x, y = jnp.asarray(data.x_train[:8]), jnp.asarray(data.y_train[:8])
    found = complexity.lass(
        lambda xb: plain.apply(state.params, state.batch_stats, xb)[0], x, lass,
        jax.random.fold_in(jax.random.fold_in(key, keys.ADVERSARIAL), 2))
    self.assertGreater(float(jnp.abs(found.adversarial - x).max()), 0)
    chex.assert_trees_all_close(
        jax.jit(adversarial.train_step)(state, key, x, y),
        jax.jit(plain.train_step)(
            state, key, jnp.concatenate([x, found.adversarial]),
            jnp.concatenate([y, y])), atol=1e-6)

  def test_adversarial_points_of_filler_rows_carry_weight_zero(self):
    # An epoch's partial last batch is padded with weight-0 filler rows; with
    # adversarial training the weights are doubled along with the batch, so
    # the step equals a step on the real rows and their critical samples.
    data = tiny_data()
    lass = complexity.LassConfig(radius=0.5, alpha=0.2, beta=0.1,
                                 max_iterations=3)
    trainer = training.Trainer(
        training.TrainConfig(model="mlp1x8",
                             regularization=Regularization(adversarial=lass)),
        (6, 6, 1), 3)
    key = jax.random.key(0)
    state = dataclasses.replace(trainer.init_one(key), step=jnp.int32(1))
    x, y = jnp.asarray(data.x_train[:8]), jnp.asarray(data.y_train[:8])
    real = 5
    padded_x = jnp.concatenate([x[:real], x[:8 - real]])  # filler: repeats
    padded_y = jnp.concatenate([y[:real], y[:8 - real]])
    weights = (jnp.arange(8) < real).astype(jnp.float32)
    step = jax.jit(trainer.train_step)
    padded_state, padded_loss = step(state, key, padded_x, padded_y, weights)
    real_state, real_loss = step(state, key, x[:real], y[:real])
    chex.assert_trees_all_close(padded_loss, real_loss, atol=1e-6)
    chex.assert_trees_all_close(padded_state.params, real_state.params,
                                atol=1e-6)

  def test_clean_evaluation_pass_and_test_set_are_never_augmented(self):
    data = tiny_data()
    config = training.TrainConfig(model="mlp1x8", num_seeds=2, max_epochs=2,
                                  batch_size=8, stop_when_fit=False,
                                  regularization=ALL_INPUT_PERTURBATIONS)
    arrays = [np.array(a) for a in (data.x_train, data.x_test)]
    result = engine.fit(config, data)
    chex.assert_trees_all_equal([data.x_train, data.x_test], arrays)
    plain = training.Trainer(dataclasses.replace(
        config, regularization=Regularization()), (6, 6, 1), 3)
    trainer = training.Trainer(config, (6, 6, 1), 3)
    for x, y, acc in ((data.x_train, data.y_train, "train_acc"),
                      (data.x_test, data.y_test, "test_acc")):
      augmented_eval = trainer.evaluate(result.state, x, y)
      chex.assert_trees_all_equal(augmented_eval,
                                  plain.evaluate(result.state, x, y))
      np.testing.assert_allclose(result.history[acc][-1],
                                 np.asarray(augmented_eval[1]).mean(1))

  def test_seed_lanes_match_one_seed_runs_with_batchnorm(self):
    data = tiny_data(n=16, side=8)
    config = training.TrainConfig(
        model="arpit_cnn", num_seeds=2, max_epochs=1, batch_size=8,
        stop_when_fit=False, dropout=0.3,
        regularization=Regularization(shift=1, input_noise=0.3,
                                      hidden_noise=0.2))
    many = engine.fit(config, data)
    chex.assert_tree_shape_prefix(many.state.batch_stats, (2,))
    means = jax.tree.leaves(many.state.batch_stats)
    self.assertGreater(float(jnp.abs(means[0][0] - means[0][1]).max()), 0)
    one = engine.fit(dataclasses.replace(config, num_seeds=1, seed=1), data)
    lane = jax.tree.map(lambda a: a[1:], many.state)
    chex.assert_trees_all_close(lane.params, one.state.params, atol=1e-4)
    chex.assert_trees_all_close(lane.batch_stats, one.state.batch_stats,
                                atol=1e-4)


if __name__ == "__main__":
  absltest.main()
