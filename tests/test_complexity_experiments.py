"""Smoke runs of the function-complexity experiments, end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl.testing import absltest
from absl.testing import parameterized

EXPERIMENTS = {
    "critical_samples": ("real", "randX", "randY_0.2", "randY_0.6", "randY"),
    "sharpness": ("real", "randX", "randY"),
    "capacity": ("real", "randX_0.8", "randY_0.8"),
    "convergence_time": ("real", "randX", "randY"),
}
# The summary fields each experiment promises per condition.
FIELDS = {"critical_samples": ("csr", "csr_train", "best_val_acc"),
          "sharpness": ("sharpness", "epsilon_sharpness", "top_eigenvalues"),
          "capacity": ("best_val_acc", "hidden_sizes"),
          "convergence_time": ("epochs_to_fit", "epochs_to_fit_by_size")}
FIGURES = {"critical_samples": "critical_samples.png",
           "sharpness": "sharpness.png", "capacity": "capacity.png",
           "convergence_time": "convergence_time.png"}


def _run(args, workdir):
  return subprocess.run(
      [sys.executable, *args, "--workdir", workdir, "--noprogress"],
      capture_output=True, text=True, check=False)


class SmokeTest(parameterized.TestCase):

  def workdir(self) -> str:
    path = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path

  @parameterized.parameters(*EXPERIMENTS)
  def test_smoke_run_writes_results(self, name):
    workdir = self.workdir()
    proc = _run([f"experiments/{name}.py", "--smoke"], workdir)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertIn("Claims:", proc.stdout)
    with open(os.path.join(workdir, "results.json")) as f:
      results = json.load(f)
    self.assertEqual(results["experiment"], name)
    self.assertEqual(tuple(results["summary"]), EXPERIMENTS[name])
    for condition in results["summary"].values():
      for field in FIELDS[name]:
        self.assertIn(field, condition)
    self.assertNotEmpty(results["claims"])
    self.assertTrue(all(isinstance(c["reproduced"], bool)
                        for c in results["claims"]))
    self.assertTrue(os.path.exists(os.path.join(workdir, FIGURES[name])))
    if name == "critical_samples":
      for condition in results["summary"].values():
        self.assertBetween(condition["csr"], 0.0, 1.0)
        self.assertBetween(condition["csr_train"], 0.0, 1.0)

  def test_bad_flag_is_an_error(self):
    proc = _run(["experiments/capacity.py", "--smoke", "--noise=randZ"],
                self.workdir())
    self.assertEqual(proc.returncode, 2)
    self.assertIn("randZ", proc.stderr)


if __name__ == "__main__":
  absltest.main()
