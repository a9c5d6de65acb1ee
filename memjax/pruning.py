"""Prune and retrain: train on the part of the training set that a
per-example score keeps (Paul et al. 2021, "Deep learning on a data diet",
Fig. 1; Toneva et al. 2019, Fig. 5), against random subsets of the same size.

Scores (``score_training_set``). ``score_seeds`` models per condition train on
the whole training set, all conditions and scoring seeds as one vmapped
``engine.fit`` (each lane sees its condition's labels). Per example and seed:
EL2N, ||softmax(f(x)) - onehot(y)||_2, and GraNd, ||d loss / d params||_2,
on the state kept after ``score_epoch`` epochs (Paul et al. score early in
training), and forgetting events over the whole run, a never-learned example
ranked above every learned one: ``forgetting_presentation`` counts correct ->
incorrect transitions between an example's presentations in training
minibatches, as Toneva et al. define them (``memjax.presentations``);
``forgetting_clean_eval`` between the clean evaluations of the training set
after every epoch.
Each score is then averaged over the scoring seeds, as Paul et al. average
over runs. High means hard for all four. The labels scored are the ones the
model trains on (the corrupted ones under label noise).

Subsets (``subset_index``). A fraction f keeps m = round(f n) of the n
examples. With the examples ranked hardest first (ties in dataset order):

==========  ===================================================================
``hardest`` the m hardest (Paul et al.'s "keep max scores")
``easiest`` the m easiest ("keep min scores")
``offset``  skip the hardest round(offset n), keep the next m (Paul et al.'s
            offset subsets for noisy labels; their code counts the offset
            from the easiest end: theirs = n - m - ours); where offset + f > 1
            the window slides back to end at the easiest example
``random``  m examples drawn uniformly without replacement, a different subset
            for every seed (key: ``random_subset_key``)
==========  ===================================================================

A subset's indices are sorted, so every per-example array stays in dataset
order. Score-based subsets are the same for every seed of a group; seeds vary
the initialization and batch order (and, for ``random``, the subset).

Budget. Every run trains for the steps of ``train.max_epochs`` epochs on the
whole training set, rounded up to whole epochs of its subset (Paul et al.
train every subset for the full run's number of steps), so a smaller subset
sees each example more often. There is no early stop.

Runs (``train_fraction``). All runs of one fraction (conditions x groups x
seeds, ``lanes``) are one vmapped ``engine.fit`` with ``train_index`` giving
each lane its own subset of the same arrays and per-lane labels; lane l is the
run of seed ``train.seed + l``, the same run as a one-seed fit of that seed on
its subset alone. The whole training set (fraction 1, group ``full``) is one
more such fit. Each fit checkpoints and resumes in its own folder; the scores
are saved with ``checkpointing.save_npz`` and loaded on a re-run.
"""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import numpy as np

from memjax import checkpointing
from memjax import data as data_lib
from memjax import engine
from memjax import keys
from memjax import memorization
from memjax import per_example
from memjax import presentations
from memjax import stats
from memjax import studies
from memjax import training
from memjax import validation

SCORES = ("el2n", "grand", "forgetting_presentation",
          "forgetting_clean_eval")
STRATEGIES = ("random", "hardest", "easiest", "offset")
SCORED = ("hardest", "easiest", "offset")  # the strategies that rank by a score
FULL = "full"  # the whole training set: every strategy at fraction 1
LABEL_KINDS = ("true_labels", "corrupt_labels")


