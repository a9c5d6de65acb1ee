"""Prune and retrain (memjax/pruning.py, experiments/data_pruning.py): the
subsets are the intended examples, lane l of a fraction's vmapped fit is the
run of that subset alone, the smoke run writes its outputs and resumes, and
bad flags write nothing."""

import dataclasses
import json
import os
import shutil
import tempfile

import chex
import jax
import numpy as np
import pandas as pd
from absl.testing import absltest
from absl.testing import parameterized

from experiments import data_pruning
from memjax import cli
from memjax import data as data_lib
from memjax import engine
from memjax import memorization
from memjax import pruning
from memjax import studies
from memjax import training

# Scores of 10 examples: example 7 is the hardest, then 2, 9, 0, ...; 4 and 6
# tie (their order is the dataset's).
SCORES = np.array([0.6, 0.2, 0.9, 0.1, 0.3, 0.05, 0.3, 1.0, 0.0, 0.8])
BY_HARDNESS = [7, 2, 9, 0, 4, 6, 1, 3, 5, 8]


def tiny_dataset(n=40, n_test=16, classes=3) -> data_lib.Dataset:
  rng = np.random.default_rng(0)
  x = rng.normal(size=(n + n_test, 4, 4, 1)).astype(np.float32)
  y = rng.integers(0, classes, n + n_test).astype(np.int32)
  return data_lib.Dataset("tiny", x[:n], y[:n], x[n:], y[n:], classes)


def tiny_config(**changes) -> pruning.PruningConfig:
  train = training.TrainConfig(model="mlp1x8", num_seeds=2, seed=3,
                               batch_size=8, learning_rate=0.1, max_epochs=2,
                               stop_when_fit=False)
  study = studies.StudyConfig(data_lib.DataConfig(), train,
                              ("true_labels", "corrupt_0.5"))
  fields = dict(fractions=(0.5,), strategies=("random", "hardest"),
                score_seeds=1, score_epoch=1)
  return pruning.PruningConfig(study, **{**fields, **changes})


class SubsetTest(absltest.TestCase):

  def test_ranking_is_hardest_first_with_ties_in_dataset_order(self):
    np.testing.assert_array_equal(pruning.ranking(SCORES), BY_HARDNESS)

  def test_scored_subsets_are_the_intended_examples_in_dataset_order(self):
    subset = lambda strategy, offset=0.0: pruning.scored_subset(
        SCORES, strategy, 3, offset).tolist()
    self.assertEqual(subset("hardest"), sorted(BY_HARDNESS[:3]))
    self.assertEqual(subset("easiest"), sorted(BY_HARDNESS[-3:]))
    # Drop the hardest 20% (2 examples), keep the next 3.
    self.assertEqual(subset("offset", 0.2), sorted(BY_HARDNESS[2:5]))
    self.assertEqual(subset("offset", 0.0), subset("hardest"))
    # Offset + fraction past the end: the window ends at the easiest.
    self.assertEqual(subset("offset", 0.9), subset("easiest"))
    with self.assertRaisesRegex(ValueError, "scored strategy"):
      pruning.scored_subset(SCORES, "random", 3)

  def test_random_subsets_have_the_size_differ_by_seed_and_repeat(self):
    subsets = [pruning.random_subset(seed, 100, 30) for seed in range(4)]
    for subset in subsets:
      self.assertLen(subset, 30)
      self.assertLen(np.unique(subset), 30)
      np.testing.assert_array_equal(subset, np.sort(subset))
      self.assertTrue(((subset >= 0) & (subset < 100)).all())
    self.assertLen({tuple(s) for s in subsets}, 4)
    np.testing.assert_array_equal(pruning.random_subset(2, 100, 30),
                                  subsets[2])

  def test_subset_size(self):
    self.assertEqual(memorization.subset_size(0.25, 4000, "fractions"), 1000)
    for bad in (0.001, 0.9999):
      with self.assertRaisesRegex(ValueError, "--fractions"):
        memorization.subset_size(bad, 100, "fractions")

  def test_every_lane_gets_its_groups_subset(self):
    config = tiny_config(strategies=pruning.STRATEGIES, offset=0.2)
    run_lanes = pruning.lanes(config, 0.5)
    self.assertEqual([g.name for g in config.groups],
                     ["random", "hardest_el2n", "easiest_el2n", "offset_el2n"])
    self.assertLen(run_lanes, 2 * 4 * 2)  # conditions x groups x seeds
    rng = np.random.default_rng(1)
    scores = {c: {"el2n": rng.random(40)} for c in config.conditions}
    index = pruning.subset_index(config, 0.5, run_lanes, scores, 40)
    self.assertEqual(index.shape, (16, 20))
    for lane, row in zip(run_lanes, index):
      np.testing.assert_array_equal(row, np.sort(row))
      group = lane.group
      if group.strategy == "random":
        want = pruning.random_subset(config.study.train.seed + lane.seed_index,
                                     40, 20)
      else:
        want = pruning.scored_subset(scores[lane.condition]["el2n"],
                                     group.strategy, 20, 0.2)
      np.testing.assert_array_equal(row, want)
    # Seeds of a random group draw different subsets; a scored group's seeds
    # share one.
    self.assertFalse(np.array_equal(index[0], index[1]))
    np.testing.assert_array_equal(index[2], index[3])
    full = pruning.subset_index(config, 1.0, pruning.lanes(config, 1.0),
                                scores, 40)
    self.assertEqual(full.shape, (4, 40))

  def test_every_run_gets_the_full_step_budget(self):
    train = training.TrainConfig(batch_size=128, max_epochs=30)
    self.assertEqual(pruning.budget_steps(train, 4000), 960)
    for size in (1000, 2000, 3000, 4000):
      epochs = pruning.epochs_for(train, size, 4000)
      self.assertEqual(epochs * training.steps_per_epoch(train, size), 960)
    # 50 examples in batches of 128: one step an epoch.
    self.assertEqual(pruning.epochs_for(train, 50, 4000), 960)


