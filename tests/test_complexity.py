"""Tests of LASS and the critical sample ratio (memjax.complexity)."""

from __future__ import annotations

from absl.testing import absltest
import chex
import jax
import jax.numpy as jnp
import numpy as np

from memjax import complexity
from memjax import keys
from memjax import training


def _linear(w, b):
  """A two-class linear classifier: logit margin w.x + b for class 1."""
  def apply_fn(x):
    margin = x.reshape(x.shape[0], -1) @ w + b
    return jnp.stack([jnp.zeros_like(margin), margin], axis=-1)
  return apply_fn


class LassTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(0)
    self.w = jnp.asarray(rng.normal(size=12), jnp.float32)
    self.b = 0.1
    self.radius = 0.05
    # The l-inf distance from x to the boundary w.x + b = 0 is |margin| / |w|_1.
    reach = self.radius * float(jnp.abs(self.w).sum())
    base = rng.normal(size=(40, 12)).astype(np.float32)
    margins = np.concatenate([rng.uniform(0.1, 0.8, 20),
                              rng.uniform(1.3, 3, 20)])
    margins *= reach * np.where(np.arange(40) % 2, 1, -1)
    # Move each base point along w until its margin is the one chosen above.
    base_margin = base @ np.asarray(self.w) + self.b
    step = (margins - base_margin) / float(self.w @ self.w)
    self.x = jnp.asarray(base + step[:, None] * np.asarray(self.w)[None])
    self.x = self.x.reshape(40, 2, 2, 3)
    self.expected = np.abs(margins) < reach

  def test_finds_critical_points_of_linear_classifier(self):
    config = complexity.LassConfig(radius=self.radius, alpha=self.radius / 4,
                                   beta=0.0, max_iterations=20)
    result = complexity.lass(_linear(self.w, self.b), self.x, config,
                             jax.random.key(0))
    chex.assert_shape(result.critical, (40,))
    chex.assert_shape(result.adversarial, self.x.shape)
    np.testing.assert_array_equal(np.asarray(result.critical), self.expected)
    flipped = (self.x.reshape(40, -1) @ self.w + self.b > 0) != (
        result.adversarial.reshape(40, -1) @ self.w + self.b > 0)
    np.testing.assert_array_equal(np.asarray(flipped), self.expected)
    iterations = np.asarray(result.iterations)
    self.assertTrue((iterations[~self.expected] == 20).all())
    self.assertTrue((iterations[self.expected] <= 4).all())

  def test_box_that_cannot_reach_boundary_finds_none(self):
    far = self.x[~self.expected]
    config = complexity.LassConfig(radius=self.radius, alpha=self.radius / 4,
                                   beta=self.radius, max_iterations=50)
    result = complexity.lass(_linear(self.w, self.b), far, config,
                             jax.random.key(1))
    self.assertFalse(np.asarray(result.critical).any())
    ratio = complexity.critical_sample_ratio(_linear(self.w, self.b), far,
                                             config, jax.random.key(1))
    self.assertEqual(float(ratio), 0.0)

  def test_points_stay_in_box_and_input_range(self):
    config = complexity.LassConfig(radius=0.3, alpha=0.2, beta=0.5,
                                   max_iterations=15, input_min=-1.0,
                                   input_max=1.0, chunk_size=7)
    x = jnp.clip(self.x, -1.0, 1.0)
    result = complexity.lass(_linear(self.w, self.b), x, config,
                             jax.random.key(2))
    adv = np.asarray(result.adversarial)
    self.assertLessEqual(np.abs(adv - np.asarray(x)).max(), 0.3 + 1e-6)
    self.assertGreaterEqual(adv.min(), -1.0)
    self.assertLessEqual(adv.max(), 1.0)
    ratio = float(np.asarray(result.critical).mean())
    self.assertBetween(ratio, 0.0, 1.0)

  def test_chunking_does_not_change_results(self):
    config = complexity.LassConfig(radius=self.radius, alpha=self.radius / 4,
                                   beta=self.radius / 2, max_iterations=10)
    whole = complexity.lass(_linear(self.w, self.b), self.x, config,
                            jax.random.key(3))
    small = complexity.lass(_linear(self.w, self.b), self.x,
                            complexity.LassConfig(**{**config.__dict__,
                                                     "chunk_size": 6}),
                            jax.random.key(3))
    chex.assert_trees_all_close(whole, small)

  def test_for_inputs_rescales_paper_constants(self):
    x = np.linspace(-1.0, 4.1, 100)
    config = complexity.LassConfig.for_inputs(x)
    level = 5.1 / 255
    self.assertAlmostEqual(config.radius, 0.3 * level, places=6)
    self.assertAlmostEqual(config.alpha, 0.25 * level, places=6)
    self.assertAlmostEqual(config.beta, 0.2 * level, places=6)
    self.assertEqual((config.input_min, config.input_max), (-1.0, 4.1))

  def test_from_levels_is_the_paper_in_units_of_pixels_over_255(self):
    config = complexity.LassConfig.from_levels(max_iterations=7)
    self.assertAlmostEqual(config.radius, 0.3 / 255, places=9)
    self.assertAlmostEqual(config.alpha, 0.25 / 255, places=9)
    self.assertAlmostEqual(config.beta, 0.2 / 255, places=9)
    self.assertEqual(config.max_iterations, 7)
    self.assertIsNone(config.input_min)

  def test_per_example_scale_and_clip_range(self):
    # Large steps push coordinates to their box edges, so the box of each
    # example must be its own: radius * scale[i], clipped to [low[i], high[i]].
    config = complexity.LassConfig(radius=0.1, alpha=0.3, beta=0.3,
                                   max_iterations=12, chunk_size=7)
    x = jnp.clip(self.x, -1.0, 1.0)
    n = x.shape[0]
    scale = np.linspace(0.5, 3.0, n).astype(np.float32)
    low = np.where(np.arange(n) % 3 == 0, -0.2, -1.0).astype(np.float32)
    high = np.where(np.arange(n) % 4 == 0, 0.3, 1.0).astype(np.float32)
    low = np.minimum(low, np.asarray(x).reshape(n, -1).min(1))
    high = np.maximum(high, np.asarray(x).reshape(n, -1).max(1))
    result = complexity.lass(_linear(self.w, self.b), x, config,
                             jax.random.key(2), scale=scale, low=low,
                             high=high)
    moved = np.abs(np.asarray(result.adversarial) - np.asarray(x)).reshape(
        n, -1).max(1)
    np.testing.assert_array_less(moved, 0.1 * scale + 1e-6)
    adv = np.asarray(result.adversarial).reshape(n, -1)
    np.testing.assert_array_less(low - 1e-6, adv.min(1))
    np.testing.assert_array_less(adv.max(1), high + 1e-6)
    # The boxes are used in full: wide boxes move points farther than 0.1.
    self.assertGreater(moved.max(), 0.25)

  def test_larger_scale_reaches_farther_boundaries(self):
    config = complexity.LassConfig(radius=self.radius, alpha=self.radius / 4,
                                   beta=0.0, max_iterations=40)
    far = self.x[~self.expected]  # out of reach at scale 1
    unit = complexity.lass(_linear(self.w, self.b), far, config,
                           jax.random.key(1), scale=1.0)
    wide = complexity.lass(_linear(self.w, self.b), far, config,
                           jax.random.key(1), scale=4.0)
    self.assertFalse(np.asarray(unit.critical).any())
    self.assertTrue(np.asarray(wide.critical).all())

  def test_bad_config_raises(self):
    with self.assertRaisesRegex(ValueError, "radius"):
      complexity.LassConfig(radius=0.0, alpha=0.1, beta=0.1)
    with self.assertRaisesRegex(ValueError, "radius"):
      complexity.LassConfig(radius=float("nan"), alpha=0.1, beta=0.1)
    with self.assertRaisesRegex(ValueError, "beta"):
      complexity.LassConfig(radius=0.1, alpha=0.1, beta=float("inf"))
    with self.assertRaisesRegex(ValueError, "range"):
      complexity.LassConfig.for_inputs(np.ones(5))


