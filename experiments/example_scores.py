r"""EL2N, GraNd and forgetting scores under partial label noise.

Claims tested (later work building on Arpit et al.'s per-example view): examples
whose labels were corrupted stand out early and throughout training.
* EL2N = ||softmax(f(x)) - onehot(y)||_2 and GraNd = ||d loss / d params||_2,
  computed early in training and averaged over seeds (Paul et al. 2021), are
  higher for corrupted examples;
* forgetting events (correct -> incorrect transitions between epochs, with
  never-learned examples ranked highest; Toneva et al. 2019) are more frequent
  for corrupted examples.
Each is measured by the ROC AUC of the score (averaged over seeds) for telling
examples whose label changed from the others (0.5 = no separation), with a 95%
percentile bootstrap interval over examples (``stats.auc``).

Criterion (fixed before this setup's runs, in git before the measuring run):
a score separates corrupted from clean examples when the lower end of its
AUC's 95% bootstrap interval is above 0.5 (chance).

Setup (printed at the start of every run):

* Data: 1,000 training examples, a stratified subset of the embedded MNIST-5k
  (4,000 train / 1,000 test real digits), 28x28, pixels / 255 and then
  normalized with the training set's per-channel mean and std (the
  mean/std normalization of the papers' training code; ``--nonormalize``
  keeps pixels / 255, ``--standardize`` uses per-image standardization).
* Noise: each training label replaced with probability 0.2 by a class drawn
  uniformly from all 10 (so some keep their class; "corrupted" means the
  label changed); test labels stay clean.
* Model and training: MLP 1x512, SGD lr 0.01, momentum 0.9, batch 64
  (16 steps per epoch, the last one partial), 10 seeds trained at once (Paul
  et al. average over 10 runs). EL2N and GraNd after 3 epochs (clean eval-mode
  pass; GraNd in microbatches), 10% of the 30 training epochs (Paul et al.:
  epoch 20 of 200); forgetting from the correctness after every one of the 30
  epochs. The first run is the start of the second (every random choice is a
  function of (seed, step)).
* Differs from the papers: they train ResNet18-class convolutional networks
  on CIFAR10 (Paul et al., batch 128, 200 epochs); we train an MLP on 1,000
  MNIST digits on a 2-core CPU.

Command:

  python experiments/example_scores.py

Measured (2026-12-01, this command; 131 s wall while ~6 other jobs shared the
2 CPU cores): 176 of 1,000 labels changed; ROC AUC (95% bootstrap interval)
EL2N 0.986 [0.977, 0.993], GraNd 0.982 [0.973, 0.989], forgetting 0.916
[0.893, 0.936]: all three REPRODUCED. Training accuracy after 30 epochs 99.9%
(mean over seeds), test accuracy 80.5%.

Earlier code (per-image standardized inputs, 5 seeds, AUC without interval)
measured AUC 0.987 for EL2N, 0.987 for GraNd, 0.871 for forgetting.

Resume: the early run checkpoints in ``<workdir>/early/checkpoints`` and its
scores are saved to ``<workdir>/early/scores.npz`` (fingerprinted); the full
run checkpoints in ``<workdir>/full/checkpoints`` at most every
``--checkpoint_seconds`` and at its end. A re-run resumes from them, and a
finished run is loaded without training.

Outputs in --workdir: scores.csv (example index, label used, original label,
corrupted flag, each score averaged over seeds), scores.npz (the same arrays and
the per-seed scores, in dataset order), results.json (summary keyed by
condition), scores.png (score histograms, clean vs corrupted).
"""

from __future__ import annotations

import dataclasses
import os
import sys

from absl import flags
import numpy as np
import pandas as pd

from memjax import checkpointing
from memjax import cli
from memjax import data as data_lib
from memjax import per_example
from memjax import reporting
from memjax import stats
from memjax import studies
from memjax import training

SCORES = ("el2n", "grand", "forgetting")
# A score separates corrupted from clean examples when its AUC's interval
# lies above this.
CHANCE_AUC = 0.5
PAPER_SEEDS = 10
LABEL_NOISE = {"uniform": "uniformly from all classes",
               "different_class": "uniformly from the other classes"}

# --smoke: 200 examples, 2 seeds, 4 epochs (scores after 1).
SMOKE_DATA = dict(train_size=200, test_size=64)
SMOKE_TRAIN = dict(num_seeds=2, max_epochs=4)
SMOKE_SCORE_EPOCH = 1