class LaneTest(absltest.TestCase):

  def test_lane_l_is_the_run_of_its_subset_alone(self):
    config = tiny_config()
    dataset = tiny_dataset()
    labels = pruning.condition_labels(dataset, config.study)
    self.assertTrue(labels.changed["corrupt_0.5"].any())
    run_lanes = pruning.lanes(config, 0.5)
    scores = {c: {"el2n": np.arange(40.0)} for c in config.conditions}
    index = pruning.subset_index(config, 0.5, run_lanes, scores, 40)
    together = pruning.train_fraction(config, dataset, labels, run_lanes,
                                      index)
    train = config.study.train
    self.assertEqual(together.epochs, pruning.epochs_for(train, 20, 40))
    # A clean random lane of the second seed and a noisy hardest lane.
    self.assertEqual(run_lanes[1], pruning.Lane("true_labels",
                                                 pruning.Group("random"), 1))
    self.assertEqual(run_lanes[6], pruning.Lane(
        "corrupt_0.5", pruning.Group("hardest", "el2n"), 0))
    for l in (1, 6):
      lane = run_lanes[l]
      alone = engine.fit(
          dataclasses.replace(train, seed=train.seed + l, num_seeds=1,
                              max_epochs=together.epochs),
          training.TrainData(dataset.x_train, labels.train[lane.condition],
                             dataset.x_test, dataset.y_test,
                             dataset.num_classes, train_index=index[l:l + 1]))
      chex.assert_trees_all_close(
          jax.tree.map(lambda a, i=l: a[i], together.state.params),
          jax.tree.map(lambda a: a[0], alone.state.params), atol=1e-5)
      for key in ("train_acc", "test_acc"):
        np.testing.assert_allclose(together.history[key][:, l],
                                   alone.history[key][:, 0], atol=1e-6)


def summary_of(per_seed: dict) -> dict:
  """A summary (``pruning.summarize``'s fields that claims read) of
  {(condition, group): per-seed test accuracies} at the claim fraction."""
  out = {}
  for (condition, group), accs in per_seed.items():
    mean = float(np.mean(accs))
    se = float(np.std(accs, ddof=1) / np.sqrt(len(accs)))
    out[f"{condition}/{group}/0.5"] = {
        "test_acc": mean, "test_acc_se": se, "test_acc_per_seed": accs,
        "seeds": len(accs)}
  return out


class ClaimsTest(parameterized.TestCase):

  @parameterized.parameters(
      # clean: hardest vs random within the 1-point tolerance.
      ("true_labels", "hardest_el2n", [0.895, 0.896, 0.894, 0.895], 0, True),
      ("true_labels", "hardest_el2n", [0.87, 0.871, 0.869, 0.87], 0, False),
      # noisy: offset above random by more than 2 SE.
      ("corrupt_0.5", "offset_el2n", [0.95, 0.951, 0.949, 0.95], 0, True),
      ("corrupt_0.5", "offset_el2n", [0.92, 0.88, 0.91, 0.89], 0, False),
      # noisy: hardest below random by more than 2 SE.
      ("corrupt_0.5", "hardest_el2n", [0.7, 0.71, 0.69, 0.7], 1, True),
      ("corrupt_0.5", "hardest_el2n", [0.9, 0.9, 0.9, 0.9], 1, False),
  )
  def test_claims_follow_their_criteria(self, condition, group, accs, which,
                                        want):
    config = tiny_config(strategies=pruning.STRATEGIES)
    random = [0.9, 0.901, 0.899, 0.9]
    per_seed = {(c, g): random for c in config.conditions
                for g in ("random", "hardest_el2n", "offset_el2n")}
    per_seed[(condition, group)] = accs
    verdicts = data_pruning.claims(summary_of(per_seed), config)
    self.assertLen(verdicts, 3)
    if condition == "true_labels":
      claim = verdicts[0]
    else:
      claim = [v for v in verdicts if condition in v.claim][which]
    self.assertIn(group.split("_")[0], claim.claim)
    self.assertEqual(claim.reproduced, want, claim)

  def test_claims_need_their_subsets(self):
    config = tiny_config(strategies=("hardest", "offset"))
    per_seed = {("true_labels", "hardest_el2n"): [0.9, 0.9]}
    self.assertEqual(data_pruning.claims(summary_of(per_seed), config), [])


