"""Randomization studies: one S-seed training run per condition, resumable.

``run`` loads the dataset once, applies each condition's randomization (shared
by all seeds, or drawn per seed), trains all seeds of a condition as one vmapped
run with checkpoints under ``<workdir>/<condition>/``, saves the corruption
masks there, and returns per-condition results that ``summarize`` and
``per_seed_runs`` turn into the ``summary`` and ``runs`` of results.json.

The summary keeps every per-seed number a claim needs (test accuracy and steps
to fit per seed, seed lanes aligned across conditions: lane i of every condition
starts from the same initialization and batch order), so that claims are pure
functions of it. ``fit_claim`` and ``chance_claim`` are the claims every
randomization experiment shares.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from memjax import checkpointing
from memjax import data as data_lib
from memjax import engine
from memjax import keys
from memjax import randomization as rand_lib
from memjax import reporting
from memjax import stats
from memjax import training


@dataclasses.dataclass(frozen=True)
class StudyConfig:
  data: data_lib.DataConfig
  train: training.TrainConfig
  conditions: tuple[str, ...] = ("true_labels", "random_labels")
  label_noise: str = "uniform"
  corrupt_test: bool = False
  per_seed_randomization: bool = False  # else one randomization for all seeds
  randomization_seed: int = 0

  def __post_init__(self):
    if not self.conditions:
      raise ValueError("At least one condition is needed.")
    for name in self.conditions:
      self.randomization(name)

  def randomization(self, name: str) -> rand_lib.Randomization:
    return rand_lib.from_name(name, self.label_noise, self.corrupt_test)

  def check_data(self, dataset: data_lib.Dataset) -> None:
    """Refuses label noise the loaded data has no flips for (called by
    ``cli.claim_workdir`` before anything is written)."""
    if any(self.randomization(n).kind == "corrupt_labels"
           for n in self.conditions):
      rand_lib.flip_targets(self.label_noise, dataset.num_classes)

  def transition(self, name: str, num_classes: int) -> np.ndarray:
    """(K, K) P(training label j | true class i) of condition ``name``; the
    identity where labels are untouched."""
    r = self.randomization(name)
    if r.kind != "corrupt_labels":
      return np.eye(num_classes)
    return rand_lib.transition_matrix(self.label_noise, r.fraction,
                                      num_classes)


def canonical_condition(name: str) -> str:
  """``name`` with a fraction written positionally (``corrupt_1e-05`` ->
  ``corrupt_0.00001``), the spelling ``randomization.from_name`` parses; other
  names unchanged."""
  prefix, _, fraction = name.partition("_")
  if prefix in ("corrupt", "randY", "randX") and fraction:
    try:
      return corruption_name(float(fraction), prefix)
    except ValueError:
      return name
  return name


def corruption_name(p: float, prefix: str = "corrupt") -> str:
  """The condition name of fraction ``p``: ``corrupt_0.2``; every float in
  [0, 1] gets a name that parses back to exactly ``p``."""
  return f"{prefix}_{np.format_float_positional(p, trim='0')}"


def parse_conditions(flag: str, names) -> tuple[str, ...]:
  """The distinct conditions of list flag --``flag``, in order; ValueError
  naming the flag when it is empty or names an unknown condition."""
  names = tuple(dict.fromkeys(canonical_condition(n.strip()) for n in names))
  if not names:
    raise ValueError(f"--{flag} is empty; name at least one condition (valid: "
                     f"{', '.join(rand_lib.NAMES)}).")
  for name in names:
    try:
      rand_lib.from_name(name)
    except ValueError as e:
      raise ValueError(f"--{flag}: {e}") from None
  return names


@dataclasses.dataclass
class ConditionResult:
  fit: engine.FitResult
  train_mask: np.ndarray  # (n,) or (S, n) when randomized per seed
  test_mask: np.ndarray
  num_classes: int


def randomize(dataset: data_lib.Dataset, config: StudyConfig, name: str):
  """(TrainData, train_mask, test_mask) of one condition."""
  randomization = config.randomization(name)
  key = keys.condition_key(config.randomization_seed, name)
  if not config.per_seed_randomization:
    r = rand_lib.apply(dataset, randomization, key)
    d = r.dataset
    return (training.TrainData(d.x_train, d.y_train, d.x_test, d.y_test,
                               d.num_classes), r.train_mask, r.test_mask)
  seeds = config.train.seed + np.arange(config.train.num_seeds)
  draws = [rand_lib.apply(dataset, randomization, keys.derive(key, s))
           for s in seeds]
  inputs_vary = randomization.kind not in ("true_labels", "corrupt_labels")
  stack = lambda field: np.stack([getattr(r.dataset, field) for r in draws])
  x_train, x_test = ((stack("x_train"), stack("x_test")) if inputs_vary else
                     (dataset.x_train, dataset.x_test))
  labels_vary = randomization.kind == "corrupt_labels"
  y_train, y_test = ((stack("y_train"), stack("y_test")) if labels_vary else
                     (dataset.y_train, dataset.y_test))
  td = training.TrainData(x_train, y_train, x_test, y_test, dataset.num_classes,
                          per_seed_inputs=inputs_vary,
                          per_seed_labels=labels_vary)
  return (td, np.stack([r.train_mask for r in draws]),
          np.stack([r.test_mask for r in draws]))


def run(config: StudyConfig, workdir: str | None = None, *,
        progress: bool = True, checkpoint_seconds: float = 30.0,
        record_examples: bool = False,
        dataset: data_lib.Dataset | None = None,
        mesh=None) -> dict[str, ConditionResult]:
  """Trains every condition; ``dataset``, if given, is ``config.data`` loaded
  already (studies that share one dataset over many runs load it once);
  ``mesh`` spreads the seeds over devices (``engine.fit``)."""
  if dataset is None:
    dataset = data_lib.load(config.data)
  results = {}
  for name in config.conditions:
    train_data, train_mask, test_mask = randomize(dataset, config, name)
    ckpt = None
    if workdir is not None:
      cond_dir = os.path.join(workdir, name)
      checkpointing.register(cond_dir)
      os.makedirs(cond_dir, exist_ok=True)
      checkpointing.save_npz(
          os.path.join(cond_dir, "masks.npz"),
          checkpointing.fingerprint(config.data, config.randomization(name),
                                    config.randomization_seed, train_mask,
                                    test_mask),
          train_mask=train_mask, test_mask=test_mask,
          transition=config.transition(name, dataset.num_classes))
      ckpt = os.path.join(cond_dir, "checkpoints")
    fit = engine.fit(config.train, train_data, checkpoint_dir=ckpt,
                       checkpoint_seconds=checkpoint_seconds,
                       progress=name if progress else None,
                       record_examples=record_examples, mesh=mesh)
    results[name] = ConditionResult(fit, train_mask, test_mask,
                                    dataset.num_classes)
  return results


def median_steps_to_fit(fit_step: np.ndarray) -> int | None:
  """Median over seeds of the first fitted step; None unless every seed fit."""
  return int(np.median(fit_step)) if (fit_step >= 0).all() else None


def steps_per_seed(fit_step: np.ndarray) -> list[int | None]:
  """Each seed's first fitted step; None for a seed that never fit."""
  return [int(t) if t >= 0 else None for t in fit_step]


