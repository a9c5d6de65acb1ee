r"""EL2N, GraNd and forgetting scores under partial label noise.

Claims tested (later work building on Arpit et al.'s per-example view): examples
whose labels were corrupted stand out early and throughout training.
* EL2N = ||softmax(f(x)) - onehot(y)||_2 and GraNd = ||d loss / d params||_2,
  computed early in training and averaged over seeds (Paul et al. 2021), are
  higher for corrupted examples;
* forgetting events (correct -> incorrect transitions between epochs, with
  never-learned examples ranked highest; Toneva et al. 2019) are more frequent
  for corrupted examples.
Each is measured by the ROC AUC of the score for telling corrupted from clean
examples (0.5 = no separation).

All S seeds train at once (vmapped ``training.fit``): a run of
``--score_epoch`` epochs whose final state gives EL2N and GraNd (clean eval-mode
pass; GraNd in microbatches), and a run of ``--max_epochs`` epochs recording
per-example correctness after every epoch for forgetting. The first run is the
start of the second (every random choice is a function of (seed, step)).

Command (embedded MNIST-5k, 1,000 training examples with 20% of labels
replaced uniformly at random, MLP 1x512, 5 seeds):

  python experiments/example_scores.py

Expected (measured): 176 of 1,000 labels changed; ROC AUC 0.987 for EL2N,
0.987 for GraNd (after 3 epochs), 0.871 for forgetting (30 epochs); every seed
fits the noisy training set; test accuracy 81%. 21 s on an idle 2-core CPU
(measured 2026-11-26).

Outputs in --workdir: scores.csv (example index, label used, original label,
corrupted flag, each score averaged over seeds), scores.npz (the same arrays and
the per-seed scores, in dataset order), results.json (summary keyed by
condition), scores.png (score histograms, clean vs corrupted).
"""

from __future__ import annotations

import dataclasses
import os

from absl import flags
import numpy as np

from memjax import cli
from memjax import data as data_lib
from memjax import per_example
from memjax import reporting
from memjax import studies
from memjax import training

SCORES = ("el2n", "grand", "forgetting")

cli.define_data_flags(standardize=True)
flags.FLAGS.set_default("train_size", 1000)
cli.define_train_flags(model="mlp1x512", seeds=5, max_epochs=30, batch_size=64,
                       shard_seeds=False)
cli.define_run_flags("runs/example_scores")
flags.DEFINE_string("noise", "corrupt_0.2",
                    "Label noise condition, e.g. corrupt_0.2 or corrupt_0.4.")
flags.DEFINE_enum("label_noise", "uniform", ["uniform", "different_class"],
                  "Corrupted labels: uniform over all classes or forced to a "
                  "different class.")
flags.DEFINE_integer("score_epoch", 3,
                     "Epochs trained before EL2N and GraNd are computed (Paul "
                     "et al.: early, ~10% of training).")
flags.DEFINE_integer("microbatch", 64,
                     "Examples per GraNd microbatch (bounds memory).")
flags.DEFINE_integer("randomization_seed", 0, "Seeds the randomization.")
FLAGS = flags.FLAGS

# --smoke: 200 examples, 2 seeds, 4 epochs (scores after 1).
SMOKE_DATA = dict(train_size=200, test_size=64)
SMOKE_TRAIN = dict(num_seeds=2, max_epochs=4)
SMOKE_SCORE_EPOCH = 1


def roc_auc(score, positive):
  """P(score of a random positive > that of a random negative), ties half."""
  from sklearn.metrics import roc_auc_score  # pylint: disable=g-import-not-at-top
  if positive.all() or not positive.any():
    return None
  return float(roc_auc_score(positive, score))


def compute_scores(train_config, score_epoch, train_data, microbatch, progress):
  """Per-seed (S, n) scores and per-example forgetting statistics."""
  early_config = dataclasses.replace(train_config, max_epochs=score_epoch)
  early = training.fit(early_config, train_data,
                       progress="early" if progress else None)
  trainer = training.cached_trainer(early_config, train_data.input_shape,
                                    train_data.num_classes)
  x, y = train_data.x_train, train_data.y_train
  logit_scores = per_example.over_seeds(per_example.logit_scores, trainer,
                                        early.state, x, y)
  grand = per_example.over_seeds(per_example.grand, trainer, early.state, x, y,
                                 microbatch=microbatch)
  full = training.fit(train_config, train_data, record_examples=True,
                      progress="full" if progress else None)
  forgetting = per_example.forgetting(full.history["train_correct"])
  per_seed = {"el2n": np.asarray(logit_scores["el2n"]),
              "grand": np.asarray(grand),
              "forgetting": forgetting.scores().astype(np.float32),
              "early_loss": np.asarray(logit_scores["loss"]),
              "early_margin": np.asarray(logit_scores["margin"])}
  learned = ~forgetting.never_learned
  first_learned = (np.where(learned, forgetting.first_learned, 0).sum(0)
                   / np.maximum(learned.sum(0), 1))
  extra = {"never_learned": forgetting.never_learned.mean(0),
           "first_learned": np.where(learned.any(0), first_learned, np.nan),
           "forgetting_events": forgetting.events.mean(0)}
  history = {"train_acc": full.history["train_acc"].mean(1),
             "test_acc": full.history["test_acc"].mean(1)}
  return per_seed, extra, history


