"""Tests of memjax.published and experiments/compare_scores.py: scores in the
published schemas and in original order on mocked tfds CIFAR (records in a
shuffled order with ids we control; nothing is downloaded), and the
comparison on synthetic files with a known correlation or disagreeing
labels."""

import contextlib
import io
import json
import os
import shutil
import tempfile

from absl.testing import absltest
import numpy as np
from scipy import stats as scipy_stats

from experiments import compare_scores
from memjax import cli
from memjax import data
from memjax import memorization
from memjax import published
from test_data import mock_records
from test_data import shuffled_splits


def load_mocked(name, train, test, **config):
  """A mocked tfds dataset whose records TFDS holds in a shuffled order;
  returns (dataset, original labels per split)."""
  labels, order = shuffled_splits(name, train, test, seed=3)
  with mock_records(name, labels, order):
    dataset = data.load(data.DataConfig(name=name, data_dir="/nonexistent",
                                        standardize=False, **config))
  return dataset, labels


def temporary_folder(test: absltest.TestCase) -> str:
  folder = tempfile.mkdtemp()
  test.addCleanup(shutil.rmtree, folder)
  return folder


def read_npz(path):
  with np.load(path, allow_pickle=False) as f:
    return {k: f[k] for k in f.files}


class ExportTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.tmp = temporary_folder(self)

  def test_cscore_file_is_in_original_order(self):
    ds, labels = load_mocked("cifar10", train=30, test=10)
    # A score that names each example: its original index.
    scores = ds.train_original_index / 100.0
    path = published.save_scores(
        os.path.join(self.tmp, published.CSCORE_FILES["cifar10"]), scores, ds,
        stderr=np.full(30, 0.5))
    arrays = read_npz(path)
    self.assertEqual(set(arrays), {"labels", "scores", "stderr"})
    np.testing.assert_array_equal(arrays["labels"], labels["train"])
    np.testing.assert_allclose(arrays["scores"], np.arange(30) / 100.0,
                               rtol=1e-6)
    # Back into memjax's order.
    np.testing.assert_allclose(ds.from_original_order(arrays["scores"]),
                               scores, rtol=1e-6)
    with self.assertRaisesRegex(ValueError, "exists"):
      published.save_scores(path, scores, ds)
    with self.assertRaisesRegex(ValueError, r"need one entry per train"):
      published.score_arrays(scores[:5], ds)

  def test_a_subset_keeps_the_original_positions(self):
    ds, labels = load_mocked("cifar10", train=40, test=10, train_size=10)
    arrays = published.score_arrays(np.ones(10), ds)
    self.assertLen(arrays["scores"], 40)
    kept = ds.train_original_index
    np.testing.assert_array_equal(arrays["labels"][kept],
                                  labels["train"][kept])
    self.assertEqual(np.isnan(arrays["scores"]).sum(), 30)
    self.assertEqual((arrays["labels"] == published.MISSING_LABEL).sum(), 30)

  def test_infl_matrix_file_has_the_release_schema(self):
    ds, labels = load_mocked("cifar100", train=300, test=200)
    rng = np.random.default_rng(0)
    runs = 60
    masks = rng.random((runs, 300)) < 0.7
    train_correct = rng.random((runs, 300)) < 0.8
    test_correct = rng.random((runs, 200)) < 0.6
    tr_mem = memorization.memorization(masks, train_correct).value
    path = published.save_infl_matrix(
        os.path.join(self.tmp, published.INFL_MATRIX_FILES["cifar100"]), ds,
        tr_mem, masks, test_correct)
    arrays = read_npz(path)
    expected = {"tr_mem", "tr_labels", "tt_labels"}
    for c in range(100):
      expected.update(published.class_keys(c))
    self.assertEqual(set(arrays), expected)
    np.testing.assert_array_equal(arrays["tr_labels"], labels["train"])
    np.testing.assert_array_equal(arrays["tt_labels"], labels["test"])
    np.testing.assert_allclose(ds.from_original_order(arrays["tr_mem"]),
                               tr_mem, rtol=1e-6)
    # As downstream code reads it: class c's rows and columns, by original
    # index, against an independent count over the runs.
    memjax_row = np.argsort(ds.train_original_index)  # original -> memjax
    memjax_col = np.argsort(ds.test_original_index)
    for c in (0, 7, 99):
      rows = arrays[f"tr_classidx_{c}"]
      cols = arrays[f"tt_classidx_{c}"]
      np.testing.assert_array_equal(rows, np.flatnonzero(labels["train"] == c))
      np.testing.assert_array_equal(cols, np.flatnonzero(labels["test"] == c))
      matrix = arrays[f"infl_matrix_class{c}"]
      self.assertEqual(matrix.shape, (len(rows), len(cols)))
      for r, i in enumerate(rows):
        for s, j in enumerate(cols):
          inside = masks[:, memjax_row[i]]
          right = test_correct[:, memjax_col[j]]
          self.assertAlmostEqual(
              matrix[r, s], right[inside].mean() - right[~inside].mean(),
              places=6)

  def test_memorization_alone_and_bad_runs(self):
    ds, _ = load_mocked("cifar100", train=200, test=100)
    arrays = published.infl_matrix_arrays(ds, np.zeros(200))
    self.assertEqual(set(arrays), {"tr_mem", "tr_labels", "tt_labels"})
    with self.assertRaisesRegex(ValueError, "both masks and test_correct"):
      published.infl_matrix_arrays(ds, np.zeros(200), masks=np.ones((3, 200)))
    with self.assertRaisesRegex(ValueError, r"\(runs, 200\)"):
      published.infl_matrix_arrays(ds, np.zeros(200), np.ones((3, 100)),
                                   np.ones((3, 100)))