@dataclasses.dataclass(frozen=True)
class PruningConfig:
  """Everything that determines a prune-and-retrain run's results.

  ``study`` holds the data, the training of every run (``train.max_epochs``:
  the step budget in epochs of the whole training set; ``train.num_seeds``:
  seeds per subset group; ``train.seed``: the first run's seed) and the
  label conditions (true labels or label noise)."""

  study: studies.StudyConfig
  fractions: tuple[float, ...] = (0.25, 0.5, 0.75)
  strategies: tuple[str, ...] = STRATEGIES
  prune_by: tuple[str, ...] = ("el2n",)
  offset: float = 0.2
  score_seeds: int = 4
  score_seed: int = 1000  # first seed of the scoring runs
  score_epoch: int = 3  # EL2N and GraNd after this many epochs
  microbatch: int = 64  # examples per GraNd microbatch

  def __post_init__(self):
    train = self.study.train
    for name in self.study.conditions:
      if self.study.randomization(name).kind not in LABEL_KINDS:
        raise ValueError(f"--conditions: {name!r} is not a label condition; "
                         "valid: true_labels, random_labels, corrupt_<p>.")
    listed = lambda values, valid: (
        bool(values) and len(set(values)) == len(values)
        and all(v in valid for v in values))
    score_lanes = len(self.study.conditions) * self.score_seeds
    validation.check_fields(self, {
        "fractions": (listed(self.fractions, self.fractions) and all(
            validation.finite(f) and 0 < f < 1 for f in self.fractions),
                      "distinct fractions in (0, 1) (the whole training set "
                      "is always trained too)"),
        "strategies": (listed(self.strategies, STRATEGIES),
                       f"distinct names among {', '.join(STRATEGIES)}"),
        "prune_by": (listed(self.prune_by, SCORES),
                     f"distinct names among {', '.join(SCORES)}"),
        "offset": (validation.finite(self.offset) and 0 <= self.offset < 1,
                   "in [0, 1)"),
        "score_seeds": (self.score_seeds >= 1, ">= 1"),
        "score_seed": (0 <= self.score_seed
                       and self.score_seed + score_lanes <= training.MAX_SEED,
                       f"in [0, {training.MAX_SEED} - conditions x "
                       "score_seeds]"),
        "score_epoch": (1 <= self.score_epoch <= train.max_epochs,
                        f"in [1, --max_epochs={train.max_epochs}]"),
        "microbatch": (self.microbatch >= 1, ">= 1")})
    runs = range(train.seed, train.seed + self.lanes_per_fit)
    scoring = range(self.score_seed, self.score_seed + score_lanes)
    if runs.start < scoring.stop and scoring.start < runs.stop:
      raise ValueError(
          f"--score_seed={self.score_seed} is invalid: the scoring runs' "
          f"seeds {scoring.start}..{scoring.stop - 1} overlap the subset "
          f"runs' seeds {runs.start}..{runs.stop - 1}; pick a --score_seed "
          f">= {runs.stop} or < {runs.start - score_lanes + 1}.")
    if train.seed + self.lanes_per_fit > training.MAX_SEED:
      raise ValueError(f"--seed={train.seed} is invalid: the subset runs "
                       f"need seeds up to {train.seed + self.lanes_per_fit}"
                       f" <= {training.MAX_SEED}.")

  @property
  def conditions(self) -> tuple[str, ...]:
    return self.study.conditions

  @property
  def groups(self) -> list["Group"]:
    """The subset groups of every fraction, in lane order."""
    out = [Group("random")] if "random" in self.strategies else []
    return out + [Group(strategy, score) for score in self.prune_by
                  for strategy in SCORED if strategy in self.strategies]

  @property
  def lanes_per_fit(self) -> int:
    return len(self.conditions) * len(self.groups) * self.study.train.num_seeds


@dataclasses.dataclass(frozen=True)
class Group:
  """One kind of subset: a strategy and the score it ranks by (None for
  ``random`` and ``full``)."""

  strategy: str
  score: str | None = None

  @property
  def name(self) -> str:
    return self.strategy if self.score is None else (
        f"{self.strategy}_{self.score}")


@dataclasses.dataclass(frozen=True)
class Lane:
  """One run of a fit: its condition, group and seed within the group."""

  condition: str
  group: Group
  seed_index: int


def lanes(config: PruningConfig, fraction: float) -> list[Lane]:
  """The runs of ``fraction``'s fit in lane order (``full`` at fraction 1)."""
  groups = [Group(FULL)] if fraction == 1.0 else config.groups
  return [Lane(c, g, j) for c in config.conditions for g in groups
          for j in range(config.study.train.num_seeds)]


def check_sizes(config: PruningConfig, num_train: int) -> None:
  """ValueError, before any work, unless every fraction keeps between 1 and
  n - 1 of the ``num_train`` examples."""
  for fraction in config.fractions:
    memorization.subset_size(fraction, num_train, "fractions")


def ranking(scores) -> np.ndarray:
  """Example indices, hardest (highest score) first; ties in dataset order."""
  return np.argsort(-np.asarray(scores, np.float64), kind="stable")


