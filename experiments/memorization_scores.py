r"""Which examples are memorized: memorization, influence and C-scores.

Estimates of Feldman & Zhang (2020) and Jiang et al. (2021) from many subset
runs: every run trains the same small MLP on a random 70% of the training set,
and the runs are trained ``--seeds`` at a time (vmapped) in checkpointed chunks.

  mem(i)     = P(correct on i | i in the subset) - P(correct on i | i held out)
  infl(i, j) = P(correct on test j | i in) - P(correct on test j | i out)
  C-score(i) = P(correct on i | i held out), averaged over the subset ratios

Setup. Embedded MNIST-5k: a stratified 2,000-example half of its training set
and its 1,000 test digits, downscaled to 14x14 as in Arpit et al., per-image
standardized; MLP 1x256, 30 epochs of SGD (batch 128, learning rate 0.1,
momentum 0.9), every run on a random 70% of the training set; correctness
measured on a clean eval-mode pass of each run's final model. 20% of the
training labels are corrupted, and the whole estimate is made twice, once per
kind of label noise (``--label_noise``): ``different_class`` (every corrupted
label is a wrong class) and ``uniform`` (Zhang et al.'s: a uniform class, which
keeps the true class 1/10 of the time); the same examples are drawn for
corruption in both, and test labels stay clean. An example is "corrupted" when
its label differs from the true one, "clean" otherwise. Differs from the
papers: Feldman & Zhang use ResNets on CIFAR-100 / ImageNet with their natural
labels and thousands of runs; here an MLP on 2,000 small digits, 500 runs per
noise condition, with injected label noise (``--corruption=0`` gives their
natural-label setting).

Claims, per noise condition, with criteria fixed before any measurement
(stats.SIGMAS = 2 standard errors for comparisons):

1. Pipeline check (NOT a test of Feldman & Zhang: a held-out example whose
   label was changed is almost never predicted as that label, so this passes
   whenever the runs fit their subsets): corrupted examples have higher
   memorization scores than clean ones; the lower end of the bootstrap 95%
   interval of the AUC is >= 0.9.
2. Memorization is a property of the example, not of the runs: the 5% of clean
   examples with the highest scores on the even-numbered runs have a lower
   held-out accuracy on the odd-numbered runs than the other clean examples,
   by > 2 SE. (On the same runs this would be circular: when the subsets are
   fit, mem ~ 1 - held-out accuracy.)
3. Clean examples with high memorization scores are atypical (Feldman & Zhang;
   Jiang et al.'s input-space density proxy of the C-score): the 5% of clean
   examples with the highest scores have a lower k-NN label agreement (the
   share of their 10 nearest training inputs, in Euclidean distance, whose
   true label is theirs) than the other clean examples, by > 2 SE. This
   measure involves no network.
4. The most influential train-test pairs share a label (Feldman & Zhang): of
   the pairs of a test example and its most influential training example whose
   influence is significant (one-sided Fisher exact test of held-in vs
   held-out correctness, p < 0.05 / (n x n_test): Bonferroni over every pair),
   most share the label: the Jeffreys 95% lower bound of the same-label share
   is > 0.5 (random pairs share a label ~10% of the time).
5. Those same-label pairs are nearer in input space than random same-label
   pairs: the training example's distance percentile among the training
   examples labelled like the test example is below 0.5 (a random same-label
   example's expectation) by > 2 SE.

Uncertainty: every binomial proportion (held-in / held-out accuracy, C-score,
influence) carries the Jeffreys interval's standard error, which is not 0
where every run agreed; group comparisons use the standard error of the
difference of two means over examples; AUCs a bootstrap interval.

Command (about 1,000 subset runs in all):

  python experiments/memorization_scores.py

Result: the measured values, uncertainties and verdicts of the default command
are in the README's results table (generated from
runs/memorization_scores/results.json by `python experiments/report.py
--mode=readme`; `python experiments/report.py` writes the full report).
The most memorized clean-label images are ambiguous digits (a 1 that MNIST
labels 7, an open 9), see memorized_examples.png. Runtime: about 6 minutes
on a 2-core CPU shared with other jobs (about 3.5 minutes of CPU time).

Not a claim (read after measuring): some of the significant pairs join a test
digit to a training digit whose label was corrupted INTO the test digit's
class (e.g. a training 8 labelled 5 near a test 5): with the label it was
trained on, an ambiguous image helps the test image it resembles. The few
uniform-noise pairs without a shared label join a test digit to a training
digit of the same true class whose label was corrupted. The uniform draws that
kept the true label score like clean examples.

Full C-scores over several ratios:

  python experiments/memorization_scores.py --ratios=0.7,0.1,0.3,0.5,0.9 \
      --workdir=runs/c_scores

(memorization and influence use the first ratio's runs; ~3.6x the time, as
the five ratios sum to 2.5 where the default is 0.7).

Outputs in --workdir: results.json (summary per noise condition: runs,
mean_score_corrupted, mean_score_clean, auc_corrupted, mean_stderr,
split_half, atypical, influential_pairs, ...), and per condition a folder
``<condition>/`` holding scores.csv (per training example in dataset order:
index, label, original_label, corrupted, score, stderr, c_score,
c_score_stderr, knn_label_agreement, num_in, num_out), memorization.npy,
memorization_stderr.npy, c_score.npy, c_score_stderr.npy, test_c_score.npy,
influence_top_k.npz (per test example its top-k training examples, with
standard errors), memorized_examples.png (most and least memorized images),
influential_pairs.png, score_histogram.png, and chunks/ (every finished chunk
of runs; re-running the same command resumes from them). The same scores in
the dataset's original order (for CIFAR the order of the original files, from
the tfds record ids; the embedded datasets' own order) and in the published
schemas (``memjax.published``), so that code written for the releases loads
them unchanged and ``experiments/compare_scores.py`` compares them with the
released files: c_score_orig_order.npz (Jiang et al.'s C-score files:
``labels``, ``scores``, and ``stderr``) and infl_matrix_orig_order.npz
(Feldman & Zhang's cifar100_infl_matrix.npz: ``tr_mem``, ``tr_labels``,
``tt_labels``, per class ``tr_classidx_{c}``, ``tt_classidx_{c}``,
``infl_matrix_class{c}``, from the first ratio's runs); their labels are the
true labels, as in the releases. Every flag is validated before any training
or any write.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from absl import flags
import numpy as np

from memjax import checkpointing
from memjax import cli
from memjax import data as data_lib
from memjax import memorization
from memjax import memorization_analysis as analysis
from memjax import randomization
from memjax import reporting
from memjax import stats
from memjax import training


def define_flags() -> None:
  """This experiment's flags, defined when it runs (not on import, so that
  several experiments can run in one process)."""
  cli.define_data_flags(standardize=True)
  cli.define_train_flags(model="mlp1x256", seeds=50, max_epochs=30,
                         batch_size=128, shard_seeds=False)
  cli.define_run_flags("runs/memorization_scores")
  cli.define_int("runs", 500,
                 "Subset runs per ratio and label-noise condition.", low=1)
  flags.DEFINE_list("ratios", ["0.7"],
                    "Subset ratios in (0, 1); memorization and influence use "
                    "the first.")
  cli.define_float("corruption", 0.2,
                   "Fraction of training labels corrupted (0: natural "
                   "labels).", low=0, high=1)
  flags.DEFINE_list("label_noise", ["different_class", "uniform"],
                    "Label-noise conditions, each estimated with its own "
                    "runs: different_class (every corrupted label is wrong) "
                    "and/or uniform (Zhang et al.: keeps the true class "
                    "1/classes of the time). Not used with --corruption=0.")
  cli.define_int("randomization_seed", 0, "Seeds the label corruption.",
                 low=0, high=cli.MAX_SEED)
  cli.define_int("top_k", 10,
                 "Most influential training examples kept per test example "
                 "(at most the training set size).", low=1)
  cli.define_int("show", 12, "Most and least memorized examples shown.",
                 low=1)
  # This experiment's setup: Arpit et al.'s 14x14 digits, 2,000 of them.
  flags.FLAGS.set_default("train_size", 2000)
  flags.FLAGS.set_default("image_size", 14)
  flags.FLAGS.set_default("learning_rate", 0.1)


SMOKE_RUNS = dict(runs=8, seeds=4)

# Criteria, fixed before measuring (see the module docstring); the analyses'
# top fraction (5%), neighbours (10) and family-wise alpha (0.05) are
# analysis.TOP_FRACTION, NEIGHBOURS and PAIR_FAMILY_ALPHA.
PIPELINE_AUC = 0.9
TOP_FRACTION = analysis.TOP_FRACTION
NEIGHBOURS = analysis.NEIGHBOURS
SAME_LABEL_SHARE = 0.5
RANDOM_PERCENTILE = 0.5


def conditions(values) -> tuple[str, ...]:
  """The label-noise conditions estimated, each with its own runs."""
  kinds = tuple(values.label_noise)
  if (not kinds or len(set(kinds)) != len(kinds)
      or not set(kinds) <= set(randomization.LABEL_NOISE)):
    raise ValueError(f"--label_noise must be distinct values of "
                     f"{', '.join(randomization.LABEL_NOISE)}, got "
                     f"{values.label_noise}.")
  return ((analysis.NATURAL_LABELS,) if values.corruption == 0
          else kinds)


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that decides this experiment's results."""

  data: data_lib.DataConfig
  estimate: memorization.EstimateConfig  # the subset runs of each condition
  conditions: tuple[str, ...]  # label-noise kinds, or natural labels
  corruption: float  # fraction of training labels redrawn
  randomization_seed: int  # seeds the label corruption
  top_k: int  # most influential training examples kept per test example
  show: int  # examples per row of the figures