class SeedCsrTest(absltest.TestCase):

  def test_vmapped_over_seeds_matches_loop(self):
    config = training.TrainConfig(model="mlp1x8", num_seeds=3)
    trainer = training.Trainer(config, (4, 4, 1), 3)
    state = trainer.init(keys.seed_keys(config.seed, config.num_seeds))
    x = jax.random.normal(jax.random.key(0), (9, 4, 4, 1))
    lass_config = complexity.LassConfig(radius=0.5, alpha=0.1, beta=0.05,
                                        max_iterations=8, chunk_size=4)
    search_keys = jax.random.split(jax.random.key(5), 3)
    stacked = complexity.seed_lass(trainer, state, x, lass_config, search_keys)
    chex.assert_shape(stacked.critical, (3, 9))
    for s in range(3):
      one = jax.tree.map(lambda a, s=s: a[s], state)
      apply_fn = lambda xb, one=one: trainer.apply(one.params, one.batch_stats,
                                                   xb)[0]
      loop = complexity.lass(apply_fn, x, lass_config, search_keys[s])
      chex.assert_trees_all_close(jax.tree.map(lambda a, s=s: a[s], stacked),
                                  loop, atol=1e-5)
    csr = complexity.seed_csr(trainer, state, x, lass_config, search_keys)
    chex.assert_shape(csr, (3,))
    self.assertTrue(((csr >= 0) & (csr <= 1)).all())

  def test_per_seed_inputs(self):
    config = training.TrainConfig(model="mlp1x8", num_seeds=2)
    trainer = training.Trainer(config, (4, 4, 1), 3)
    state = trainer.init(keys.seed_keys(config.seed, config.num_seeds))
    x = jax.random.normal(jax.random.key(0), (2, 5, 4, 4, 1))
    lass_config = complexity.LassConfig(radius=0.5, alpha=0.1, beta=0.05,
                                        max_iterations=8)
    search_keys = jax.random.split(jax.random.key(5), 2)
    result = complexity.seed_lass(trainer, state, x, lass_config, search_keys,
                                  per_seed_inputs=True)
    chex.assert_shape(result.adversarial, (2, 5, 4, 4, 1))
    self.assertLessEqual(float(jnp.abs(result.adversarial - x).max()),
                         0.5 + 1e-6)

  def test_per_seed_boxes_match_one_seed_at_a_time(self):
    config = training.TrainConfig(model="mlp1x8", num_seeds=2)
    trainer = training.Trainer(config, (4, 4, 1), 3)
    state = trainer.init(keys.seed_keys(config.seed, config.num_seeds))
    x = jax.random.normal(jax.random.key(0), (2, 5, 4, 4, 1))
    scale = np.array([[1.0, 2.0, 0.5, 1.0, 3.0], [0.1, 1.0, 1.0, 2.0, 1.0]],
                     np.float32)
    # Valid ranges that hold each example, tight above for seed 1's.
    flat = np.asarray(x).reshape(2, 5, -1)
    low = flat.min(-1) - 0.05
    high = flat.max(-1) + np.array([[0.05], [0.0]], np.float32)
    lass_config = complexity.LassConfig(radius=0.5, alpha=0.4, beta=0.3,
                                        max_iterations=6)
    search_keys = jax.random.split(jax.random.key(5), 2)
    stacked = complexity.seed_lass(trainer, state, x, lass_config, search_keys,
                                   per_seed_inputs=True, scale=scale, low=low,
                                   high=high)
    for s in range(2):
      one = jax.tree.map(lambda a, s=s: a[s], state)
      apply_fn = lambda xb, one=one: trainer.apply(one.params, one.batch_stats,
                                                   xb)[0]
      loop = complexity.lass(apply_fn, x[s], lass_config, search_keys[s],
                             scale=scale[s], low=low[s], high=high[s])
      chex.assert_trees_all_close(jax.tree.map(lambda a, s=s: a[s], stacked),
                                  loop, atol=1e-5)
    moved = np.abs(np.asarray(stacked.adversarial - x)).reshape(2, 5, -1)
    np.testing.assert_array_less(moved.max(-1), 0.5 * scale + 1e-6)


if __name__ == "__main__":
  absltest.main()

