r"""EL2N, GraNd and forgetting scores under partial label noise.

Claims tested (later work building on Arpit et al.'s per-example view): examples
whose labels were corrupted stand out early and throughout training.
* EL2N = ||softmax(f(x)) - onehot(y)||_2 and GraNd = ||d loss / d params||_2,
  computed early in training and averaged over seeds (Paul et al. 2021), are
  higher for corrupted examples;
* forgetting events (correct -> incorrect transitions, with never-learned
  examples ranked highest; Toneva et al. 2019) are more frequent for
  corrupted examples. Two versions, named apart everywhere:
  ``forgetting_presentation`` is Toneva et al.'s definition: the transitions
  between an example's presentations in training minibatches, judged by the
  prediction the SGD step makes before its update (train mode;
  ``memjax.presentations``); ``forgetting_clean_eval`` counts them between
  clean eval-mode passes over the whole training set after every epoch
  (memjax's earlier version, reported as "forgetting" before).
Each is measured by the ROC AUC of the score (averaged over seeds) for telling
examples whose label changed from the others (0.5 = no separation), with a 95%
percentile bootstrap interval over examples (``stats.auc``).

Criterion (fixed before this setup's runs, in git before the measuring run;
for ``forgetting_presentation`` stated in git before its first measurement):
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
  epoch 20 of 200); both forgetting versions over all 30 epochs of the same
  full run (recording the presentations changes no training step). The first
  run is the start of the second (every random choice is a function of
  (seed, step)).
* Differs from the papers: they train ResNet18-class convolutional networks
  on CIFAR10 (Paul et al., batch 128, 200 epochs); we train an MLP on 1,000
  MNIST digits on a 2-core CPU.

Command:

  python experiments/example_scores.py

Result: the measured values, uncertainties and verdicts of the default command
are in the README's results table (generated from
runs/example_scores/results.json by `python experiments/report.py
--mode=readme`; `python experiments/report.py` writes the full report).
The presentation claim's criterion was in git before its first run. Runtime:
about 1.5 minutes on a 2-core CPU shared with other jobs.

Scores later. ``--keep_epochs=3,10,20`` keeps the full run's training state
after those epochs (0: the initialization) in ``<workdir>/full/checkpoints``;
afterwards, without retraining, the same command with
``--score_from_kept=10`` scores the state kept after epoch 10 (EL2N and GraNd
per seed, as during the run) and writes ``<workdir>/kept_scores/
epoch_00010.npz`` (dataset order, per seed and seed means) and
``epoch_00010_orig_order.npz`` (original order, with ``labels``), prints the
AUCs as readings (no claims), and leaves results.json as it is:

  python experiments/example_scores.py --keep_epochs=3,10,20
  python experiments/example_scores.py --keep_epochs=3,10,20 \
      --score_from_kept=10

Resume: the early run checkpoints in ``<workdir>/early/checkpoints`` and its
scores are saved to ``<workdir>/early/scores.npz`` (fingerprinted); the full
run checkpoints in ``<workdir>/full/checkpoints`` at most every
``--checkpoint_seconds`` and at its end. A re-run resumes from them, and a
finished run is loaded without training.

Outputs in --workdir: scores.csv (example index, label used, original label,
corrupted flag, each score averaged over seeds, and per forgetting version its
events, never-learned share and first-learned epoch), scores.npz (the same
arrays and the per-seed scores, in dataset order), scores_orig_order.npz (the
scores, per seed too, in the dataset's original order: for CIFAR the order of
the original files, for the embedded datasets their own; with ``labels``, the
dataset's labels, and ``trained_labels`` beside them; ``memjax.score_files``),
results.json (summary keyed by condition), scores.png (score histograms,
clean vs corrupted).
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
from memjax import engine
from memjax import per_example
from memjax import presentations
from memjax import reporting
from memjax import score_files
from memjax import studies
from memjax import training

FORGETTING = ("forgetting_clean_eval", "forgetting_presentation")
SCORES = ("el2n", "grand") + FORGETTING
# A score separates corrupted from clean examples when its AUC's interval
# lies above this.
CHANCE_AUC = 0.5
PAPER_SEEDS = 10
LABEL_NOISE = {"uniform": "uniformly from all classes",
               "different_class": "uniformly from the other classes"}
# What the full run's checkpoints (and kept states) depend on beyond its
# config and data: its epoch records every presentation.
FULL_RUN_PARTS = ("forgetting per presentation",)

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
  flags.DEFINE_list("keep_epochs", [],
                    "Keep the full run's training state after these epochs "
                    "(integers in [0, --max_epochs]; 0: the initialization), "
                    "to score them later with --score_from_kept.")
  cli.define_int("score_from_kept", None,
                 "Instead of training: EL2N and GraNd of the state that the "
                 "finished run of the same flags kept after this epoch (one "
                 "of --keep_epochs), written to <workdir>/kept_scores/.",
                 low=0)


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
      engine.run_fingerprint(
          early_config, train_data,
          training.default_train_index(train_data, early_config.num_seeds)),
      microbatch)
  if os.path.exists(path):
    return checkpointing.load_npz(path, stamp)
  checkpointing.register(folder)
  early = engine.fit(early_config, train_data,
                       checkpoint_dir=os.path.join(folder, "checkpoints"),
                       checkpoint_seconds=checkpoint_seconds,
                       progress="early" if progress else None)
  trainer = training.cached_trainer(early_config, train_data.input_shape,
                                    train_data.num_classes)
  got = per_example.state_scores(trainer, early.state, train_data.x_train,
                                 train_data.y_train, microbatch)
  scores = {"el2n": got["el2n"], "grand": got["grand"],
            "early_loss": got["loss"], "early_margin": got["margin"]}
  checkpointing.save_npz(path, stamp, **scores)
  return scores


def compute_scores(train_config, score_epoch, train_data, microbatch, workdir,
                   progress, checkpoint_seconds, keep_epochs=()):
  """Per-seed (S, n) scores, per-example forgetting statistics, history.
  Both forgetting versions come from the one full run: its epochs record
  every presentation (``memjax.presentations``) and its clean evaluations
  every example's correctness after every epoch."""
  early_config = dataclasses.replace(train_config, max_epochs=score_epoch)
  per_seed = early_scores(early_config, train_data, microbatch, workdir,
                          progress, checkpoint_seconds)
  recorder = presentations.PresentationRecorder(
      train_config.max_epochs, train_config.num_seeds, train_data.num_train)
  full = engine.fit(train_config, train_data, record_examples=True,
                      hooks=[recorder],
                      epoch_fn=presentations.presentation_epoch,
                      checkpoint_dir=full_checkpoints(workdir),
                      checkpoint_seconds=checkpoint_seconds,
                      progress="full" if progress else None,
                      keep_epochs=keep_epochs,
                      fingerprint_parts=FULL_RUN_PARTS)
  versions = {
      "clean_eval": per_example.forgetting(full.history["train_correct"]),
      "presentation": presentations.forgetting(
          recorder.history(full.epochs))}
  extra = {}
  for version, forgetting in versions.items():
    per_seed[f"forgetting_{version}"] = forgetting.scores().astype(np.float32)
    extra.update(score_files.forgetting_columns(forgetting, version))
  history = {"train_acc": full.history["train_acc"].mean(1),
             "test_acc": full.history["test_acc"].mean(1)}
  return per_seed, extra, history