def paired_ratios(steps, reference_steps) -> list[float | None]:
  """Seed i's steps / seed i's ``reference_steps`` (the same initialization and
  batch order); None where either seed did not fit."""
  return [a / b if a is not None and b is not None else None
          for a, b in zip(steps, reference_steps)]


def mean_se_if_complete(values) -> tuple[float | None, float | None]:
  """(mean, standard error over seeds) of per-seed ``values``; (None, None)
  when a seed has no value (did not fit), since a mean of the seeds that did
  would hide the slowest ones."""
  if not values or any(v is None for v in values):
    return None, None
  return stats.mean_se(values)


def summarize(results: dict[str, ConditionResult],
              reference: str | None = None) -> dict[str, dict]:
  """Per condition: final accuracies (means over seeds, with per-seed values and
  standard errors), steps to fit per seed, and the slowdown relative to
  ``reference``: the mean over seeds of each seed's steps to fit / that seed's
  steps on ``reference`` (None unless every seed of both fit)."""
  summary = {}
  for name, r in results.items():
    h = r.fit.history
    steps = steps_per_seed(r.fit.fit_step)
    steps_mean, steps_se = mean_se_if_complete(steps)
    test_acc = h["test_acc"][-1]
    summary[name] = {
        "train_acc": float(h["train_acc"][-1].mean()),
        "train_acc_min": float(h["train_acc"][-1].min()),
        "train_examples": int(r.train_mask.shape[-1]),
        "test_acc": float(test_acc.mean()),
        "test_acc_se": stats.mean_se(test_acc)[1],
        "test_acc_per_seed": [float(a) for a in test_acc],
        "test_examples": int(r.test_mask.shape[-1]),
        "best_test_acc": float(np.nanmax(h["test_acc"], axis=0).mean()),
        "final_train_loss": float(h["train_loss"][-1].mean()),
        "steps_to_fit": median_steps_to_fit(r.fit.fit_step),
        "steps_to_fit_mean": steps_mean,
        "steps_to_fit_se": steps_se,
        "steps_to_fit_per_seed": steps,
        "seeds_fit": int((r.fit.fit_step >= 0).sum()),
        "seeds": int(r.fit.fit_step.shape[0]),
        "epochs": r.fit.epochs,
        "corrupted_fraction": float(np.mean(r.train_mask)),
    }
  for s in summary.values():
    ratios = (paired_ratios(s["steps_to_fit_per_seed"],
                            summary[reference]["steps_to_fit_per_seed"])
              if reference in summary else [])
    s["slowdown_per_seed"] = ratios
    s["slowdown"], s["slowdown_se"] = mean_se_if_complete(ratios)
  return summary


