"""The score atlas: orientation, split-half reliability on synthetic scores of
known reliability, claims on synthetic replicates where the truth is known,
and the --smoke run end to end in this process (outputs, resume without
retraining, bad flags)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import pandas as pd

from experiments import score_atlas
from memjax import atlas
from memjax import checkpointing
from memjax import cli
from memjax import data as data_lib
from memjax import engine
from memjax import memorization
from memjax import per_example
from memjax import presentations
from memjax import reporting
from memjax import sensitivity
from memjax import studies


def keep(name, raw):
  return atlas.keep_score(name, raw)


class OrientationTest(absltest.TestCase):
  """Each score, computed by memjax's own function for an example whose
  'keep' direction is known, comes out higher for the easy / typical / clean
  one."""

  def test_every_score_has_an_orientation(self):
    self.assertCountEqual(atlas.SCORES, [
        "el2n", "grand", "forgetting_presentation", "forgetting_clean_eval",
        "memorization", "c_score", "loss_sensitivity", "difficulty",
        "critical"])
    for info in atlas.SCORES.values():
      self.assertIn(info.keep_sign, (-1, 1))

  def test_el2n_of_a_confidently_right_example_is_kept(self):
    # EL2N and margin of fixed logits: example 0 confidently right, 1 wrong.
    logits = np.array([[8.0, 0.0, 0.0], [0.0, 8.0, 0.0]])
    onehot = np.eye(3)[[0, 0]]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    el2n = np.linalg.norm(probs - onehot, axis=1)
    kept = keep("el2n", el2n)
    self.assertGreater(kept[0], kept[1])
    self.assertGreater(keep("grand", [0.01, 3.0])[0],
                       keep("grand", [0.01, 3.0])[1])

  def test_forgetting(self):
    # Epochs x examples: always right; forgotten once; never learned.
    history = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 0], [1, 1, 0]])
    for name, raw in (
        ("forgetting_clean_eval", per_example.forgetting(history).scores()),
        ("forgetting_presentation",
         presentations.forgetting(history.astype(np.int8)).scores())):
      kept = keep(name, raw)
      self.assertGreater(kept[0], kept[1], name)
      self.assertGreater(kept[1], kept[2], name)

  def test_memorization_and_c_score(self):
    # Example 0 is right whether trained on or not (typical); example 1 only
    # when trained on (memorized).
    masks = np.array([[1, 1], [0, 0], [1, 0], [0, 1]], bool)
    correct = np.array([[1, 1], [1, 0], [1, 0], [1, 1]], bool)
    mem = memorization.memorization(masks, correct).value
    c = memorization.c_score(np.full(4, 0.5), masks, correct).value
    self.assertGreater(keep("memorization", mem)[0],
                       keep("memorization", mem)[1])
    self.assertGreater(keep("c_score", c)[0], keep("c_score", c)[1])

  def test_difficulty_sensitivity_and_critical(self):
    # Seeds x examples: example 0 right on every seed, 1 on none.
    correct = np.array([[1, 0], [1, 0], [1, 0]])
    rate = per_example.difficulty(correct, [0, 0], resamples=10).rate
    self.assertGreater(keep("difficulty", rate)[0],
                       keep("difficulty", rate)[1])
    for name in ("loss_sensitivity", "critical"):
      kept = keep(name, [0.0, 1.0])  # insensitive / never critical first
      self.assertGreater(kept[0], kept[1], name)

  def test_unknown_score_refused(self):
    with self.assertRaisesRegex(ValueError, "Unknown score 'bogus'"):
      atlas.keep_score("bogus", [1.0])


def noisy_replicates(rng, truth, replicates, noise_sd):
  return truth[None] + rng.normal(0, noise_sd, (replicates, truth.size))


class ReliabilityTest(parameterized.TestCase):

  @parameterized.parameters((8, 1.0), (8, 8.0), (16, 4.0), (4, 0.25))
  def test_split_half_recovers_known_reliability(self, replicates, variance):
    """Scores = true value (variance 1) + independent replicate noise: the
    mean of k replicates has reliability 1 / (1 + variance / k). For normal
    scores Spearman's rho of two halves is (6 / pi) asin(r_half / 2), which
    Spearman-Brown corrects to the full k."""
    rng = np.random.default_rng(0)
    truth = rng.normal(size=20_000)
    values = noisy_replicates(rng, truth, replicates, np.sqrt(variance))
    result = atlas.split_half(atlas.SeedMean(values), resamples=20)
    r_half = 1 / (1 + variance / (replicates / 2))
    expected_half = 6 / np.pi * np.arcsin(r_half / 2)
    self.assertAlmostEqual(result["half_correlation"], expected_half,
                           delta=0.015)
    self.assertAlmostEqual(result["reliability"],
                           float(atlas.spearman_brown(expected_half)),
                           delta=0.015)
    pearson_full = 1 / (1 + variance / replicates)
    self.assertAlmostEqual(result["reliability"], pearson_full, delta=0.03)
    self.assertLess(result["reliability_low"], result["reliability"])
    self.assertGreater(result["reliability_high"], result["reliability"])

  def test_pure_noise_has_no_reliability(self):
    rng = np.random.default_rng(1)
    result = atlas.split_half(
        atlas.SeedMean(rng.normal(size=(8, 5000))), resamples=200)
    self.assertLess(result["reliability_low"], 0.0)
    self.assertGreater(result["reliability_high"], 0.0)

  def test_subset_estimate_halves_use_disjoint_runs(self):
    rng = np.random.default_rng(2)
    masks = rng.random((10, 50)) < 0.7
    correct = rng.random((10, 50)) < 0.8
    estimate = atlas.SubsetEstimate("c_score", masks, correct,
                                    np.full(10, 0.7, np.float32), 0.7)
    even, odd = atlas.halves(10)
    np.testing.assert_array_equal(even, [0, 2, 4, 6, 8])
    np.testing.assert_array_equal(
        estimate.score(odd),
        memorization.c_score(np.full(5, 0.7), masks[odd], correct[odd]).value)

  def test_spearman_brown_and_nan_handling(self):
    self.assertAlmostEqual(float(atlas.spearman_brown(0.5)), 2 / 3)
    a = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    b = np.array([2.0, 4.0, 1.0, np.nan, 9.0])
    self.assertAlmostEqual(atlas.rank_correlation(a, b), 1.0)
    self.assertTrue(np.isnan(atlas.rank_correlation([1, 1, 1, 1], [1, 2, 3,
                                                                   4])))
    with self.assertRaisesRegex(ValueError, "at least 2 replicates"):
      atlas.halves(1)
    self.assertEqual(atlas.mode_share([0.0, 0.0, 0.0, 1.0, np.nan]), 0.75)


def synthetic_replicates(rng, signal: float, n=400, seeds=8, runs=40):
  """Every score's replicates, each flagging corrupted examples with strength
  ``signal`` (0: scores ignore the labels)."""
  corrupted = rng.random(n) < 0.2
  hard = signal * corrupted + rng.normal(0, 1, n)  # shared example effect
  seed_mean = lambda: atlas.SeedMean(noisy_replicates(rng, hard, seeds, 1.0))
  reps = {name: seed_mean() for name in (
      "el2n", "grand", "loss_sensitivity", "difficulty", "critical")}
  # Forgetting ranks examples by a different example effect than EL2N/GraNd.
  other = signal * corrupted + rng.normal(0, 1, n)
  for name in score_atlas.FORGETTING:
    reps[name] = atlas.SeedMean(noisy_replicates(rng, other, seeds, 0.5))
  masks = rng.random((runs, n)) < 0.7
  p_out = 1 / (1 + np.exp(hard))  # held-out accuracy falls with hardness
  correct = masks | (rng.random((runs, n)) < p_out)
  ratios = np.full(runs, 0.7, np.float32)
  for kind in ("memorization", "c_score"):
    reps[kind] = atlas.SubsetEstimate(kind, masks, correct, ratios, 0.7)
  return reps, corrupted


class ClaimsTest(absltest.TestCase):

  def verdicts(self, signal):
    reps, corrupted = synthetic_replicates(np.random.default_rng(3), signal)
    summary, _ = score_atlas.analyze(reps, corrupted, resamples=200)
    return {c.claim.split(":")[0]: c.verdict
            for c in score_atlas.claims(summary)}, summary

  def test_claims_pass_where_the_effects_are_present(self):
    verdicts, summary = self.verdicts(signal=3.0)
    self.assertTrue(all(v == "REPRODUCED" for v in verdicts.values()),
                    verdicts)
    self.assertLen(verdicts, 3 + len(atlas.SCORES))
    self.assertGreater(summary["el2n"]["keep_clean_mean"],
                       summary["el2n"]["keep_corrupted_mean"])

  def test_claims_fail_where_the_scores_ignore_the_labels(self):
    verdicts, _ = self.verdicts(signal=0.0)
    auc_claims = [v for claim, v in verdicts.items()
                  if "finds corrupted labels" in claim]
    self.assertLen(auc_claims, len(atlas.SCORES))
    self.assertTrue(all(v == "NOT REPRODUCED" for v in auc_claims))


def smoke_args(workdir, *extra):
  return ["--smoke", "--noprogress", f"--workdir={workdir}", *extra]


class SmokeRunTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.dir)

  def run_smoke(self, workdir):
    config, _, _ = cli.from_args(score_atlas, smoke_args(workdir))
    self.addCleanup(checkpointing.release, workdir)
    with contextlib.redirect_stdout(io.StringIO()):
      results = score_atlas.run(config, workdir,
                                cli.RunControl(progress=False))
    return config, results

  def test_outputs_and_resume_without_retraining(self):
    workdir = os.path.join(self.dir, "atlas")
    config, results = self.run_smoke(workdir)
    for name in ("results.json", "scores.csv", "scores.npz",
                 "score_atlas.png"):
      self.assertTrue(os.path.exists(os.path.join(workdir, name)), name)
    with open(os.path.join(workdir, "results.json")) as f:
      saved = json.load(f)
    self.assertEqual(saved["experiment"], "score_atlas")
    self.assertCountEqual(saved["summary"], atlas.SCORES)
    self.assertLen(saved["claims"], 3 + len(atlas.SCORES))
    # The table is in dataset order, with the labels used and the true ones.
    dataset = data_lib.load(config.data)
    train, redrawn, _ = studies.randomize(dataset, config.study, config.noise)
    table = pd.read_csv(os.path.join(workdir, "scores.csv"))
    np.testing.assert_array_equal(table["index"], np.arange(len(table)))
    np.testing.assert_array_equal(table["label"], train.y_train)
    np.testing.assert_array_equal(table["original_label"], dataset.y_train)
    np.testing.assert_array_equal(table["corrupted"],
                                  train.y_train != dataset.y_train)
    np.testing.assert_array_equal(table["redrawn"], redrawn)
    self.assertTrue((table["redrawn"] | ~table["corrupted"]).all())
    for name, info in atlas.SCORES.items():
      np.testing.assert_allclose(table[f"keep_{name}"],
                                 info.keep_sign * table[name])
    # Resume: every measurement is loaded, nothing is trained again.
    refuse = mock.Mock(side_effect=AssertionError("retrained"))
    with mock.patch.object(engine, "fit", refuse), \
        mock.patch.object(sensitivity, "track", refuse), \
        mock.patch.object(memorization.SubsetTrainer, "run_chunk", refuse):
      _, again = self.run_smoke(workdir)
    # Equal but for the time the resumed process took.
    del again["timing"], results["timing"]
    self.assertEqual(reporting.to_jsonable(again),
                     reporting.to_jsonable(results))

  @parameterized.named_parameters(
      ("one_seed", ["--seeds=1"], "--seeds=1"),
      ("score_epoch", ["--max_epochs=5", "--score_epoch=6"], "--score_epoch"),
      ("no_corruption", ["--corruption=0"], "--corruption"),
      ("one_run", ["--runs=1"], "--runs"),
      ("ratio", ["--ratios=0.7,1.5"], "--ratios"),
      ("unknown", ["--bogus=1"], "bogus"),
      ("positional", ["extra"], "extra"),
      ("train_size", ["--train_size=999999"], "999999"))
  def test_bad_flags_exit_2_and_write_nothing(self, extra, named):
    workdir = os.path.join(self.dir, "bad")
    stderr = io.StringIO()
    args = [f"--workdir={workdir}", "--noprogress", *extra]
    with contextlib.redirect_stderr(stderr), \
        contextlib.redirect_stdout(io.StringIO()):
      code = cli.execute(score_atlas, args)
    self.assertEqual(code, 2)
    lines = stderr.getvalue().strip().splitlines()
    self.assertLen(lines, 1)
    self.assertStartsWith(lines[0], "error:")
    self.assertIn(named, lines[0])
    self.assertFalse(os.path.exists(workdir))


if __name__ == "__main__":
  absltest.main()
