"""Explicit regularization vs fitting real and random labels: Zhang et al.'s
Table 1, and the pieces the Arpit et al. sweep shares with it.

The study behind ``experiments/regularization.py --mode=table1``, whose
docstring states the claims and their criteria; ``memjax.regularization_sweep``
is the other mode (Arpit et al.'s Fig. 10).

A ``Table1Config`` names the models, the weight decay used when it is "on" and
Zhang et al.'s crop (``regularizers.crop_augmentation``, adapted to the data's
image side). ``table1_rows`` expands it into the rows models x {crop on/off} x
{weight decay on/off}, each a ``training.TrainConfig``; ``train_rows`` trains
both label conditions of every row as one ``studies.run`` (checkpointed under
``<workdir>/<model>/crop_<yes|no>_wd_<yes|no>/<condition>/``, so a re-run
resumes row by row) and returns the summary, one entry per row and condition
with every per-seed number a claim needs. ``table1_claims`` decides claims 1-4
as a pure function of that summary.
"""

from __future__ import annotations

import dataclasses
import itertools
import os

import numpy as np

from memjax import complexity
from memjax import data as data_lib
from memjax import regularizers
from memjax import reporting
from memjax import stats
from memjax import studies
from memjax import training

CONDITIONS = ("true_labels", "random_labels")
# Zhang et al. Table 1 (CIFAR10): (model, crop, weight decay, labels) ->
# (train %, test %).
PAPER_TABLE1 = {
    ("inception", True, True, "true_labels"): (100.0, 89.05),
    ("inception", True, False, "true_labels"): (100.0, 89.31),
    ("inception", False, True, "true_labels"): (100.0, 86.03),
    ("inception", False, False, "true_labels"): (100.0, 85.75),
    ("inception", False, False, "random_labels"): (100.0, 9.78),
    ("inception_nobn", False, True, "true_labels"): (100.0, 83.00),
    ("inception_nobn", False, False, "true_labels"): (100.0, 82.00),
    ("inception_nobn", False, False, "random_labels"): (100.0, 10.12),
    ("alexnet", True, True, "true_labels"): (99.90, 81.22),
    ("alexnet", True, False, "true_labels"): (99.82, 79.66),
    ("alexnet", False, True, "true_labels"): (100.0, 77.36),
    ("alexnet", False, False, "true_labels"): (100.0, 76.07),
    ("alexnet", False, False, "random_labels"): (99.82, 9.86),
    ("mlp3x512", False, True, "true_labels"): (100.0, 53.35),
    ("mlp3x512", False, False, "true_labels"): (100.0, 52.39),
    ("mlp3x512", False, False, "random_labels"): (100.0, 10.48),
    ("mlp1x512", False, True, "true_labels"): (99.80, 50.39),
    ("mlp1x512", False, False, "true_labels"): (100.0, 50.51),
    ("mlp1x512", False, False, "random_labels"): (99.34, 10.61),
}
# The paper's largest test-accuracy gain from regularizers (AlexNet), as a
# fraction of accuracy: 81.22% - 76.07%.
PAPER_MAX_GAIN = (81.22 - 76.07) / 100
# A row "fits" at this training accuracy on its worst seed: Zhang et al.'s
# Table 1 counts 99.34% (MLP 1x512, random labels) as fit.
FIT_THRESHOLD = 0.99
# The paper's exception: AlexNet with weight decay does not fit random labels.
WEIGHT_DECAY_EXCEPTION = "alexnet"
# "Exceeds" is more than this many SEs.
SIGMAS = stats.SIGMAS


def distinct(flag: str, values) -> tuple[str, ...]:
  """The distinct items of list flag --``flag``, in order; an empty list is an
  error (never a silent default)."""
  if not values:
    raise ValueError(f"--{flag} must not be empty.")
  return tuple(dict.fromkeys(values))


def lass_config(x_train, iterations: int,
                batch_size: int) -> complexity.LassConfig:
  """The paper's LASS box (0.3 of 255 intensity levels) on these inputs."""
  return complexity.LassConfig.for_inputs(x_train, max_iterations=iterations,
                                          chunk_size=batch_size)


def with_adversarial(train: training.TrainConfig,
                     lass: complexity.LassConfig) -> training.TrainConfig:
  """``train`` with adversarial training on the critical samples of ``lass``."""
  return dataclasses.replace(train, regularization=dataclasses.replace(
      train.regularization, adversarial=lass))


def per_seed_entry(name: str, values) -> dict:
  """``name``: seed mean, ``name_se``: its SE, ``name_per_seed``: the values."""
  mean, se = stats.mean_se(values)
  return {name: mean, f"{name}_se": se,
          f"{name}_per_seed": [float(v) for v in values]}


