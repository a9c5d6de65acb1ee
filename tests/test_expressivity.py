"""Tests of Theorem 1's construction (memjax.expressivity), its experiment
(in this process) and the per-case cache both experiments of Sec. 4-5 resume
from (checkpointing.cached_case)."""

import contextlib
import io
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest

from experiments import expressivity as experiment
from memjax import checkpointing
from memjax import cli
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


def case_row(n, d=784, outputs=1, params=None, train_error=0.0):
  if params is None:
    params = 2 * n + d if outputs == 1 else d + n + outputs * n
  return {"n": n, "d": d, "outputs": outputs, "params": params,
          "train_error": train_error, "output_error": 1e-4,
          "condition_number": 1e15}


def reproduced_rows():
  sweep = [case_row(n) for n in (500, 1000, 2000, 4000)]
  summary = {"gaussian_random_labels": sweep[-1],
             "mnist_true_labels": case_row(4000),
             "mnist_random_labels": case_row(4000),
             "mnist_random_labels_onehot": case_row(4000, outputs=10)}
  return summary, sweep


def verdicts(summary, sweep):
  return [c.verdict for c in expressivity.claims(summary, sweep, "mnist")]


class ClaimsTest(absltest.TestCase):
  """Each criterion can pass and can fail (issue 13)."""

  def test_reproduced_when_every_case_fits_exactly(self):
    summary, sweep = reproduced_rows()
    claims = expressivity.claims(summary, sweep, "mnist")
    self.assertEqual([c.verdict for c in claims], ["REPRODUCED"] * 3)
    for claim in claims:
      self.assertEqual((claim.value, claim.uncertainty, claim.threshold),
                       (0.0, 0.0, 0.0))

  def test_one_extra_weight_fails_the_count(self):
    summary, sweep = reproduced_rows()
    sweep[1] = case_row(1000, params=2 * 1000 + 784 + 1)
    self.assertEqual(verdicts(summary, sweep),
                     ["NOT REPRODUCED", "REPRODUCED", "REPRODUCED"])

  def test_one_misfit_point_fails_the_fit(self):
    summary, sweep = reproduced_rows()
    sweep[-1] = case_row(4000, train_error=1 / 4000)
    self.assertEqual(verdicts(summary, sweep),
                     ["REPRODUCED", "NOT REPRODUCED", "REPRODUCED"])
    summary, sweep = reproduced_rows()
    summary["mnist_true_labels"] = case_row(4000, train_error=1 / 4000)
    self.assertEqual(verdicts(summary, sweep)[1], "NOT REPRODUCED")

  def test_one_hot_count_and_fit(self):
    for bad in (case_row(4000, outputs=10, params=784 + 4000 + 10 * 4000 + 1),
                case_row(4000, outputs=10, train_error=0.01)):
      summary, sweep = reproduced_rows()
      summary["mnist_random_labels_onehot"] = bad
      self.assertEqual(verdicts(summary, sweep),
                       ["REPRODUCED", "REPRODUCED", "NOT REPRODUCED"])


class ExactnessTest(absltest.TestCase):

  def test_rounding_scale_predicts_the_output_error(self):
    rng = np.random.default_rng(6)
    x, labels = rng.normal(size=(400, 20)), rng.integers(0, 10, 400)
    built = expressivity.construct(x, labels.astype(float), jax.random.key(6))
    for dtype in (np.float64, np.float32):
      error = np.max(np.abs(expressivity.predict(built.model, x, dtype)
                            - labels))
      scale = expressivity.rounding_scale(built.model, x, dtype)
      # Within two orders of magnitude either way: a first-order estimate.
      self.assertLess(error, 100 * scale, dtype)
      self.assertGreater(error, scale / 100, dtype)

  def test_check_size_refuses_systems_that_cannot_fit(self):
    with self.assertRaisesRegex(ValueError, "valid: n <= 32768"):
      expressivity.check_size(40000, 10)
    with self.assertRaisesRegex(ValueError, "GiB"):
      expressivity.check_size(1000, 10**12)
    expressivity.check_size(4000, 784)


