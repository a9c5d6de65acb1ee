r"""Which examples are memorized: memorization, influence and C-scores.

Estimates of Feldman & Zhang (2020) and Jiang et al. (2021) from many subset
runs: every run trains the same small MLP on a random 70% of the training set,
and the runs are trained ``--seeds`` at a time (vmapped) in checkpointed chunks.

  mem(i)     = P(correct on i | i in the subset) - P(correct on i | i held out)
  infl(i, j) = P(correct on test j | i in) - P(correct on test j | i out)
  C-score(i) = P(correct on i | i held out), averaged over the subset ratios

Claim tested (built-in sanity check): with 20% of the training labels corrupted,
the networks can only fit a corrupted example by memorizing it, so corrupted
examples have a clearly higher memorization score than clean ones (we call it
reproduced when the AUC of the score at picking them out is >= 0.9).

Command (embedded MNIST-5k, a stratified 2,000-example half of its training set
at 14x14 as in Arpit et al., MLP 1x256, 1,000 runs of 30 epochs at ratio 0.7):

  python experiments/memorization_scores.py

Why these defaults: a run's cost is proportional to its subset size and epochs;
2,000 examples at 14x14 let a 1x256 MLP fit >99% of its subset, corrupted labels
included, in 30 epochs at learning rate 0.1, and 1,000 runs hold every example
out about 300 times. The full 4,000 examples (``--train_size=4000``) roughly
double the time.

Expected (measured): mean score 0.20 for clean examples and 0.96 for corrupted
ones, AUC 0.98, mean standard error 0.012; a run fits 99.6% of its subset and
gets ~80% test accuracy (the corrupted labels cost accuracy). The 1,000 runs
take 123 s of training and evaluation (8.2 runs/s with 50 runs vmapped per
chunk; 131 s for the whole command) on an idle 2-core CPU, 9 s (117 runs/s) on
one H200 GPU (measured 2026-11-26).
Full C-scores over several ratios:

  python experiments/memorization_scores.py --ratios=0.7,0.1,0.3,0.5,0.9 \
      --workdir=runs/c_scores

(memorization and influence use the first ratio's runs; ~3.6x the time, as
the five ratios sum to 2.5 where the default is 0.7).

Outputs in --workdir: results.json (summary keys runs, mean_score_corrupted,
mean_score_clean, auc_corrupted, mean_stderr, ...), scores.csv (per training
example in dataset order: index, label, original_label, corrupted, score,
stderr, c_score, c_score_stderr, num_in, num_out), memorization.npy,
memorization_stderr.npy, c_score.npy, c_score_stderr.npy, test_c_score.npy,
influence_top_k.npz (per test example its top-k training examples),
memorized_examples.png (most and least memorized images), score_histogram.png,
and chunks/ (every finished chunk of runs; re-running resumes from them).
"""

from __future__ import annotations

import os

from absl import flags
import jax
import numpy as np

from memjax import cli
from memjax import data as data_lib
from memjax import memorization
from memjax import randomization
from memjax import reporting
from memjax import training

cli.define_data_flags(standardize=True)
cli.define_train_flags(model="mlp1x256", seeds=50, max_epochs=30,
                       batch_size=128,
                       shard_seeds=False)
cli.define_run_flags("runs/memorization_scores")
flags.DEFINE_integer("runs", 1000, "Subset runs per ratio.")
flags.DEFINE_list("ratios", ["0.7"],
                  "Subset ratios; memorization and influence use the first.")
flags.DEFINE_float("corruption", 0.2,
                   "Fraction of training labels corrupted (0 for none).")
flags.DEFINE_enum("label_noise", "different_class",
                  list(randomization.LABEL_NOISE),
                  "different_class: every corrupted label is wrong; uniform "
                  "(Zhang et al.) keeps the true class 1/classes of the time.")
flags.DEFINE_integer("randomization_seed", 0, "Seeds the label corruption.")
flags.DEFINE_integer("top_k", 10,
                     "Most influential training examples kept per test "
                     "example.")
flags.DEFINE_integer("show", 12, "Most and least memorized examples shown.")
FLAGS = flags.FLAGS
FLAGS.set_default("train_size", 2000)
FLAGS.set_default("image_size", 14)
FLAGS.set_default("learning_rate", 0.1)

SMOKE_RUNS = dict(runs=8, seeds=4)