def scored_subset(scores, strategy: str, size: int,
                  offset: float = 0.0) -> np.ndarray:
  """Sorted indices of the ``size`` examples that ``strategy`` (``hardest``,
  ``easiest`` or ``offset``) keeps by ``scores`` (module docstring)."""
  order = ranking(scores)
  n = len(order)
  if strategy == "hardest":
    kept = order[:size]
  elif strategy == "easiest":
    kept = order[n - size:]
  elif strategy == "offset":
    start = min(int(round(offset * n)), n - size)
    kept = order[start:start + size]
  else:
    raise ValueError(f"Unknown scored strategy {strategy!r}; valid: "
                     f"{', '.join(SCORED)}.")
  return np.sort(kept).astype(np.int32)


def random_subset_key(seed: int, size: int):
  """The key of seed ``seed``'s random subset of ``size`` examples."""
  return keys.derive(keys.seed_key(seed), "random_subset", size)


def random_subset(seed: int, num_train: int, size: int) -> np.ndarray:
  """Sorted indices of ``size`` of ``num_train`` examples drawn uniformly
  without replacement, a pure function of (seed, size)."""
  permutation = np.asarray(
      jax.random.permutation(random_subset_key(seed, size), num_train))
  return np.sort(permutation[:size]).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class Labels:
  """Each condition's training labels and which of them the noise changed
  (uniform noise may redraw the true class: selected, not changed)."""

  train: dict  # condition -> (n,) int32 labels the runs train on
  changed: dict  # condition -> (n,) bool: differs from the clean label
  selected: dict  # condition -> (n,) bool: selected for corruption


def condition_labels(dataset: data_lib.Dataset,
                     study: studies.StudyConfig) -> Labels:
  """The training labels of every condition (``studies.randomize``: the key
  of condition ``name`` is ``keys.condition_key(randomization_seed, name)``);
  test labels stay clean."""
  train, changed, selected = {}, {}, {}
  for name in study.conditions:
    data, mask, _ = studies.randomize(dataset, study, name)
    train[name] = np.asarray(data.y_train, np.int32)
    changed[name] = train[name] != dataset.y_train
    selected[name] = np.asarray(mask, bool)
  return Labels(train, changed, selected)


def _lane_data(dataset: data_lib.Dataset, labels: Labels, conditions,
               train_index=None) -> training.TrainData:
  """The shared inputs with lane l training on ``conditions[l]``'s labels
  (and the clean test labels), optionally on ``train_index[l]`` only."""
  y_test = np.ascontiguousarray(np.broadcast_to(
      dataset.y_test, (len(conditions), len(dataset.y_test))))
  return training.TrainData(
      dataset.x_train, np.stack([labels.train[c] for c in conditions]),
      dataset.x_test, y_test, dataset.num_classes, per_seed_labels=True,
      train_index=train_index)


def score_config(config: PruningConfig) -> training.TrainConfig:
  """The scoring fit: conditions x score_seeds lanes on the whole training
  set for the full budget, from seed ``score_seed``."""
  return dataclasses.replace(
      config.study.train, seed=config.score_seed, stop_when_fit=False,
      num_seeds=len(config.conditions) * config.score_seeds)


# What the scoring fit's checkpoints depend on besides its config and data:
# its epoch function records every presentation.
SCORING_PARTS = ("presentation_epoch",)