def full_checkpoints(workdir: str) -> str:
  return os.path.join(workdir, "full", "checkpoints")


def summarize(scores, changed, history, extra) -> dict:
  """One condition's summary: each score's AUC with its bootstrap interval,
  its mean over clean and corrupted examples, and the training outcome."""
  summary = score_files.separation(scores, changed, SCORES)
  summary.update(
      label_changed_fraction=float(changed.mean()),
      train_acc=float(history["train_acc"][-1]),
      test_acc=float(history["test_acc"][-1]))
  for version in ("clean_eval", "presentation"):
    summary[f"never_learned_fraction_{version}"] = float(
        extra[f"never_learned_{version}"].mean())
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
                  f"over all {train_config.max_epochs} epochs, per "
                  "presentation in the training minibatches (Toneva et "
                  "al.) and between clean evaluations after every epoch",
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


def check_score_epoch(score_epoch: int, max_epochs: int) -> None:
  if not 1 <= score_epoch <= max_epochs:
    raise ValueError(f"--score_epoch must be in [1, --max_epochs="
                     f"{max_epochs}], got {score_epoch}.")


def parse_keep_epochs(values, max_epochs: int) -> tuple[int, ...]:
  """The sorted distinct epochs of --keep_epochs, each in [0, max_epochs]."""
  try:
    epochs = sorted({int(v) for v in values})
  except ValueError:
    epochs = None
  if epochs is None or not all(0 <= e <= max_epochs for e in epochs):
    raise ValueError(f"--keep_epochs must be integers in [0, --max_epochs="
                     f"{max_epochs}] (0: the initialization), got "
                     f"{list(values)}.")
  return tuple(epochs)


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that determines a run's results."""

  study: studies.StudyConfig  # data, training, the one noise condition
  normalize: bool = True  # the training set's per-channel mean/std
  score_epoch: int = 3  # EL2N and GraNd after this many epochs
  microbatch: int = 64  # examples per GraNd microbatch
  keep_epochs: tuple[int, ...] = ()  # the full run keeps its state at these
  # Score the state kept at this epoch by the finished run of the same
  # config (its score_from_kept None) instead of training.
  score_from_kept: int | None = None

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
    parse_keep_epochs(self.keep_epochs, self.study.train.max_epochs)
    if (self.score_from_kept is not None
        and self.score_from_kept not in self.keep_epochs):
      raise ValueError(
          f"--score_from_kept={self.score_from_kept} must be one of the "
          f"epochs the run keeps, --keep_epochs={list(self.keep_epochs)} "
          "(pass the run's own flags, --keep_epochs included).")

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
                microbatch=values.microbatch,
                keep_epochs=parse_keep_epochs(values.keep_epochs,
                                              train_config.max_epochs),
                score_from_kept=values.score_from_kept)


