"""Tests of the Hessian spectrum and epsilon-sharpness (memjax.sharpness)."""

from __future__ import annotations

from absl.testing import absltest
import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from memjax import keys
from memjax import sharpness
from memjax import training


def _tiny_problem(num_seeds=2):
  config = training.TrainConfig(model="mlp1x3", num_seeds=num_seeds)
  trainer = training.Trainer(config, (2, 2, 1), 3)
  state = trainer.init(keys.seed_keys(config.seed, config.num_seeds))
  x = jax.random.normal(jax.random.key(1), (16, 2, 2, 1))
  y = jax.random.randint(jax.random.key(2), (16,), 0, 3)
  return trainer, state, x, y


def _exact_eigenvalues(loss_fn, params):
  flat, unravel = ravel_pytree(params)
  hessian = jax.hessian(lambda f: loss_fn(unravel(f)))(flat)
  return np.linalg.eigvalsh(np.asarray(hessian, np.float64))[::-1]


class HessianTest(absltest.TestCase):

  def test_hvp_matches_full_hessian(self):
    trainer, state, x, y = _tiny_problem(1)
    params = jax.tree.map(lambda a: a[0], state.params)
    loss_fn = sharpness.training_loss(
        trainer, jax.tree.map(lambda a: a[0], state.batch_stats), x, y)
    flat, unravel = ravel_pytree(params)
    v = jax.random.normal(jax.random.key(3), flat.shape)
    hessian = jax.hessian(lambda f: loss_fn(unravel(f)))(flat)
    got = ravel_pytree(sharpness.hvp(loss_fn, params, unravel(v)))[0]
    chex.assert_trees_all_close(got, hessian @ v, rtol=1e-4, atol=1e-5)

  def test_lanczos_matches_exact_eigenvalues(self):
    trainer, state, x, y = _tiny_problem(1)
    params = jax.tree.map(lambda a: a[0], state.params)
    loss_fn = sharpness.training_loss(
        trainer, jax.tree.map(lambda a: a[0], state.batch_stats), x, y)
    exact = _exact_eigenvalues(loss_fn, params)
    dim = exact.shape[0]
    full = sharpness.SharpnessConfig(num_iterations=dim, top_k=dim)
    got = np.asarray(sharpness.hessian_top(loss_fn, params, full,
                                           jax.random.key(0)))
    np.testing.assert_allclose(got, exact, atol=2e-4 * abs(exact[0]) + 1e-5)
    # A short Krylov space already pins down the extreme eigenvalue.
    short = sharpness.SharpnessConfig(num_iterations=12, top_k=1)
    top = float(sharpness.hessian_top(loss_fn, params, short,
                                      jax.random.key(1))[0])
    self.assertAlmostEqual(top, exact[0], delta=1e-3 * abs(exact[0]))

  def test_lanczos_on_known_matrix_with_repeated_eigenvalues(self):
    eigenvalues = jnp.array([5.0, 2.0, 2.0, 2.0, -1.0, 0.5])
    rotation = jnp.linalg.qr(jax.random.normal(jax.random.key(0), (6, 6)))[0]
    matrix = rotation @ jnp.diag(eigenvalues) @ rotation.T
    got = sharpness.lanczos(lambda v: matrix @ v, 6, 6, jax.random.key(4))
    # Repeated eigenvalues span a 1-d Krylov direction: the restart finds them.
    np.testing.assert_allclose(np.sort(np.asarray(got)),
                               np.sort(np.asarray(eigenvalues)), atol=1e-4)

  def test_seed_sharpness_matches_loop(self):
    trainer, state, x, y = _tiny_problem(2)
    config = sharpness.SharpnessConfig(num_iterations=8, top_k=2)
    search_keys = jax.random.split(jax.random.key(0), 2)
    stacked = sharpness.seed_sharpness(trainer, state, x, y, config,
                                       search_keys)
    chex.assert_shape(stacked["eigenvalues"], (2, 2))
    chex.assert_shape(stacked["epsilon_sharpness"], (2,))
    for s in range(2):
      one = jax.tree.map(lambda a, s=s: a[s], state)
      loss_fn = sharpness.training_loss(trainer, one.batch_stats, x, y)
      lanczos_key, ascent_key = jax.random.split(search_keys[s])
      top = sharpness.hessian_top(loss_fn, one.params, config, lanczos_key)
      np.testing.assert_allclose(stacked["eigenvalues"][s], top, rtol=1e-4,
                                 atol=1e-6)
      eps = sharpness.epsilon_sharpness(loss_fn, one.params, config,
                                        ascent_key)
      np.testing.assert_allclose(stacked["epsilon_sharpness"][s], eps,
                                 rtol=1e-4, atol=1e-6)


class EpsilonSharpnessTest(absltest.TestCase):

  def test_linear_loss_reaches_box_corner(self):
    c = jnp.array([1.0, -2.0, 0.5])
    w = {"w": jnp.array([0.3, -1.0, 2.0])}
    loss_fn = lambda p: 1.0 + c @ p["w"]
    config = sharpness.SharpnessConfig(epsilon=0.01, ascent_steps=4)
    got = sharpness.epsilon_sharpness(loss_fn, w, config, jax.random.key(0))
    rise = jnp.sum(jnp.abs(c) * 0.01 * (jnp.abs(w["w"]) + 1.0))
    expected = 100.0 * rise / (1.0 + loss_fn(w))
    self.assertAlmostEqual(float(got), float(expected), places=4)

  def test_leaves_an_exact_minimum(self):
    loss_fn = lambda p: jnp.sum(p ** 2)
    got = sharpness.epsilon_sharpness(loss_fn, jnp.zeros(4),
                                      sharpness.SharpnessConfig(epsilon=0.1),
                                      jax.random.key(0))
    self.assertGreater(float(got), 0.0)
    self.assertAlmostEqual(float(got), 100 * 4 * 0.01, places=3)

  def test_bad_config_raises(self):
    with self.assertRaisesRegex(ValueError, "top_k"):
      sharpness.SharpnessConfig(num_iterations=3, top_k=5)


class LanczosMemoryTest(absltest.TestCase):

  def test_basis_bytes(self):
    config = sharpness.SharpnessConfig(num_iterations=20)
    self.assertEqual(sharpness.lanczos_bytes(config, 1000), 4 * 22 * 1000)
    # Lanczos never keeps more vectors than the parameter count.
    self.assertEqual(sharpness.lanczos_bytes(config, 10), 4 * 12 * 10)


if __name__ == "__main__":
  absltest.main()

