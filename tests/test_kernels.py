"""Tests of minimum-norm solutions and kernel interpolation (memjax.kernels),
of the study's Gabor features and claims (memjax.kernel_study) and of
experiments/implicit_regularization.py, run in this process."""

import contextlib
import fractions
import io
import json
import os

import chex
import jax
import numpy as np
import pytest
from absl.testing import absltest

from experiments import implicit_regularization as experiment
from memjax import cli
from memjax import kernel_study
from memjax import kernels


def gaussian_problem(n=20, d=60, k=3, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, d)).astype(np.float32),
          np.eye(k)[rng.integers(0, k, n)])


def plain_sgd(features, targets, config):
  """The same SGD as a Python loop over epochs and minibatches, the last one
  partial when the batch size does not divide n."""
  _, order_key = jax.random.split(jax.random.key(config.seed))
  lr = 1.0 / np.max(np.sum(features * features, axis=1))
  w = np.zeros((features.shape[1], targets.shape[1]), np.float32)
  n = len(features)
  for epoch in range(config.epochs):
    order = np.asarray(jax.random.permutation(
        jax.random.fold_in(order_key, epoch), n))
    for start in range(0, n, config.batch_size):
      batch = order[start:start + config.batch_size]
      x, y = features[batch], targets[batch]
      w = w - lr * x.T @ (x @ w - y) / len(batch)
  return w


def ill_conditioned_problem(condition=1e7, n=6, d=10, seed=0):
  """Phi = U diag(s) V^T with singular values from 1 to 1 / condition."""
  rng = np.random.default_rng(seed)
  u, _ = np.linalg.qr(rng.normal(size=(n, n)))
  v, _ = np.linalg.qr(rng.normal(size=(d, n)))
  features = u @ np.diag(np.logspace(0, -np.log10(condition), n)) @ v.T
  return features, rng.normal(size=(n, 2))


def exact_min_norm(features, targets):
  """Phi^T (Phi Phi^T)^-1 y in exact rational arithmetic (float64 inputs are
  binary fractions), rounded to float64 at the end: the reference solution."""
  phi = [[fractions.Fraction(v) for v in row] for row in features.tolist()]
  n = len(phi)
  rows = [[sum(a * b for a, b in zip(phi[i], phi[j])) for j in range(n)]
          + [fractions.Fraction(v) for v in targets[i].tolist()]
          for i in range(n)]
  for col in range(n):  # Gauss-Jordan elimination, exact
    pivot = next(r for r in range(col, n) if rows[r][col] != 0)
    rows[col], rows[pivot] = rows[pivot], rows[col]
    for r in range(n):
      if r != col and rows[r][col] != 0:
        factor = rows[r][col] / rows[col][col]
        rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col])]
  alpha = [[v / rows[i][i] for v in rows[i][n:]] for i in range(n)]
  return np.array([[float(sum(phi[i][j] * alpha[i][c] for i in range(n)))
                    for c in range(len(alpha[0]))]
                   for j in range(len(phi[0]))])


