r"""Prune and retrain by EL2N (Paul et al. 2021, Fig. 1; Toneva et al. 2019,
Fig. 5): which half of the training set to keep.

Each training example gets a score early in training (EL2N by default; GraNd
and two forgetting counts are computed too and can be chosen with
--prune_by); then networks train on the hardest, the easiest, or an offset
slice of the examples by that score, and on random subsets of the same size,
at several fractions kept, with and without 20% label noise
(memjax/pruning.py defines every subset and the training budget).

Claims tested, each with a criterion fixed before any run of this setup and
decided against the seed-to-seed noise (4 seeds per subset; SE over seeds of
each mean test accuracy, the two means' SEs added in quadrature, since the
runs of different groups are independent), all at the one kept fraction
fixed in advance, 0.5 (``CLAIM_FRACTION``; skipped if not run), for each
score of --prune_by:

1. Label noise, offset (Paul et al.'s offset subsets for noisy labels):
   under corrupt_0.2, dropping the hardest --offset (20%) of examples first
   and keeping the next half beats a random half: test accuracy (offset -
   random) > 2 SE.
2. Label noise, hardest (the reason Paul et al. need offsets: the highest
   scores collect the mislabeled examples): under corrupt_0.2, keeping the
   hardest half is worse than a random half: (random - hardest) > 2 SE.
3. Clean labels, hardest (Paul et al. Fig. 1, CIFAR-10: pruning the easiest
   examples by EL2N loses nothing against random pruning at moderate
   fractions): keeping the hardest half is no worse than a random half by
   more than 1 point: (hardest - random) + 0.01 > 2 SE. This may well fail on
   4,000 digits: with little data, Sorscher et al. (2022) predict that the
   easy examples are the ones to keep. If it fails, that is the finding.

Setup (printed as the "Setup:" header): embedded MNIST-5k (4,000 train /
1,000 test real digits), per-image standardization, MLP 1x128, SGD momentum
0.9, learning rate 0.01 decayed by 0.95 per 50,000 examples seen, batch 128.
Scores: 4 scoring runs per condition on the whole training set (seeds from
1000, apart from the subset runs' seeds), EL2N and GraNd after 3 of 30
epochs (10% of training, as Paul et al.'s epoch 20 of 200), forgetting events
over all 30 epochs, both between minibatch presentations (Toneva et al.) and
between per-epoch clean evaluations; each averaged over the scoring runs.
Subsets: fractions 0.25, 0.5, 0.75 of the training set and the whole of it,
4 seeds per subset group, every run trained for the steps of 30 epochs on
all 4,000 examples (960 steps; Paul et al. train every subset for the full
run's steps). Noise: corrupt_0.2 replaces each training label with
probability 0.2 by a class drawn uniformly from all 10 (about 18% change),
once, shared by every run; test labels clean. Differs from the paper:
digits and an MLP instead of CIFAR-10 and ResNet18 with augmentation (200
epochs), 4 scoring runs instead of 10, and one offset fixed in advance (the
noise rate) instead of a sweep.

Command:

  python experiments/data_pruning.py

Result: the measured values, uncertainties and verdicts of the default command
are in the README's results table (generated from
runs/data_pruning/results.json by `python experiments/report.py
--mode=readme`; `python experiments/report.py` writes the full report).
Under corrupt_0.2 the hardest examples are mostly changed labels, each wrong
by construction, which is why keeping the hardest half loses against a random
one (claim 2). On this one-hidden-layer MLP with per-image standardized inputs
GraNd ranks the examples almost exactly as EL2N does, so --prune_by=grand
keeps nearly the same subsets. Runtime: about 12 minutes on a 2-core CPU
shared with about eight other jobs (about 4 minutes of CPU time).

Outputs in --workdir: results.json (``memjax.reporting.summary_frame`` loads
the summary: one row per condition, group and fraction, with test accuracy,
its SE and per-seed values, training accuracy and the share of kept labels
the noise changed), runs.csv (one row per run), scores.csv and scores.npz
(every example's EL2N, GraNd and forgetting counts per condition, in dataset
order, with its labels; per-seed values in the npz), subsets.npz (each
fraction's kept indices per run), pruning.png (test accuracy vs fraction
kept, one line per strategy, error bars 1 SE), checkpoints of every fit.
Re-running the same command resumes.
"""

import dataclasses
import os
import sys

from absl import flags
import numpy as np
import pandas as pd