def plot_scores(path, scores, corrupted, aucs):
  plt = reporting.pyplot()
  fig, axes = plt.subplots(1, len(SCORES), figsize=(4.6 * len(SCORES), 3.8))
  for ax, name in zip(axes, SCORES):
    values = scores[name]
    edges = np.linspace(values.min(), values.max() + 1e-9, 31)
    ax.hist(values[~corrupted], bins=edges, alpha=0.6, density=True,
            label="clean")
    ax.hist(values[corrupted], bins=edges, alpha=0.6, density=True,
            label="corrupted")
    auc = aucs[name]
    ax.set_title(f"{name} (AUC {auc:.3f})" if auc is not None else name)
    ax.set_xlabel(f"{name}, mean over seeds")
    ax.legend()
  return reporting.save_figure(fig, path)


def main(argv):
  del argv
  score_epoch = FLAGS.score_epoch
  if FLAGS.smoke:
    score_epoch = SMOKE_SCORE_EPOCH
  data_config, train_config = cli.configs(FLAGS, SMOKE_DATA, SMOKE_TRAIN,
                                          stop_when_fit=False)
  study = studies.StudyConfig(data_config, train_config, (FLAGS.noise,),
                              label_noise=FLAGS.label_noise,
                              randomization_seed=FLAGS.randomization_seed)
  if study.randomization(FLAGS.noise).kind != "corrupt_labels":
    raise ValueError(f"--noise must be label noise (corrupt_<p> or randY_<p>), "
                     f"got {FLAGS.noise!r}.")
  if not 1 <= score_epoch <= train_config.max_epochs:
    raise ValueError(f"--score_epoch must be in [1, --max_epochs="
                     f"{train_config.max_epochs}], got {score_epoch}.")
  if FLAGS.microbatch < 1:
    raise ValueError(f"--microbatch must be >= 1, got {FLAGS.microbatch}.")
  cli.prepare(FLAGS)
  dataset = data_lib.load(data_config)
  train_data, corrupted, _ = studies.randomize(dataset, study, FLAGS.noise)
  per_seed, extra, history = compute_scores(
      train_config, score_epoch, train_data, FLAGS.microbatch, FLAGS.progress)
  changed = train_data.y_train != dataset.y_train  # uniform noise may keep the class
  scores = {name: values.mean(0) for name, values in per_seed.items()}
  aucs = {name: roc_auc(scores[name], changed) for name in SCORES}
  summary = {FLAGS.noise: {
      **{f"{name}_auc": aucs[name] for name in SCORES},
      **{f"{name}_clean": float(scores[name][~changed].mean())
         for name in SCORES},
      **{f"{name}_corrupted": float(scores[name][changed].mean())
         for name in SCORES if changed.any()},
      "label_changed_fraction": float(changed.mean()),
      "train_acc": float(history["train_acc"][-1]),
      "test_acc": float(history["test_acc"][-1]),
      "never_learned_fraction": float(extra["never_learned"].mean()),
      "seeds": train_config.num_seeds, "score_epoch": score_epoch,
      "epochs": train_config.max_epochs}}
  row = summary[FLAGS.noise]
  print(reporting.format_table(
      [{"score": n, "auc": aucs[n], "clean": row[f"{n}_clean"],
        "corrupted": row.get(f"{n}_corrupted")} for n in SCORES],
      ["score", "auc", "clean", "corrupted"]))
  print(f"{changed.sum()} of {changed.size} labels changed; final train "
        f"accuracy {row['train_acc']:.2%}, test {row['test_acc']:.2%}")
  verdicts = [reporting.Claim(
      f"{name} is higher for examples with corrupted labels (ROC AUC > 0.5)",
      aucs[name] is not None and aucs[name] > 0.5,
      f"AUC {aucs[name]:.3f}" if aucs[name] is not None else
      "no corrupted (or no clean) examples") for name in SCORES]
  print(reporting.format_claims(verdicts))
  columns = {"index": np.arange(len(changed)), "label": train_data.y_train,
             "original_label": dataset.y_train, "corrupted": changed,
             **scores, **extra}
  import pandas as pd  # pylint: disable=g-import-not-at-top
  csv_path = os.path.join(FLAGS.workdir, "scores.csv")
  pd.DataFrame(columns).to_csv(csv_path, index=False)
  np.savez(os.path.join(FLAGS.workdir, "scores.npz"), **columns,
           **{f"{n}_per_seed": v for n, v in per_seed.items()},
           selected_for_noise=corrupted)
  figure = plot_scores(os.path.join(FLAGS.workdir, "scores.png"), scores,
                       changed, aucs)
  runs = {FLAGS.noise: {"train_acc": history["train_acc"],
                        "test_acc": history["test_acc"]}}
  path = cli.write_results(FLAGS, "example_scores", runs, summary, verdicts)
  print(f"Wrote {path}, {csv_path} and {figure}")


if __name__ == "__main__":
  cli.run_main(main)