def smoke_args(workdir, *args) -> list[str]:
  return ["--smoke", "--noprogress", f"--workdir={workdir}", *args]


def execute(workdir, *args) -> tuple[int, str, str]:
  return cli.execute_captured(data_pruning, smoke_args(workdir, *args))


class ExperimentTest(parameterized.TestCase):

  def workdir(self) -> str:
    path = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path

  def test_smoke_writes_results_tables_figure_and_resumes(self):
    workdir = self.workdir()
    code, stdout, stderr = execute(workdir)
    self.assertEqual(code, 0, stderr)
    with open(os.path.join(workdir, "results.json")) as f:
      first = json.load(f)
    self.assertEqual(first["experiment"], "data_pruning")
    summary = pd.DataFrame.from_dict(first["summary"], orient="index")
    # 2 conditions x (4 groups at fraction 0.5 + the whole set).
    self.assertLen(summary, 10)
    self.assertEqual(sorted(set(summary["fraction"])), [0.5, 1.0])
    self.assertTrue((summary["seeds"] == 2).all())
    self.assertTrue(summary["test_acc"].between(0, 1).all())
    self.assertEqual(set(summary["kept"]), {100, 200})
    self.assertLen(first["claims"], 3)
    for claim in first["claims"]:
      self.assertIn(f"[{claim['verdict']}] {claim['claim']}", stdout)
      self.assertIsNotNone(claim["uncertainty"])
    self.assertIn("Setup:", stdout)
    runs = pd.read_csv(os.path.join(workdir, "runs.csv"))
    self.assertLen(runs, 2 * 4 * 2 + 2 * 2)
    self.assertTrue(os.path.exists(os.path.join(workdir, "pruning.png")))

    # The subsets trained are the intended examples of the saved scores.
    scores = np.load(os.path.join(workdir, "scores.npz"))
    subsets = np.load(os.path.join(workdir, "subsets.npz"))
    lanes = list(subsets["lanes_0.5"])
    index = subsets["index_0.5"]
    table = pd.read_csv(os.path.join(workdir, "scores.csv"))
    self.assertLen(table, 2 * 200)
    for c, condition in enumerate(scores["conditions"]):
      mean = scores["el2n_per_seed"][c].mean(0)
      rows = table[table["condition"] == condition]
      np.testing.assert_array_equal(rows["index"], np.arange(200))
      np.testing.assert_allclose(rows["el2n"], mean, rtol=1e-5)
      np.testing.assert_array_equal(rows["label"],
                                    scores[f"label_{condition}"])
      for strategy in ("hardest", "easiest", "offset"):
        lane = lanes.index(f"{condition}/{strategy}_el2n/seed1")
        np.testing.assert_array_equal(
            index[lane], pruning.scored_subset(mean, strategy, 100, 0.2))
      changed = rows["changed"].to_numpy()
      hardest = summary.loc[f"{condition}/hardest_el2n/0.5"]
      self.assertAlmostEqual(hardest["changed_kept"],
                             changed[index[lanes.index(
                                 f"{condition}/hardest_el2n/seed0")]].mean())

    # The same command again resumes from the finished fits and scores.
    code, _, stderr = execute(workdir)
    self.assertEqual(code, 0, stderr)
    with open(os.path.join(workdir, "results.json")) as f:
      self.assertEqual(json.load(f)["summary"], first["summary"])

  @parameterized.parameters(
      (["--fractions=0.5,1.5"], "--fractions"),
      (["--fractions=0.5,1"], "--fractions"),
      (["--fractions=0.001"], "--fractions"),
      (["--strategies=random,bogus"], "--strategies"),
      (["--prune_by=loss"], "--prune_by"),
      (["--offset=1"], "--offset"),
      (["--score_epoch=40"], "--score_epoch"),
      (["--conditions=random_pixels"], "--conditions"),
      (["--score_seed=0"], "--score_seed"),
      (["--seeds=0"], "--seeds"),
  )
  def test_bad_flags_exit_2_and_write_nothing(self, args, named):
    workdir = os.path.join(self.workdir(), "run")
    code, _, stderr = execute(workdir, *args)
    self.assertEqual(code, 2, stderr)
    lines = stderr.strip().splitlines()
    self.assertLen(lines, 1, stderr)
    self.assertTrue(lines[0].startswith("error:"), stderr)
    self.assertIn(named, lines[0])
    self.assertFalse(os.path.exists(workdir))


if __name__ == "__main__":
  absltest.main()