from memjax import checkpointing
from memjax import cli
from memjax import data as data_lib
from memjax import pruning
from memjax import randomization
from memjax import reporting
from memjax import stats
from memjax import studies

# The fraction kept at which every claim is decided, fixed in advance.
CLAIM_FRACTION = 0.5
# Claim 3: "no worse than random" allows this much lower test accuracy.
TOLERANCE = 0.01

# --smoke: 200 examples, 2 seeds, 2 scoring seeds, 2 epochs (scores after 1),
# and only the claim fraction unless --fractions is given.
SMOKE_DATA = dict(train_size=200, test_size=64)
SMOKE_TRAIN = dict(num_seeds=2, max_epochs=2)
SMOKE_SCORE_SEEDS = 2
SMOKE_SCORE_EPOCH = 1


def define_flags() -> None:
  """This experiment's flags, defined when it runs (not on import)."""
  cli.define_data_flags(standardize=True)
  cli.define_train_flags(model="mlp1x128", seeds=4, max_epochs=30,
                         shard_seeds=False)
  flags.FLAGS.set_default("seed_chunk", 8)
  cli.define_run_flags("runs/data_pruning")
  flags.DEFINE_list("conditions", ["true_labels", "corrupt_0.2"],
                    "Label conditions: true_labels, random_labels or "
                    "corrupt_<p>.")
  flags.DEFINE_enum("label_noise", "uniform", list(randomization.LABEL_NOISE),
                    "How a corrupted label is redrawn (memjax.randomization).")
  cli.define_int("randomization_seed", 0, "Seeds the label noise.", low=0,
                 high=cli.MAX_SEED)
  flags.DEFINE_list("fractions", ["0.25", "0.5", "0.75"],
                    "Fractions of the training set kept, each in (0, 1) (the "
                    "whole set is always trained too).")
  flags.DEFINE_list("strategies", list(pruning.STRATEGIES),
                    f"Subsets to train: {', '.join(pruning.STRATEGIES)}.")
  flags.DEFINE_list("prune_by", ["el2n"],
                    f"Scores to rank by: {', '.join(pruning.SCORES)}.")
  cli.define_float("offset", 0.2,
                   "The offset strategy first drops this fraction of the "
                   "hardest examples.", low=0, high=1, high_open=True)
  cli.define_int("score_seeds", 4, "Scoring runs per condition (the scores "
                 "are their means; Paul et al.: 10).", low=1)
  cli.define_int("score_seed", 1000, "First seed of the scoring runs.",
                 low=0, high=cli.MAX_SEED)
  cli.define_int("score_epoch", 3, "Epochs before EL2N and GraNd are "
                 "computed; at most --max_epochs.", low=1)
  cli.define_int("microbatch", 64, "Examples per GraNd microbatch (bounds "
                 "memory).", low=1)


def names(values) -> tuple[str, ...]:
  """The distinct stripped names of a list flag, in order."""
  return tuple(dict.fromkeys(v.strip() for v in values))


def config_from_flags(values) -> pruning.PruningConfig:
  """The run's frozen config (--smoke shrinks it); raises ValueError on bad
  input."""
  if values.score_epoch > values.max_epochs:
    raise ValueError(f"--score_epoch={values.score_epoch} is invalid: it must "
                     f"be in [1, --max_epochs={values.max_epochs}].")
  conditions = studies.parse_conditions("conditions", values.conditions)
  fractions = tuple(cli.fractions("fractions", values.fractions))
  data, train = cli.configs(values, SMOKE_DATA, SMOKE_TRAIN,
                            stop_when_fit=False)
  study = studies.StudyConfig(data, train, conditions,
                              label_noise=values.label_noise,
                              randomization_seed=values.randomization_seed)
  smoke = values.smoke
  return pruning.PruningConfig(
      study,
      fractions=((CLAIM_FRACTION,) if smoke and not values["fractions"].present
                 else fractions),
      strategies=names(values.strategies),
      prune_by=names(values.prune_by), offset=values.offset,
      score_seeds=(min(values.score_seeds, SMOKE_SCORE_SEEDS) if smoke
                   else values.score_seeds),
      score_seed=values.score_seed,
      score_epoch=SMOKE_SCORE_EPOCH if smoke else values.score_epoch,
      microbatch=values.microbatch)


def _row(summary, condition, group, fraction=CLAIM_FRACTION):
  return summary.get(f"{condition}/{group}/{fraction:g}")