class MinimumNormTest(absltest.TestCase):

  def test_min_norm_weights_are_the_pseudo_inverse_solution(self):
    x, y = gaussian_problem()
    for solver in kernels.MIN_NORM_SOLVERS:
      np.testing.assert_allclose(kernels.min_norm_weights(x, y, solver),
                                 np.linalg.pinv(x.astype(np.float64)) @ y,
                                 atol=1e-8)

  def test_lstsq_equals_cholesky_when_well_conditioned(self):
    x, y = gaussian_problem(n=30, d=80, seed=3)
    self.assertLess(np.divide(*kernels.singular_values(x)[[0, -1]]), 10)
    np.testing.assert_allclose(kernels.min_norm_weights(x, y, "lstsq"),
                               kernels.min_norm_weights(x, y, "cholesky"),
                               rtol=0, atol=1e-12)

  def test_lstsq_is_more_accurate_when_ill_conditioned(self):
    # cond(Phi) = 1e7: the Gram matrix's is 1e14, so Cholesky keeps ~2 digits
    # where the SVD keeps ~9.
    x, y = ill_conditioned_problem(condition=1e7)
    exact = exact_min_norm(x, y)
    error = {solver: np.linalg.norm(kernels.min_norm_weights(x, y, solver)
                                    - exact) / np.linalg.norm(exact)
             for solver in kernels.MIN_NORM_SOLVERS}
    self.assertLess(error["lstsq"], 1e-8)
    self.assertGreater(error["cholesky"], 1e-6)
    self.assertGreater(error["cholesky"], 100 * error["lstsq"])

  def test_min_norm_weights_reject_more_points_than_dimensions(self):
    x, y = gaussian_problem(n=30, d=5)
    for solver in kernels.MIN_NORM_SOLVERS:
      with self.assertRaisesRegex(ValueError, "n <= d"):
        kernels.min_norm_weights(x, y, solver)
    with self.assertRaisesRegex(ValueError, "valid: lstsq, cholesky"):
      kernels.min_norm_weights(x[:3], y[:3], "qr")

  def test_sgd_from_zero_converges_to_the_min_norm_solution(self):
    x, y = gaussian_problem()
    target = kernels.min_norm_weights(x, y)
    run = kernels.sgd_least_squares(
        x, y, kernels.SGDConfig(epochs=200, batch_size=4), reference=target)
    chex.assert_shape(run.distances, (201,))
    np.testing.assert_array_equal(run.initial, 0.0)
    self.assertAlmostEqual(float(run.distances[0]), 1.0, places=6)
    distance = np.linalg.norm(run.weights - target) / np.linalg.norm(target)
    self.assertLess(distance, 1e-3)
    self.assertAlmostEqual(float(run.distances[-1]), distance, places=5)

  def test_sgd_from_random_init_lands_elsewhere(self):
    x, y = gaussian_problem()
    config = kernels.SGDConfig(epochs=200, batch_size=4, init_scale=0.1)
    run = kernels.sgd_least_squares(x, y, config)
    self.assertIsNone(run.distances)
    w0, w = run.initial.astype(np.float64), run.weights
    target = kernels.min_norm_weights(x, y)
    # SGD never moves the init's component outside the data span.
    outside = w0 - kernels.min_norm_weights(x, x @ w0)
    np.testing.assert_allclose(w - target, outside, atol=1e-3)
    self.assertGreater(np.linalg.norm(outside), 0.5)

  def test_scan_matches_a_plain_loop(self):
    x, y = gaussian_problem(n=12, d=8)
    for batch_size in (4, 5):  # 5 leaves a partial last batch of 2
      config = kernels.SGDConfig(epochs=3, batch_size=batch_size, seed=7)
      run = kernels.sgd_least_squares(x, y, config)
      chex.assert_trees_all_close(run.weights, plain_sgd(x, y, config),
                                  atol=1e-5)

  def test_an_epoch_visits_every_example_once(self):
    # Example i owns coordinate i, so after one epoch w_i != 0 exactly when
    # example i was visited. 7 examples in batches of 3: 3, 3 and 1.
    features, targets = np.eye(7, dtype=np.float32), np.ones((7, 1))
    run = kernels.sgd_least_squares(
        features, targets, kernels.SGDConfig(epochs=1, batch_size=3))
    self.assertTrue(np.all(run.weights != 0), run.weights.ravel())

  def test_bad_sgd_config_raises(self):
    for bad in (dict(epochs=0), dict(batch_size=0), dict(init_scale=-1.0),
                dict(init_scale=float("nan")), dict(learning_rate=0.0),
                dict(learning_rate=float("inf"))):
      with self.assertRaisesRegex(ValueError, "Invalid SGDConfig"):
        kernels.SGDConfig(**bad)
    x, y = gaussian_problem(n=5, d=8)
    with self.assertRaisesRegex(ValueError, "valid: 1..5"):
      kernels.sgd_least_squares(x, y, kernels.SGDConfig(batch_size=6))

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
    bank = kernel_study.gabor_bank(size=5, orientations=2, wavelengths=(3.0,))
    chex.assert_shape(bank, (5, 5, 1, 4))
    images = np.random.default_rng(0).normal(size=(3, 8, 8, 1))
    features = kernel_study.gabor_features(images, bank, pool=2, batch_size=2)
    chex.assert_shape(features, (3, 4 * 4 * 2))
    np.testing.assert_allclose(features.mean(1), 0.0, atol=1e-5)
    # Zero-mean filters: a constant image has no Gabor energy.
    flat = kernel_study.gabor_features(np.ones((1, 8, 8, 1)), bank)
    self.assertTrue(np.all(np.isfinite(flat)))
    with self.assertRaisesRegex(ValueError, r"\(n, H, W, 1\)"):
      kernel_study.gabor_features(np.zeros((2, 8, 8, 3)))


def sgd_row(distance, se, out_of_span=1e-7, gap=1e-14):
  return {"seeds": 3, "train_error": 0.0, "out_of_span": out_of_span,
          "out_of_span_se": out_of_span / 10,
          "sgd_vs_minnorm_distance": distance,
          "sgd_vs_minnorm_distance_se": se,
          "sgd_vs_minnorm_distance_cholesky": distance,
          "minnorm_solver_gap_max": gap, "cholesky_error_scale_max": 1e-12,
          "feature_condition_number": 100.0}