def define_flags() -> None:
  """This experiment's flags, defined when it runs (not on import)."""
  cli.define_data_flags(standardize=False)
  flags.FLAGS.set_default("train_size", 1000)
  cli.define_train_flags(model="mlp1x512", seeds=PAPER_SEEDS, max_epochs=30,
                         batch_size=64, shard_seeds=False)
  cli.define_run_flags("runs/example_scores")
  flags.DEFINE_bool("normalize", True,
                    "Then subtract the training set's per-channel mean and "
                    "divide by its std (the papers' mean/std normalization).")
  flags.DEFINE_string("noise", "corrupt_0.2",
                      "Label noise condition, e.g. corrupt_0.2 or "
                      "corrupt_0.4.")
  flags.DEFINE_enum("label_noise", "uniform", ["uniform", "different_class"],
                    "Corrupted labels: uniform over all classes or forced to "
                    "a different class.")
  cli.define_int("score_epoch", 3,
                 "Epochs trained before EL2N and GraNd are computed (Paul et "
                 "al.: early, ~10% of training); at most --max_epochs.", low=1)
  cli.define_int("microbatch", 64,
                 "Examples per GraNd microbatch (bounds memory).", low=1)
  cli.define_int("randomization_seed", 0, "Seeds the randomization.", low=0,
                 high=cli.MAX_SEED)


def normalized(dataset: data_lib.Dataset) -> tuple[data_lib.Dataset, dict]:
  """The dataset with the training set's per-channel mean subtracted and
  divided by its std (train and test alike); and those statistics."""
  axes = tuple(range(dataset.x_train.ndim - 1))
  mean = dataset.x_train.mean(axes)
  std = dataset.x_train.std(axes)
  scale = lambda s: None if s is None else s / float(std.mean())
  return dataset.replace(
      x_train=((dataset.x_train - mean) / std).astype(np.float32),
      x_test=((dataset.x_test - mean) / std).astype(np.float32),
      train_scale=scale(dataset.train_scale),
      test_scale=scale(dataset.test_scale)), {"mean": mean, "std": std}


def early_scores(early_config, train_data, microbatch, workdir, progress,
                 checkpoint_seconds) -> dict:
  """Per-seed (S, n) EL2N, GraNd, loss and margin after the early epochs;
  loaded from ``<workdir>/early/scores.npz`` when a previous run saved them."""
  folder = os.path.join(workdir, "early")
  path = os.path.join(folder, "scores.npz")
  stamp = checkpointing.fingerprint(
      training.run_fingerprint(
          early_config, train_data,
          training.default_train_index(train_data, early_config.num_seeds)),
      microbatch)
  if os.path.exists(path):
    return checkpointing.load_npz(path, stamp)
  checkpointing.register(folder)
  early = training.fit(early_config, train_data,
                       checkpoint_dir=os.path.join(folder, "checkpoints"),
                       checkpoint_seconds=checkpoint_seconds,
                       progress="early" if progress else None)
  trainer = training.cached_trainer(early_config, train_data.input_shape,
                                    train_data.num_classes)
  x, y = train_data.x_train, train_data.y_train
  logit_scores = per_example.over_seeds(per_example.logit_scores, trainer,
                                        early.state, x, y)
  grand = per_example.over_seeds(per_example.grand, trainer, early.state, x, y,
                                 microbatch=microbatch)
  scores = {"el2n": np.asarray(logit_scores["el2n"]),
            "grand": np.asarray(grand),
            "early_loss": np.asarray(logit_scores["loss"]),
            "early_margin": np.asarray(logit_scores["margin"])}
  checkpointing.save_npz(path, stamp, **scores)
  return scores


def compute_scores(train_config, score_epoch, train_data, microbatch, workdir,
                   progress, checkpoint_seconds):
  """Per-seed (S, n) scores, per-example forgetting statistics, history."""
  early_config = dataclasses.replace(train_config, max_epochs=score_epoch)
  per_seed = early_scores(early_config, train_data, microbatch, workdir,
                          progress, checkpoint_seconds)
  full = training.fit(train_config, train_data, record_examples=True,
                      checkpoint_dir=os.path.join(workdir, "full",
                                                  "checkpoints"),
                      checkpoint_seconds=checkpoint_seconds,
                      progress="full" if progress else None)
  forgetting = per_example.forgetting(full.history["train_correct"])
  per_seed = {**per_seed,
              "forgetting": forgetting.scores().astype(np.float32)}
  learned = ~forgetting.never_learned
  first_learned = (np.where(learned, forgetting.first_learned, 0).sum(0)
                   / np.maximum(learned.sum(0), 1))
  extra = {"never_learned": forgetting.never_learned.mean(0),
           "first_learned": np.where(learned.any(0), first_learned, np.nan),
           "forgetting_events": forgetting.events.mean(0)}
  history = {"train_acc": full.history["train_acc"].mean(1),
             "test_acc": full.history["test_acc"].mean(1)}
  return per_seed, extra, history