def config_from_flags(values) -> Config:
  """The run's frozen config (--smoke shrinks the data and the runs); raises
  ValueError on bad input."""
  ratios = cli.subset_ratios("ratios", values.ratios)
  names = conditions(values)
  # Runs are vmapped --seeds at a time; each run itself is one seed.
  data_config, train = cli.configs(
      values, smoke_train=dict(cli.SMOKE_TRAIN, num_seeds=1), num_seeds=1)
  runs, chunk = values.runs, values.seeds
  if values.smoke:
    runs, chunk = SMOKE_RUNS["runs"], SMOKE_RUNS["seeds"]
  return Config(
      data=data_config,
      estimate=memorization.EstimateConfig(train=train, num_runs=runs,
                                           ratios=ratios, chunk_size=chunk),
      conditions=names, corruption=values.corruption,
      randomization_seed=values.randomization_seed, top_k=values.top_k,
      show=values.show)


# --- Claims: pure functions of the summary ------------------------------------

def _more_than_noise(text, comparison, what) -> reporting.Claim:
  diff, se = comparison["difference"], comparison["se"]
  measured = (f"{what}: top {comparison['num_top']} clean examples "
              f"{comparison['top']:.3f} vs other {comparison['num_rest']} "
              f"{comparison['rest']:.3f}" if comparison["top"] is not None
              else f"{what}: too few clean examples with a score")
  return reporting.Claim(text, stats.exceeds(diff, se), measured, value=diff,
                         uncertainty=se, threshold=stats.SIGMAS * se)


