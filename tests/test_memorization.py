"""Tests of memjax.memorization and experiments/memorization_scores.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl.testing import absltest
import chex
import numpy as np

from memjax import cli
from memjax import data as data_lib
from memjax import memorization
from memjax import training


def _tempdir(test: absltest.TestCase) -> str:
  path = tempfile.mkdtemp()
  test.addCleanup(shutil.rmtree, path, ignore_errors=True)
  return path


def _random_runs(rng, num_runs, n, ratio=0.5):
  """Masks with exactly round(ratio * n) ones per row."""
  size = int(round(ratio * n))
  return np.stack([np.isin(np.arange(n), rng.choice(n, size, replace=False))
                   for _ in range(num_runs)])


class MaskBookkeepingTest(absltest.TestCase):

  def test_subsets_are_sorted_unique_and_sized(self):
    keys = memorization.run_keys(0, 0, np.arange(5))
    index = np.asarray(memorization.subset_indices(keys, 20, 14))
    chex.assert_shape(index, (5, 14))
    for row in index:
      np.testing.assert_array_equal(row, np.unique(row))
      self.assertTrue(((row >= 0) & (row < 20)).all())
    masks = memorization.masks_from_indices(index, 20)
    np.testing.assert_array_equal(masks.sum(1), 14)
    for row, mask in zip(index, masks):
      np.testing.assert_array_equal(np.flatnonzero(mask), row)

  def test_a_run_depends_only_on_seed_ratio_and_run_index(self):
    subsets = lambda seed, k, runs: np.asarray(memorization.subset_indices(
        memorization.run_keys(seed, k, runs), 30, 10))
    all_runs = subsets(0, 0, np.arange(6))
    np.testing.assert_array_equal(subsets(0, 0, np.arange(3, 6)), all_runs[3:])
    self.assertFalse((subsets(1, 0, np.arange(6)) == all_runs).all())
    self.assertFalse((subsets(0, 1, np.arange(6)) == all_runs).all())

  def test_chunks_cover_every_run_once_per_ratio(self):
    config = memorization.EstimateConfig(training.TrainConfig(), num_runs=7,
                                         ratios=(0.3, 0.7), chunk_size=3)
    chunks = memorization.chunks(config)
    self.assertLen(chunks, 6)
    self.assertLen({name for name, _, _ in chunks}, 6)
    for k in range(2):
      runs = np.concatenate([r for _, ratio, r in chunks if ratio == k])
      np.testing.assert_array_equal(runs, np.arange(7))
    self.assertTrue(all(len(r) <= 3 for _, _, r in chunks))

  def test_bad_configs_raise(self):
    train = training.TrainConfig()
    for kwargs in (dict(ratios=(1.0,)), dict(ratios=(0.0,)), dict(ratios=()),
                   dict(ratios=(0.5, 0.5)), dict(num_runs=0),
                   dict(chunk_size=0)):
      with self.assertRaises(ValueError):
        memorization.EstimateConfig(train, **kwargs)
    with self.assertRaisesRegex(ValueError, "0.01"):
      memorization.subset_size(0.01, 10)


class EstimatorTest(absltest.TestCase):
  """A memorizing lookup "model" with a known answer, and plain loops."""

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(0)
    self.masks = _random_runs(rng, 400, 6)
    # Examples 0-2 are right only when trained on; 3-5 are always right.
    self.train_correct = np.concatenate(
        [self.masks[:, :3], np.ones((400, 3), bool)], axis=1)
    # Test 0 duplicates training example 4 (right only when 4 is trained on);
    # test 1 is always right; test 2 needs both 1 and 2.
    self.test_correct = np.stack(
        [self.masks[:, 4], np.ones(400, bool),
         self.masks[:, 1] & self.masks[:, 2]], axis=1)

  def test_memorization_of_a_lookup_model(self):
    mem = memorization.memorization(self.masks, self.train_correct)
    np.testing.assert_array_equal(mem.value, [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(mem.stderr, 0)
    np.testing.assert_array_equal(mem.num_in + mem.num_out, 400)
    np.testing.assert_array_equal(mem.num_in, self.masks.sum(0))

  def test_c_score_of_a_lookup_model(self):
    ratios = np.where(np.arange(400) < 200, 0.3, 0.7)
    score = memorization.c_score(ratios, self.masks, self.train_correct)
    np.testing.assert_array_equal(score.value, [0, 0, 0, 1, 1, 1])
    test_score = memorization.c_score(ratios, None, self.test_correct)
    np.testing.assert_allclose(test_score.value[1], 1.0)

  def test_influence_of_a_lookup_model(self):
    top = memorization.influence_top_k(self.masks, self.test_correct, k=2,
                                       block_size=2)
    chex.assert_shape(top.index, (3, 2))
    self.assertEqual(top.index[0, 0], 4)
    self.assertEqual(top.value[0, 0], 1.0)
    self.assertEqual(top.stderr[0, 0], 0.0)
    np.testing.assert_array_equal(top.value[1], 0.0)  # always right
    self.assertEqual(set(top.index[2]), {1, 2})
    # Held in, 1 makes test 2 right exactly when 2 is in too (about half).
    np.testing.assert_allclose(top.value[2], 0.5, atol=0.1)

  def test_estimators_match_plain_loops(self):
    rng = np.random.default_rng(1)
    masks = _random_runs(rng, 50, 8, ratio=0.4)
    masks[:, 7] = True  # never held out: undefined score
    correct = rng.random((50, 8)) < 0.6
    test_correct = rng.random((50, 5)) < 0.5
    ratios = np.where(np.arange(50) % 2, 0.4, 0.6)

    def in_out(column, mask):
      rates = []
      for held in (mask, ~mask):
        p = column[held].mean() if held.any() else np.nan
        rates.append((p, held.sum()))
      return rates

    mem = memorization.memorization(masks, correct)
    dense = memorization.influence(masks, test_correct)
    score = memorization.c_score(ratios, masks, correct)
    for i in range(8):
      (p_in, k_in), (p_out, k_out) = in_out(correct[:, i], masks[:, i])
      np.testing.assert_allclose(mem.value[i], p_in - p_out)
      np.testing.assert_allclose(
          mem.stderr[i], np.sqrt(p_in * (1 - p_in) / k_in +
                                 p_out * (1 - p_out) / k_out))
      for j in range(5):
        (q_in, _), (q_out, _) = in_out(test_correct[:, j], masks[:, i])
        np.testing.assert_allclose(dense.value[i, j], q_in - q_out)
      per_ratio = [correct[(ratios == r) & ~masks[:, i], i].mean()
                   if ((ratios == r) & ~masks[:, i]).any() else np.nan
                   for r in (0.4, 0.6)]
      np.testing.assert_allclose(score.value[i], np.mean(per_ratio))
    self.assertTrue(np.isnan(mem.value[7]))
    top = memorization.influence_top_k(masks, test_correct, k=3, block_size=2)
    for j in range(5):
      order = np.argsort(-np.nan_to_num(dense.value[:, j], nan=-np.inf),
                         kind="stable")[:3]
      np.testing.assert_array_equal(top.index[j], order)
      np.testing.assert_allclose(top.value[j], dense.value[order, j])


class ChunkedEstimateTest(absltest.TestCase):
  """Real (tiny) subset training: chunk-size invariance and resume."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    d = data_lib.load(data_lib.DataConfig(name="digits", train_size=64,
                                          test_size=32))
    cls.data = training.TrainData(d.x_train, d.y_train, d.x_test, d.y_test,
                                  d.num_classes)
    cls.train = training.TrainConfig(model="mlp1x16", learning_rate=0.1,
                                     max_epochs=2, batch_size=16)

  def config(self, chunk_size, **overrides):
    return memorization.EstimateConfig(
        **{**dict(train=self.train, num_runs=6, ratios=(0.5,),
                  chunk_size=chunk_size), **overrides})

  def assert_same_runs(self, a, b):
    for field in ("ratio", "run", "masks", "train_correct", "test_correct"):
      np.testing.assert_array_equal(getattr(a, field), getattr(b, field),
                                    err_msg=field)

  def test_vmapped_chunks_equal_a_sequential_loop(self):
    vmapped = memorization.estimate_runs(self.config(3), self.data)
    sequential = memorization.estimate_runs(self.config(1), self.data)
    chex.assert_shape(vmapped.masks, (6, 64))
    chex.assert_shape(vmapped.test_correct, (6, 32))
    np.testing.assert_array_equal(vmapped.masks.sum(1), 32)
    self.assert_same_runs(vmapped, sequential)
    # Training learned something: the runs fit much of their subsets.
    in_acc = (vmapped.masks & vmapped.train_correct).sum() / vmapped.masks.sum()
    self.assertGreater(in_acc, 0.3)

  def test_resume_after_interruption_equals_uninterrupted(self):
    config = self.config(3)
    whole = memorization.estimate_runs(config, self.data)
    directory = _tempdir(self)
    memorization.estimate_runs(config, self.data, directory)
    files = sorted(os.listdir(directory))
    self.assertLen(files, 2)
    # Interrupted after the first chunk: later chunks were never written.
    for name in files[1:]:
      os.remove(os.path.join(directory, name))
    first = os.path.join(directory, files[0])
    mtime = os.stat(first).st_mtime_ns
    resumed = memorization.estimate_runs(config, self.data, directory)
    self.assertEqual(os.stat(first).st_mtime_ns, mtime)  # reused, not redone
    self.assertEqual(sorted(os.listdir(directory)), files)
    self.assert_same_runs(resumed, whole)
    with self.assertRaisesRegex(ValueError, "another configuration"):
      memorization.estimate_runs(self.config(3, ratios=(0.6,)), self.data,
                                 directory)