def configs(values):
  """(DataConfig, EstimateConfig) of the flags; --smoke shrinks both."""
  try:
    ratios = tuple(float(r) for r in values.ratios)
  except ValueError:
    raise ValueError(f"--ratios={values.ratios} must be numbers in (0, 1).") \
        from None
  # Runs are vmapped --seeds at a time; each run itself is one seed.
  data_config, train = cli.configs(
      values, smoke_train=dict(cli.SMOKE_TRAIN, num_seeds=1), num_seeds=1)
  runs, chunk = values.runs, values.seeds
  if values.smoke:
    runs, chunk = SMOKE_RUNS["runs"], SMOKE_RUNS["seeds"]
  return data_config, memorization.EstimateConfig(
      train=train, num_runs=runs, ratios=ratios, chunk_size=chunk)


def load_data(values, data_config):
  """(dataset, original training labels, corrupted mask)."""
  dataset = data_lib.load(data_config)
  original = dataset.y_train
  if values.corruption > 0:
    noise = randomization.from_name(f"corrupt_{values.corruption}",
                                    values.label_noise)
    dataset = randomization.apply(
        dataset, noise, jax.random.key(values.randomization_seed)).dataset
  # "Corrupted" means the label is now wrong; uniform noise may redraw the
  # true class, and such an example is clean.
  return dataset, original, dataset.y_train != original


def auc(scores: np.ndarray, positive: np.ndarray) -> float | None:
  from sklearn.metrics import roc_auc_score  # pylint: disable=g-import-not-at-top
  finite = np.isfinite(scores)
  if positive[finite].all() or not positive[finite].any():
    return None
  return float(roc_auc_score(positive[finite], scores[finite]))


def write_csv(path, dataset, original, corrupted, mem, cscore):
  import pandas as pd  # pylint: disable=g-import-not-at-top
  pd.DataFrame({"index": np.arange(len(original)), "label": dataset.y_train,
                "original_label": original, "corrupted": corrupted,
                "score": mem.value, "stderr": mem.stderr,
                "c_score": cscore.value, "c_score_stderr": cscore.stderr,
                "num_in": mem.num_in, "num_out": mem.num_out}
               ).to_csv(path, index=False, float_format="%.5g")
  return path


def ranked(scores, classes, descending):
  """Example indices by score; ties go round the classes in turn.

  Many examples tie (e.g. at a score of 1), and the training split is sorted
  by class, so breaking ties by index would show one class only.
  """
  rank_in_class = np.zeros(len(classes), int)
  for c in np.unique(classes):
    rank_in_class[classes == c] = np.arange((classes == c).sum())
  key = np.nan_to_num(scores, nan=-np.inf if descending else np.inf)
  return np.lexsort((classes, rank_in_class, -key if descending else key))