def summarize(scores, changed, history, extra) -> dict:
  """One condition's summary: each score's AUC with its bootstrap interval,
  its mean over clean and corrupted examples, and the training outcome."""
  summary = {}
  for name in SCORES:
    auc = stats.auc(scores[name], changed)
    summary[f"{name}_auc"] = auc["auc"]
    summary[f"{name}_auc_low"] = auc["low"]
    summary[f"{name}_auc_high"] = auc["high"]
    summary[f"{name}_clean"] = float(scores[name][~changed].mean())
    if changed.any():
      summary[f"{name}_corrupted"] = float(scores[name][changed].mean())
  summary.update(
      label_changed_fraction=float(changed.mean()),
      train_acc=float(history["train_acc"][-1]),
      test_acc=float(history["test_acc"][-1]),
      never_learned_fraction=float(extra["never_learned"].mean()))
  return summary


def claims(summary: dict) -> list[reporting.Claim]:
  """The verdicts of one noise condition's summary (a pure function)."""
  out = []
  for name in SCORES:
    auc = summary[f"{name}_auc"]
    low, high = summary[f"{name}_auc_low"], summary[f"{name}_auc_high"]
    measured = (f"AUC {auc:.3f}, 95% bootstrap interval [{low:.3f}, "
                f"{high:.3f}]" if np.isfinite(auc) else
                "no corrupted (or no clean) examples")
    out.append(reporting.Claim(
        f"{name} is higher for examples with corrupted labels: ROC AUC's 95% "
        f"bootstrap interval above {CHANCE_AUC:g}",
        bool(np.isfinite(low) and low > CHANCE_AUC), measured,
        value=auc, uncertainty=(high - low) / 2, threshold=CHANCE_AUC,
        interval=(low, high)))
  return out


def paper_differences(data_config, train_config, normalize) -> str:
  notes = ["MLP on MNIST digits instead of the papers' convolutional networks"
           " on CIFAR10"]
  if data_config.standardize:
    notes.append("per-image standardized inputs")
  if not normalize:
    notes.append("no mean/std normalization")
  if train_config.num_seeds < PAPER_SEEDS:
    notes.append(f"{train_config.num_seeds} seeds instead of {PAPER_SEEDS}")
  return "; ".join(notes)


def setup_text(data_config, dataset, train_config, score_epoch, noise,
               label_noise, norms):
  text = reporting.format_setup(
      data_config, dataset,
      model=f"{train_config.model}, SGD lr {train_config.lr}, momentum "
            f"{train_config.momentum}, batch {train_config.batch_size}, "
            f"{train_config.max_epochs} epochs, {train_config.num_seeds} "
            "seeds trained at once",
      noise=f"{noise}: each training label replaced with that probability "
            f"by a class drawn {LABEL_NOISE[label_noise]} ('corrupted': the "
            "label changed); test labels clean",
      measured_at=f"EL2N and GraNd after {score_epoch} epoch(s); forgetting "
                  f"over all {train_config.max_epochs} epochs",
      differs_from_paper=paper_differences(data_config, train_config,
                                           norms is not None))
  if norms is None:
    return text
  # format_setup describes data_config's preprocessing only; say what the
  # normalization adds to it.
  base = "per-image standardized" if data_config.standardize else "pixels / 255"
  line = (f"  preprocessing: {base}, then minus the training set's mean "
          f"{float(norms['mean'][0]):.3f} and divided by its std "
          f"{float(norms['std'][0]):.3f} (per channel)")
  return "\n".join(line if row.startswith("  preprocessing:") else row
                   for row in text.splitlines())


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
    ax.set_title(f"{name} (AUC {auc:.3f})" if np.isfinite(auc) else name)
    ax.set_xlabel(f"{name}, mean over seeds")
    ax.legend()
  return reporting.save_figure(fig, path)


