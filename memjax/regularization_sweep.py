"""Arpit et al.'s regularizer sweep (Sec. 5, Fig. 10): which regularizer
hinders the memorization of random labels without hurting generalization.

The study behind ``experiments/regularization.py --mode=sweep``, whose
docstring states the claims and their criteria.

A ``SweepConfig`` holds the settings (``Setting``: a regularizer family at a
strength; ``sweep_grid`` validates a grid, ``grid_settings`` adds the
unregularized baseline) and the held-out split's sizes. ``validation_split``
holds a stratified validation set out of the training split and draws the
training examples from the rest; ``lanes_data`` stacks the seeds of both label
conditions as lanes of one vmapped run (lanes [0, S): real labels, lanes
[S, 2S): random labels, drawn once with ``keys.condition_key(0,
"random_labels")``), all validated on the real labels of the held-out
examples. ``train_setting`` trains one setting, checkpointed under
``<workdir>/<setting>/``, so a re-run resumes setting by setting;
``summarize`` keeps every per-seed number a claim needs, and ``sweep_claims``
decides the claims as a pure function of that summary.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from memjax import checkpointing
from memjax import complexity
from memjax import data as data_lib
from memjax import engine
from memjax import keys
from memjax import randomization as rand_lib
from memjax import regularization_study as study
from memjax import regularizers
from memjax import reporting
from memjax import stats
from memjax import training

BASELINE = "none"
DROPOUT_ADVERSARIAL = "dropout_adversarial"
FAMILIES = regularizers.REGULARIZERS + (DROPOUT_ADVERSARIAL,)
DROPOUT_FAMILIES = ("dropout", DROPOUT_ADVERSARIAL)
DEFAULT_FAMILIES = ("weight_decay", "dropout", "input_dropout", "input_noise",
                    "hidden_noise", DROPOUT_ADVERSARIAL)
DEFAULT_STRENGTHS = {
    "weight_decay": (0.001, 0.003, 0.01, 0.03, 0.1),
    "dropout": (0.25, 0.5, 0.75, 0.9),
    "input_dropout": (0.25, 0.5, 0.75, 0.9),
    "input_noise": (0.1, 0.3, 1.0),
    "hidden_noise": (0.1, 0.2, 0.3),
    DROPOUT_ADVERSARIAL: (0.5,),
    "shift": (1, 2, 3),
    "color_jitter": (0.25, 0.5, 1.0),
}
# Arpit et al.'s Fig. 10 ranges (--paper_grid).
_TENTHS = tuple(round(0.1 * i, 1) for i in range(1, 10))
PAPER_STRENGTHS = {
    "weight_decay": (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0),
    "dropout": _TENTHS,
    "input_dropout": _TENTHS,
    "input_noise": (0.1, 0.2, 0.5, 1.0, 2.0, 5.0),
    "hidden_noise": (0.05, 0.1, 0.15, 0.2, 0.25, 0.3),
    DROPOUT_ADVERSARIAL: _TENTHS,
    "shift": (1, 2, 3, 4),
    "color_jitter": (0.1, 0.25, 0.5, 0.75, 1.0),
}
# The claims' comparisons: "exceeds" is more than this many SEs; a setting
# keeps generalization within this many SEs below the baseline.
SIGMAS = stats.SIGMAS
KEEPS_GENERALIZATION_SES = 1.0


@dataclasses.dataclass(frozen=True)
class Setting:
  """One point of the sweep: a regularizer family at a strength."""

  family: str
  strength: float

  @property
  def name(self) -> str:
    return BASELINE if self.family == BASELINE else (
        f"{self.family}={self.strength:g}")

  @property
  def directory(self) -> str:
    return self.name.replace("=", "_")


def check_strength(family: str, strength: float) -> None:
  """Refuses a strength that is invalid for ``family`` or that would repeat
  the baseline."""
  regularizers.validate("dropout" if family == DROPOUT_ADVERSARIAL else family,
                        strength)
  if strength == 0 and family != DROPOUT_ADVERSARIAL:
    raise ValueError(f"{family}=0 is the unregularized baseline, which is "
                     "always trained; give strengths > 0.")


def sweep_grid(families, strengths=None, paper_grid: bool = False,
               smoke: bool = False) -> dict[str, tuple[float, ...]]:
  """The validated strengths of every family of list flag --regularizers:
  list flag --strengths for its one family, else the default grid (or the
  paper's); ``smoke``: each family's strongest only, to run in seconds."""
  families = study.distinct("regularizers", families)
  unknown = [f for f in families if f not in FAMILIES]
  if unknown:
    raise ValueError(f"--regularizers: unknown {unknown}; valid: "
                     f"{', '.join(FAMILIES)}.")
  if strengths is not None:
    strengths = study.distinct("strengths", strengths)
    if len(families) != 1:
      raise ValueError(f"--strengths needs exactly one --regularizers, got "
                       f"{list(families)}.")
    if paper_grid:
      raise ValueError("--strengths replaces the grid; drop --paper_grid.")
    try:
      grid = {families[0]: tuple(sorted({float(s) for s in strengths}))}
      for strength in grid[families[0]]:
        check_strength(families[0], strength)
    except ValueError as e:
      raise ValueError(f"--strengths={','.join(strengths)}: {e}") from None
    return grid
  table = PAPER_STRENGTHS if paper_grid else DEFAULT_STRENGTHS
  return {f: table[f][-1:] if smoke else table[f] for f in families}


def grid_settings(grid: dict[str, tuple[float, ...]]) -> tuple[Setting, ...]:
  """The baseline, then every (family, strength) of ``grid``."""
  return (Setting(BASELINE, 0.0),) + tuple(
      Setting(family, float(s))
      for family, strengths in grid.items() for s in strengths)


def setting_config(base: training.TrainConfig, setting: Setting,
                   lass: complexity.LassConfig | None) -> training.TrainConfig:
  """The TrainConfig of one setting (``lass`` for dropout_adversarial)."""
  if setting.family == BASELINE:
    return base
  if setting.family == DROPOUT_ADVERSARIAL:
    config = regularizers.with_strength(base, "dropout", setting.strength)
    return config if lass is None else study.with_adversarial(config, lass)
  return regularizers.with_strength(base, setting.family, setting.strength)


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """Everything a sweep computes from, apart from the loaded data. ``data``
  gives the training split (cut into training and validation examples) and
  the test set (only for ``real_test_acc``)."""

  data: data_lib.DataConfig
  train: training.TrainConfig  # every setting's base: 2 x seeds lanes
  seeds: int  # per label condition
  train_size: int
  validation_size: int
  settings: tuple[Setting, ...]
  lass_iterations: int = 10  # for dropout_adversarial

  def __post_init__(self):
    if self.train.num_seeds != len(study.CONDITIONS) * self.seeds:
      raise ValueError(f"The base TrainConfig needs {len(study.CONDITIONS)} x "
                       f"{self.seeds} lanes, got {self.train.num_seeds}.")
    for setting in self.settings:
      config = setting_config(self.train, setting, None)
      regularizers.check_model(config.model, config.dropout,
                               config.regularization)

  @property
  def adversarial(self) -> bool:
    return any(s.family == DROPOUT_ADVERSARIAL for s in self.settings)

  def train_configs(self, x_train) -> list[training.TrainConfig]:
    """Every setting's TrainConfig; a LASS box fitted to ``x_train`` for
    adversarial training. Refuses a shift as large as the image side."""
    for setting in self.settings:
      try:
        regularizers.check_input_shape(
            setting_config(self.train, setting, None).regularization,
            x_train.shape[1:])
      except ValueError as e:
        raise ValueError(f"--strengths: {e}") from None
    lass = (study.lass_config(x_train, self.lass_iterations,
                              self.train.batch_size)
            if self.adversarial else None)
    return [setting_config(self.train, s, lass) for s in self.settings]


def validation_split(labels: np.ndarray, train_size: int,
                     validation_size: int, seed: int):
  """Sorted (training, validation) indices into ``labels``: a stratified
  validation set, and a stratified training set from the other examples, so
  that no validation example is ever trained on."""
  if train_size + validation_size > len(labels):
    raise ValueError(
        f"--train_size={train_size} plus --validation_size={validation_size} "
        f"exceeds the {len(labels)} examples of the training split.")
  validation = data_lib.stratified_subset(labels, validation_size, seed)
  rest = np.setdiff1d(np.arange(len(labels)), validation)
  train = rest[data_lib.stratified_subset(labels[rest], train_size, seed + 1)]
  return train, validation


def lanes_data(dataset: data_lib.Dataset, train_index, validation_index,
               seeds: int):
  """(TrainData with 2 x seeds label lanes, random labels): lanes [0, seeds)
  train on the real labels, lanes [seeds, 2 seeds) on random labels; every lane
  is validated on the real labels of the held-out validation examples."""
  train = dataset.replace(x_train=dataset.x_train[train_index],
                          y_train=dataset.y_train[train_index])
  random = rand_lib.apply(train, rand_lib.from_name("random_labels"),
                          keys.condition_key(0, "random_labels"))
  random_labels = random.dataset.y_train
  y_val = dataset.y_train[validation_index]
  data = training.TrainData(
      train.x_train,
      np.stack([train.y_train] * seeds + [random_labels] * seeds),
      dataset.x_train[validation_index], np.stack([y_val] * (2 * seeds)),
      dataset.num_classes, per_seed_labels=True)
  return data, random_labels


def save_split(workdir: str, data_config: data_lib.DataConfig, train_index,
               validation_index, random_labels) -> None:
  """``<workdir>/split.npz``: the examples of each part and the random
  labels."""
  checkpointing.save_npz(
      os.path.join(workdir, "split.npz"),
      checkpointing.fingerprint(data_config, train_index, validation_index,
                                random_labels),
      train_index=train_index, validation_index=validation_index,
      random_labels=random_labels)


def train_setting(setting: Setting, config: training.TrainConfig,
                  data: training.TrainData, workdir: str, *,
                  checkpoint_seconds: float, progress: bool,
                  mesh=None) -> engine.FitResult:
  """One setting's vmapped run, checkpointed under its own folder."""
  folder = os.path.join(workdir, setting.directory)
  checkpointing.register(folder)
  os.makedirs(folder, exist_ok=True)
  return engine.fit(config, data,
                      checkpoint_dir=os.path.join(folder, "checkpoints"),
                      checkpoint_seconds=checkpoint_seconds,
                      progress=setting.name if progress else None, mesh=mesh)


def setting_summary(setting: Setting, fit: engine.FitResult,
                    test_correct: np.ndarray, seeds: int) -> dict:
  """Per-seed and mean (+- SE) accuracies of one setting's lanes."""
  h = fit.history
  real, rand = slice(0, seeds), slice(seeds, 2 * seeds)
  entry = study.per_seed_entry
  return {"regularizer": setting.family, "strength": setting.strength,
          **entry("random_train_acc", h["train_acc"][-1, rand]),
          **entry("real_best_val_acc",
                  np.nanmax(h["test_acc"][:, real], axis=0)),
          **entry("real_final_val_acc", h["test_acc"][-1, real]),
          **entry("real_train_acc", h["train_acc"][-1, real]),
          **entry("real_test_acc", test_correct[real].mean(axis=1)),
          "seeds": seeds, "epochs": fit.epochs}


def summarize(config: SweepConfig, train_configs, fits,
              dataset: data_lib.Dataset) -> dict:
  """Per setting name: ``setting_summary``, its test accuracy measured on
  ``dataset``'s test set with the final parameters."""
  summary = {}
  for setting, train, fit in zip(config.settings, train_configs, fits):
    trainer = training.cached_trainer(train, dataset.input_shape,
                                      dataset.num_classes)
    _, test_correct = trainer.evaluate(fit.state, dataset.x_test,
                                       dataset.y_test)
    summary[setting.name] = setting_summary(
        setting, fit, np.asarray(test_correct), config.seeds)
  return summary


def sweep_runs(settings, fits, seeds: int, first_seed: int) -> dict:
  """Per setting and condition, per seed: the per-epoch curves."""
  runs = {}
  for setting, fit in zip(settings, fits):
    h = fit.history
    runs[setting.name] = {
        condition: [{"seed": first_seed + lane,
                     "curves": {k: h[k][:, lane] for k in engine.HISTORY_KEYS}}
                    for lane in range(c * seeds, (c + 1) * seeds)]
        for c, condition in enumerate(study.CONDITIONS)}
  return runs


def keeps_generalization(point: dict, baseline: dict):
  """(keeps, difference, SE): whether the setting's best real-label
  validation accuracy is at least the baseline's minus one SE of their
  difference (a setting with a single seed never qualifies)."""
  diff, se = stats.difference(point["real_best_val_acc_per_seed"],
                              baseline["real_best_val_acc_per_seed"])
  keeps = bool(np.isfinite(se) and diff >= -KEEPS_GENERALIZATION_SES * se)
  return keeps, diff, se


def _lowest_memorization(points):
  return min(points, key=lambda p: p["random_train_acc"], default=None)


def _describe(point: dict) -> str:
  name = (BASELINE if point["regularizer"] == BASELINE else
          f"{point['regularizer']}={point['strength']:g}")
  return (f"{name}: random-label train acc {point['random_train_acc']:.2%} "
          f"+- {point['random_train_acc_se']:.2%}")


def _memorization_gap(higher: dict, lower: dict):
  """(difference, SE) of random-label training accuracy, higher - lower."""
  return stats.difference(higher["random_train_acc_per_seed"],
                          lower["random_train_acc_per_seed"])


def sweep_claims(summary: dict) -> list[reporting.Claim]:
  """Sweep claims 1 and 2 of the experiment's docstring (and the exploratory
  adversarial reading) from the summary; ``summary[BASELINE]`` is the
  unregularized setting."""
  baseline = summary[BASELINE]
  points = [p for name, p in summary.items() if name != BASELINE]
  keep = [p for p in points if keeps_generalization(p, baseline)[0]]
  kept = ", ".join(_describe(p) for p in keep) or "none"
  out = []

  dropout = _lowest_memorization(
      [p for p in keep if p["regularizer"] in DROPOUT_FAMILIES])
  other = _lowest_memorization(
      [p for p in keep if p["regularizer"] not in DROPOUT_FAMILIES]
      + [baseline])
  diff, se = (_memorization_gap(other, dropout) if dropout
              else (math.nan, math.nan))
  out.append(reporting.Claim(
      "among settings whose best real-label validation accuracy is within "
      f"{KEEPS_GENERALIZATION_SES:g} SE of the baseline's (or above), dropout "
      "(alone or with adversarial training) has the lowest random-label "
      "training accuracy, below every other regularizer's and the "
      f"baseline's by more than {SIGMAS:g} SE (value: the lowest other minus "
      "the lowest dropout)",
      dropout is not None and stats.exceeds(diff, se),
      (f"lowest dropout: {_describe(dropout)}" if dropout else
       "no dropout setting keeps generalization")
      + f"; lowest other: {_describe(other)}; settings that keep "
      f"generalization: {kept}",
      value=diff, uncertainty=se,
      threshold=SIGMAS * se if np.isfinite(se) else math.nan))

  dropout_alone = _lowest_memorization(
      [p for p in keep if p["regularizer"] == "dropout"])
  diff, se = (_memorization_gap(baseline, dropout_alone) if dropout_alone
              else (math.nan, math.nan))
  out.append(reporting.Claim(
      "dropout hinders memorization without hurting generalization: at some "
      "rate that keeps the best real-label validation accuracy within "
      f"{KEEPS_GENERALIZATION_SES:g} SE of the baseline's, random-label "
      f"training accuracy is below the baseline's by more than {SIGMAS:g} SE",
      dropout_alone is not None and stats.exceeds(diff, se),
      (f"{_describe(dropout_alone)}" if dropout_alone else
       "no dropout rate keeps generalization") + f"; {_describe(baseline)}",
      value=diff, uncertainty=se,
      threshold=SIGMAS * se if np.isfinite(se) else math.nan))

  rates = {p["strength"]: p for p in points if p["regularizer"] == "dropout"}
  pairs = [(rates[p["strength"]], p) for p in points
           if p["regularizer"] == DROPOUT_ADVERSARIAL
           and p["strength"] in rates]
  for alone, adversarial in pairs:
    diff, se = _memorization_gap(alone, adversarial)
    out.append(reporting.Claim(
        f"exploratory: adversarial training added to dropout "
        f"{alone['strength']:g} lowers random-label training accuracy "
        "(dropout alone minus dropout + adversarial)",
        stats.exceeds(diff, se),
        f"{_describe(alone)}; {_describe(adversarial)}; best real-label "
        f"validation accuracy {alone['real_best_val_acc']:.2%} vs "
        f"{adversarial['real_best_val_acc']:.2%}",
        value=diff, uncertainty=se, threshold=SIGMAS * se, exploratory=True))
  return out


def sweep_table(summary: dict) -> list[dict]:
  """The printed rows: every setting with its validation difference from the
  baseline and whether it keeps generalization."""
  baseline = summary[BASELINE]
  rows = []
  for name, point in summary.items():
    keeps, diff, se = keeps_generalization(point, baseline)
    rows.append({"setting": name, **point, "val_vs_baseline": diff,
                 "val_vs_baseline_se": se, "keeps_generalization": keeps})
  return rows


def plot_sweep(path: str, summary: dict) -> str:
  """Arpit et al.'s Fig. 10: one point per setting, +-1 SE bars, a line per
  regularizer through its strengths, the baseline as a star."""
  plt = reporting.pyplot()
  fig, ax = plt.subplots(figsize=(7.5, 5.2))
  by_family = {}
  for point in summary.values():
    by_family.setdefault(point["regularizer"], []).append(point)
  for family, points in by_family.items():
    points = sorted(points, key=lambda p: p["strength"])
    x = [p["random_train_acc"] for p in points]
    y = [p["real_best_val_acc"] for p in points]
    ax.errorbar(x, y, xerr=[p["random_train_acc_se"] for p in points],
                yerr=[p["real_best_val_acc_se"] for p in points],
                marker="*" if family == BASELINE else "o",
                markersize=12 if family == BASELINE else 5, capsize=3,
                label="no regularizer" if family == BASELINE else family)
    if family != BASELINE:
      for p in points:
        ax.annotate(f"{p['strength']:g}",
                    (p["random_train_acc"], p["real_best_val_acc"]),
                    textcoords="offset points", xytext=(3, 3), fontsize=7)
  ax.axhline(summary[BASELINE]["real_best_val_acc"], color="grey", ls="--",
             lw=0.8)
  ax.set_xlabel("random labels: final training accuracy")
  ax.set_ylabel("real labels: best validation accuracy")
  ax.set_title("Arpit et al. Fig. 10 (+-1 SE over seeds)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return reporting.save_figure(fig, path)