def condition_claims(name: str, s: dict) -> list[reporting.Claim]:
  out = []
  auc = s["auc_corrupted"]
  if auc is not None:
    out.append(reporting.Claim(
        f"[{name}] pipeline check, not a test of Feldman & Zhang: corrupted "
        "examples have higher memorization scores than clean ones (lower end "
        f"of the bootstrap 95% interval of the AUC >= {PIPELINE_AUC})",
        bool(np.isfinite(auc["low"]) and auc["low"] >= PIPELINE_AUC),
        f"mean score corrupted {s['mean_score_corrupted']:.3f} vs clean "
        f"{s['mean_score_clean']:.3f}; AUC {auc['auc']:.3f}",
        value=auc["auc"], uncertainty=(auc["high"] - auc["low"]) / 2,
        threshold=PIPELINE_AUC, interval=(auc["low"], auc["high"])))
  out.append(_more_than_noise(
      f"[{name}] memorization is a property of the example: the top "
      f"{TOP_FRACTION:.0%} of clean examples by memorization on the even runs "
      "have lower held-out accuracy on the odd runs than the other clean "
      f"examples (difference > {stats.SIGMAS:g} SE)",
      s["split_half"], "held-out accuracy on the odd runs"))
  out.append(_more_than_noise(
      f"[{name}] clean examples with high memorization are atypical: the top "
      f"{TOP_FRACTION:.0%} of clean examples by memorization have lower "
      f"input-space {NEIGHBOURS}-NN label agreement than the other clean "
      f"examples (difference > {stats.SIGMAS:g} SE)",
      s["atypical"], f"{NEIGHBOURS}-NN label agreement"))
  pairs = s["influential_pairs"]
  share, low = pairs["same_label_share"], pairs["same_label_low"]
  out.append(reporting.Claim(
      f"[{name}] the most influential train-test pairs share a label: of the "
      "test examples' top-1 pairs with significant influence (one-sided "
      "Fisher exact test, Bonferroni over all pairs at 5%), the Jeffreys 95% "
      f"lower bound of the same-label share is > {SAME_LABEL_SHARE}",
      bool(pairs["significant"] > 0 and low > SAME_LABEL_SHARE),
      f"{pairs['same_label']} of {pairs['significant']} significant pairs "
      f"(p < {pairs['alpha_per_pair']:.2g}) share a label; random pairs "
      f"{pairs['chance_same_label']:.3f}",
      value=share, uncertainty=pairs["same_label_se"],
      threshold=SAME_LABEL_SHARE,
      interval=(low, pairs["same_label_high"])))
  mean, se = pairs["distance_percentile"], pairs["distance_percentile_se"]
  out.append(reporting.Claim(
      f"[{name}] significant same-label pairs are nearer in input space than "
      "random same-label pairs: mean distance percentile among the test "
      f"example's same-label training examples < {RANDOM_PERCENTILE} by > "
      f"{stats.SIGMAS:g} SE",
      stats.exceeds(RANDOM_PERCENTILE - mean, se),
      f"{pairs['distance_pairs']} pairs, mean percentile {mean:.3f} (random "
      f"same-label pairs: {RANDOM_PERCENTILE})",
      value=mean, uncertainty=se,
      threshold=RANDOM_PERCENTILE - stats.SIGMAS * se
      if np.isfinite(se) else RANDOM_PERCENTILE))
  return out


