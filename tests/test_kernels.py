"""Tests of minimum-norm solutions and kernel interpolation (memjax.kernels)."""

import json
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest
from absl.testing import absltest

from memjax import kernels


def gaussian_problem(n=20, d=60, k=3, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, d)).astype(np.float32),
          np.eye(k)[rng.integers(0, k, n)])


def plain_sgd(features, targets, config):
  """The same SGD as a Python loop over epochs and minibatches."""
  _, order_key = jax.random.split(jax.random.key(config.seed))
  lr = 1.0 / np.max(np.sum(features * features, axis=1))
  w = np.zeros((features.shape[1], targets.shape[1]), np.float32)
  n, steps = len(features), len(features) // config.batch_size
  for epoch in range(config.epochs):
    order = np.asarray(jax.random.permutation(
        jax.random.fold_in(order_key, epoch), n))
    for s in range(steps):
      batch = order[s * config.batch_size:(s + 1) * config.batch_size]
      x, y = features[batch], targets[batch]
      w = w - lr * x.T @ (x @ w - y) / config.batch_size
  return w


class MinimumNormTest(absltest.TestCase):

  def test_min_norm_weights_are_the_pseudo_inverse_solution(self):
    x, y = gaussian_problem()
    np.testing.assert_allclose(kernels.min_norm_weights(x, y),
                               np.linalg.pinv(x.astype(np.float64)) @ y,
                               atol=1e-8)

  def test_min_norm_weights_reject_more_points_than_dimensions(self):
    x, y = gaussian_problem(n=30, d=5)
    with self.assertRaisesRegex(ValueError, "n <= d"):
      kernels.min_norm_weights(x, y)

  def test_sgd_from_zero_converges_to_the_min_norm_solution(self):
    x, y = gaussian_problem()
    trajectory = kernels.sgd_least_squares(
        x, y, kernels.SGDConfig(epochs=200, batch_size=4))
    chex.assert_shape(trajectory, (201, 60, 3))
    np.testing.assert_array_equal(trajectory[0], 0.0)
    target = kernels.min_norm_weights(x, y)
    distance = np.linalg.norm(trajectory[-1] - target) / np.linalg.norm(target)
    self.assertLess(distance, 1e-3)

  def test_sgd_from_random_init_lands_elsewhere(self):
    x, y = gaussian_problem()
    config = kernels.SGDConfig(epochs=200, batch_size=4, init_scale=0.1)
    trajectory = kernels.sgd_least_squares(x, y, config)
    w0, w = trajectory[0].astype(np.float64), trajectory[-1]
    target = kernels.min_norm_weights(x, y)
    # SGD never moves the init's component outside the data span.
    outside = w0 - kernels.min_norm_weights(x, x @ w0)
    np.testing.assert_allclose(w - target, outside, atol=1e-3)
    self.assertGreater(np.linalg.norm(outside), 0.5)

  def test_scan_matches_a_plain_loop(self):
    x, y = gaussian_problem(n=12, d=8)
    config = kernels.SGDConfig(epochs=3, batch_size=5, seed=7)
    trajectory = kernels.sgd_least_squares(x, y, config)
    chex.assert_trees_all_close(trajectory[-1], plain_sgd(x, y, config),
                                atol=1e-5)

  def test_random_fourier_features_approximate_the_rbf_kernel(self):
    x, _ = gaussian_problem(n=10, d=4)
    gamma = kernels.default_gamma(x)
    features = kernels.random_fourier_features(x, 20000, gamma,
                                               jax.random.key(0))
    exact = kernels.kernel_matrix(x, x, "rbf", gamma)
    np.testing.assert_allclose(features @ features.T, exact, atol=0.05)