def reproduced_summary():
  """A summary in which every claim holds, with realistic noise."""
  return {
      "gaussian_linear_sgd": sgd_row(4e-6, 1e-7),
      "linear_sgd": sgd_row(0.07, 0.005),
      "rff_sgd": sgd_row(8e-6, 1e-7),
      "linear_sgd_random_init": sgd_row(0.6, 0.01, out_of_span=0.5),
      "rbf_random_labels": {"seeds": 3, "n": 4000, "train_error": 0.0,
                            "train_error_max": 0.0, "test_error": 0.9,
                            "test_error_se": 0.005, "solution_norm": 170.0,
                            "relative_residual": 1e-14},
      "rbf_true_labels": {"n": 4000, "train_error": 0.0, "test_error": 0.02,
                          "test_n": 1000, "solution_norm": 48.0,
                          "relative_residual": 1e-14},
      "gabor_vs_raw": {"raw_test_error": 0.02, "gabor_test_error": 0.012,
                       "test_error_gain": 0.008, "test_error_gain_se": 0.003,
                       "raw_norm": 48.0, "gabor_norm": 64.0,
                       "norm_ratio": 4 / 3, "norm_ratio_tolerance": 1e-13}}


def verdicts(summary):
  return {c.claim: c for c in kernel_study.claims(summary, num_classes=10)}


def verdict_of(summary, words):
  [claim] = [c for text, c in verdicts(summary).items()
             if text.startswith(words) or f" {words}" in text]
  return claim.verdict


class ClaimsTest(absltest.TestCase):
  """Each criterion can pass and can fail (issue 13)."""

  def test_every_claim_reproduced_when_the_effects_are_present(self):
    claims = verdicts(reproduced_summary())
    self.assertLen(claims, 11)
    for text, claim in claims.items():
      self.assertEqual(claim.verdict, "REPRODUCED", text)
      self.assertIsNotNone(claim.value, text)
      self.assertIsNotNone(claim.uncertainty, text)
      self.assertIsNotNone(claim.threshold, text)

  def assert_not_reproduced(self, words, **changes):
    """Changing the named summary entries flips the claim matching words."""
    summary = reproduced_summary()
    for case, fields in changes.items():
      summary[case] = {**summary[case], **fields}
    self.assertEqual(verdict_of(reproduced_summary(), words), "REPRODUCED")
    self.assertEqual(verdict_of(summary, words), "NOT REPRODUCED")

  def test_span(self):
    self.assert_not_reproduced("stays in the span",
                               rff_sgd={"out_of_span": 0.01})

  def test_convergence_within_noise_of_the_threshold(self):
    # 0.09 +- 0.01: the mean is below 0.1 but not by 2 SE.
    self.assert_not_reproduced(
        "linear_sgd: SGD from zero converges",
        linear_sgd={"sgd_vs_minnorm_distance": 0.09,
                    "sgd_vs_minnorm_distance_se": 0.01})
    self.assert_not_reproduced(
        "rff_sgd: SGD from zero converges",
        rff_sgd={"sgd_vs_minnorm_distance": 0.5})
    self.assert_not_reproduced(
        "gaussian_linear_sgd: SGD from zero converges",
        gaussian_linear_sgd={"sgd_vs_minnorm_distance": 0.2})

  def test_one_seed_is_undecided(self):
    self.assert_not_reproduced(
        "linear_sgd: SGD from zero converges",
        linear_sgd={"sgd_vs_minnorm_distance_se": None})

  def test_control_random_init(self):
    self.assert_not_reproduced(
        "random init converges elsewhere",
        linear_sgd_random_init={"sgd_vs_minnorm_distance": 0.05})

  def test_solver_gap(self):
    self.assert_not_reproduced("does not depend on the solver",
                               linear_sgd={"minnorm_solver_gap_max": 1e-4})

  def test_rbf_interpolation(self):
    self.assert_not_reproduced("interpolates true and random labels",
                               rbf_random_labels={"train_error_max": 0.001})
    self.assert_not_reproduced("interpolates true and random labels",
                               rbf_true_labels={"train_error": 0.002})

  def test_generalization_within_noise_of_the_threshold(self):
    # 4.5% of 1,000: the Jeffreys interval reaches above 5%.
    self.assert_not_reproduced("generalizes on true labels",
                               rbf_true_labels={"test_error": 0.045})

  def test_random_labels_at_chance(self):
    self.assert_not_reproduced("test error at chance",
                               rbf_random_labels={"test_error": 0.8})
    # 88% +- 1%: the mean is in the band, its 2 SE interval is not.
    self.assert_not_reproduced("test error at chance",
                               rbf_random_labels={"test_error": 0.88,
                                                  "test_error_se": 0.01})

  def test_gabor_error_within_noise(self):
    self.assert_not_reproduced("lowers the RBF test error",
                               gabor_vs_raw={"test_error_gain": 0.004})

  def test_gabor_norm(self):
    self.assert_not_reproduced("norm does not predict generalization",
                               gabor_vs_raw={"norm_ratio": 0.8})


