"""Tests of memjax.per_example against plain per-example loops."""

from __future__ import annotations

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from memjax import data as data_lib
from memjax import keys
from memjax import per_example
from memjax import training

N = 12


def setup(num_seeds=2):
  dataset = data_lib.load(data_lib.DataConfig(name="digits", train_size=60))
  x, y = dataset.x_train[:N], dataset.y_train[:N]
  config = training.TrainConfig(model="mlp1x8", num_seeds=num_seeds,
                                eval_batch_size=5)
  trainer = training.Trainer(config, dataset.input_shape, dataset.num_classes)
  state = trainer.init(keys.seed_keys(config.seed, config.num_seeds))
  return trainer, state, jnp.asarray(x), jnp.asarray(y)


def seed_slice(state, s):
  return jax.tree.map(lambda a: a[s], state)


def loop_loss(trainer, params, batch_stats, xi, yi):
  model_logits, _ = trainer.apply(params, batch_stats, xi[None])
  return optax.softmax_cross_entropy_with_integer_labels(model_logits,
                                                         yi[None])[0]


class PerExampleTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.trainer, cls.state, cls.x, cls.y = setup()
    cls.one = seed_slice(cls.state, 0)

  def loop_input_grads(self, state):
    grad = jax.grad(loop_loss, argnums=3)
    return np.stack([grad(self.trainer, state.params, state.batch_stats,
                          self.x[i], self.y[i]) for i in range(N)])

  def loop_param_grad_norms(self, state):
    grad = jax.grad(loop_loss, argnums=1)
    norms = []
    for i in range(N):
      g = grad(self.trainer, state.params, state.batch_stats, self.x[i],
               self.y[i])
      norms.append(np.sqrt(sum(np.square(np.asarray(v)).sum()
                               for v in jax.tree.leaves(g))))
    return np.array(norms)

  @parameterized.parameters(False, True)
  def test_input_gradients_match_loop(self, jit):
    fn = per_example.input_gradients
    if jit:
      fn = jax.jit(fn, static_argnums=(0, 5))
    got = fn(self.trainer, self.one.params, self.one.batch_stats, self.x,
             self.y, 5)
    chex.assert_shape(got, self.x.shape)
    chex.assert_trees_all_close(got, self.loop_input_grads(self.one),
                                atol=1e-6, rtol=1e-5)

  @parameterized.product(jit=(False, True), norm=("l1", "l2", "linf"))
  def test_input_gradient_norms_match_loop(self, jit, norm):
    fn = per_example.input_gradient_norms
    if jit:
      fn = jax.jit(fn, static_argnums=(0, 5, 6))
    got = fn(self.trainer, self.one.params, self.one.batch_stats, self.x,
             self.y, norm, 5)
    flat = self.loop_input_grads(self.one).reshape(N, -1)
    order = {"l1": 1, "l2": 2, "linf": np.inf}[norm]
    chex.assert_trees_all_close(got, np.linalg.norm(flat, order, axis=1),
                                atol=1e-6, rtol=1e-5)

  @parameterized.product(jit=(False, True), microbatch=(1, 5, 64))
  def test_grand_matches_loop(self, jit, microbatch):
    fn = per_example.grand
    if jit:
      fn = jax.jit(fn, static_argnums=(0, 5))
    got = fn(self.trainer, self.one.params, self.one.batch_stats, self.x,
             self.y, microbatch)
    chex.assert_shape(got, (N,))
    chex.assert_trees_all_close(got, self.loop_param_grad_norms(self.one),
                                atol=1e-6, rtol=1e-5)

  def test_logit_scores(self):
    scores = per_example.logit_scores(self.trainer, self.one.params,
                                      self.one.batch_stats, self.x, self.y)
    logits = np.asarray(self.trainer.apply(self.one.params,
                                           self.one.batch_stats, self.x)[0])
    y = np.asarray(self.y)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    onehot = np.eye(logits.shape[1])[y]
    for i in range(N):
      others = np.delete(logits[i], y[i])
      self.assertAlmostEqual(float(scores["margin"][i]),
                             logits[i, y[i]] - others.max(), places=5)
      self.assertAlmostEqual(float(scores["el2n"][i]),
                             np.linalg.norm(probs[i] - onehot[i]), places=5)
      self.assertAlmostEqual(float(scores["loss"][i]), -np.log(probs[i, y[i]]),
                             places=4)
    np.testing.assert_array_equal(scores["correct"], logits.argmax(1) == y)
    np.testing.assert_array_equal(scores["margin"] > 0, scores["correct"])

  def test_over_seeds_matches_seed_loop(self):
    got = per_example.over_seeds(per_example.grand, self.trainer, self.state,
                                 self.x, self.y, microbatch=4)
    chex.assert_shape(got, (2, N))
    for s in range(2):
      chex.assert_trees_all_close(
          got[s], self.loop_param_grad_norms(seed_slice(self.state, s)),
          atol=1e-6, rtol=1e-5)
    norms = per_example.over_seeds(per_example.input_gradient_norms,
                                   self.trainer, self.state, self.x, self.y,
                                   norm="l2")
    chex.assert_shape(norms, (2, N))

  def test_over_seeds_per_seed_labels(self):
    labels = jnp.stack([self.y, (self.y + 1) % 10])
    got = per_example.over_seeds(per_example.logit_scores, self.trainer,
                                 self.state, self.x, labels,
                                 per_seed_labels=True)
    for s in range(2):
      one = seed_slice(self.state, s)
      want = per_example.logit_scores(self.trainer, one.params, one.batch_stats,
                                      self.x, labels[s])
      chex.assert_trees_all_close(jax.tree.map(lambda a: a[s], got), want,
                                  atol=1e-6)

  def test_over_seeds_per_seed_inputs(self):
    inputs = jnp.stack([self.x, -self.x])
    got = per_example.over_seeds(per_example.logit_scores, self.trainer,
                                 self.state, inputs, self.y,
                                 per_seed_inputs=True)
    for s in range(2):
      one = seed_slice(self.state, s)
      want = per_example.logit_scores(self.trainer, one.params, one.batch_stats,
                                      inputs[s], self.y)
      chex.assert_trees_all_close(jax.tree.map(lambda a: a[s], got), want,
                                  atol=1e-6)

  def test_state_scores_are_el2n_and_grand_of_every_seed(self):
    got = per_example.state_scores(self.trainer, self.state, self.x, self.y,
                                   microbatch=4)
    self.assertEqual(set(got), {"el2n", "grand", "loss", "margin"})
    logits = per_example.over_seeds(per_example.logit_scores, self.trainer,
                                    self.state, self.x, self.y)
    for name in ("el2n", "loss", "margin"):
      self.assertIsInstance(got[name], np.ndarray)
      np.testing.assert_array_equal(got[name], logits[name])
    chex.assert_shape(got["grand"], (2, N))
    for s in range(2):
      np.testing.assert_allclose(
          got["grand"][s], self.loop_param_grad_norms(seed_slice(self.state,
                                                                 s)),
          atol=1e-6, rtol=1e-5)

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "l1, l2, linf"):
      per_example.input_gradient_norms(self.trainer, self.one.params,
                                       self.one.batch_stats, self.x, self.y,
                                       norm="l3")
    with self.assertRaisesRegex(ValueError, "microbatch"):
      per_example.grand(self.trainer, self.one.params, self.one.batch_stats,
                        self.x, self.y, microbatch=0)