def unfit_seeds(summary_entry: dict) -> list[int]:
  """Seed lanes (0-based) of a summary entry that never fit."""
  return [i for i, t in enumerate(summary_entry["steps_to_fit_per_seed"])
          if t is None]


FIT_THRESHOLD = 0.99


def fit_claim(summary: dict[str, dict], labels: dict[str, str] | None = None,
              subject: str = "every condition") -> reporting.Claim:
  """Zhang et al.: SGD fits every condition. The worst seed of the worst
  condition must reach ``FIT_THRESHOLD`` training accuracy (their Table 1
  counts 99.34% as fit); its uncertainty is the Jeffreys standard error of
  that seed's accuracy over the training examples. ``labels`` name the
  conditions in the text (default: their keys); ``subject`` starts it."""
  labels = labels or {n: n for n in summary}
  worst = min(summary, key=lambda n: summary[n]["train_acc_min"])
  acc = summary[worst]["train_acc_min"]
  n = summary[worst]["train_examples"]
  se = float(stats.jeffreys_se(round(acc * n), n))
  return reporting.Claim(
      f"{subject} is fit: training accuracy >= {FIT_THRESHOLD:.0%} on every "
      "seed",
      acc >= FIT_THRESHOLD,
      ", ".join(f"{labels[k]}: {s['train_acc_min']:.2%} (worst seed), "
                f"{s['seeds_fit']}/{s['seeds']} seeds reached 100%"
                for k, s in summary.items()),
      value=acc, uncertainty=se, threshold=FIT_THRESHOLD)


def chance_claim(label: str, entry: dict, num_classes: int, *,
                 error: bool = False) -> reporting.Claim:
  """Test accuracy (or error) at chance, 1/K (or 1 - 1/K): chance lies inside
  the 95% Jeffreys interval of the seed-mean test accuracy.

  Trials are the test examples, not examples x seeds: the seeds share the
  test set and the randomization, so their predictions are correlated, and
  the variance of the seed mean is at most that of one seed. Counting
  examples x seeds would treat correlated seeds as independent draws and
  reject chance too easily."""
  n = entry["test_examples"]
  acc = entry["test_acc"]
  low, high = stats.jeffreys_interval(round(acc * n), n)
  se = float(stats.jeffreys_se(round(acc * n), n))
  chance = 1.0 / num_classes
  value, interval, target = acc, (float(low), float(high)), chance
  if error:
    value, interval, target = 1 - acc, (1 - float(high), 1 - float(low)), (
        1 - chance)
  what = "error" if error else "accuracy"
  return reporting.Claim(
      f"{label}: test {what} at chance ({target:.0%}): chance lies inside "
      f"the 95% Jeffreys interval of the seed-mean test {what} "
      f"({n} test examples)",
      bool(interval[0] <= target <= interval[1]),
      f"{value:.2%} over {entry['seeds']} seeds, interval "
      f"[{interval[0]:.2%}, {interval[1]:.2%}]",
      value=value, uncertainty=se, threshold=target, interval=interval)


def per_seed_runs(results: dict[str, ConditionResult], seed: int) -> dict:
  """Per condition, per seed: the per-epoch curves and the final numbers."""
  runs = {}
  for name, r in results.items():
    h = r.fit.history
    runs[name] = [{"seed": seed + i,
                   "curves": {k: h[k][:, i] for k in engine.HISTORY_KEYS},
                   "train_acc": h["train_acc"][-1, i],
                   "test_acc": h["test_acc"][-1, i],
                   "steps_to_fit": (int(r.fit.fit_step[i])
                                    if r.fit.fit_step[i] >= 0 else None)}
                  for i in range(r.fit.fit_step.shape[0])]
  return runs


def condition_lanes(dataset: data_lib.Dataset, names, seeds_per_condition: int,
                    *, randomization_seed: int = 0,
                    label_noise: str = "uniform"):
  """Every (condition, seed) pair as one lane of a single vmapped run.

  Returns (TrainData with per-lane inputs and labels, train masks (C, n)). Lane
  ``c * seeds_per_condition + s`` trains condition ``names[c]``, randomized once
  per condition (key ``keys.condition_key(randomization_seed, name)``) and
  shared by its seeds; test sets are the conditions' own (clean unless the
  condition transforms every input). Conditions that share a model shape then
  train in one ``engine.fit`` with
  ``num_seeds = len(names) * seeds_per_condition``.
  """
  draws = [rand_lib.apply(dataset, rand_lib.from_name(name, label_noise),
                          keys.condition_key(randomization_seed, name))
           for name in names]
  lanes = lambda field: np.repeat(
      np.stack([getattr(r.dataset, field) for r in draws]),
      seeds_per_condition, axis=0)
  data = training.TrainData(lanes("x_train"), lanes("y_train"), lanes("x_test"),
                            lanes("y_test"), dataset.num_classes,
                            per_seed_inputs=True, per_seed_labels=True)
  return data, np.stack([r.train_mask for r in draws])
