"""Tests of Theorem 1's construction (memjax.expressivity) and its experiment."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest

from memjax import expressivity
from memjax import models


def random_problem(n=60, d=5, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, d)), rng.normal(size=n)


class ConstructionTest(absltest.TestCase):

  def test_fits_real_labels_with_2n_plus_d_weights(self):
    x, y = random_problem(n=60, d=5)  # more points than dimensions
    built = expressivity.construct(x, y, jax.random.key(0))
    self.assertEqual(built.params, 2 * 60 + 5)
    self.assertEqual(models.count_params(built.model), 2 * 60 + 5)
    np.testing.assert_allclose(expressivity.predict(built.model, x), y,
                               atol=1e-6)
    self.assertLess(built.fit_error, 1e-6)

  def test_one_hot_outputs_share_a_and_b(self):
    rng = np.random.default_rng(1)
    x, labels = rng.normal(size=(80, 7)), rng.integers(0, 4, 80)
    built = expressivity.construct(x, np.eye(4)[labels], jax.random.key(1))
    self.assertEqual(built.params, 7 + 80 + 4 * 80)
    self.assertEqual(models.count_params(built.model), built.params)
    outputs = expressivity.predict(built.model, x)
    self.assertEqual(outputs.shape, (80, 4))
    self.assertEqual(expressivity.classification_error(outputs, labels), 0.0)

  def test_system_is_lower_triangular_with_the_lemmas_eigenvalues(self):
    z = np.sort(np.random.default_rng(2).normal(size=30))
    b = expressivity.interleaved_biases(z)
    self.assertTrue(np.all(b < z))
    self.assertTrue(np.all(b[1:] > z[:-1]))
    system = expressivity.triangular_system(z, b)
    np.testing.assert_array_equal(np.triu(system, 1), 0.0)
    eigenvalues = np.sort(np.linalg.eigvals(system).real)
    np.testing.assert_allclose(eigenvalues, np.sort(z - b), rtol=1e-6)

  def test_weights_solve_the_sorted_system(self):
    x, y = random_problem(n=25, d=3, seed=3)
    key = jax.random.key(3)
    built = expressivity.construct(x, y, key)
    a = np.asarray(built.model.a[...])
    order = np.argsort(x @ a)
    system = expressivity.triangular_system(
        (x @ a)[order], np.asarray(built.model.b[...]))
    np.testing.assert_allclose(np.asarray(built.model.w[...]),
                               np.linalg.solve(system, y[order]), rtol=1e-6)
    self.assertAlmostEqual(built.min_eigenvalue,
                           float(np.min(np.diag(system))))
    self.assertGreater(built.condition_number, 1.0)

  def test_called_like_a_library_model_on_images(self):
    rng = np.random.default_rng(4)
    images, labels = rng.normal(size=(40, 4, 4, 1)), rng.integers(0, 10, 40)
    built = expressivity.construct(images, labels.astype(float),
                                   jax.random.key(4))
    with jax.enable_x64(True):
      outputs = built.model(jnp.asarray(images), train=False)
    self.assertEqual(outputs.shape, (40,))
    self.assertEqual(
        expressivity.classification_error(np.asarray(outputs), labels), 0.0)

  def test_duplicate_inputs_with_different_labels_raise(self):
    x, y = random_problem(n=10, d=4, seed=5)
    x[7] = x[2]
    y[7] = y[2] + 1
    with self.assertRaisesRegex(ValueError, "same input.*cannot be fit"):
      expressivity.construct(x, y, jax.random.key(5))

  def test_bad_label_shape_raises(self):
    x, _ = random_problem(n=10, d=4)
    with self.assertRaisesRegex(ValueError, r"valid shapes: \(10,\)"):
      expressivity.construct(x, np.zeros(9), jax.random.key(0))

  def test_predict_rejects_other_dtypes(self):
    x, y = random_problem(n=10, d=4)
    built = expressivity.construct(x, y, jax.random.key(0))
    with self.assertRaisesRegex(ValueError, "float64 or float32"):
      expressivity.predict(built.model, x, np.float16)


def test_experiment_smoke(tmp_path):
  workdir = str(tmp_path / "expressivity")
  subprocess.run([sys.executable, "experiments/expressivity.py", "--smoke",
                  "--workdir", workdir, "--noprogress"], check=True)
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  summary = results["summary"]
  assert set(summary) == {"gaussian_random_labels", "mnist_true_labels",
                          "mnist_random_labels", "mnist_random_labels_onehot"}
  for case in summary.values():
    assert case["train_error"] == 0.0
  scalar = summary["mnist_random_labels"]
  assert scalar["params"] == 2 * scalar["n"] + scalar["d"]
  assert all(claim["reproduced"] for claim in results["claims"])
  for figure in ("conditioning.png", "train_error.png"):
    assert os.path.exists(os.path.join(workdir, figure))


if __name__ == "__main__":
  pytest.main([__file__])