def _versus(text, a, b, tolerance, threshold):
  """A claim that mean(a) - mean(b) + tolerance exceeds 2 SE."""
  diff, se = stats.difference(a["test_acc_per_seed"], b["test_acc_per_seed"])
  return reporting.Claim(
      text, stats.exceeds(diff + tolerance, se),
      f"{a['test_acc']:.2%} +- {a['test_acc_se']:.2%} vs "
      f"{b['test_acc']:.2%} +- {b['test_acc_se']:.2%} ({a['seeds']} and "
      f"{b['seeds']} seeds); difference {diff:+.2%} +- {se:.2%}",
      value=diff, uncertainty=se, threshold=threshold)


def claims(summary: dict, config: pruning.PruningConfig
           ) -> list[reporting.Claim]:
  """The module docstring's claims, a pure function of the summary; a claim
  whose condition or subsets were not run is left out. Claims 1 and 2 apply
  to every partial label noise (corrupt_<p>, 0 < p < 1)."""
  out = []
  f = CLAIM_FRACTION
  for score in config.prune_by:
    for condition in config.conditions:
      random = _row(summary, condition, "random")
      hardest = _row(summary, condition, f"hardest_{score}")
      offset = _row(summary, condition, f"offset_{score}")
      if random is None:
        continue
      if condition == "true_labels" and hardest:
        out.append(_versus(
            f"{condition}: keeping the hardest {f:g} by {score} is no worse "
            f"than a random {f:g}: test accuracy (hardest - random) > "
            f"-{TOLERANCE:.0%} by 2 SE", hardest, random, TOLERANCE,
            -TOLERANCE))
      elif 0 < config.study.randomization(condition).fraction < 1:
        if offset:
          out.append(_versus(
              f"{condition}: dropping the hardest {config.offset:g} by "
              f"{score} first, then keeping {f:g}, beats a random {f:g}: test "
              "accuracy (offset - random) > 2 SE", offset, random, 0.0, 0.0))
        if hardest:
          out.append(_versus(
              f"{condition}: keeping the hardest {f:g} by {score} is worse "
              f"than a random {f:g}: test accuracy (random - hardest) > 2 SE",
              random, hardest, 0.0, 0.0))
  return out


def setup_details(config: pruning.PruningConfig, num_train: int) -> dict:
  train = config.study.train
  budget = pruning.budget_steps(train, num_train)
  noise = "; ".join(
      f"{c}: " + ("the data unchanged" if c == "true_labels" else
                  f"each training label replaced with probability "
                  f"{config.study.randomization(c).fraction:g} "
                  f"({config.study.label_noise}), once, shared by every run")
      for c in config.conditions)
  differs = ["digits and an MLP instead of CIFAR-10 and ResNet18 with "
             "augmentation", "one offset fixed in advance"]
  if config.score_seeds < 10:
    differs.append(f"{config.score_seeds} scoring runs instead of 10")
  return {
      "model": (f"{train.model}, SGD momentum {train.momentum}, learning rate "
                f"{train.lr} x {train.lr_decay} per 50,000 examples seen, "
                f"batch {train.batch_size}"),
      "noise": noise + "; test labels clean",
      "scores": (f"{config.score_seeds} runs per condition on all examples "
                 f"from seed {config.score_seed}: EL2N and GraNd after "
                 f"{config.score_epoch} of {train.max_epochs} epochs, "
                 "forgetting events over all of them (between minibatch "
                 "presentations, Toneva et al., and between clean "
                 "evaluations); means over the runs"),
      "subsets": (f"fractions {', '.join(f'{f:g}' for f in config.fractions)}"
                  f" and 1; {', '.join(g.name for g in config.groups)}; "
                  f"offset {config.offset:g}; {train.num_seeds} seeds each "
                  f"from seed {train.seed}; every run {budget} SGD steps "
                  f"({train.max_epochs} epochs of all examples, rounded up "
                  "to whole epochs of its subset)"),
      "measured at": "clean test accuracy at the end of each run",
      "differs from paper": "; ".join(differs),
  }