class ExperimentTest(absltest.TestCase):

  def run_script(self, *args):
    return subprocess.run(
        [sys.executable, "experiments/memorization_scores.py", "--noprogress",
         *args], capture_output=True, text=True, check=False)

  def test_smoke_run_writes_scores_and_summary(self):
    workdir = _tempdir(self)
    result = self.run_script("--smoke", "--workdir", workdir)
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertIn("Claims:", result.stdout)
    with open(os.path.join(workdir, "results.json")) as f:
      summary = json.load(f)["summary"]
    for key in ("runs", "mean_score_corrupted", "mean_score_clean",
                "auc_corrupted", "mean_stderr"):
      self.assertIn(key, summary)
    self.assertEqual(summary["runs"], 8)
    train_size = cli.SMOKE_DATA["train_size"]
    scores = np.load(os.path.join(workdir, "memorization.npy"))
    chex.assert_shape(scores, (train_size,))
    with open(os.path.join(workdir, "scores.csv")) as f:
      header, *rows = f.read().splitlines()
    self.assertTrue(header.startswith("index,label,original_label,corrupted,"
                                      "score,stderr"))
    self.assertLen(rows, train_size)
    top = np.load(os.path.join(workdir, "influence_top_k.npz"))["index"]
    self.assertEqual(top.shape[0], cli.SMOKE_DATA["test_size"])
    for figure in ("memorized_examples.png", "score_histogram.png"):
      self.assertTrue(os.path.exists(os.path.join(workdir, figure)))
    self.assertLen(os.listdir(os.path.join(workdir, "chunks")), 2)

  def test_bad_ratio_is_an_error(self):
    workdir = _tempdir(self)
    result = self.run_script("--smoke", "--ratios=1.5", "--workdir", workdir)
    self.assertEqual(result.returncode, 2)
    self.assertIn("1.5", result.stderr)


if __name__ == "__main__":
  absltest.main()