def score_training_set(config: PruningConfig, dataset: data_lib.Dataset,
                       labels: Labels, directory: str,
                       progress: str | None = None,
                       checkpoint_seconds: float = 30.0) -> dict:
  """Per-seed scores {name: (conditions, score_seeds, n)} (module
  docstring); saved to ``directory/scores.npz`` and loaded from there when a
  previous run of the same config saved them."""
  train = score_config(config)
  data = _lane_data(dataset, labels, [c for c in config.conditions
                                      for _ in range(config.score_seeds)])
  num_train = dataset.x_train.shape[0]
  stamp = checkpointing.fingerprint(
      engine.run_fingerprint(
          train, data, training.default_train_index(data, train.num_seeds)),
      *SCORING_PARTS, config.score_epoch, config.microbatch)
  path = os.path.join(directory, "scores.npz")
  if os.path.exists(path):
    return checkpointing.load_npz(path, stamp)
  checkpointing.register(directory)
  checkpoint_dir = os.path.join(directory, "checkpoints")
  recorder = presentations.PresentationRecorder(train.max_epochs,
                                                train.num_seeds, num_train)
  fit = engine.fit(train, data, hooks=[recorder],
                     epoch_fn=presentations.presentation_epoch,
                     fingerprint_parts=SCORING_PARTS,
                     checkpoint_dir=checkpoint_dir,
                     checkpoint_seconds=checkpoint_seconds, progress=progress,
                     record_examples=True, keep_epochs=(config.score_epoch,))
  state = engine.load_kept_state(train, data, checkpoint_dir,
                                   config.score_epoch,
                                   fingerprint_parts=SCORING_PARTS)
  trainer = training.cached_trainer(train, data.input_shape, data.num_classes)
  logits = per_example.over_seeds(per_example.logit_scores, trainer, state,
                                  data.x_train, data.y_train,
                                  per_seed_labels=True)
  grand = per_example.over_seeds(per_example.grand, trainer, state,
                                 data.x_train, data.y_train,
                                 per_seed_labels=True,
                                 microbatch=config.microbatch)
  scores = {
      "el2n": np.asarray(logits["el2n"]), "grand": np.asarray(grand),
      "forgetting_presentation": presentations.forgetting(
          recorder.history(fit.epochs)).scores(),
      "forgetting_clean_eval": per_example.forgetting(
          fit.history["train_correct"]).scores()}
  shape = (len(config.conditions), config.score_seeds, num_train)
  scores = {k: v.astype(np.float32).reshape(shape) for k, v in scores.items()}
  checkpointing.save_npz(path, stamp, **scores)
  return scores


def subset_index(config: PruningConfig, fraction: float, run_lanes,
                 scores: dict, num_train: int) -> np.ndarray:
  """(lanes, m) sorted training indices of every lane of ``fraction``;
  ``scores``: {condition: {score name: (n,) seed-mean score}}."""
  if fraction == 1.0:
    return np.tile(np.arange(num_train, dtype=np.int32), (len(run_lanes), 1))
  size = memorization.subset_size(fraction, num_train, "fractions")
  rows = []
  for lane in run_lanes:
    group = lane.group
    if group.strategy == "random":
      rows.append(random_subset(config.study.train.seed + lane.seed_index,
                                num_train, size))
    else:
      rows.append(scored_subset(scores[lane.condition][group.score],
                                group.strategy, size, config.offset))
  return np.stack(rows)


def budget_steps(train: training.TrainConfig, num_train: int) -> int:
  """SGD steps of ``train.max_epochs`` epochs on all ``num_train`` examples:
  every run's budget."""
  return train.max_epochs * training.steps_per_epoch(train, num_train)


def epochs_for(train: training.TrainConfig, size: int, num_train: int) -> int:
  """Epochs of a ``size``-example subset that take at least the budget."""
  return math.ceil(budget_steps(train, num_train)
                   / training.steps_per_epoch(train, size))


def fraction_config(config: PruningConfig, run_lanes, size: int,
                    num_train: int) -> training.TrainConfig:
  """The fit of one fraction: a lane per run, the full step budget."""
  train = config.study.train
  return dataclasses.replace(train, num_seeds=len(run_lanes),
                             max_epochs=epochs_for(train, size, num_train),
                             stop_when_fit=False)


def train_fraction(config: PruningConfig, dataset: data_lib.Dataset,
                   labels: Labels, run_lanes, index: np.ndarray, *,
                   checkpoint_dir: str | None = None,
                   progress: str | None = None,
                   checkpoint_seconds: float = 30.0) -> engine.FitResult:
  """Every run of one fraction as one vmapped fit: lane l trains on
  ``index[l]`` with ``run_lanes[l]``'s labels, from seed train.seed + l."""
  train = fraction_config(config, run_lanes, index.shape[1],
                          dataset.x_train.shape[0])
  data = _lane_data(dataset, labels, [l.condition for l in run_lanes], index)
  return engine.fit(train, data, checkpoint_dir=checkpoint_dir,
                      checkpoint_seconds=checkpoint_seconds, progress=progress)