def check_score_epoch(score_epoch: int, max_epochs: int) -> None:
  if not 1 <= score_epoch <= max_epochs:
    raise ValueError(f"--score_epoch must be in [1, --max_epochs="
                     f"{max_epochs}], got {score_epoch}.")


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that determines a run's results."""

  study: studies.StudyConfig  # data, training, the one noise condition
  normalize: bool = True  # the training set's per-channel mean/std
  score_epoch: int = 3  # EL2N and GraNd after this many epochs
  microbatch: int = 64  # examples per GraNd microbatch

  def __post_init__(self):
    if len(self.study.conditions) != 1:
      raise ValueError(f"example_scores runs one noise condition, got "
                       f"{self.study.conditions}.")
    if self.study.randomization(self.noise).kind != "corrupt_labels":
      raise ValueError(f"--noise must be label noise (corrupt_<p> or "
                       f"randY_<p>), got {self.noise!r}.")
    check_score_epoch(self.score_epoch, self.study.train.max_epochs)
    if self.microbatch < 1:
      raise ValueError(f"--microbatch must be >= 1, got {self.microbatch}.")

  @property
  def noise(self) -> str:
    return self.study.conditions[0]


def config_from_flags(values) -> Config:
  """The run's frozen config (--smoke shrinks it, scores after 1 epoch);
  raises ValueError on bad input."""
  check_score_epoch(values.score_epoch, values.max_epochs)
  data_config, train_config = cli.configs(values, SMOKE_DATA, SMOKE_TRAIN,
                                          stop_when_fit=False)
  study = studies.StudyConfig(data_config, train_config, (values.noise,),
                              label_noise=values.label_noise,
                              randomization_seed=values.randomization_seed)
  return Config(study, normalize=values.normalize,
                score_epoch=(SMOKE_SCORE_EPOCH if values.smoke
                             else values.score_epoch),
                microbatch=values.microbatch)


def run(config: Config, workdir: str,
        control: cli.RunControl = cli.RunControl()) -> dict:
  """Trains the early and the full run, scores every example, prints the
  claims and writes results.json, scores.csv, scores.npz and the figure into
  ``workdir``; returns results.json's contents."""
  study, noise, score_epoch = config.study, config.noise, config.score_epoch
  data_config, train_config = study.data, study.train
  dataset = data_lib.load(data_config)
  norms = None
  if config.normalize:
    dataset, norms = normalized(dataset)
  cli.claim_workdir(workdir, config, control, dataset, [train_config])
  print(setup_text(data_config, dataset, train_config, score_epoch,
                   noise, study.label_noise, norms))
  train_data, corrupted, _ = studies.randomize(dataset, study, noise)
  per_seed, extra, history = compute_scores(
      train_config, score_epoch, train_data, config.microbatch, workdir,
      control.progress, control.checkpoint_seconds)
  changed = train_data.y_train != dataset.y_train  # uniform noise may keep the class
  scores = {name: values.mean(0) for name, values in per_seed.items()}
  row = summarize(scores, changed, history, extra)
  row.update(seeds=train_config.num_seeds, score_epoch=score_epoch,
             epochs=train_config.max_epochs)
  summary = {noise: row}
  print(reporting.format_table(
      [{"score": n, "auc": row[f"{n}_auc"], "auc_low": row[f"{n}_auc_low"],
        "auc_high": row[f"{n}_auc_high"], "clean": row[f"{n}_clean"],
        "corrupted": row.get(f"{n}_corrupted")} for n in SCORES],
      ["score", "auc", "auc_low", "auc_high", "clean", "corrupted"]))
  print(f"{changed.sum()} of {changed.size} labels changed; final train "
        f"accuracy {row['train_acc']:.2%}, test {row['test_acc']:.2%}")
  verdicts = claims(row)
  print(reporting.format_claims(verdicts))
  columns = {"index": np.arange(len(changed)), "label": train_data.y_train,
             "original_label": dataset.y_train, "corrupted": changed,
             **scores, **extra}
  csv_path = os.path.join(workdir, "scores.csv")
  checkpointing.register(csv_path)
  pd.DataFrame(columns).to_csv(csv_path, index=False)
  checkpointing.save_npz(os.path.join(workdir, "scores.npz"), **columns,
                         **{f"{n}_per_seed": v for n, v in per_seed.items()},
                         selected_for_noise=corrupted)
  figure = plot_scores(os.path.join(workdir, "scores.png"), scores,
                       changed, {n: row[f"{n}_auc"] for n in SCORES})
  runs = {noise: {"train_acc": history["train_acc"],
                        "test_acc": history["test_acc"]}}
  saved = cli.save_results(workdir, "example_scores", config, runs, summary,
                           verdicts)
  print(f"Wrote {workdir}/results.json, {csv_path} and {figure}")
  return saved


if __name__ == "__main__":
  cli.main(sys.modules[__name__])