class CompareTest(absltest.TestCase):

  def test_top_k_and_ties(self):
    scores = np.array([0.5, 0.9, 0.1, 0.9, 0.3])
    np.testing.assert_array_equal(published.top_k(scores, 2), [1, 3])
    np.testing.assert_array_equal(published.top_k(scores, 2, highest=False),
                                  [2, 4])
    self.assertEqual(published.ties_at_cut(scores, 1), 1)
    self.assertEqual(published.ties_at_cut(scores, 2), 0)
    same = published.overlap(scores, scores, 0.4, highest=True)
    self.assertEqual((same["value"], same["k"], same["chance"]), (1.0, 2, 0.4))

  def test_load_scores_names_the_problem(self):
    tmp = temporary_folder(self)
    path = os.path.join(tmp, "x.npz")
    np.savez(path, foo=np.zeros(3))
    with self.assertRaisesRegex(ValueError, r"holds \['foo'\]"):
      published.load_scores(path)
    np.savez(path, labels=np.zeros(3, int), scores=np.zeros(3),
             other=np.zeros(3))
    with self.assertRaisesRegex(ValueError, "no score array 'nope'; valid: "
                                "scores, other"):
      published.load_scores(path, "nope")
    with open(path, "w") as f:
      f.write("not a zip")
    with self.assertRaisesRegex(ValueError, "not a readable .npz"):
      published.load_scores(path)


def expected_spearman(r):
  """Spearman's correlation of a bivariate normal with correlation r."""
  return 6 / np.pi * np.arcsin(r / 2)


def expected_top_overlap(r, fraction):
  """E[share of the top `fraction` of X also in the top of Y] for a bivariate
  normal with correlation r: P(X > q, Y > q) / fraction."""
  q = scipy_stats.norm.ppf(1 - fraction)
  both_below = scipy_stats.multivariate_normal(
      mean=[0, 0], cov=[[1, r], [r, 1]]).cdf([q, q])
  return (1 - 2 * (1 - fraction) + both_below) / fraction