def run_experiment(workdir: str) -> str:
  """``python experiments/expressivity.py --smoke --noprogress``, in this
  process; returns what it printed."""
  config, _, control = cli.from_args(
      experiment, ["--smoke", "--noprogress", f"--workdir={workdir}"])
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    experiment.run(config, workdir, control)
  return out.getvalue()


def test_experiment_smoke_and_resume(tmp_path):
  workdir = str(tmp_path / "expressivity")
  stdout = run_experiment(workdir)
  assert "pixels / 255" in stdout  # the paper's MNIST inputs
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  summary = results["summary"]
  assert set(summary) == {"gaussian_random_labels", "mnist_true_labels",
                          "mnist_random_labels", "mnist_random_labels_onehot"}
  for case in summary.values():
    assert case["train_error"] == 0.0
    assert case["output_error"] < 0.5
  scalar = summary["mnist_random_labels"]
  assert scalar["params"] == 2 * scalar["n"] + scalar["d"]
  assert all(claim["verdict"] == "REPRODUCED" for claim in results["claims"])
  for figure in ("conditioning.png", "train_error.png"):
    assert os.path.exists(os.path.join(workdir, figure))

  # Resume after a kill: finished cases are loaded, not recomputed.
  cases = os.path.join(workdir, "cases")
  kept = os.path.join(cases, "gaussian_n50.npz")
  kept_mtime = os.stat(kept).st_mtime_ns
  os.remove(os.path.join(cases, "mnist_random_labels.npz"))
  os.remove(os.path.join(workdir, "results.json"))
  run_experiment(workdir)
  assert os.stat(kept).st_mtime_ns == kept_mtime
  with open(os.path.join(workdir, "results.json")) as f:
    resumed = json.load(f)["summary"]
  for name, case in summary.items():
    for field in ("params", "train_error", "test_error", "condition_number"):
      assert resumed[name][field] == case[field], (name, field)


def test_cached_case_computes_once_and_refuses_another_configuration(
    tmp_path):
  workdir = str(tmp_path / "run")
  checkpointing.prepare_workdir(workdir, {"case": 1})
  calls = []
  def compute():
    calls.append(1)
    return ({"n": np.int64(3), "error": np.float32(0.25), "gap": math.nan,
             "solver": "pinv", "test_error": None},
            {"curve": np.arange(4.0)})
  row, arrays = checkpointing.cached_case(workdir, "a", "stamp", compute)
  loaded, loaded_arrays = checkpointing.cached_case(workdir, "a", "stamp",
                                                    compute)
  assert len(calls) == 1
  assert os.path.exists(os.path.join(workdir, "cases", "a.npz"))
  # The loaded row equals the computed one, NaN included (not turned to None).
  assert {k: v for k, v in loaded.items() if k != "gap"} == {
      k: v for k, v in row.items() if k != "gap"}
  assert math.isnan(loaded["gap"])
  np.testing.assert_array_equal(loaded_arrays["curve"], arrays["curve"])
  # A case computed under another configuration is refused, not reused.
  with pytest.raises(ValueError, match="different configuration"):
    checkpointing.cached_case(workdir, "a", "other stamp", compute)
  assert len(calls) == 1
  # The cases are memjax's files: --overwrite may delete them.
  checkpointing.prepare_workdir(workdir, {"case": 1}, overwrite=True)
  assert not os.path.exists(os.path.join(workdir, "cases"))
  checkpointing.release(workdir)


@pytest.mark.parametrize("flag, named", [
    ("--gaussian_dim=-5", "--gaussian_dim"),
    ("--sizes=", "--sizes"),
    ("--sizes=1,100", "--sizes"),
    ("--sizes=100000", "n=100000"),
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
