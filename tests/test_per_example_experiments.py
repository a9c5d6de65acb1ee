"""End-to-end --smoke runs of the per-example experiments."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl.testing import absltest
import numpy as np
import pandas as pd


def run(script, workdir, *flags):
  return subprocess.run(
      [sys.executable, f"experiments/{script}.py", "--smoke", "--workdir",
       workdir, "--noprogress", *flags], capture_output=True, text=True,
      check=False)


def results(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


class ExperimentsTest(absltest.TestCase):

  def workdir(self):
    path = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path

  def test_easy_examples(self):
    workdir = self.workdir()
    proc = run("easy_examples", workdir)
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertIn("Claims:", proc.stdout)
    r = results(workdir)
    self.assertEqual(set(r["summary"]), {"real", "randX", "randY"})
    for stats in r["summary"].values():
      self.assertEqual(stats["seeds"], 8)
      self.assertBetween(stats["difficulty_std"], 0.0, 0.5)
      self.assertGreaterEqual(stats["dispersion"], 0.0)
    self.assertLen(r["runs"]["real"]["misclassification_rate"], 200)
    self.assertLen(r["claims"], 3)
    rates = np.load(os.path.join(workdir, "rates.npz"))
    np.testing.assert_allclose(rates["real_rate"],
                               r["runs"]["real"]["misclassification_rate"])
    self.assertTrue(os.path.exists(os.path.join(workdir, "easy_examples.png")))

  def test_loss_sensitivity(self):
    workdir = self.workdir()
    proc = run("loss_sensitivity", workdir, "--conditions=real,randY,nway")
    self.assertEqual(proc.returncode, 0, proc.stderr)
    r = results(workdir)
    self.assertEqual(set(r["summary"]), {"real", "randY", "nway"})
    for stats in r["summary"].values():
      self.assertBetween(stats["gini"], 0.0, 1.0)
      self.assertBetween(stats["gini_direct"], 0.0, 1.0)
    self.assertEqual(r["summary"]["nway"]["num_classes"], 200)
    self.assertLen(r["runs"]["real"]["class_matrix"], 10)
    self.assertNotIn("class_matrix", r["runs"]["nway"])
    self.assertEqual(np.shape(r["runs"]["real"]["gini"]), (2, 2))
    arrays = np.load(os.path.join(workdir, "sensitivity.npz"))
    self.assertEqual(arrays["real_unrolled"].shape, (2, 200))
    np.testing.assert_array_equal(arrays["nway_label"], np.arange(200))
    for figure in ("gini.png", "class_matrix.png"):
      self.assertTrue(os.path.exists(os.path.join(workdir, figure)))

  def test_example_scores(self):
    workdir = self.workdir()
    proc = run("example_scores", workdir, "--noise=corrupt_0.4")
    self.assertEqual(proc.returncode, 0, proc.stderr)
    r = results(workdir)
    stats = r["summary"]["corrupt_0.4"]
    for score in ("el2n", "grand", "forgetting"):
      self.assertBetween(stats[f"{score}_auc"], 0.0, 1.0)
    frame = pd.read_csv(os.path.join(workdir, "scores.csv"))
    self.assertLen(frame, 200)
    np.testing.assert_array_equal(frame["index"], np.arange(200))
    np.testing.assert_array_equal(frame["corrupted"],
                                  frame["label"] != frame["original_label"])
    self.assertTrue({"el2n", "grand", "forgetting", "never_learned",
                     "first_learned"} <= set(frame.columns))
    arrays = np.load(os.path.join(workdir, "scores.npz"))
    self.assertEqual(arrays["grand_per_seed"].shape, (2, 200))
    np.testing.assert_allclose(arrays["el2n"], frame["el2n"], rtol=1e-5)
    self.assertTrue(os.path.exists(os.path.join(workdir, "scores.png")))

  def test_bad_flags_exit_2(self):
    workdir = self.workdir()
    proc = run("example_scores", workdir, "--noise=randX")
    self.assertEqual(proc.returncode, 2)
    self.assertIn("label noise", proc.stderr)
    proc = run("easy_examples", self.workdir(),
               "--conditions=real,bogus")
    self.assertEqual(proc.returncode, 2)
    self.assertIn("bogus", proc.stderr)


if __name__ == "__main__":
  absltest.main()
