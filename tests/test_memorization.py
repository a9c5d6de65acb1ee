"""Tests of memjax.memorization and experiments/memorization_scores.py: the
estimators against loops and a lookup "model" with a known answer, Jeffreys
uncertainties, chunked training and resume, damaged chunk files, every claim
fed summaries with and without its effect, and the script end to end."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile

from absl.testing import absltest
import chex
import numpy as np
from scipy import stats as scipy_stats

from experiments import memorization_scores as experiment
from memjax import checkpointing
from memjax import cli
from memjax import data as data_lib
from memjax import keys
from memjax import memorization
from memjax import memorization_analysis as analysis
from memjax import published
from memjax import stats
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
    run_keys = keys.run_keys(0, 0, np.arange(5))
    index = np.asarray(memorization.subset_indices(run_keys, 20, 14))
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
        keys.run_keys(seed, k, runs), 30, 10))
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
    # Checked against the data before any training.
    config = memorization.EstimateConfig(train, ratios=(0.7, 0.01))
    config.check_data(1000)
    with self.assertRaisesRegex(ValueError, "0.01"):
      config.check_data(10)
    # As cli.claim_workdir calls it: with the loaded dataset.
    tiny = data_lib.Dataset("tiny", np.zeros((10, 1, 1, 1), np.float32),
                            np.arange(10) % 2, np.zeros((2, 1, 1, 1),
                                                        np.float32),
                            np.arange(2), 2)
    with self.assertRaisesRegex(ValueError, "0.01"):
      config.check_data(tiny)
    memorization.EstimateConfig(train, ratios=(0.7,)).check_data(tiny)


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
    np.testing.assert_array_equal(mem.num_in + mem.num_out, 400)
    np.testing.assert_array_equal(mem.num_in, self.masks.sum(0))
    # Every run agreed, yet the uncertainty is not 0 (the plug-in binomial
    # error would be): about 1 / (2 * 200) per proportion, in SE units.
    self.assertTrue((mem.stderr > 0).all())
    self.assertTrue((mem.stderr < 0.02).all())

  def test_jeffreys_uncertainty_is_not_degenerate_at_0_and_1(self):
    masks = np.zeros((50, 3), bool)
    masks[:20] = True  # held out in runs 20-49
    correct = np.zeros((50, 3), bool)
    correct[:, 1] = True  # always right
    correct[::2, 2] = True  # right half the time
    held_out = memorization.heldout_accuracy(masks, correct)
    np.testing.assert_array_equal(held_out.value, [0.0, 1.0, 0.5])
    np.testing.assert_array_equal(held_out.num_out, 30)
    self.assertTrue((held_out.stderr > 0).all())
    np.testing.assert_allclose(held_out.stderr,
                               stats.jeffreys_se([0, 30, 15], 30))
    # At 0 and 1 the error is smaller than at 1/2, but well above 0.
    self.assertGreater(held_out.stderr[0], 0.01)
    self.assertLess(held_out.stderr[0], held_out.stderr[2])
    c = memorization.c_score(np.full(50, 0.4), masks, correct)
    self.assertTrue((c.stderr > 0).all())

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
    self.assertBetween(top.stderr[0, 0], 1e-3, 0.02)  # Jeffreys, not 0
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
      if i < 7:
        np.testing.assert_allclose(
            mem.stderr[i],
            np.hypot(stats.jeffreys_se(p_in * k_in, k_in),
                     stats.jeffreys_se(p_out * k_out, k_out)))
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
      np.testing.assert_allclose(top.stderr[j], dense.stderr[order, j])

  def test_influence_p_values_are_fisher_exact_tests(self):
    rng = np.random.default_rng(2)
    masks = _random_runs(rng, 40, 6, ratio=0.5)
    test_correct = rng.random((40, 3)) < 0.5
    test_correct[:, 0] = masks[:, 2]  # test 0 depends on training example 2
    train_index, test_index = [2, 0, 5, 1], [0, 0, 1, 2]
    p = memorization.influence_p_values(masks, test_correct, train_index,
                                        test_index)
    for k, (i, j) in enumerate(zip(train_index, test_index)):
      table = [[(masks[:, i] & test_correct[:, j]).sum(),
                (masks[:, i] & ~test_correct[:, j]).sum()],
               [(~masks[:, i] & test_correct[:, j]).sum(),
                (~masks[:, i] & ~test_correct[:, j]).sum()]]
      expected = scipy_stats.fisher_exact(table, alternative="greater").pvalue
      np.testing.assert_allclose(p[k], expected, rtol=1e-9)
    self.assertLess(p[0], 1e-9)


class GeometryTest(absltest.TestCase):

  def test_knn_label_agreement_matches_a_loop(self):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 2, 2, 1)).astype(np.float32)
    labels = rng.integers(0, 3, 30)
    got = analysis.knn_label_agreement(x, labels, k=4, block_size=7)
    flat = x.reshape(30, -1)
    for i in range(30):
      d = ((flat - flat[i]) ** 2).sum(1)
      d[i] = np.inf
      nearest = np.argsort(d)[:4]
      self.assertAlmostEqual(got[i], (labels[nearest] == labels[i]).mean())
    with self.assertRaises(ValueError):
      analysis.knn_label_agreement(x, labels, k=30)

  def test_distance_percentile(self):
    x_train = np.arange(6, dtype=np.float32).reshape(6, 1, 1, 1)
    y_train = np.array([0, 0, 0, 0, 1, 1])
    x_test = np.array([0.1, 3.0], np.float32).reshape(2, 1, 1, 1)
    y_test = np.array([0, 0])
    # Test 0 sits on training 0 (nearest of class 0): no other is nearer.
    # Training 3 is the farthest class-0 example from test 0: all 3 nearer.
    # Test 1 is at training 3: training 2 is at distance 1, like training 4,
    # which is of another class and does not count.
    got = analysis.distance_percentile(x_train, y_train, x_test, y_test,
                                           [0, 3, 2], [0, 0, 1])
    np.testing.assert_allclose(got, [0.0, 1.0, 1 / 3])
    self.assertEmpty(analysis.distance_percentile(
        x_train, y_train, x_test, y_test, [], []))


class PublishedFilesTest(absltest.TestCase):
  """The experiment's original-order files where memjax's order is not the
  original one (as for CIFAR's tfds records)."""

  def test_scores_and_true_labels_land_at_their_original_index(self):
    rng = np.random.default_rng(0)
    n, n_test = 12, 6
    original = rng.permutation(n)  # memjax's example i is original[i]
    test_original = rng.permutation(n_test)
    true_labels = np.arange(n) % 3
    dataset = data_lib.Dataset(
        "mock", np.zeros((n, 2, 2, 1), np.float32), true_labels,
        np.zeros((n_test, 2, 2, 1), np.float32), np.arange(n_test) % 3, 3,
        train_original_index=original, test_original_index=test_original,
        original_sizes=(n, n_test))
    noisy = dataset.replace(y_train=(true_labels + 1) % 3)
    condition = analysis.Condition("uniform", noisy, true_labels,
                                   np.ones(n, bool), np.ones(n, bool))
    masks = _random_runs(rng, 40, n)
    runs = memorization.SubsetRuns(
        np.full(40, 0.5), np.arange(40), masks, rng.random((40, n)) < 0.5,
        rng.random((40, n_test)) < 0.5, 0.0, 0.0)
    mem = memorization.memorization(runs.masks, runs.train_correct)
    cscore = memorization.c_score(runs.ratio, runs.masks, runs.train_correct)
    folder = _tempdir(self)
    analysis.write_published(folder, condition, runs, mem, cscore)
    with np.load(os.path.join(folder, analysis.C_SCORE_FILE)) as f:
      np.testing.assert_array_equal(f["labels"][original], true_labels)
      np.testing.assert_allclose(f["scores"][original], cscore.value,
                                 rtol=1e-6)
    with np.load(os.path.join(folder, analysis.INFL_MATRIX_FILE)) as f:
      np.testing.assert_array_equal(f["tr_labels"][original], true_labels)
      np.testing.assert_array_equal(f["tt_labels"][test_original],
                                    dataset.y_test)
      np.testing.assert_allclose(f["tr_mem"][original], mem.value, rtol=1e-6)
      # Class 1's block: its training examples by ascending original index.
      train_key, test_key, matrix_key = published.class_keys(1)
      rows = np.flatnonzero(true_labels == 1)
      rows = rows[np.argsort(original[rows])]
      np.testing.assert_array_equal(f[train_key], original[rows])
      test_rows = np.flatnonzero(dataset.y_test == 1)
      test_rows = test_rows[np.argsort(test_original[test_rows])]
      np.testing.assert_allclose(
          f[matrix_key], memorization.influence(
              masks[:, rows], runs.test_correct[:, test_rows]).value,
          rtol=1e-6)


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
    with self.assertRaisesRegex(ValueError, "different configuration"):
      memorization.estimate_runs(self.config(3, ratios=(0.6,)), self.data,
                                 directory)

  def test_seed_chunk_does_not_change_the_fingerprint(self):
    config = self.config(3)
    faster = dataclasses.replace(
        config, train=dataclasses.replace(self.train, seed_chunk=2))
    self.assertEqual(memorization.fingerprint(config, self.data),
                     memorization.fingerprint(faster, self.data))
    self.assertNotEqual(
        memorization.fingerprint(config, self.data),
        memorization.fingerprint(self.config(3, num_runs=7), self.data))
    other_labels = dataclasses.replace(self.data,
                                       y_train=(self.data.y_train + 1) % 10)
    self.assertNotEqual(memorization.fingerprint(config, self.data),
                        memorization.fingerprint(config, other_labels))

  def test_a_damaged_chunk_file_is_one_line_naming_it(self):
    config = self.config(3)
    directory = _tempdir(self)
    memorization.estimate_runs(config, self.data, directory)
    path = os.path.join(directory, sorted(os.listdir(directory))[0])
    with open(path, "rb") as f:
      whole = f.read()
    for damage in (whole[:len(whole) // 2], b"not a zip file at all"):
      with open(path, "wb") as f:
        f.write(damage)
      with self.assertRaises(ValueError) as raised:
        memorization.estimate_runs(config, self.data, directory)
      message = str(raised.exception)
      self.assertIn(path, message)
      self.assertIn("delete", message)
      self.assertNotIn("\n", message)
      self.assertNotIn("allow_pickle", message)
    # A well-formed file of the right configuration with a missing array.
    checkpointing.save_npz(path, memorization.fingerprint(config, self.data),
                           masks=np.zeros((3, 64), bool))
    with self.assertRaisesRegex(ValueError, "is damaged"):
      memorization.estimate_runs(config, self.data, directory)

  def test_chunk_files_are_registered_in_the_workdir(self):
    workdir = _tempdir(self)
    checkpointing.prepare_workdir(workdir, {"test": 1})
    self.addCleanup(checkpointing.release, workdir)
    directory = os.path.join(workdir, "chunks")
    memorization.estimate_runs(self.config(3), self.data, directory)
    with open(os.path.join(workdir, checkpointing.MARKER_FILE)) as f:
      manifest = f.read().splitlines()
    self.assertIn("chunks", manifest)
    self.assertLen([m for m in manifest if m.startswith("chunks/")], 2)


def _comparison(effect: float, seed: int = 0, n: int = 400) -> dict:
  """``top_versus_rest`` of values that fall by ``effect`` (plus noise of
  sd 0.1) for the examples whose score is in the top 5%."""
  rng = np.random.default_rng(seed)
  scores = rng.random(n)
  values = 0.8 + 0.1 * rng.standard_normal(n)
  values[scores >= np.quantile(scores, 0.95)] -= effect
  return analysis.top_versus_rest(values, scores, np.ones(n, bool))


def _pair_summary(influence: str = "lookup", same_label: bool = True,
                  near: bool = True) -> dict:
  """``influential_pairs`` of 20 training and 10 test examples on 200 runs.

  "lookup": test example j is right exactly when training example 2j is in
  the run's subset (the strongest influence); "none": test correctness is
  random. Test j lies at training example 2j's input (``near``) or far from
  every training example; it has 2j's label (``same_label``) or the next.
  """
  rng = np.random.default_rng(4)
  masks = _random_runs(rng, 200, 20)
  partner = 2 * np.arange(10)
  test_correct = (masks[:, partner] if influence == "lookup"
                  else rng.random((200, 10)) < 0.5)
  x_train = rng.normal(size=(20, 3, 3, 1)).astype(np.float32)
  y_train = np.arange(20) % 2  # partners are all of class 0
  x_test = x_train[partner] + 0.01 * rng.normal(size=(10, 3, 3, 1))
  if not near:
    # Farther from its partner than from any other class-0 example.
    x_test = x_train[partner] + 0.0
    for j, i in enumerate(partner):
      others = x_train[(y_train == 0) & (np.arange(20) != i)]
      x_test[j] = 2 * others.mean(0) - x_train[i]
  y_test = y_train[partner] if same_label else 1 - y_train[partner]
  top = memorization.influence_top_k(masks, test_correct, k=2)
  return analysis.influential_pairs(top, masks, test_correct, x_train,
                                      y_train, x_test.astype(np.float32),
                                      y_test)


def _condition(**changes) -> dict:
  """A condition summary where every effect is present, with ``changes``."""
  corrupted = np.arange(400) < 80
  scores = np.where(corrupted, 0.9, 0.2) + 0.05 * np.sin(np.arange(400))
  summary = {"mean_score_corrupted": 0.9, "mean_score_clean": 0.2,
             "auc_corrupted": stats.auc(scores, corrupted),
             "split_half": _comparison(0.5), "atypical": _comparison(0.3),
             "influential_pairs": _pair_summary()}
  summary.update(changes)
  return summary


class ClaimsTest(absltest.TestCase):
  """Every claim, fed summaries with and without its effect."""

  def verdicts(self, **changes) -> dict:
    out = {}
    for claim in experiment.claims({"uniform": _condition(**changes)}):
      self.assertTrue(claim.claim.startswith("[uniform] "))
      self.assertIsNotNone(claim.threshold)
      self.assertIsNotNone(claim.value)
      self.assertIsNotNone(claim.uncertainty)
      out[claim.claim.split("] ")[1].split(":")[0]] = claim.verdict
    return out

  def assert_only_fails(self, verdicts, failing):
    for name, verdict in verdicts.items():
      expected = "NOT REPRODUCED" if name.startswith(failing) else "REPRODUCED"
      self.assertEqual(verdict, expected, name)

  def test_every_effect_present_reproduces(self):
    verdicts = self.verdicts()
    self.assertLen(verdicts, 5)
    self.assertEqual(set(verdicts.values()), {"REPRODUCED"})

  def test_pipeline_check_fails_when_scores_do_not_separate(self):
    rng = np.random.default_rng(5)
    corrupted = np.arange(400) < 80
    self.assert_only_fails(self.verdicts(auc_corrupted=stats.auc(
        rng.random(400), corrupted)), "pipeline check")
    # Separating, but not by AUC 0.9: 0.85 with its interval.
    scores = np.where(corrupted, 0.6, 0.4) + 0.2 * rng.standard_normal(400)
    self.assertLess(stats.auc_value(scores, corrupted), 0.9)
    self.assert_only_fails(self.verdicts(auc_corrupted=stats.auc(
        scores, corrupted)), "pipeline check")

  def test_pipeline_check_is_skipped_without_corruption(self):
    self.assertLen(self.verdicts(auc_corrupted=None), 4)

  def test_split_half_fails_without_effect_or_within_noise(self):
    for effect in (0.0, -0.3, 0.02):  # none, reversed, within 2 SE
      self.assert_only_fails(self.verdicts(split_half=_comparison(effect)),
                             "memorization is a property")

  def test_atypicality_fails_without_effect_or_within_noise(self):
    for effect in (0.0, -0.3, 0.02):
      self.assert_only_fails(self.verdicts(atypical=_comparison(effect)),
                             "clean examples with high memorization")

  def test_comparison_of_too_few_examples_fails(self):
    empty = analysis.top_versus_rest(np.ones(1), np.ones(1), np.ones(1, bool))
    self.assertTrue(np.isnan(empty["difference"]))
    self.assert_only_fails(self.verdicts(atypical=empty),
                           "clean examples with high memorization")

  def test_without_significant_pairs_both_pair_claims_fail(self):
    pairs = _pair_summary(influence="none")
    self.assertEqual(pairs["significant"], 0)
    verdicts = self.verdicts(influential_pairs=pairs)
    self.assertEqual(verdicts["the most influential train-test pairs share a "
                              "label"], "NOT REPRODUCED")
    self.assertEqual(verdicts["significant same-label pairs are nearer in "
                              "input space than random same-label pairs"],
                     "NOT REPRODUCED")

  def test_pairs_with_other_labels_fail_the_same_label_claim(self):
    pairs = _pair_summary(same_label=False)
    self.assertEqual(pairs["significant"], 10)
    self.assertEqual(pairs["same_label"], 0)
    self.assertEqual(
        self.verdicts(influential_pairs=pairs)[
            "the most influential train-test pairs share a label"],
        "NOT REPRODUCED")

  def test_far_pairs_fail_the_distance_claim(self):
    pairs = _pair_summary(near=False)
    self.assertEqual(pairs["same_label"], 10)
    self.assertGreater(pairs["distance_percentile"], 0.5)
    self.assert_only_fails(self.verdicts(influential_pairs=pairs),
                           "significant same-label pairs are nearer")

  def test_near_same_label_pairs_reproduce(self):
    pairs = _pair_summary()
    self.assertEqual(pairs["significant"], 10)
    self.assertEqual(pairs["distance_percentile"], 0.0)
    self.assertLen(pairs["pairs"], 10)
    self.assertEqual({(i, j) for i, j, _ in pairs["pairs"]},
                     {(2 * j, j) for j in range(10)})


class ExperimentTest(absltest.TestCase):

  def run_script(self, *args) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``python
    experiments/memorization_scores.py --noprogress *args``, in this
    process."""
    return cli.execute_captured(experiment, ["--noprogress", *args])

  def assert_published_files(self, folder, memorization_scores):
    """The condition's original-order files load with numpy, hold the
    published keys, and carry the dataset's (true) labels: the embedded
    dataset's order is its own, so they equal memjax's arrays."""
    config, _, _ = cli.from_args(experiment, ["--smoke"])
    dataset = data_lib.load(config.data)
    with np.load(os.path.join(folder, analysis.C_SCORE_FILE)) as f:
      self.assertContainsSubset({"labels", "scores", "stderr"}, set(f.files))
      np.testing.assert_array_equal(f["labels"], dataset.y_train)
      np.testing.assert_array_equal(
          f["scores"], np.load(os.path.join(folder, "c_score.npy")))
    with np.load(os.path.join(folder, analysis.INFL_MATRIX_FILE)) as f:
      self.assertContainsSubset({"tr_mem", "tr_labels", "tt_labels"},
                                set(f.files))
      np.testing.assert_array_equal(f["tr_labels"], dataset.y_train)
      np.testing.assert_array_equal(f["tt_labels"], dataset.y_test)
      np.testing.assert_array_equal(f["tr_mem"], memorization_scores)
      for label in range(dataset.num_classes):
        train_key, test_key, matrix_key = published.class_keys(label)
        np.testing.assert_array_equal(
            f[train_key], np.flatnonzero(dataset.y_train == label))
        np.testing.assert_array_equal(
            f[test_key], np.flatnonzero(dataset.y_test == label))
        self.assertEqual(f[matrix_key].shape,
                         (len(f[train_key]), len(f[test_key])))
    # compare_scores reads memjax's file as a score file of its schema.
    loaded = published.load_scores(
        os.path.join(folder, analysis.INFL_MATRIX_FILE))
    self.assertEqual(loaded.schema, "infl_matrix")

  def test_smoke_run_writes_scores_summary_resumes_and_names_damage(self):
    workdir = _tempdir(self)
    code, stdout, stderr = self.run_script("--smoke", "--workdir", workdir)
    self.assertEqual(code, 0, stderr)
    self.assertIn("Setup:", stdout)
    self.assertIn("Claims:", stdout)
    with open(os.path.join(workdir, "results.json")) as f:
      results = json.load(f)
    self.assertEqual(sorted(results["summary"]), ["different_class", "uniform"])
    for claim in results["claims"]:
      for key in ("value", "uncertainty", "threshold", "verdict"):
        self.assertIn(key, claim)
    train_size = cli.SMOKE_DATA["train_size"]
    for name, summary in results["summary"].items():
      for key in ("runs", "mean_score_corrupted", "mean_score_clean",
                  "auc_corrupted", "mean_stderr", "split_half", "atypical",
                  "influential_pairs"):
        self.assertIn(key, summary)
      self.assertEqual(summary["runs"], 8)
      folder = os.path.join(workdir, name)
      scores = np.load(os.path.join(folder, "memorization.npy"))
      chex.assert_shape(scores, (train_size,))
      with open(os.path.join(folder, "scores.csv")) as f:
        header, *rows = f.read().splitlines()
      self.assertTrue(header.startswith("index,label,original_label,corrupted,"
                                        "score,stderr"))
      self.assertLen(rows, train_size)
      top = checkpointing.load_npz(os.path.join(folder, "influence_top_k.npz"))
      self.assertEqual(top["index"].shape[0], cli.SMOKE_DATA["test_size"])
      for figure in ("memorized_examples.png", "score_histogram.png",
                     "influential_pairs.png"):
        self.assertTrue(os.path.exists(os.path.join(folder, figure)))
      self.assertLen(os.listdir(os.path.join(folder, "chunks")), 2)
      self.assert_published_files(folder, scores)
    # Uniform noise redraws the true class for some examples, which count as
    # clean; different_class never does.
    uniform, different = (results["summary"][n]
                          for n in ("uniform", "different_class"))
    self.assertEqual(different["redrawn_kept_true_label"], 0)
    self.assertLessEqual(uniform["corrupted_examples"],
                         different["corrupted_examples"])

    # The same command resumes from the finished chunks (nothing retrained).
    chunk = os.path.join(workdir, "uniform", "chunks",
                         sorted(os.listdir(os.path.join(workdir, "uniform",
                                                        "chunks")))[0])
    mtime = os.stat(chunk).st_mtime_ns
    code, _, stderr = self.run_script("--smoke", "--workdir", workdir)
    self.assertEqual(code, 0, stderr)
    self.assertEqual(os.stat(chunk).st_mtime_ns, mtime)
    with open(os.path.join(workdir, "results.json")) as f:
      self.assertEqual(json.load(f)["summary"]["uniform"]["mean_stderr"],
                       uniform["mean_stderr"])

    # A truncated chunk: one line naming it and the way out, exit 2.
    with open(chunk, "rb") as f:
      whole = f.read()
    with open(chunk, "wb") as f:
      f.write(whole[:len(whole) // 3])
    code, _, stderr = self.run_script("--smoke", "--workdir", workdir)
    self.assertEqual(code, 2)
    self.assertEqual(stderr.strip().count("\n"), 0, stderr)
    self.assertIn(chunk, stderr)
    self.assertIn("--overwrite", stderr)

  def test_bad_flags_fail_before_training_or_writing(self):
    for flag, message in (("--ratios=1.5", "1.5"),
                          ("--corruption=-0.1", "[0, 1]"),
                          ("--corruption=nan", "[0, 1]"),
                          ("--show=0", ">= 1"),
                          ("--top_k=0", ">= 1"),
                          # Larger than the smoke training set: known only
                          # once the data is loaded, still before training.
                          ("--top_k=1000", "training set size"),
                          ("--label_noise=", "--label_noise")):
      workdir = os.path.join(_tempdir(self), "run")
      code, _, stderr = self.run_script("--smoke", flag, "--workdir", workdir)
      self.assertEqual(code, 2, (flag, stderr))
      self.assertIn(message, stderr, flag)
      self.assertTrue(stderr.startswith("error: "), (flag, stderr))
      self.assertNotIn("Traceback", stderr, flag)
      self.assertFalse(os.path.exists(workdir), flag)


if __name__ == "__main__":
  absltest.main()