class ForgettingTest(absltest.TestCase):

  def test_known_history(self):
    # Columns: learned and kept; forgotten twice; never learned; learned late.
    correct = np.array([[1, 1, 0, 0],
                        [1, 0, 0, 0],
                        [1, 1, 0, 0],
                        [1, 0, 0, 1],
                        [1, 1, 0, 1]], bool)
    f = per_example.forgetting(correct)
    np.testing.assert_array_equal(f.events, [0, 2, 0, 0])
    np.testing.assert_array_equal(f.never_learned, [False, False, True, False])
    np.testing.assert_array_equal(f.first_learned, [0, 0, -1, 3])
    np.testing.assert_array_equal(f.scores(), [0, 2, 3, 0])

  def test_seed_axis(self):
    correct = np.random.default_rng(0).random((6, 3, 10)) > 0.5
    f = per_example.forgetting(correct)
    chex.assert_shape([f.events, f.never_learned, f.first_learned],
                      [(3, 10)] * 3)
    for s in range(3):
      one = per_example.forgetting(correct[:, s])
      np.testing.assert_array_equal(f.events[s], one.events)

  def test_bad_shape(self):
    with self.assertRaisesRegex(ValueError, "T, ..., n"):
      per_example.forgetting(np.ones(5, bool))


class DifficultyTest(absltest.TestCase):

  def test_binomial_rates_have_dispersion_near_one(self):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 200)
    p = np.linspace(0.1, 0.9, 10)[labels]  # class effects only
    correct = rng.random((100, labels.size)) > p
    d = per_example.difficulty(correct, labels)
    self.assertLess(abs(d.dispersion - 1), 4 * d.null_std)
    self.assertEqual(d.dof, labels.size - 10)
    self.assertGreater(d.p_value, 0.01)
    self.assertGreater(d.dispersion_pooled, 10)  # the class effect
    np.testing.assert_allclose(d.rate, 1 - correct.mean(0))
    self.assertAlmostEqual(d.std, float(d.rate.std()))

  def test_example_specific_rates_are_overdispersed(self):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 200)
    p = rng.uniform(0.05, 0.95, labels.size)
    correct = rng.random((100, labels.size)) > p
    d = per_example.difficulty(correct, labels)
    self.assertGreater(d.dispersion, 10)
    self.assertLess(d.p_value, 1e-6)

  def test_std_se_matches_spread_over_repeated_studies(self):
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(5), 100)
    p = rng.uniform(0.1, 0.9, labels.size)
    study = lambda: rng.random((40, labels.size)) > p
    repeats = [per_example.difficulty(study(), labels, resamples=1).std
               for _ in range(200)]
    se = per_example.difficulty(study(), labels).std_se
    self.assertBetween(se / np.std(repeats), 0.7, 1.4)

  def test_bad_shape(self):
    with self.assertRaisesRegex(ValueError, "S, n"):
      per_example.difficulty(np.ones(5), np.zeros(5))


if __name__ == "__main__":
  absltest.main()