@dataclasses.dataclass(frozen=True)
class Table1Config:
  """Everything a Table 1 run computes from, apart from the loaded data."""

  data: data_lib.DataConfig
  train: training.TrainConfig  # every row's seeds, epochs and optimizer
  models: tuple[str, ...] = ("mlp1x512", "mlp3x512")
  weight_decay: float = 5e-4  # when "on"
  crop_shift: int | None = None  # None: the crop's default for the image side
  color_jitter: float = 0.0  # added to the crop
  adversarial: bool = False  # LASS adversarial training in every row
  lass_iterations: int = 10

  def __post_init__(self):
    distinct("models", self.models)
    for model in self.models:
      dataclasses.replace(self.train, model=model)  # validates the name


@dataclasses.dataclass(frozen=True)
class Row:
  """One row of Table 1 (both label conditions train under ``train``)."""

  model: str
  crop_on: bool
  weight_decay_on: bool
  train: training.TrainConfig

  @property
  def name(self) -> str:
    return (f"{self.model}/crop_{'yes' if self.crop_on else 'no'}_wd_"
            f"{'yes' if self.weight_decay_on else 'no'}")


def crop_regularization(config: Table1Config,
                        input_shape) -> regularizers.Regularization:
  """Zhang et al.'s crop on images of ``input_shape`` (H, W, C), validated
  against the image side."""
  crop = regularizers.crop_augmentation(config.data.name, input_shape[0])
  if config.crop_shift is not None:
    crop = dataclasses.replace(crop, shift=config.crop_shift)
  crop = dataclasses.replace(crop, color_jitter=config.color_jitter)
  try:
    regularizers.check_input_shape(crop, input_shape)
  except ValueError as e:
    raise ValueError(f"--crop_shift: {e}") from None
  return crop


def table1_rows(config: Table1Config, crop: regularizers.Regularization,
                x_train) -> list[Row]:
  """Every row: models x {crop on, off} x {weight decay on, off}; with
  ``config.adversarial``, LASS boxes fitted to ``x_train``."""
  base = config.train
  if config.adversarial:
    base = with_adversarial(base, lass_config(
        x_train, config.lass_iterations, base.batch_size))
  rows = []
  for model, use_crop, use_wd in itertools.product(
      config.models, (True, False), (True, False)):
    train = dataclasses.replace(
        base, model=model, weight_decay=config.weight_decay if use_wd else 0.0,
        regularization=dataclasses.replace(
            crop if use_crop else regularizers.Regularization(),
            adversarial=base.regularization.adversarial))
    regularizers.check_model(train.model, train.dropout, train.regularization)
    rows.append(Row(model, use_crop, use_wd, train))
  return rows


def row_summary(result: studies.ConditionResult) -> dict:
  """One row's final accuracies per seed, means and SEs."""
  h = result.fit.history
  train = h["train_acc"][-1]
  return {"train_acc": float(train.mean()),
          "train_acc_min": float(train.min()),
          "train_acc_max": float(train.max()),
          "train_examples": int(result.train_mask.shape[-1]),
          **per_seed_entry("test_acc", h["test_acc"][-1]),
          **per_seed_entry("best_test_acc", np.nanmax(h["test_acc"], axis=0)),
          "seeds_fit": int((result.fit.fit_step >= 0).sum()),
          "seeds": int(result.fit.fit_step.shape[0]),
          "epochs": result.fit.epochs}


def train_rows(config: Table1Config, rows: list[Row],
               dataset: data_lib.Dataset, workdir: str, *, progress: bool,
               checkpoint_seconds: float, mesh=None):
  """(summary, results) of every row and condition, keyed
  ``<row name>/<condition>``; each summary entry is ``row_summary`` with the
  row's settings and, on CIFAR10, the paper's numbers."""
  summary, results = {}, {}
  for row in rows:
    study = studies.StudyConfig(data=config.data, train=row.train,
                                conditions=CONDITIONS)
    out = studies.run(study, os.path.join(workdir, row.name),
                      progress=progress, dataset=dataset, mesh=mesh,
                      checkpoint_seconds=checkpoint_seconds)
    for condition, result in out.items():
      entry = {"model": row.model, "labels": condition, "crop": row.crop_on,
               "weight_decay": row.train.weight_decay, **row_summary(result)}
      paper = PAPER_TABLE1.get((row.model, row.crop_on, row.weight_decay_on,
                                condition))
      if dataset.name == "cifar10" and paper:
        entry["paper_train_acc"], entry["paper_test_acc"] = (
            v / 100 for v in paper)
      summary[f"{row.name}/{condition}"] = entry
      results[f"{row.name}/{condition}"] = result
  return summary, results


def _pick(summary, **match) -> list[dict]:
  return [r for r in summary.values()
          if all(r[k] == v for k, v in match.items())]