def load_data(config: Config):
  """(dataset as loaded and normalized, training data with the noisy labels,
  the examples drawn for noise, the normalization statistics or None)."""
  dataset = data_lib.load(config.study.data)
  norms = None
  if config.normalize:
    dataset, norms = normalized(dataset)
  train_data, selected, _ = studies.randomize(dataset, config.study,
                                              config.noise)
  return dataset, train_data, selected, norms


def score_kept(config: Config, workdir: str, control: cli.RunControl) -> dict:
  """``--score_from_kept``: EL2N and GraNd of the state the run of ``config``
  kept after ``config.score_from_kept`` epochs, without training; written by
  ``score_files.write_kept_scores``; returns their AUCs (readings)."""
  if control.overwrite:
    raise ValueError("--score_from_kept reads the run in --workdir; "
                     "--overwrite would delete it first.")
  epoch, train = config.score_from_kept, config.study.train
  dataset, train_data, _, _ = load_data(config)
  # Raises, before anything is written, when the state was not kept (or
  # was kept by another config).
  state = engine.load_kept_state(train, train_data, full_checkpoints(
      workdir), epoch, fingerprint_parts=FULL_RUN_PARTS)
  run_config = dataclasses.replace(config, score_from_kept=None)
  cli.claim_workdir(workdir, run_config, control, dataset, [train])
  trainer = training.cached_trainer(train, train_data.input_shape,
                                    train_data.num_classes)
  per_seed = per_example.state_scores(trainer, state, train_data.x_train,
                                      train_data.y_train, config.microbatch)
  path, original_path = score_files.write_kept_scores(
      workdir, epoch, dataset, train_data.y_train, per_seed,
      checkpointing.fingerprint(cli.config_dict(run_config), epoch))
  changed = train_data.y_train != dataset.y_train
  row = {"epoch": epoch, **score_files.separation(
      {n: v.mean(0) for n, v in per_seed.items()}, changed, ("el2n", "grand"))}
  print(f"EL2N and GraNd of the state kept after epoch {epoch} (readings, "
        "no claims):")
  print(reporting.format_table([row], list(row)))
  print(f"Wrote {path} and {original_path}")
  return row


def run(config: Config, workdir: str,
        control: cli.RunControl = cli.RunControl()) -> dict:
  """Trains the early and the full run, scores every example, prints the
  claims and writes results.json, the score files and the figure into
  ``workdir``; returns results.json's contents. With
  ``config.score_from_kept`` it scores a kept state instead (``score_kept``)
  and returns that reading."""
  if config.score_from_kept is not None:
    return score_kept(config, workdir, control)
  study, noise, score_epoch = config.study, config.noise, config.score_epoch
  data_config, train_config = study.data, study.train
  dataset, train_data, selected, norms = load_data(config)
  cli.claim_workdir(workdir, config, control, dataset, [train_config])
  print(setup_text(data_config, dataset, train_config, score_epoch,
                   noise, study.label_noise, norms))
  per_seed, extra, history = compute_scores(
      train_config, score_epoch, train_data, config.microbatch, workdir,
      control.progress, control.checkpoint_seconds, config.keep_epochs)
  # uniform noise may keep the class
  changed = train_data.y_train != dataset.y_train
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
  csv_path = score_files.write_scores(workdir, dataset, train_data.y_train,
                                      changed, scores, per_seed, extra,
                                      selected)
  figure = score_files.plot_histograms(
      os.path.join(workdir, "scores.png"), scores, changed,
      {n: row[f"{n}_auc"] for n in SCORES})
  runs = {noise: {"train_acc": history["train_acc"],
                  "test_acc": history["test_acc"]}}
  saved = cli.save_results(workdir, "example_scores", config, runs, summary,
                           verdicts)
  print(f"Wrote {workdir}/results.json, {csv_path}, "
        f"{os.path.join(workdir, score_files.ORIGINAL_ORDER_FILE)} and "
        f"{figure}")
  return saved


if __name__ == "__main__":
  cli.main(sys.modules[__name__])
