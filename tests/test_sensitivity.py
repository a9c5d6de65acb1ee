"""Tests of memjax.sensitivity: Gini, the unrolled gradient, the training loop
(an epoch with a partial last batch equals a plain loop), checkpoints."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from memjax import data as data_lib
from memjax import keys
from memjax import per_example
from memjax import sensitivity
from memjax import training

# 40 examples in batches of 12: 4 steps, the last one 4 real examples and 8
# weight-0 fillers.
N, BATCH = 40, 12


def reference_gini(x):
  """Mean absolute difference over twice the mean."""
  x = np.asarray(x, float)
  return np.abs(x[:, None] - x[None, :]).mean() / (2 * x.mean())


def setup(num_seeds=2):
  dataset = data_lib.load(data_lib.DataConfig(name="digits", train_size=N))
  config = training.TrainConfig(model="mlp1x8", num_seeds=num_seeds,
                                batch_size=BATCH, learning_rate=0.1)
  trainer = training.Trainer(config, dataset.input_shape, dataset.num_classes)
  return trainer, jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train)


def later_losses(earlier_x, trainer, state, key, earlier_y, later_x, later_y):
  """Per-label and total loss of a later minibatch after one plain SGD step
  on an earlier one (the unrolled form with k = 1, written out)."""
  st, _ = trainer.train_step(state, key, earlier_x, earlier_y)
  logits, _ = trainer.apply(st.params, st.batch_stats, later_x)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, later_y)
  losses = losses / later_y.shape[0]
  per_label = jnp.zeros(trainer.num_classes).at[later_y].add(losses)
  return jnp.concatenate([per_label, losses.sum()[None]])


class GiniTest(parameterized.TestCase):

  def test_all_equal_is_zero(self):
    self.assertAlmostEqual(float(sensitivity.gini(np.full(7, 3.0))), 0.0)
    self.assertAlmostEqual(float(sensitivity.gini(np.zeros(4))), 0.0)

  @parameterized.parameters(1, 2, 10, 1000)
  def test_one_nonzero(self, n):
    x = np.zeros(n)
    x[n // 2] = 5.0
    self.assertAlmostEqual(float(sensitivity.gini(x)), (n - 1) / n)

  def test_matches_reference_formula(self):
    rng = np.random.default_rng(0)
    for _ in range(5):
      x = rng.exponential(size=50)
      self.assertAlmostEqual(float(sensitivity.gini(x)), reference_gini(x))

  def test_last_axis(self):
    x = np.random.default_rng(1).random((3, 20))
    np.testing.assert_allclose(sensitivity.gini(x),
                               [reference_gini(row) for row in x])

  def test_bad_values(self):
    with self.assertRaisesRegex(ValueError, "non-negative"):
      sensitivity.gini(np.array([1.0, -1.0]))
    with self.assertRaisesRegex(ValueError, "non-negative"):
      sensitivity.gini(np.array([1.0, np.nan]))
    with self.assertRaisesRegex(ValueError, "empty"):
      sensitivity.gini(np.zeros(0))


class ConfigTest(absltest.TestCase):

  def test_validation(self):
    with self.assertRaisesRegex(ValueError, "l1, l2, linf"):
      sensitivity.SensitivityConfig(norm="l0")
    with self.assertRaisesRegex(ValueError, "unroll"):
      sensitivity.SensitivityConfig(unroll=-1, class_matrix=False)
    with self.assertRaisesRegex(ValueError, "unroll >= 1"):
      sensitivity.SensitivityConfig(unroll=0, class_matrix=True)

  def test_track_needs_enough_steps(self):
    trainer, x, y = setup(1)
    with self.assertRaisesRegex(ValueError, "steps per epoch"):
      sensitivity.track(trainer.config, sensitivity.SensitivityConfig(unroll=4),
                        x[:40], y[:40], trainer.num_classes, epochs=1)


class UnrolledTest(absltest.TestCase):

  def test_matches_explicit_sgd_steps(self):
    trainer, x, y = setup(1)
    key = keys.seed_keys(trainer.config.seed, trainer.config.num_seeds)[0]
    state = trainer.init_one(key)
    xs, ys = (x[:3 * BATCH].reshape(3, BATCH, 8, 8, 1),
              y[:3 * BATCH].reshape(3, -1))
    # The first minibatch full, the other two partial (their tails filler).
    weights = jnp.ones((3, BATCH)).at[1, 9:].set(0.0).at[2, 5:].set(0.0)
    jac = jax.jit(sensitivity.unrolled_jacobian, static_argnums=(0, 5))(
        trainer, state, key, xs, ys, True, weights)
    chex.assert_shape(jac, (11, 2, BATCH, 8, 8, 1))

    def later_loss(earlier, label=None):  # two explicit steps, no scan
      st, _ = trainer.train_step(state, key, earlier[0], ys[0])
      st, _ = trainer.train_step(st, key, earlier[1][:9], ys[1][:9])
      logits, _ = trainer.apply(st.params, st.batch_stats, xs[2][:5])
      losses = optax.softmax_cross_entropy_with_integer_labels(logits,
                                                               ys[2][:5])
      if label is not None:
        losses = jnp.where(ys[2][:5] == label, losses, 0.0)
      return losses.mean() if label is None else losses.sum() / 5
    grad = jax.jit(jax.grad(later_loss), static_argnums=1)
    chex.assert_trees_all_close(jac[-1], grad(xs[:2]), atol=1e-6, rtol=1e-4)
    label = int(ys[2, 0])
    chex.assert_trees_all_close(jac[label], grad(xs[:2], label),
                                atol=1e-6, rtol=1e-4)
    chex.assert_trees_all_close(jac[:-1].sum(0), jac[-1], atol=1e-6, rtol=1e-4)
    self.assertGreater(float(jnp.abs(jac[-1]).sum()), 0.0)
    # Filler inputs take no part in training: zero gradient.
    np.testing.assert_array_equal(jac[:, 1, 9:], 0.0)

  def test_default_weights_are_all_real(self):
    trainer, x, y = setup(1)
    key = keys.seed_keys(trainer.config.seed, trainer.config.num_seeds)[0]
    state = trainer.init_one(key)
    xs, ys = (x[:2 * BATCH].reshape(2, BATCH, 8, 8, 1),
              y[:2 * BATCH].reshape(2, -1))
    fn = jax.jit(sensitivity.unrolled_jacobian, static_argnums=(0, 5))
    chex.assert_trees_all_close(
        fn(trainer, state, key, xs, ys, False),
        fn(trainer, state, key, xs, ys, False, jnp.ones((2, BATCH))))


class EpochTest(absltest.TestCase):

  def test_epoch_matches_plain_loop(self):
    trainer, x, y = setup(2)
    config = sensitivity.SensitivityConfig(unroll=1)
    seed_keys = keys.seed_keys(trainer.config.seed, trainer.config.num_seeds)
    state = trainer.init(seed_keys)
    train_index = jnp.broadcast_to(jnp.arange(N, dtype=jnp.int32), (2, N))
    got_state, losses, sums = sensitivity._epoch_vmapped(
        trainer, config, state, seed_keys, 0, x, y, train_index)
    steps = -(-N // BATCH)
    self.assertEqual(steps, 4)  # the last batch is partial
    chex.assert_shape(losses, (2, steps))
    # The plain loop's pieces: unweighted steps on the real examples only.
    direct_norms = jax.jit(per_example.input_gradient_norms,
                           static_argnums=(0, 5))
    unrolled_jacobian = jax.jit(jax.jacrev(later_losses), static_argnums=1)
    train_step = jax.jit(trainer.train_step)
    for s in range(2):
      # pylint: disable-next=cell-var-from-loop
      st = jax.tree.map(lambda a: a[s], state)
      batches = np.asarray(trainer.epoch_batches(seed_keys[s], 0,
                                                 train_index[s]))
      direct, unrolled = np.zeros(N), np.zeros(N)
      class_sum = np.zeros((10, 10))
      for t in range(steps):
        # Only the real examples of a batch: a plain loop has no filler.
        b = batches[t][:N - t * BATCH]
        direct[b] += direct_norms(trainer, st.params, st.batch_stats, x[b],
                                  y[b], "l1")
        if t + 1 < steps:
          later = batches[t + 1][:N - (t + 1) * BATCH]
          jac = unrolled_jacobian(x[b], trainer, st, seed_keys[s], y[b],
                                  x[later], y[later])
          norms = np.abs(np.asarray(jac)).sum((2, 3, 4))  # (11, B)
          unrolled[b] += norms[-1]
          for j in range(10):
            class_sum[:, j] += norms[:-1, y[b] == j].sum(1)
        st, _ = train_step(st, seed_keys[s], x[b], y[b])
      np.testing.assert_allclose(sums["direct_sum"][s], direct, rtol=1e-4,
                                 atol=1e-6)
      np.testing.assert_array_equal(sums["direct_count"][s], np.ones(N))
      np.testing.assert_allclose(sums["unrolled_sum"][s], unrolled, rtol=1e-4,
                                 atol=1e-7)
      seen_unrolled = np.isin(np.arange(N), batches[:-1])
      np.testing.assert_array_equal(sums["unrolled_count"][s], seen_unrolled)
      np.testing.assert_allclose(sums["class_sum"][s], class_sum, rtol=1e-4,
                                 atol=1e-7)
      chex.assert_trees_all_close(jax.tree.map(lambda a: a[s], got_state), st,
                                  atol=1e-6, rtol=1e-5)

  def test_track(self):
    trainer, x, y = setup(2)
    result = sensitivity.track(trainer.config, sensitivity.SensitivityConfig(),
                               x, y, trainer.num_classes, epochs=2)
    chex.assert_shape([result.direct, result.unrolled],
                      [(2, 2, N), (2, 2, N)])
    chex.assert_shape(result.class_matrix, (2, 10, 10))
    chex.assert_shape([result.batch_loss, result.train_acc], [(2, 2)] * 2)
    gini = result.gini()
    chex.assert_shape(gini, (2, 2))
    self.assertTrue(np.all((gini >= 0) & (gini < 1)))
    self.assertFalse(np.isnan(result.direct[-1]).any())
    # Lane 1 is the same run as a one-seed run with seed 1.
    alone = sensitivity.track(
        dataclasses.replace(trainer.config, seed=1, num_seeds=1),
        sensitivity.SensitivityConfig(), x, y, trainer.num_classes, epochs=2)
    for field in ("direct", "unrolled", "batch_loss", "train_acc"):
      np.testing.assert_allclose(getattr(result, field)[:, 1],
                                 getattr(alone, field)[:, 0], rtol=1e-5,
                                 atol=1e-7, err_msg=field)
    np.testing.assert_allclose(result.class_matrix[1], alone.class_matrix[0],
                               rtol=1e-5, atol=1e-7)



class CheckpointTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.trainer, self.x, self.y = setup(2)
    directory = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
    self.checkpoint_dir = os.path.join(directory, "checkpoints")

  def track(self, epochs=3, y=None):
    return sensitivity.track(
        self.trainer.config, sensitivity.SensitivityConfig(), self.x,
        self.y if y is None else y, self.trainer.num_classes, epochs=epochs,
        checkpoint_dir=self.checkpoint_dir, checkpoint_seconds=0)

  def assert_same(self, got, want):
    for field in ("direct", "unrolled", "class_matrix", "batch_loss",
                  "train_acc"):
      np.testing.assert_allclose(getattr(got, field), getattr(want, field),
                                 rtol=1e-5, atol=1e-7, err_msg=field)

  def test_resume_after_interrupt_matches_uninterrupted_run(self):
    want = sensitivity.track(self.trainer.config,
                             sensitivity.SensitivityConfig(), self.x, self.y,
                             self.trainer.num_classes, epochs=3)
    epoch_fn = sensitivity._epoch_vmapped
    calls = []

    def interrupted_in_third_epoch(*args):
      calls.append(args[4])  # the epoch
      if len(calls) == 3:
        raise KeyboardInterrupt
      return epoch_fn(*args)
    with mock.patch.object(sensitivity, "_epoch_vmapped",
                           interrupted_in_third_epoch):
      with self.assertRaises(KeyboardInterrupt):
        self.track()
    calls.clear()
    with mock.patch.object(
        sensitivity, "_epoch_vmapped",
        lambda *args: calls.append(args[4]) or epoch_fn(*args)):
      got = self.track()
    self.assertEqual(calls, [2])  # only the epoch that was lost
    self.assert_same(got, want)
    chex.assert_trees_all_close(got.state, want.state)
    # The run's metrics.jsonl holds each epoch and seed once.
    frame = pd.read_json(os.path.join(self.checkpoint_dir, "metrics.jsonl"),
                         lines=True)
    self.assertEqual(list(frame["epoch"]), [1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(
        frame["train_acc"].to_numpy().astype(np.float32),
        got.train_acc.reshape(-1))
    self.assertTrue(frame["test_acc"].isna().all())  # no test set
    # A finished run is loaded without training.
    with mock.patch.object(sensitivity, "_epoch_vmapped",
                           side_effect=AssertionError("trained again")):
      self.assert_same(self.track(), want)

  def test_other_data_refused(self):
    self.track(epochs=1)
    with self.assertRaisesRegex(ValueError, "different configuration"):
      self.track(epochs=1, y=(self.y + 1) % 10)


if __name__ == "__main__":
  absltest.main()