def plot(path: str, summary: dict, config: pruning.PruningConfig) -> str:
  """Test accuracy vs fraction kept, one panel per condition and score, one
  line per strategy (error bars: 1 SE over seeds); every line ends at the
  whole training set."""
  panels = []
  for condition in config.conditions:
    full = _row(summary, condition, pruning.FULL, 1.0)
    for score in config.prune_by:
      lines = {}
      for group in config.groups:
        if group.score not in (None, score):
          continue
        rows = [_row(summary, condition, group.name, f)
                for f in sorted(config.fractions)] + [full]
        lines[group.strategy] = ([r["fraction"] for r in rows],
                                 [r["test_acc"] for r in rows],
                                 [r["test_acc_se"] for r in rows])
      panels.append({"title": f"{condition}, by {score}",
                     "xlabel": "fraction of training set kept",
                     "ylabel": "test accuracy", "lines": lines})
  return reporting.plot_panels(path, panels)


def write_tables(workdir: str, dataset: data_lib.Dataset,
                 config: pruning.PruningConfig,
                 result: pruning.PruningResult) -> list[str]:
  """runs.csv, scores.csv, scores.npz and subsets.npz (dataset order)."""
  runs_path = os.path.join(workdir, "runs.csv")
  checkpointing.register(runs_path)
  pd.DataFrame(result.records).to_csv(runs_path, index=False)
  n = len(dataset.y_train)
  original = (np.arange(n) if dataset.train_original_index is None
              else dataset.train_original_index)
  frames = [pd.DataFrame({
      "condition": c, "index": np.arange(n), "original_index": original,
      "label": result.labels.train[c], "clean_label": dataset.y_train,
      "changed": result.labels.changed[c], **result.mean_scores[c]})
            for c in config.conditions]
  scores_path = os.path.join(workdir, "scores.csv")
  checkpointing.register(scores_path)
  pd.concat(frames).to_csv(scores_path, index=False)
  npz = checkpointing.save_npz(
      os.path.join(workdir, "scores.npz"),
      conditions=np.array(config.conditions), clean_label=dataset.y_train,
      **{f"label_{c}": result.labels.train[c] for c in config.conditions},
      **{f"{name}_per_seed": v for name, v in result.scores.items()})
  lanes = {f: [f"{l.condition}/{l.group.name}/seed{l.seed_index}"
               for l in pruning.lanes(config, f)] for f in result.subsets}
  subsets = checkpointing.save_npz(
      os.path.join(workdir, "subsets.npz"),
      **{f"index_{f:g}": index for f, index in result.subsets.items()},
      **{f"lanes_{f:g}": np.array(lanes[f]) for f in result.subsets})
  return [runs_path, scores_path, npz, subsets]


def run(config: pruning.PruningConfig, workdir: str,
        control: cli.RunControl = cli.RunControl()) -> dict:
  """Scores the training set, trains every subset, prints the claims and
  writes results.json, the tables and the figure into ``workdir``; returns
  results.json's contents."""
  dataset = data_lib.load(config.study.data)
  num_train = len(dataset.y_train)
  pruning.check_sizes(config, num_train)
  train = config.study.train
  cli.claim_workdir(workdir, config, control, dataset, [
      pruning.score_config(config),
      dataclasses.replace(train, num_seeds=config.lanes_per_fit)])
  print(reporting.format_setup(config.study.data, dataset,
                               **setup_details(config, num_train)))
  result = pruning.run(config, dataset, workdir, bar=control.bar,
                       checkpoint_seconds=control.checkpoint_seconds)
  summary = pruning.summarize(result.records)
  print(reporting.format_table(list(summary.values()), [
      "condition", "group", "fraction", "kept", "epochs", "test_acc",
      "test_acc_se", "train_acc", "changed_kept"]))
  diagnostics = pruning.score_diagnostics(result.mean_scores, result.labels)
  for condition, entry in diagnostics.items():
    print(f"{condition} scores: " + ", ".join(
        f"{k} {v:.3f}" for k, v in entry.items()))
  verdicts = claims(summary, config)
  if not verdicts:
    print(f"No claim applies: the claims compare subsets at fraction "
          f"{CLAIM_FRACTION:g} with random ones.")
  print(reporting.format_claims(verdicts))
  figure = plot(os.path.join(workdir, "pruning.png"), summary, config)
  written = write_tables(workdir, dataset, config, result)
  saved = cli.save_results(workdir, "data_pruning", config,
                           {"lanes": result.records, "scores": diagnostics},
                           summary, verdicts)
  print(f"Wrote {workdir}/results.json, {figure}, " + ", ".join(written))
  return saved


if __name__ == "__main__":
  cli.main(sys.modules[__name__])