def _fit_claim(model: str, row: dict, with_weight_decay: bool):
  """Claims 1 and 2: ``model`` fits random labels (the worst seed reaches
  FIT_THRESHOLD), or, for the paper's AlexNet exception with weight decay,
  fails to (no seed reaches it)."""
  n = row["train_examples"]
  regime = "with weight decay" if with_weight_decay else "without regularizers"
  seeds = (f"worst seed {row['train_acc_min']:.2%}, "
           f"best {row['train_acc_max']:.2%}")
  if with_weight_decay and model == WEIGHT_DECAY_EXCEPTION:
    acc = row["train_acc_max"]
    return reporting.Claim(
        f"{model} {regime} does not fit random labels (the paper's "
        f"exception): every seed below {FIT_THRESHOLD:.0%} training accuracy",
        acc < FIT_THRESHOLD, seeds, value=acc,
        uncertainty=float(stats.jeffreys_se(round(acc * n), n)),
        threshold=FIT_THRESHOLD)
  acc = row["train_acc_min"]
  return reporting.Claim(
      f"{model} {regime} fits random labels: training accuracy >= "
      f"{FIT_THRESHOLD:.0%} on every seed (value: the worst seed, with the "
      "Jeffreys SE of its accuracy)",
      acc >= FIT_THRESHOLD, seeds, value=acc,
      uncertainty=float(stats.jeffreys_se(round(acc * n), n)),
      threshold=FIT_THRESHOLD)


def table1_claims(summary: dict) -> list[reporting.Claim]:
  """Claims 1-4 of the experiment's docstring, per model, from the summary."""
  out = []
  for model in dict.fromkeys(r["model"] for r in summary.values()):
    for with_wd in (False, True):
      rows = [r for r in _pick(summary, model=model, labels="random_labels",
                               crop=False)
              if (r["weight_decay"] > 0) == with_wd]
      if rows:
        out.append(_fit_claim(model, rows[0], with_wd))
    true_rows = _pick(summary, model=model, labels="true_labels")
    plain = [r for r in true_rows if not r["crop"] and not r["weight_decay"]]
    crop = [r for r in true_rows if r["crop"] and not r["weight_decay"]]
    if plain and crop:
      diff, se = stats.difference(crop[0]["test_acc_per_seed"],
                                  plain[0]["test_acc_per_seed"])
      out.append(reporting.Claim(
          f"{model}: the crop improves real-label test accuracy (with minus "
          f"without crop, no weight decay) by more than {SIGMAS:g} SE",
          stats.exceeds(diff, se),
          f"{plain[0]['test_acc']:.2%} without, {crop[0]['test_acc']:.2%} "
          f"with crop: {diff * 100:+.2f} +- {se * 100:.2f} points",
          value=diff, uncertainty=se, threshold=SIGMAS * se))
    regularized = [r for r in true_rows if r["crop"] or r["weight_decay"]]
    if plain and regularized:
      best = max(regularized, key=lambda r: r["test_acc"])
      diff, se = stats.difference(best["test_acc_per_seed"],
                                  plain[0]["test_acc_per_seed"])
      setting = ", ".join(
          (["crop"] if best["crop"] else []) +
          ([f"weight decay {best['weight_decay']:g}"]
           if best["weight_decay"] else []))
      out.append(reporting.Claim(
          f"{model}: regularizers are not necessary: the best regularized "
          "real-label row beats the unregularized one by at most the paper's "
          f"largest gain ({PAPER_MAX_GAIN * 100:.2f} points): difference + "
          f"{SIGMAS:g} SE <= {PAPER_MAX_GAIN:.4f}",
          np.isfinite(se) and diff + SIGMAS * se <= PAPER_MAX_GAIN,
          f"{plain[0]['test_acc']:.2%} without regularizers, "
          f"{best['test_acc']:.2%} with {setting}: {diff * 100:+.2f} +- "
          f"{se * 100:.2f} points",
          value=diff, uncertainty=se, threshold=PAPER_MAX_GAIN))
  return out


def plot_table1(path: str, models, results) -> str:
  """Per model: real-label test accuracy and random-label training accuracy
  vs SGD steps, one line per row (mean over seeds)."""
  panels = []
  for model in models:
    for condition, metric, label in (
        ("true_labels", "test_acc", "true labels: test accuracy"),
        ("random_labels", "train_acc", "random labels: train accuracy")):
      lines = {}
      for name, r in results.items():
        if name.startswith(f"{model}/") and name.endswith(condition):
          h = r.fit.history
          setting = name.split("/")[1].replace("_", " ")
          lines[setting] = (h["step"][:, 0], h[metric].mean(1))
      panels.append({"title": f"{model}, {label}", "xlabel": "SGD steps",
                     "ylabel": metric.replace("_", " "), "lines": lines})
  return reporting.plot_panels(path, panels)