class CompareCommandTest(absltest.TestCase):
  """The command in-process, on synthetic files: scores = signal + noise."""

  N = 5000
  NOISE = 1.0  # Pearson correlation 1 / sqrt(1 + NOISE^2)

  def setUp(self):
    super().setUp()
    self.tmp = temporary_folder(self)
    rng = np.random.default_rng(7)
    self.signal = rng.normal(size=self.N)
    self.labels = rng.integers(0, 10, self.N)
    self.published = os.path.join(self.tmp, "cifar10-cscores-orig-order.npz")
    np.savez(self.published, labels=self.labels, scores=self.signal)

  def memjax_file(self, name, labels, scores):
    path = os.path.join(self.tmp, name)
    np.savez(path, tr_labels=labels, tr_mem=scores)
    return path

  def execute(self, *args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      code = cli.execute(compare_scores, list(args))
    return code, out.getvalue(), err.getvalue()

  def test_known_correlation_and_overlap(self):
    noisy = self.signal + self.NOISE * np.random.default_rng(8).normal(
        size=self.N)
    # A memjax subset run: a tenth of the examples left out (NaN, label -1).
    noisy[::10] = np.nan
    labels = self.labels.copy()
    labels[::10] = published.MISSING_LABEL
    memjax = self.memjax_file("memjax.npz", labels, noisy)
    workdir = os.path.join(self.tmp, "run")
    code, out, err = self.execute(
        f"--published={self.published}", f"--memjax={memjax}",
        f"--workdir={workdir}", "--resamples=300", "--min_spearman=0.5")
    self.assertEqual(code, 0, err)
    self.assertIn("Spearman", out)
    with open(os.path.join(workdir, "results.json")) as f:
      results = json.load(f)
    rho = results["summary"]["spearman"]
    expected = expected_spearman(1 / np.sqrt(1 + self.NOISE ** 2))  # 0.690
    self.assertEqual(rho["examples"], self.N - self.N // 10)
    self.assertEqual(rho["left_out"], self.N // 10)
    self.assertLess(rho["low"], expected)
    self.assertGreater(rho["high"], expected)
    self.assertLess(rho["high"] - rho["low"], 0.05)
    top = results["summary"]["highest_0.1"]
    expected_top = expected_top_overlap(1 / np.sqrt(2), 0.1)  # 0.47
    # 4 binomial standard errors of a share of k picks.
    tolerance = 4 * np.sqrt(expected_top * (1 - expected_top) / top["k"])
    self.assertAlmostEqual(top["value"], expected_top, delta=tolerance)
    self.assertAlmostEqual(top["chance"], 0.1, places=3)
    self.assertEqual(results["claims"][0]["verdict"], "REPRODUCED")
    self.assertEqual(results["runs"]["memjax"]["schema"], "infl_matrix")

  def test_unrelated_scores_overlap_by_chance(self):
    memjax = self.memjax_file(
        "memjax.npz", self.labels, np.random.default_rng(9).normal(
            size=self.N))
    workdir = os.path.join(self.tmp, "run")
    code, _, err = self.execute(
        f"--published={self.published}", f"--memjax={memjax}",
        f"--workdir={workdir}", "--smoke", "--min_spearman=0.1")
    self.assertEqual(code, 0, err)
    with open(os.path.join(workdir, "results.json")) as f:
      results = json.load(f)
    self.assertLess(abs(results["summary"]["spearman"]["value"]), 0.05)
    self.assertEqual(results["claims"][0]["verdict"], "NOT REPRODUCED")
    top = results["summary"]["highest_0.1"]
    self.assertAlmostEqual(top["value"], 0.1, delta=4 * np.sqrt(0.09 / 500))

  def test_disagreeing_labels_are_refused_and_nothing_is_written(self):
    # memjax's scores in another order (e.g. TFDS's, not the original one).
    order = np.random.default_rng(10).permutation(self.N)
    memjax = self.memjax_file("memjax.npz", self.labels[order],
                              self.signal[order])
    workdir = os.path.join(self.tmp, "run")
    code, _, err = self.execute(f"--published={self.published}",
                                f"--memjax={memjax}", f"--workdir={workdir}")
    self.assertEqual(code, 2)
    disagree = (self.labels[order] != self.labels).sum()
    self.assertEqual(err.count("\n"), 1)
    self.assertRegex(err, rf"^error: labels disagree on {disagree:,} of "
                     f"{self.N:,} examples")
    self.assertFalse(os.path.exists(workdir))

  def test_bad_input_is_one_error_line(self):
    short = self.memjax_file("short.npz", self.labels[:10],
                             self.signal[:10])
    workdir = os.path.join(self.tmp, "run")
    for args, message in (
        ([f"--memjax={short}"], "--published is required"),
        ([f"--published={self.published}", "--memjax=/no/such.npz"],
         "--memjax '/no/such.npz': no such file"),
        ([f"--published={self.published}", f"--memjax={short}"],
         "has 5000 examples and .* 10"),
        ([f"--published={self.published}", f"--memjax={short}",
          "--fractions=0"], r"--fractions must be in \(0, 1\]"),
        ([f"--published={self.published}", f"--memjax={short}",
          "--resamples=2"], "--resamples must be >= 10")):
      code, _, err = self.execute(*args, f"--workdir={workdir}")
      self.assertEqual(code, 2, args)
      self.assertRegex(err, f"^error: .*{message}")
      self.assertEqual(err.count("\n"), 1, err)
      self.assertFalse(os.path.exists(workdir))


if __name__ == "__main__":
  absltest.main()