def claims(summary: dict) -> list[reporting.Claim]:
  """Every condition's claims; ``summary`` maps condition -> its numbers."""
  return [c for name, s in summary.items() for c in condition_claims(name, s)]


def run_condition(condition: analysis.Condition,
                  config: memorization.EstimateConfig, folder: str, show: int,
                  top_k: int, progress: str | None):
  """Trains (or resumes) one condition's runs, writes its files; returns
  (summary, per-ratio runs)."""
  d = condition.dataset
  data = training.TrainData(d.x_train, d.y_train, d.x_test, d.y_test,
                            d.num_classes)
  runs = memorization.estimate_runs(
      config, data, directory=os.path.join(folder, "chunks"),
      progress=progress)
  first = runs.at_ratio(config.ratios[0])
  mem = memorization.memorization(first.masks, first.train_correct)
  top = memorization.influence_top_k(first.masks, first.test_correct, top_k)
  cscore = memorization.c_score(runs.ratio, runs.masks, runs.train_correct)
  test_cscore = memorization.c_score(runs.ratio, None, runs.test_correct)
  knn = analysis.knn_label_agreement(d.x_train, condition.original,
                                     min(NEIGHBOURS, len(d.y_train) - 1))
  summary = analysis.summarize(condition, runs, first, mem, cscore,
                               test_cscore, top, knn)
  analysis.write_files(
      folder, condition, first, mem, cscore, test_cscore, top, knn,
      summary["influential_pairs"]["pairs"], show,
      f"{d.name}, {config.train.model}, {condition.name}, "
      f"{first.num_runs} runs at ratio {config.ratios[0]}")
  per_ratio = {}
  for r in config.ratios:
    at_r = runs.at_ratio(r)
    per_ratio[str(r)] = {"runs": at_r.num_runs,
                         "test_acc": float(at_r.test_correct.mean())}
  return summary, per_ratio


