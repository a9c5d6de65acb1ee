"""The per-example experiments: their claims on summaries where the effect is
present and where it is absent, their conditions' data, and --smoke runs end
to end in this process (results, resume, bad flags)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import pandas as pd

from experiments import easy_examples
from experiments import example_scores
from experiments import loss_sensitivity
from memjax import checkpointing
from memjax import cli
from memjax import data as data_lib
from memjax import reporting
from memjax import score_files
from memjax import studies
from memjax import training


def verdict_of(claims, start: str) -> str:
  """The verdict of the one claim whose text starts with ``start``."""
  found = [c.verdict for c in claims if c.claim.startswith(start)]
  assert len(found) == 1, (start, [c.claim for c in claims])
  return found[0]


# --- easy_examples -----------------------------------------------------------

def easy_condition(std=0.1, std_se=0.01, index=1.0, p_value=0.5, dof=990):
  return {"difficulty_std": std, "difficulty_std_se": std_se,
          "dispersion": index, "dispersion_p_value": p_value,
          "dispersion_dof": dof, "dispersion_null_std": np.sqrt(2 / dof),
          "dispersion_pooled": index}


class EasyExamplesClaimsTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.module = easy_examples

  def claims(self, **conditions):
    return self.module.claims(conditions)

  def test_difficulty_spread(self):
    start = "per-example difficulty varies more"
    present = self.claims(real=easy_condition(0.235, 0.005),
                          randX=easy_condition(0.088, 0.005))
    self.assertEqual(verdict_of(present, start), "REPRODUCED")
    within_noise = self.claims(real=easy_condition(0.10, 0.02),
                               randX=easy_condition(0.09, 0.02))
    self.assertEqual(verdict_of(within_noise, start), "NOT REPRODUCED")
    reversed_ = self.claims(real=easy_condition(0.08, 0.005),
                            randX=easy_condition(0.2, 0.005))
    self.assertEqual(verdict_of(reversed_, start), "NOT REPRODUCED")

  @parameterized.named_parameters(
      ("overdispersed", 48.7, 0.0, "NOT REPRODUCED", "REPRODUCED"),
      ("exactly_binomial", 1.0, 0.5, "REPRODUCED", "NOT REPRODUCED"),
      # Significant but within the stated tolerance: binomial.
      ("tiny_effect", 1.1, 0.001, "REPRODUCED", "NOT REPRODUCED"),
      # Beyond the tolerance but not significant (few examples): binomial.
      ("not_significant", 1.3, 0.05, "REPRODUCED", "NOT REPRODUCED"),
      ("old_standardized_randX", 2.84, 0.0, "NOT REPRODUCED", "REPRODUCED"))
  def test_binomial_criterion(self, index, p_value, if_binomial_claimed,
                              if_overdispersion_claimed):
    condition = easy_condition(index=index, p_value=p_value)
    claims = self.claims(real=condition, randX=condition, randY=condition)
    self.assertEqual(verdict_of(claims, "randX:"), if_binomial_claimed)
    self.assertEqual(verdict_of(claims, "randY:"), if_overdispersion_claimed)
    self.assertEqual(verdict_of(claims, "real:"), if_overdispersion_claimed)

  def test_every_claim_carries_value_uncertainty_threshold(self):
    claims = self.claims(real=easy_condition(), randX=easy_condition(),
                         randY=easy_condition())
    self.assertLen(claims, 4)
    for c in claims:
      self.assertTrue(np.isfinite(c.value) and np.isfinite(c.uncertainty),
                      c.claim)
      self.assertIsNotNone(c.threshold)

  def test_summaries_of_simulated_runs(self):
    # Class-level difficulty only (binomial within class) vs example-specific.
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 100)
    def arrays(p):
      return {"correct": rng.random((100, labels.size)) > p,
              "train_acc": np.zeros(100), "test_acc": np.zeros(100),
              "epochs": 1, "seconds": 0.0, "cpu_seconds": 0.0}
    summary = {
        "real": self.module.summarize(
            arrays(rng.uniform(0.05, 0.95, labels.size)), labels)[0],
        "randX": self.module.summarize(
            arrays(np.linspace(0.5, 0.9, 10)[labels]), labels)[0]}
    claims = self.module.claims(summary)
    self.assertEqual(verdict_of(claims, "per-example"), "REPRODUCED")
    self.assertEqual(verdict_of(claims, "randX:"), "REPRODUCED")
    self.assertEqual(verdict_of(claims, "real:"), "REPRODUCED")


class ConditionDataTest(absltest.TestCase):

  def test_randx_validation_inputs_are_noise_not_real_images(self):
    module = easy_examples
    dataset = data_lib.load(dataset_config())
    study = studies.StudyConfig(dataset_config(),
                                training.TrainConfig(model="mlp1x8"),
                                ("real", "randX"))
    rand_x = module.condition_data(dataset, study, "randX")
    real = module.condition_data(dataset, study, "real")
    np.testing.assert_array_equal(real.x_test, dataset.x_test)
    for got, original in ((rand_x.x_train, dataset.x_train),
                          (rand_x.x_test, dataset.x_test)):
      self.assertEqual(got.shape, original.shape)
      # No noise image equals (or is even close to) its real image.
      distance = np.abs(got - original).reshape(len(got), -1).max(1)
      self.assertGreater(distance.min(), 0.5)
    # The same noise distribution as the training inputs: mean and std of
    # the real training pixels.
    self.assertAlmostEqual(float(rand_x.x_test.mean()),
                           float(dataset.x_train.mean()), delta=0.01)
    self.assertAlmostEqual(float(rand_x.x_test.std()),
                           float(dataset.x_train.std()), delta=0.01)
    np.testing.assert_array_equal(rand_x.y_test, dataset.y_test)


def dataset_config():
  return data_lib.DataConfig(train_size=100, test_size=50, standardize=False)


# --- loss_sensitivity --------------------------------------------------------

def sensitivity_condition(gini=0.3, se=0.01, margin=0.3, margin_se=0.05,
                          share=0.4, share_se=0.02, matrix=True):
  out = {"gini": gini, "gini_se": se, "gini_direct": gini,
         "gini_direct_se": se}
  if matrix:
    out.update(diagonal_rows=1.0, diagonal_margin=margin,
               diagonal_margin_se=margin_se, diagonal_worst_row=0,
               off_diagonal_share=share, off_diagonal_share_se=share_se,
               off_diagonal_spread=share, off_diagonal_spread_se=share_se)
  return out


class LossSensitivityClaimsTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    self.module = loss_sensitivity

  def summary(self, real, noise):
    # nway has n classes: no per-class matrix.
    return {"real": real, "randX": noise, "randY": noise, "noise50": noise,
            "nway": {k: v for k, v in noise.items() if k.startswith("gini")}}

  def test_gini(self):
    present = self.module.claims(self.summary(
        sensitivity_condition(0.60, 0.01), sensitivity_condition(0.30, 0.01)))
    absent = self.module.claims(self.summary(
        sensitivity_condition(0.31, 0.02), sensitivity_condition(0.30, 0.02)))
    for claims, want in ((present, "REPRODUCED"), (absent, "NOT REPRODUCED")):
      gini = [c for c in claims if c.claim.startswith("Gini")]
      self.assertLen(gini, 8)  # 4 noise conditions x 2 forms
      self.assertEqual({c.verdict for c in gini}, {want})

  @parameterized.named_parameters(
      ("clear_diagonal", 0.3, 0.05, "REPRODUCED"),
      ("within_noise", 0.05, 0.05, "NOT REPRODUCED"),
      ("off_diagonal_maximum", -0.1, 0.02, "NOT REPRODUCED"))
  def test_diagonal(self, margin, margin_se, want):
    claims = self.module.claims(self.summary(
        sensitivity_condition(margin=margin, margin_se=margin_se),
        sensitivity_condition()))
    self.assertEqual(verdict_of(claims, "real data: per-class"), want)

  @parameterized.named_parameters(
      ("more_spread_for_real", 0.60, 0.40, "REPRODUCED"),
      ("within_noise", 0.42, 0.40, "NOT REPRODUCED"),
      ("old_measurement_opposite", 0.29, 0.43, "NOT REPRODUCED"))
  def test_off_diagonal_share(self, real, noise, want):
    claims = self.module.claims(self.summary(
        sensitivity_condition(share=real), sensitivity_condition(share=noise)))
    for name in ("randX", "randY"):
      self.assertEqual(verdict_of(
          claims, f"more off-diagonal loss sensitivity for real data than "
          f"{name}"), want)

  def test_spread_reading_is_exploratory(self):
    for real, noise in ((0.6, 0.2), (0.2, 0.6)):
      claims = self.module.claims(self.summary(
          sensitivity_condition(share=real),
          sensitivity_condition(share=noise)))
      spread = [c for c in claims if c.claim.startswith("off-diagonal g_ij")]
      self.assertLen(spread, 2)
      self.assertEqual({c.verdict for c in spread}, {"EXPLORATORY"})

  def test_diagonal_margin(self):
    # Two seeds; on the seed-mean matrix every row peaks on the diagonal, row
    # 2 only narrowly (seed 1 peaks off it).
    matrix = np.tile(np.eye(3) + 0.5, (2, 1, 1))
    matrix[1, 2] = [0.5, 1.6, 1.5]
    got = self.module.diagonal_margin(matrix)
    self.assertEqual(got["diagonal_rows"], 1.0)
    self.assertEqual(got["diagonal_worst_row"], 2)
    # Row 2 of the mean: diagonal 1.5, largest other entry 1.05.
    self.assertAlmostEqual(got["diagonal_margin"], (1.5 - 1.05) / 1.5)
    per_seed = [(1.5 - 0.5) / 1.5, (1.5 - 1.6) / 1.5]
    self.assertAlmostEqual(got["diagonal_margin_se"],
                           np.std(per_seed, ddof=1) / np.sqrt(2))
    matrix = np.tile(np.eye(3) + 0.5, (2, 1, 1))
    matrix[:, 1] = [0.5, 1.5, 1.7]  # row 1 peaks off the diagonal
    got = self.module.diagonal_margin(matrix)
    self.assertAlmostEqual(got["diagonal_rows"], 2 / 3)
    self.assertEqual(got["diagonal_worst_row"], 1)
    self.assertLess(got["diagonal_margin"], 0)

  def test_condition_names(self):
    self.assertEqual(self.module.condition_names(["real", "nway", "real"]),
                     ("real", "nway"))
    for bad in ([], [""], ["real", "bogus"]):
      with self.assertRaisesRegex(ValueError, "--conditions"):
        self.module.condition_names(bad)


# --- example_scores ----------------------------------------------------------

def scores_summary(auc, low, high):
  return {f"{name}_{key}": value for name in example_scores.SCORES
          for key, value in (("auc", auc), ("auc_low", low),
                             ("auc_high", high))}


class ExampleScoresClaimsTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("separates", 0.98, 0.97, 0.99, "REPRODUCED"),
      ("interval_covers_chance", 0.55, 0.45, 0.65, "NOT REPRODUCED"),
      ("below_chance", 0.3, 0.25, 0.35, "NOT REPRODUCED"),
      ("no_corrupted_examples", np.nan, np.nan, np.nan, "NOT REPRODUCED"))
  def test_auc_criterion(self, auc, low, high, want):
    claims = example_scores.claims(
        scores_summary(auc, low, high))
    self.assertLen(claims, 4)
    self.assertEqual({c.verdict for c in claims}, {want})
    for c in claims:
      self.assertEqual(c.threshold, 0.5)
      self.assertFalse(c.exploratory)

  def test_both_forgetting_versions_are_claimed_by_name(self):
    claims = example_scores.claims(scores_summary(0.9, 0.85, 0.95))
    for version in ("forgetting_presentation", "forgetting_clean_eval"):
      self.assertLen([c for c in claims
                      if c.claim.startswith(f"{version} is higher")], 1)

  def test_normalized(self):
    dataset = data_lib.load(dataset_config())
    got, norms = example_scores.normalized(dataset)
    self.assertAlmostEqual(float(got.x_train.mean()), 0.0, places=4)
    self.assertAlmostEqual(float(got.x_train.std()), 1.0, places=4)
    np.testing.assert_allclose(
        got.x_test, (dataset.x_test - norms["mean"]) / norms["std"], rtol=1e-5)


# --- End to end --------------------------------------------------------------

def smoke_args(workdir, *args) -> list[str]:
  return ["--smoke", "--noprogress", f"--workdir={workdir}", *args]


def execute(experiment, workdir, *args) -> tuple[int, str, str]:
  """(exit status, stdout, stderr) of ``python experiments/<experiment>.py
  --smoke ...``, run in this process."""
  return cli.execute_captured(experiment, smoke_args(workdir, *args))


def run_smoke(experiment, workdir, *args) -> tuple[dict, str]:
  """(what ``experiment.run`` returns, i.e. results.json's contents; what it
  prints) of the --smoke config of ``args``."""
  config, _, _ = cli.from_args(experiment, smoke_args(workdir, *args))
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    returned = experiment.run(config, workdir, cli.RunControl(progress=False))
  return returned, out.getvalue()


def results(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


def as_json(value):
  """``value`` as results.json stores it."""
  return json.loads(json.dumps(reporting.to_jsonable(value)))


class EndToEndTest(parameterized.TestCase):

  def workdir(self):
    path = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return os.path.join(path, "run")

  def test_easy_examples_and_resume(self):
    workdir = self.workdir()
    code, stdout, stderr = execute(easy_examples, workdir)
    self.assertEqual(code, 0, stderr)
    self.assertIn("Setup:", stdout)
    self.assertIn("pixels / 255", stdout)
    self.assertIn("Claims:", stdout)
    r = results(workdir)
    self.assertEqual(set(r["summary"]), {"real", "randX", "randY"})
    for stats in r["summary"].values():
      self.assertEqual(stats["seeds"], 8)
      self.assertBetween(stats["difficulty_std"], 0.0, 0.5)
      self.assertBetween(stats["dispersion_p_value"], 0.0, 1.0)
    self.assertLen(r["runs"]["real"]["misclassification_rate"], 200)
    self.assertLen(r["claims"], 4)
    for claim in r["claims"]:
      self.assertIn(claim["verdict"], ("REPRODUCED", "NOT REPRODUCED"))
      self.assertIsNotNone(claim["value"])
    rates = np.load(os.path.join(workdir, "rates.npz"))
    np.testing.assert_allclose(rates["real_rate"],
                               r["runs"]["real"]["misclassification_rate"])
    self.assertTrue(os.path.exists(os.path.join(workdir, "easy_examples.png")))

    # The same command again loads every finished condition: no training.
    saved = os.path.join(workdir, "conditions", "real.npz")
    modified = os.stat(saved).st_mtime_ns
    code, stdout, stderr = execute(easy_examples, workdir)
    self.assertEqual(code, 0, stderr)
    self.assertEqual(stdout.count("(no retraining)"), 3)
    self.assertEqual(os.stat(saved).st_mtime_ns, modified)
    second = results(workdir)
    self.assertEqual(second["summary"], r["summary"])
    self.assertEqual(second["claims"], r["claims"])

  def test_loss_sensitivity(self):
    workdir = self.workdir()
    returned, stdout = run_smoke(loss_sensitivity, workdir,
                                 "--conditions=real,randY,nway")
    self.assertIn("14, 14, 1", stdout)  # the paper's 14x14 digits
    r = results(workdir)
    self.assertEqual(as_json(returned), r)
    self.assertEqual(set(r["summary"]), {"real", "randY", "nway"})
    for stats in r["summary"].values():
      self.assertBetween(stats["gini"], 0.0, 1.0)
      self.assertBetween(stats["gini_direct"], 0.0, 1.0)
      self.assertGreater(stats["gini_se"], 0.0)
    self.assertEqual(r["summary"]["nway"]["num_classes"], 200)
    self.assertLen(r["runs"]["real"]["class_matrix"], 10)
    self.assertNotIn("class_matrix", r["runs"]["nway"])
    self.assertEqual(np.shape(r["runs"]["real"]["gini"]), (2, 2))
    arrays = np.load(os.path.join(workdir, "sensitivity.npz"))
    self.assertEqual(arrays["real_unrolled"].shape, (2, 200))
    np.testing.assert_array_equal(arrays["nway_label"], np.arange(200))
    for figure in ("gini.png", "class_matrix.png"):
      self.assertTrue(os.path.exists(os.path.join(workdir, figure)))
    self.assertTrue(os.path.isdir(os.path.join(workdir, "real",
                                               "checkpoints")))

  def test_example_scores(self):
    workdir = self.workdir()
    args = ("--noise=corrupt_0.4", "--keep_epochs=0,1")
    returned, _ = run_smoke(example_scores, workdir, *args)
    r = results(workdir)
    self.assertEqual(as_json(returned), r)
    stats = r["summary"]["corrupt_0.4"]
    for score in ("el2n", "grand", "forgetting_clean_eval",
                  "forgetting_presentation"):
      self.assertBetween(stats[f"{score}_auc"], 0.0, 1.0)
      self.assertLessEqual(stats[f"{score}_auc_low"], stats[f"{score}_auc"])
      self.assertGreaterEqual(stats[f"{score}_auc_high"],
                              stats[f"{score}_auc"])
    self.assertNotIn("forgetting_auc", stats)  # no unnamed version
    frame = pd.read_csv(os.path.join(workdir, "scores.csv"))
    self.assertLen(frame, 200)
    np.testing.assert_array_equal(frame["index"], np.arange(200))
    np.testing.assert_array_equal(frame["corrupted"],
                                  frame["label"] != frame["original_label"])
    self.assertTrue({"el2n", "grand", "forgetting_clean_eval",
                     "forgetting_presentation", "never_learned_clean_eval",
                     "never_learned_presentation", "first_learned_clean_eval",
                     "first_learned_presentation"} <= set(frame.columns))
    arrays = np.load(os.path.join(workdir, "scores.npz"))
    self.assertEqual(arrays["grand_per_seed"].shape, (2, 200))
    np.testing.assert_allclose(arrays["el2n"], frame["el2n"], rtol=1e-5)
    self.assertTrue(os.path.exists(os.path.join(workdir, "scores.png")))
    for piece in ("early/scores.npz", "early/checkpoints", "full/checkpoints"):
      self.assertTrue(os.path.exists(os.path.join(workdir, piece)), piece)

    # In original order with the labels beside the scores; the embedded
    # dataset's original order is its own.
    dataset = data_lib.load(cli.from_args(
        example_scores, smoke_args(workdir, *args))[0].study.data)
    with np.load(os.path.join(workdir, score_files.ORIGINAL_ORDER_FILE)) as f:
      self.assertContainsSubset(
          {"labels", "trained_labels", "el2n", "grand",
           "forgetting_clean_eval", "forgetting_presentation",
           "el2n_per_seed"}, set(f.files))
      np.testing.assert_array_equal(f["labels"], dataset.y_train)
      np.testing.assert_array_equal(f["trained_labels"], frame["label"])
      for name in ("el2n", "grand", "forgetting_presentation"):
        np.testing.assert_allclose(f[name], arrays[name], rtol=1e-6)

    # EL2N and GraNd later, from the state the full run kept after epoch 1:
    # equal to those the run computed after its epoch 1 (--smoke scores
    # after 1 epoch); results.json is left alone.
    saved = os.stat(os.path.join(workdir, "results.json")).st_mtime_ns
    code, stdout, stderr = execute(example_scores, workdir, *args,
                                   "--score_from_kept=1")
    self.assertEqual(code, 0, stderr)
    self.assertIn("kept after epoch 1", stdout)
    kept_path, original_path = score_files.kept_paths(workdir, 1)
    kept = checkpointing.load_npz(kept_path)
    early = checkpointing.load_npz(os.path.join(workdir, "early",
                                                "scores.npz"))
    for name in ("el2n", "grand"):
      np.testing.assert_array_equal(kept[f"{name}_per_seed"], early[name])
    with np.load(original_path) as f:
      np.testing.assert_array_equal(f["labels"], dataset.y_train)
      np.testing.assert_array_equal(f["el2n_per_seed"], early["el2n"])
    self.assertEqual(
        os.stat(os.path.join(workdir, "results.json")).st_mtime_ns, saved)
    # The initialization was kept too and scores differently.
    code, _, stderr = execute(example_scores, workdir, *args,
                              "--score_from_kept=0")
    self.assertEqual(code, 0, stderr)
    at_init = checkpointing.load_npz(score_files.kept_paths(workdir, 0)[0])
    self.assertFalse(np.array_equal(at_init["el2n"], kept["el2n"]))
    # Scoring a kept state never deletes the run it reads.
    code, _, stderr = execute(example_scores, workdir, *args,
                              "--score_from_kept=1", "--overwrite")
    self.assertEqual(code, 2, stderr)
    self.assertIn("--overwrite", stderr.strip().splitlines()[-1])
    self.assertTrue(os.path.exists(kept_path))

  @parameterized.named_parameters(
      ("scores_not_label_noise", example_scores, ["--noise=randX"],
       "--noise"),
      ("score_epoch_after_training", example_scores, ["--score_epoch=99"],
       "--score_epoch"),
      ("keep_epoch_after_training", example_scores, ["--keep_epochs=1,9"],
       "--keep_epochs"),
      ("keep_epochs_not_integers", example_scores, ["--keep_epochs=1,x"],
       "--keep_epochs"),
      ("score_from_an_epoch_not_kept", example_scores,
       ["--keep_epochs=1", "--score_from_kept=2"], "--score_from_kept=2"),
      ("score_from_kept_negative", example_scores, ["--score_from_kept=-1"],
       "--score_from_kept"),
      # No run in the workdir: refused before the workdir is made.
      ("score_from_kept_without_a_run", example_scores,
       ["--keep_epochs=1", "--score_from_kept=1"], "No state kept at epoch 1"),
      ("unknown_condition", easy_examples, ["--conditions=real,bogus"],
       "bogus"),
      ("no_easy_conditions", easy_examples, ["--conditions="],
       "--conditions"),
      ("no_sensitivity_conditions", loss_sensitivity, ["--conditions="],
       "--conditions"),
      ("unroll_past_epoch", loss_sensitivity, ["--unroll=9"], "--unroll"))
  def test_bad_flags_exit_2_and_write_nothing(self, experiment, args, named):
    workdir = self.workdir()
    code, _, stderr = execute(experiment, workdir, *args)
    self.assertEqual(code, 2, stderr)
    self.assertNotIn("Traceback", stderr)
    last = stderr.strip().splitlines()[-1]
    self.assertTrue(last.startswith("error: "), last)
    self.assertIn(named, last)
    self.assertFalse(os.path.exists(workdir))


if __name__ == "__main__":
  absltest.main()