def lane_records(config: PruningConfig, fraction: float, run_lanes,
                 index: np.ndarray, fit: engine.FitResult,
                 labels: Labels) -> list[dict]:
  """One row per run: what it trained on and its final clean accuracies
  (training accuracy over its own subset)."""
  rows = []
  for l, lane in enumerate(run_lanes):
    rows.append({
        "condition": lane.condition, "group": lane.group.name,
        "strategy": lane.group.strategy, "score": lane.group.score,
        "fraction": fraction, "kept": int(index.shape[1]),
        "seed": config.study.train.seed + l, "seed_index": lane.seed_index,
        "epochs": fit.epochs, "steps": fit.epochs * fit.steps_per_epoch,
        "train_acc": float(fit.history["train_acc"][-1, l]),
        "test_acc": float(fit.history["test_acc"][-1, l]),
        "changed_kept": float(labels.changed[lane.condition][index[l]].mean()),
    })
  return rows


@dataclasses.dataclass
class PruningResult:
  """What ``run`` computed, everything per example in dataset order."""

  labels: Labels
  scores: dict  # name -> (conditions, score_seeds, n) per-seed scores
  mean_scores: dict  # condition -> name -> (n,) mean over scoring seeds
  subsets: dict  # fraction -> (lanes, m) sorted indices
  records: list  # lane_records of every fit, fraction 1 first


def fractions_trained(config: PruningConfig) -> list[float]:
  """The whole training set first, then ``config.fractions``."""
  return [1.0] + sorted(config.fractions)


def run(config: PruningConfig, dataset: data_lib.Dataset, workdir: str, *,
        bar=lambda text: None, checkpoint_seconds: float = 30.0
        ) -> PruningResult:
  """Scores the training set, then trains every fraction's runs; fits and
  scores checkpoint under ``workdir`` (``scoring/``, ``keep_<fraction>/``).
  ``bar(text)`` gives a progress bar's description or None."""
  num_train = dataset.x_train.shape[0]
  check_sizes(config, num_train)
  labels = condition_labels(dataset, config.study)
  scores = score_training_set(config, dataset, labels,
                              os.path.join(workdir, "scoring"),
                              bar("scoring"), checkpoint_seconds)
  mean_scores = {c: {name: values[i].mean(0) for name, values in scores.items()}
                 for i, c in enumerate(config.conditions)}
  subsets, records = {}, []
  for fraction in fractions_trained(config):
    run_lanes = lanes(config, fraction)
    index = subset_index(config, fraction, run_lanes, mean_scores, num_train)
    folder = os.path.join(workdir, f"keep_{fraction:g}")
    checkpointing.register(folder)
    fit = train_fraction(config, dataset, labels, run_lanes, index,
                         checkpoint_dir=os.path.join(folder, "checkpoints"),
                         progress=bar(f"keep {fraction:g}"),
                         checkpoint_seconds=checkpoint_seconds)
    subsets[fraction] = index
    records += lane_records(config, fraction, run_lanes, index, fit, labels)
  return PruningResult(labels, scores, mean_scores, subsets, records)


def summarize(records) -> dict:
  """Per (condition, group, fraction), keyed ``condition/group/fraction``:
  test accuracy mean, SE over seeds and per seed; training accuracy and the
  share of kept labels that the noise changed, as means over seeds."""
  grouped = {}
  for r in records:
    key = f"{r['condition']}/{r['group']}/{r['fraction']:g}"
    grouped.setdefault(key, []).append(r)
  summary = {}
  for key, rows in grouped.items():
    first = rows[0]
    test = [r["test_acc"] for r in rows]
    mean, se = stats.mean_se(test)
    summary[key] = {
        **{k: first[k] for k in ("condition", "group", "strategy", "score",
                                 "fraction", "kept", "epochs", "steps")},
        "seeds": len(rows), "test_acc": mean, "test_acc_se": se,
        "test_acc_per_seed": test,
        "train_acc": float(np.mean([r["train_acc"] for r in rows])),
        "changed_kept": float(np.mean([r["changed_kept"] for r in rows]))}
  return summary


def score_diagnostics(mean_scores: dict, labels: Labels) -> dict:
  """Per condition: Spearman correlations of the seed-mean scores and, under
  label noise, each score's ROC AUC for the changed labels (no interval: a
  description of the ranking the subsets come from, not a claim)."""
  out = {}
  for condition, scores in mean_scores.items():
    names = list(scores)
    entry = {f"spearman_{a}_{b}": stats.spearman(scores[a], scores[b])
             for i, a in enumerate(names) for b in names[i + 1:]}
    if labels.changed[condition].any():
      entry.update({f"auc_changed_{n}": stats.auc_value(
          scores[n], labels.changed[condition]) for n in names})
    out[condition] = entry
  return out