def run(config: Config, workdir: str,
        control: cli.RunControl = cli.RunControl()) -> dict:
  """Trains (or resumes) every condition's subset runs, prints the claims and
  writes results.json and each condition's files into ``workdir``; returns
  results.json's contents."""
  estimate, train = config.estimate, config.estimate.train
  dataset = data_lib.load(config.data)
  estimate.check_data(dataset)
  if config.top_k > len(dataset.y_train):
    raise ValueError(f"--top_k={config.top_k} must be in [1, "
                     f"{len(dataset.y_train)}] (the training set size).")
  conditions_ = [analysis.make_condition(dataset, name, config.corruption,
                                         config.randomization_seed)
                 for name in config.conditions]
  cli.claim_workdir(workdir, config, control, dataset,
                    [dataclasses.replace(train, num_seeds=estimate.chunk_size)])
  print(reporting.format_setup(
      config.data, dataset,
      model=f"{train.model}, {train.max_epochs} epochs of SGD (batch "
            f"{train.batch_size}, learning rate {train.lr}, momentum "
            f"{train.momentum})",
      runs=f"{estimate.num_runs} subset runs per condition and ratio "
           f"{', '.join(map(str, estimate.ratios))}, {estimate.chunk_size} "
           "vmapped per chunk",
      noise=(f"{config.corruption:g} of the training labels redrawn, per "
             f"condition: {', '.join(config.conditions)}; test labels clean"
             if config.corruption else "none (natural labels)"),
      measured_at="clean eval-mode pass of each run's final model",
      differs_from_paper="Feldman & Zhang: ResNets on CIFAR-100/ImageNet, "
                         "natural labels, thousands of runs; here an MLP on "
                         "small digits with injected label noise"))

  summary, per_condition = {}, {}
  for condition in conditions_:
    folder = os.path.join(workdir, condition.name)
    checkpointing.register(folder)
    os.makedirs(folder, exist_ok=True)
    summary[condition.name], per_condition[condition.name] = run_condition(
        condition, estimate, folder, config.show, config.top_k,
        control.bar(f"{condition.name} subset runs"))

  rows = [{"condition": name, **s,
           "auc": s["auc_corrupted"]["auc"] if s["auc_corrupted"] else None,
           "significant_pairs": s["influential_pairs"]["significant"]}
          for name, s in summary.items()]
  print(reporting.format_table(rows, [
      "condition", "runs", "mean_score_corrupted", "mean_score_clean", "auc",
      "mean_stderr", "subset_train_acc", "test_acc", "mean_c_score",
      "significant_pairs"]))
  for name, s in summary.items():
    print(f"{name}: {s['runs']} subset runs (each training example held out "
          f"in {s['mean_held_out']:.0f} on average), mean standard error of a "
          f"memorization score {s['mean_stderr']:.4f}; training + evaluation "
          f"{s['seconds']:.0f} s wall, {s['cpu_seconds']:.0f} s CPU "
          f"({s['runs_per_second']:.2f} runs/s).")
  verdicts = claims(summary)
  print(reporting.format_claims(verdicts))
  saved = cli.save_results(workdir, "memorization_scores", config,
                           per_condition, summary, verdicts)
  print(f"Wrote {workdir}/results.json and per condition: "
        f"{', '.join(os.path.join(workdir, n) for n in config.conditions)}/")
  return saved


if __name__ == "__main__":
  cli.main(sys.modules[__name__])
