"""Randomization studies: one S-seed training run per condition, resumable.

``run`` loads the dataset once, applies each condition's randomization (shared
by all seeds, or drawn per seed), trains all seeds of a condition as one vmapped
run with checkpoints under ``<workdir>/<condition>/``, saves the corruption
masks there, and returns per-condition results that ``summarize`` and
``per_seed_runs`` turn into the ``summary`` and ``runs`` of results.json.
"""

from __future__ import annotations

import dataclasses
import os
import zlib

import jax
import numpy as np

from memjax import checkpointing
from memjax import data as data_lib
from memjax import randomization as rand_lib
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


@dataclasses.dataclass
class ConditionResult:
  fit: training.FitResult
  train_mask: np.ndarray  # (n,) or (S, n) when randomized per seed
  test_mask: np.ndarray
  num_classes: int


def condition_key(seed: int, name: str) -> jax.Array:
  """A key per (randomization seed, condition name), stable across runs."""
  return jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode()))


def randomize(dataset: data_lib.Dataset, config: StudyConfig, name: str):
  """(TrainData, train_mask, test_mask) of one condition."""
  randomization = config.randomization(name)
  key = condition_key(config.randomization_seed, name)
  if not config.per_seed_randomization:
    r = rand_lib.apply(dataset, randomization, key)
    d = r.dataset
    return (training.TrainData(d.x_train, d.y_train, d.x_test, d.y_test,
                               d.num_classes), r.train_mask, r.test_mask)
  seeds = config.train.seed + np.arange(config.train.num_seeds)
  draws = [rand_lib.apply(dataset, randomization, jax.random.fold_in(key, s))
           for s in seeds]
  inputs_vary = randomization.kind not in ("true_labels", "corrupt_labels")
  stack = lambda field: np.stack([getattr(r.dataset, field) for r in draws])
  x_train, x_test = ((stack("x_train"), stack("x_test")) if inputs_vary else
                     (dataset.x_train, dataset.x_test))
  labels_vary = randomization.kind == "corrupt_labels"
  y_train, y_test = ((stack("y_train"), stack("y_test")) if labels_vary else
                     (dataset.y_train, dataset.y_test))
  td = training.TrainData(x_train, y_train, x_test, y_test, dataset.num_classes,
                          per_seed_inputs=inputs_vary, per_seed_labels=labels_vary)
  return (td, np.stack([r.train_mask for r in draws]),
          np.stack([r.test_mask for r in draws]))


def run(config: StudyConfig, workdir: str | None = None, *,
        progress: bool = True, checkpoint_seconds: float = 30.0,
        record_examples: bool = False,
        dataset: data_lib.Dataset | None = None,
        mesh=None) -> dict[str, ConditionResult]:
  """Trains every condition; ``dataset``, if given, is ``config.data`` loaded
  already (studies that share one dataset over many runs load it once);
  ``mesh`` spreads the seeds over devices (``training.fit``)."""
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
      checkpointing.save_npz(os.path.join(cond_dir, "masks.npz"),
                             train_mask=train_mask, test_mask=test_mask)
      ckpt = os.path.join(cond_dir, "checkpoints")
    fit = training.fit(config.train, train_data, checkpoint_dir=ckpt,
                       checkpoint_seconds=checkpoint_seconds,
                       progress=name if progress else None,
                       record_examples=record_examples, mesh=mesh)
    results[name] = ConditionResult(fit, train_mask, test_mask,
                                    dataset.num_classes)
  return results


def median_steps_to_fit(fit_step: np.ndarray) -> int | None:
  """Median over seeds of the first fitted step; None unless every seed fit."""
  return int(np.median(fit_step)) if (fit_step >= 0).all() else None


def summarize(results: dict[str, ConditionResult],
              reference: str | None = None) -> dict[str, dict]:
  """Final means over seeds, steps to fit, and slowdown relative to ``reference``."""
  summary = {}
  for name, r in results.items():
    h = r.fit.history
    summary[name] = {
        "train_acc": float(h["train_acc"][-1].mean()),
        "train_acc_min": float(h["train_acc"][-1].min()),
        "test_acc": float(h["test_acc"][-1].mean()),
        "best_test_acc": float(np.nanmax(h["test_acc"], axis=0).mean()),
        "final_train_loss": float(h["train_loss"][-1].mean()),
        "steps_to_fit": median_steps_to_fit(r.fit.fit_step),
        "seeds_fit": int((r.fit.fit_step >= 0).sum()),
        "seeds": int(r.fit.fit_step.shape[0]),
        "epochs": r.fit.epochs,
        "corrupted_fraction": float(np.mean(r.train_mask)),
    }
  ref = summary.get(reference, {}).get("steps_to_fit") if reference else None
  for s in summary.values():
    s["slowdown"] = (s["steps_to_fit"] / ref
                     if ref and s["steps_to_fit"] is not None else None)
  return summary


def per_seed_runs(results: dict[str, ConditionResult], seed: int) -> dict:
  """Per condition, per seed: the per-epoch curves and the final numbers."""
  runs = {}
  for name, r in results.items():
    h = r.fit.history
    runs[name] = [{"seed": seed + i,
                   "curves": {k: h[k][:, i] for k in training.HISTORY_KEYS},
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
  per condition (key ``condition_key(randomization_seed, name)``) and shared by
  its seeds; test sets are the conditions' own (clean unless the condition
  transforms every input). Conditions that share a model shape then train in
  one ``training.fit`` with ``num_seeds = len(names) * seeds_per_condition``.
  """
  draws = [rand_lib.apply(dataset, rand_lib.from_name(name, label_noise),
                          condition_key(randomization_seed, name))
           for name in names]
  lanes = lambda field: np.repeat(
      np.stack([getattr(r.dataset, field) for r in draws]),
      seeds_per_condition, axis=0)
  data = training.TrainData(lanes("x_train"), lanes("y_train"), lanes("x_test"),
                            lanes("y_test"), dataset.num_classes,
                            per_seed_inputs=True, per_seed_labels=True)
  return data, np.stack([r.train_mask for r in draws])
