"""Tests of memjax.sensitivity: Gini, the unrolled gradient, the training loop."""

from __future__ import annotations

from absl.testing import absltest
from absl.testing import parameterized
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from memjax import data as data_lib
from memjax import per_example
from memjax import sensitivity
from memjax import training

N, BATCH = 40, 10


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
    key = training.seed_keys(trainer.config)[0]
    state = trainer.init_one(key)
    xs, ys = x[:3 * BATCH].reshape(3, BATCH, 8, 8, 1), y[:3 * BATCH].reshape(3, -1)
    jac = jax.jit(sensitivity.unrolled_jacobian, static_argnums=(0, 5))(
        trainer, state, key, xs, ys, True)
    chex.assert_shape(jac, (11, 2, BATCH, 8, 8, 1))

    def later_loss(earlier, label=None):  # two explicit steps, no scan
      st, _ = trainer.train_step(state, key, earlier[0], ys[0])
      st, _ = trainer.train_step(st, key, earlier[1], ys[1])
      logits, _ = trainer.apply(st.params, st.batch_stats, xs[2])
      losses = optax.softmax_cross_entropy_with_integer_labels(logits, ys[2])
      if label is not None:
        losses = jnp.where(ys[2] == label, losses, 0.0)
      return losses.sum() / BATCH
    grad = jax.jit(jax.grad(later_loss), static_argnums=1)
    chex.assert_trees_all_close(jac[-1], grad(xs[:2]), atol=1e-6, rtol=1e-4)
    label = int(ys[2, 0])
    chex.assert_trees_all_close(jac[label], grad(xs[:2], label),
                                atol=1e-6, rtol=1e-4)
    chex.assert_trees_all_close(jac[:-1].sum(0), jac[-1], atol=1e-6, rtol=1e-4)
    self.assertGreater(float(jnp.abs(jac[-1]).sum()), 0.0)


class EpochTest(absltest.TestCase):

  def test_epoch_matches_plain_loop(self):
    trainer, x, y = setup(2)
    config = sensitivity.SensitivityConfig(unroll=1)
    keys = training.seed_keys(trainer.config)
    state = trainer.init(keys)
    train_index = jnp.broadcast_to(jnp.arange(N, dtype=jnp.int32), (2, N))
    got_state, losses, sums = sensitivity._epoch_vmapped(
        trainer, config, state, keys, 0, x, y, train_index)
    chex.assert_shape(losses, (2, N // BATCH))
    steps = N // BATCH
    # The plain loop's pieces, each compiled once.
    direct_norms = jax.jit(per_example.input_gradient_norms,
                           static_argnums=(0, 5))
    unrolled_jacobian = jax.jit(sensitivity.unrolled_jacobian,
                                static_argnums=(0, 5))
    train_step = jax.jit(trainer.train_step)
    for s in range(2):
      st = jax.tree.map(lambda a: a[s], state)  # pylint: disable=cell-var-from-loop
      batches = np.asarray(trainer.epoch_batches(keys[s], 0, train_index[s]))
      direct, unrolled = np.zeros(N), np.zeros(N)
      class_sum = np.zeros((10, 10))
      for t in range(steps):
        b = batches[t]
        direct[b] += direct_norms(trainer, st.params, st.batch_stats, x[b],
                                  y[b], "l1")
        if t + 1 < steps:
          window = batches[t:t + 2]
          jac = unrolled_jacobian(trainer, st, keys[s], x[window], y[window],
                                  True)
          norms = np.abs(np.asarray(jac)).sum((3, 4, 5))[:, 0]  # (11, B)
          unrolled[b] += norms[-1]
          for j in range(10):
            class_sum[:, j] += norms[:-1, y[b] == j].sum(1)
        st, _ = train_step(st, keys[s], x[b], y[b])
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


if __name__ == "__main__":
  absltest.main()