class KernelInterpolationTest(absltest.TestCase):

  def test_kernel_matrix_blocks_match_the_formula(self):
    x, _ = gaussian_problem(n=23, d=6)
    gamma = 0.1
    blocked = kernels.kernel_matrix(x, x[:9], "rbf", gamma, block_size=7)
    distances = np.sum((x[:, None].astype(np.float64) - x[None, :9]) ** 2, -1)
    np.testing.assert_allclose(blocked, np.exp(-gamma * distances), atol=1e-10)
    np.testing.assert_allclose(kernels.kernel_matrix(x, x, "linear"),
                               x.astype(np.float64) @ x.T, rtol=1e-10)

  def test_rbf_interpolates_and_reports_its_norm(self):
    x, y = gaussian_problem(n=50, d=10)
    model = kernels.fit(kernels.KernelConfig(), x, y)
    self.assertEqual(model.solver, "cholesky")
    np.testing.assert_allclose(kernels.predict(model, x), y, atol=1e-8)
    gram = kernels.kernel_matrix(x, x, "rbf", model.gamma)
    self.assertAlmostEqual(
        model.norm, np.sqrt(np.trace(model.alpha.T @ gram @ model.alpha)),
        places=6)

  def test_cg_agrees_with_cholesky(self):
    x, y = gaussian_problem(n=60, d=10, seed=1)
    exact = kernels.fit(kernels.KernelConfig(solver="cholesky"), x, y)
    # A float64 matrix of 60 points exceeds a 1e-5 GiB budget: auto picks cg.
    config = kernels.KernelConfig(max_dense_gib=1e-5, cg_tol=1e-6,
                                  block_size=16)
    iterative = kernels.fit(config, x, y)
    self.assertEqual(iterative.solver, "cg")
    self.assertEqual(iterative.alpha.dtype, np.float32)
    self.assertLess(iterative.relative_residual, 1e-5)
    np.testing.assert_allclose(kernels.predict(iterative, x), y, atol=1e-3)
    np.testing.assert_allclose(iterative.alpha, exact.alpha, rtol=1e-2,
                               atol=1e-2 * np.abs(exact.alpha).max())

  def test_linear_kernel_pinv_is_the_min_norm_least_squares_solution(self):
    x, y = gaussian_problem(n=40, d=6)  # rank 6 < 40 points: no interpolation
    model = kernels.fit(kernels.KernelConfig(kernel="linear", solver="pinv"),
                        x, y)
    weights = np.linalg.pinv(x.astype(np.float64)) @ y
    np.testing.assert_allclose(kernels.predict(model, x), x @ weights,
                               atol=1e-8)
    self.assertAlmostEqual(model.norm, np.linalg.norm(weights), places=6)
    self.assertGreater(model.relative_residual, 0.1)

  def test_singular_kernel_with_cholesky_names_pinv(self):
    x, y = gaussian_problem(n=40, d=6)
    with self.assertRaisesRegex(ValueError, "pinv"):
      kernels.fit(kernels.KernelConfig(kernel="linear", solver="cholesky"),
                  x, y)

  def test_bad_config_names_the_valid_values(self):
    with self.assertRaisesRegex(ValueError, "valid kernels: rbf, linear"):
      kernels.KernelConfig(kernel="poly")
    with self.assertRaisesRegex(ValueError, "valid solvers"):
      kernels.KernelConfig(solver="qr")

  def test_memory_estimate_of_full_mnist(self):
    self.assertEqual(kernels.memory_bytes(60000, "cholesky"), 28.8e9)
    self.assertEqual(kernels.memory_bytes(60000, "cg"), 14.4e9)
    self.assertEqual(kernels.choose_solver(60000, kernels.KernelConfig()), "cg")
    self.assertEqual(kernels.choose_solver(4000, kernels.KernelConfig()),
                     "cholesky")

  def test_gabor_features(self):
    bank = kernels.gabor_bank(size=5, orientations=2, wavelengths=(3.0,))
    chex.assert_shape(bank, (5, 5, 1, 4))
    images = np.random.default_rng(0).normal(size=(3, 8, 8, 1))
    features = kernels.gabor_features(images, bank, pool=2, batch_size=2)
    chex.assert_shape(features, (3, 4 * 4 * 2))
    np.testing.assert_allclose(features.mean(1), 0.0, atol=1e-5)
    # Zero-mean filters: a constant image has no Gabor energy.
    flat = kernels.gabor_features(np.ones((1, 8, 8, 1)), bank)
    self.assertTrue(np.all(np.isfinite(flat)))
    with self.assertRaisesRegex(ValueError, r"\(n, H, W, 1\)"):
      kernels.gabor_features(np.zeros((2, 8, 8, 3)))


def test_experiment_smoke(tmp_path):
  workdir = str(tmp_path / "implicit_regularization")
  subprocess.run([sys.executable, "experiments/implicit_regularization.py",
                  "--smoke", "--workdir", workdir, "--noprogress"], check=True)
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  summary = results["summary"]
  for case in ("gaussian_linear_sgd", "linear_sgd", "rff_sgd",
               "rbf_true_labels", "rbf_random_labels", "linear_true_labels",
               "gabor_rbf_true_labels"):
    assert case in summary
  for case in ("rbf_true_labels", "rbf_random_labels"):
    assert summary[case]["train_error"] == 0.0
    assert summary[case]["solution_norm"] > 0
  assert summary["linear_sgd"]["out_of_span"] < 1e-3
  assert summary["linear_sgd"]["sgd_vs_minnorm_distance"] is not None
  assert len(results["claims"]) >= 4
  assert os.path.exists(os.path.join(workdir, "sgd_distance.png"))


if __name__ == "__main__":
  pytest.main([__file__])