def run_experiment(workdir: str) -> dict:
  """``python experiments/implicit_regularization.py --smoke --noprogress``,
  in this process; returns results.json's contents."""
  config, _, control = cli.from_args(
      experiment, ["--smoke", "--noprogress", f"--workdir={workdir}"])
  with contextlib.redirect_stdout(io.StringIO()):
    return experiment.run(config, workdir, control)


def test_experiment_smoke_and_resume(tmp_path):
  workdir = str(tmp_path / "implicit_regularization")
  run_experiment(workdir)
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  summary = results["summary"]
  for case in ("gaussian_linear_sgd", "linear_sgd", "rff_sgd",
               "rbf_true_labels", "rbf_random_labels", "linear_true_labels",
               "gabor_rbf_true_labels", "gabor_vs_raw"):
    assert case in summary
  for case in ("rbf_true_labels", "rbf_random_labels"):
    assert summary[case]["train_error"] == 0.0
    assert summary[case]["solution_norm"] > 0
  sgd = summary["linear_sgd"]
  assert sgd["seeds"] == 2 and sgd["out_of_span"] < 1e-3
  assert sgd["minnorm_solver_gap"] < 1e-10
  assert abs(sgd["sgd_vs_minnorm_distance"]
             - sgd["sgd_vs_minnorm_distance_cholesky"]) < 1e-8
  assert len(results["runs"]["sgd_distance_per_epoch"]["linear_sgd"]) == 2
  assert all(c["verdict"] in ("REPRODUCED", "NOT REPRODUCED")
             and c["threshold"] is not None for c in results["claims"])
  assert os.path.exists(os.path.join(workdir, "sgd_distance.png"))

  # Resume after a kill: finished cases are loaded, the missing one is
  # recomputed, and the results are the same.
  cases = os.path.join(workdir, "cases")
  kept = os.path.join(cases, "linear_sgd_seed0.npz")
  kept_mtime = os.stat(kept).st_mtime_ns
  os.remove(os.path.join(cases, "rff_sgd_seed1.npz"))
  os.remove(os.path.join(workdir, "results.json"))
  run_experiment(workdir)
  assert os.stat(kept).st_mtime_ns == kept_mtime
  assert os.path.exists(os.path.join(cases, "rff_sgd_seed1.npz"))
  with open(os.path.join(workdir, "results.json")) as f:
    resumed = json.load(f)
  assert [c["verdict"] for c in resumed["claims"]] == [
      c["verdict"] for c in results["claims"]]
  for case in ("rff_sgd", "linear_sgd", "rbf_random_labels"):
    assert (resumed["summary"][case]["test_error"]
            == summary[case]["test_error"])
  np.testing.assert_allclose(
      resumed["summary"]["rff_sgd"]["sgd_vs_minnorm_distance"],
      summary["rff_sgd"]["sgd_vs_minnorm_distance"], rtol=1e-6)


@pytest.mark.parametrize("flag, named", [
    ("--sgd_train_size=-3", "--sgd_train_size"),
    ("--rff_features=-10", "--rff_features"),
    ("--rff_features=0", "--rff_features"),
    ("--sgd_batch_size=300", "--sgd_batch_size 300"),
    ("--sgd_train_size=5000", "--sgd_train_size 5000"),
])
def test_bad_flags_exit_2_before_writing(tmp_path, flag, named):
  workdir = str(tmp_path / "run")
  err = io.StringIO()
  with contextlib.redirect_stderr(err), contextlib.redirect_stdout(err):
    code = cli.execute(experiment, [flag, "--workdir", workdir])
  assert code == 2, err.getvalue()
  assert err.getvalue().startswith("error:"), err.getvalue()
  assert named in err.getvalue(), err.getvalue()
  assert "Traceback" not in err.getvalue()
  assert not os.path.exists(workdir)


if __name__ == "__main__":
  pytest.main([__file__])