def plot_examples(path, dataset, original, scores, show):
  """Rows of the most memorized, most memorized clean and least memorized."""
  plt = reporting.pyplot()
  show = min(show, len(scores) // 2)
  most = ranked(scores, original, True)
  rows = {"most memorized": most[:show]}
  clean = dataset.y_train == original
  if not clean.all():
    # Clean examples that are still memorized: atypical or ambiguous digits.
    rows["most memorized\nclean label"] = most[clean[most]][:show]
  rows["least memorized"] = ranked(scores, original, False)[:show]
  fig, axes = plt.subplots(len(rows), show,
                           figsize=(1.3 * show, 0.6 + 1.8 * len(rows)),
                           squeeze=False)
  for row, (title, indices) in zip(axes, rows.items()):
    for ax, i in zip(row, indices):
      ax.imshow(dataset.x_train[i, :, :, 0], cmap="gray")
      ax.set_xticks([])
      ax.set_yticks([])
      ax.set_title(f"#{i} y={dataset.y_train[i]}"
                   + (f" ({original[i]})" if dataset.y_train[i] != original[i]
                      else "") + f"\nmem {scores[i]:.2f}", fontsize=7)
    row[0].set_ylabel(title, fontsize=8)
  fig.suptitle("Most and least memorized training examples: #index, label "
               "(true label if corrupted), score", fontsize=9)
  return reporting.save_figure(fig, path)


def plot_histogram(path, scores, corrupted, title):
  plt = reporting.pyplot()
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  bins = np.linspace(-0.2, 1.0, 49)
  for name, keep in (("clean", ~corrupted), ("corrupted", corrupted)):
    if keep.any():
      ax.hist(np.clip(scores[keep], bins[0], bins[-1]), bins=bins, alpha=0.6,
              label=f"{name} ({keep.sum()})")
  ax.set_xlabel("memorization score")
  ax.set_ylabel("training examples")
  ax.set_title(title)
  ax.legend()
  return reporting.save_figure(fig, path)


def summarize(runs, first, mem, cscore, test_cscore, top, corrupted):
  """``runs``: every run; ``first``: the runs at the first ratio."""
  mean = lambda v: float(np.nanmean(v)) if v.size else None
  return {
      "runs": runs.num_runs,
      "train_examples": len(corrupted),
      "mean_score_corrupted": mean(mem.value[corrupted]),
      "mean_score_clean": mean(mem.value[~corrupted]),
      "auc_corrupted": auc(mem.value, corrupted),
      "mean_stderr": mean(mem.stderr),
      "corrupted_examples": int(corrupted.sum()),
      "mean_held_in": mean(mem.num_in),
      "mean_held_out": mean(mem.num_out),
      "subset_train_acc": float((first.masks & first.train_correct).sum()
                                / first.masks.sum()),
      "test_acc": float(first.test_correct.mean()),
      "mean_c_score": mean(cscore.value),
      "mean_test_c_score": mean(test_cscore.value),
      "mean_top1_influence": mean(top.value[:, 0]),
      "seconds": runs.seconds,
      "cpu_seconds": runs.cpu_seconds,
      "runs_per_second": runs.num_runs / runs.seconds,
  }


def claims(summary) -> list[reporting.Claim]:
  if summary["corrupted_examples"] == 0:
    return []
  a = summary["auc_corrupted"]
  return [reporting.Claim(
      "corrupted examples have a clearly higher memorization score than clean "
      "ones (AUC of the score at picking them out >= 0.9)",
      a is not None and a >= 0.9 and
      summary["mean_score_corrupted"] > summary["mean_score_clean"],
      f"mean score corrupted {summary['mean_score_corrupted']:.3f} vs clean "
      f"{summary['mean_score_clean']:.3f}; AUC {a:.3f}" if a is not None
      else "AUC undefined")]


def main(argv):
  del argv
  data_config, config = configs(FLAGS)
  cli.prepare(FLAGS)
  dataset, original, corrupted = load_data(FLAGS, data_config)
  data = training.TrainData(dataset.x_train, dataset.y_train, dataset.x_test,
                            dataset.y_test, dataset.num_classes)
  runs = memorization.estimate_runs(
      config, data, directory=os.path.join(FLAGS.workdir, "chunks"),
      progress="subset runs" if FLAGS.progress else None)
  first = runs.at_ratio(config.ratios[0])
  mem = memorization.memorization(first.masks, first.train_correct)
  top = memorization.influence_top_k(first.masks, first.test_correct,
                                     min(FLAGS.top_k, len(original)))
  cscore = memorization.c_score(runs.ratio, runs.masks, runs.train_correct)
  test_cscore = memorization.c_score(runs.ratio, None, runs.test_correct)

  out = lambda name: os.path.join(FLAGS.workdir, name)
  for name, value in (("memorization", mem.value),
                      ("memorization_stderr", mem.stderr),
                      ("c_score", cscore.value),
                      ("c_score_stderr", cscore.stderr),
                      ("test_c_score", test_cscore.value)):
    np.save(out(f"{name}.npy"), value.astype(np.float32))
  np.savez(out("influence_top_k.npz"), index=top.index, value=top.value,
           stderr=top.stderr)
  csv = write_csv(out("scores.csv"), dataset, original, corrupted, mem, cscore)

  summary = summarize(runs, first, mem, cscore, test_cscore, top, corrupted)
  print(reporting.format_table([summary], [
      "runs", "mean_score_corrupted", "mean_score_clean", "auc_corrupted",
      "mean_stderr", "subset_train_acc", "test_acc", "mean_c_score"]))
  print(f"Estimate used {runs.num_runs} subset runs ({config.num_runs} per "
        f"ratio {', '.join(map(str, config.ratios))}; each training example "
        f"held out in {summary['mean_held_out']:.0f} runs on average); mean "
        f"standard error of a memorization score {summary['mean_stderr']:.4f}.")
  print(f"Training + evaluation: {runs.seconds:.0f} s wall, "
        f"{runs.cpu_seconds:.0f} s CPU ({summary['runs_per_second']:.2f} runs/s"
        f", {config.chunk_size} runs vmapped per chunk).")
  verdicts = claims(summary)
  print(reporting.format_claims(verdicts))
  figures = [
      plot_examples(out("memorized_examples.png"), dataset, original,
                    mem.value, FLAGS.show),
      plot_histogram(out("score_histogram.png"), mem.value, corrupted,
                     f"{dataset.name}, {config.train.model}, "
                     f"{first.num_runs} runs at ratio {config.ratios[0]}")]
  per_ratio = {}
  for r in config.ratios:
    at_r = runs.at_ratio(r)
    per_ratio[str(r)] = {"runs": at_r.num_runs,
                         "test_acc": float(at_r.test_correct.mean())}
  path = cli.write_results(FLAGS, "memorization_scores", per_ratio, summary,
                           verdicts)
  print(f"Wrote {path}, {csv}, {', '.join(figures)}")


if __name__ == "__main__":
  cli.run_main(main)
