"""A score atlas: every per-example score of memjax on the same examples.

Each score is measured on several independent replicates (seeds of one
vmapped run, or subset runs) and reduced to one value per training example, in
the dataset's order. To compare scores with each other they are *oriented*:
``keep`` scores are the raw score times ``+1`` or ``-1`` so that a HIGH keep
score always means the example looks easy, typical and cleanly labelled, and a
low one that it looks hard, atypical or mislabelled.

Scores (raw value per example -> keep; source):

* ``el2n``: ||softmax(f(x)) - onehot(y)||_2 early in training, mean over
  seeds -> -raw (Paul et al. 2021).
* ``grand``: ||d loss / d params||_2 early in training, mean over seeds ->
  -raw (Paul et al. 2021).
* ``forgetting_presentation``: forgetting events per presentation in the
  training minibatches -> -raw (Toneva et al. 2019; ``memjax.presentations``).
* ``forgetting_clean_eval``: forgetting events between clean evaluations after
  each epoch -> -raw (memjax's variant; ``per_example.forgetting``).
* ``memorization``: P(correct | in the subset) - P(correct | held out) over
  subset runs -> -raw (Feldman & Zhang 2020).
* ``c_score``: held-out accuracy over subset runs, mean over subset ratios ->
  +raw (Jiang et al. 2021).
* ``loss_sensitivity``: mean ||dL/dx||_1 over the SGD steps whose minibatch
  held the example (``sensitivity.track``, direct form) -> -raw (Arpit et al.
  2017, Sec. 3.2).
* ``difficulty``: misclassification rate over seeds after one epoch -> -raw
  (Arpit et al. 2017, Sec. 3.1).
* ``critical``: share of seeds for which LASS finds a point of another
  predicted class within the box at the end of training -> -raw (Arpit et
  al. 2017, Sec. 4).

(Forgetting scores rank never-learned examples above every learned one, as
Toneva et al. do: ``per_example.Forgetting.scores``.)

Replicates. A ``SeedMean`` score is the mean over replicates of a per-replicate
(R, n) array; a ``SubsetEstimate`` (memorization, C-score) is estimated from
the subset masks and correctness of R subset runs (``memjax.memorization``).
Either gives the score of any subset of its replicates, which is what the
split-half reliability needs.

Reliability (``split_half``): the score computed from the even-numbered and
from the odd-numbered replicates (two disjoint halves), their Spearman rank
correlation r, and the Spearman-Brown estimate 2r / (1 + r) of the
correlation between two independent full-size measurements. Noise that is
independent across replicates lowers it; a score that is a property of the
example, measured with many replicates, approaches 1.

Rank correlations (``rank_correlation``) and AUCs use the examples where both
values are finite (a subset-run estimate is NaN for an example no run held
out). ``corrupted_auc`` is the ROC AUC with which a LOW keep score flags the
corrupted labels (``stats.auc``, percentile bootstrap over examples).

Measuring. ``seed_scores`` trains ONE S-seed run (``engine.fit`` with the
presentation epoch, clean per-epoch correctness and a kept early state) and
returns every per-seed score it yields: EL2N / GraNd at the kept epoch, both
forgetting counts, the one-epoch difficulty and the end-of-training LASS
flag. ``sensitivity.track`` with the same TrainConfig replays the same
training (same seeds, same steps) while recording loss sensitivity, and
``memorization.estimate_runs`` gives the subset runs. ``summarize`` turns the
replicates into one row per score; ``comparison`` gives any statistic of the
keep scores with its bootstrap interval and its value on each half;
``plot`` draws the correlation heatmap and the AUC bars.
"""

from __future__ import annotations

import dataclasses

import os

import jax
import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from memjax import checkpointing
from memjax import complexity
from memjax import data as data_lib
from memjax import engine
from memjax import keys
from memjax import memorization
from memjax import per_example
from memjax import presentations
from memjax import reporting
from memjax import stats
from memjax import training

CHANCE_AUC = 0.5


@dataclasses.dataclass(frozen=True)
class ScoreInfo:
  """What a raw score measures and which way it is turned into a keep score."""

  keep_sign: int  # keep = keep_sign * raw
  raw: str  # what the raw value is
  source: str


SCORES = {
    "el2n": ScoreInfo(-1, "EL2N early in training (mean over seeds)",
                      "Paul et al. 2021"),
    "grand": ScoreInfo(-1, "GraNd early in training (mean over seeds)",
                       "Paul et al. 2021"),
    "forgetting_presentation": ScoreInfo(
        -1, "forgetting events per presentation in training minibatches "
        "(never learned ranked highest; mean over seeds)",
        "Toneva et al. 2019"),
    "forgetting_clean_eval": ScoreInfo(
        -1, "forgetting events between clean evaluations after each epoch "
        "(never learned ranked highest; mean over seeds)",
        "memjax's clean-evaluation variant of Toneva et al. 2019"),
    "memorization": ScoreInfo(
        -1, "P(correct | in the subset) - P(correct | held out) over subset "
        "runs", "Feldman & Zhang 2020"),
    "c_score": ScoreInfo(+1, "held-out accuracy over subset runs, mean over "
                         "subset ratios", "Jiang et al. 2021"),
    "loss_sensitivity": ScoreInfo(
        -1, "mean l1 norm of dL/dx over the SGD steps that saw the example "
        "(mean over seeds)", "Arpit et al. 2017, Sec. 3.2"),
    "difficulty": ScoreInfo(-1, "misclassification rate over seeds after one "
                            "epoch", "Arpit et al. 2017, Sec. 3.1"),
    "critical": ScoreInfo(-1, "share of seeds for which the example is a "
                          "critical sample (LASS) at the end of training",
                          "Arpit et al. 2017, Sec. 4"),
}


def check_name(name: str) -> None:
  if name not in SCORES:
    raise ValueError(f"Unknown score {name!r}; valid: {', '.join(SCORES)}.")


def keep_score(name: str, raw) -> np.ndarray:
  """The raw score ``name`` oriented so that high means keep (easy, typical,
  clean)."""
  check_name(name)
  return SCORES[name].keep_sign * np.asarray(raw, np.float64)


@dataclasses.dataclass(frozen=True)
class SeedMean:
  """A score that is the mean over replicates of ``values`` (R, n)."""

  values: np.ndarray

  @property
  def count(self) -> int:
    return int(np.shape(self.values)[0])

  def score(self, replicates=None) -> np.ndarray:
    """(n,) mean over ``replicates`` (indices; None: all)."""
    values = np.asarray(self.values, np.float64)
    return (values if replicates is None else values[replicates]).mean(0)


@dataclasses.dataclass(frozen=True)
class SubsetEstimate:
  """Memorization or C-score from R subset runs (``memjax.memorization``):
  ``masks`` (R, n) which examples each run trained on, ``correct`` (R, n) its
  clean correctness on every training example, ``ratios`` (R,) its subset
  ratio. Memorization uses the runs at ``memorization_ratio`` only."""

  kind: str  # "memorization" or "c_score"
  masks: np.ndarray
  correct: np.ndarray
  ratios: np.ndarray
  memorization_ratio: float

  def __post_init__(self):
    if self.kind not in ("memorization", "c_score"):
      raise ValueError(f"kind must be 'memorization' or 'c_score', got "
                       f"{self.kind!r}.")

  @property
  def count(self) -> int:
    return int(np.shape(self.masks)[0])

  def estimate(self, replicates=None) -> memorization.Estimate:
    rows = np.arange(self.count) if replicates is None else np.asarray(
        replicates)
    masks, correct = np.asarray(self.masks)[rows], np.asarray(
        self.correct)[rows]
    ratios = np.asarray(self.ratios)[rows]
    if self.kind == "c_score":
      return memorization.c_score(ratios, masks, correct)
    first = ratios == np.float32(self.memorization_ratio)
    return memorization.memorization(masks[first], correct[first])

  def score(self, replicates=None) -> np.ndarray:
    return self.estimate(replicates).value


def halves(count: int) -> tuple[np.ndarray, np.ndarray]:
  """The even- and odd-numbered replicate indices of ``count`` replicates."""
  if count < 2:
    raise ValueError(f"Split halves need at least 2 replicates, got {count}.")
  index = np.arange(count)
  return index[0::2], index[1::2]


def spearman_brown(r, factor: float = 2.0):
  """The reliability of a measurement ``factor`` times as long as one whose
  reliability is ``r``: factor r / (1 + (factor - 1) r)."""
  r = np.asarray(r, np.float64)
  return factor * r / (1.0 + (factor - 1.0) * r)


def rank_correlation(a, b) -> float:
  """Spearman rank correlation over the examples where both are finite; NaN
  with fewer than 3 such examples or a constant one."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  both = np.isfinite(a) & np.isfinite(b)
  if both.sum() < 3:
    return float("nan")
  ra, rb = scipy_stats.rankdata(a[both]), scipy_stats.rankdata(b[both])
  if ra.std() == 0 or rb.std() == 0:
    return float("nan")
  return float(np.corrcoef(ra, rb)[0, 1])


def correlation_matrix(scores: dict) -> np.ndarray:
  """(k, k) rank correlations of the k scores of ``scores`` (name -> (n,)),
  in the dict's order."""
  names = list(scores)
  matrix = np.eye(len(names))
  for i, a in enumerate(names):
    for j in range(i + 1, len(names)):
      matrix[i, j] = matrix[j, i] = rank_correlation(scores[a],
                                                     scores[names[j]])
    if not np.isfinite(rank_correlation(scores[a], scores[a])):
      matrix[i, i] = np.nan  # a constant score correlates with nothing
  return matrix


def split_half(replicates, resamples: int = 1000) -> dict:
  """Split-half reliability of a ``SeedMean`` or ``SubsetEstimate``: the two
  halves' scores, their rank correlation, its Spearman-Brown correction and a
  percentile bootstrap interval of the corrected value over examples."""
  even, odd = halves(replicates.count)
  first, second = replicates.score(even), replicates.score(odd)
  half = rank_correlation(first, second)
  low, high = stats.bootstrap_interval(
      lambda a, b: float(spearman_brown(rank_correlation(a, b))),
      first, second, resamples=resamples)
  return {"halves": (first, second), "half_correlation": half,
          "reliability": float(spearman_brown(half)),
          "reliability_low": low, "reliability_high": high,
          "replicates_per_half": (len(even), len(odd))}


def corrupted_auc(keep, corrupted, resamples: int = 1000) -> dict:
  """ROC AUC (with its bootstrap interval) of a low keep score for flagging
  the ``corrupted`` examples, over the examples whose score is finite."""
  keep = np.asarray(keep, np.float64)
  finite = np.isfinite(keep)
  corrupted = np.asarray(corrupted, bool)[finite]
  if corrupted.all() or not corrupted.any():
    return {"auc": float("nan"), "low": float("nan"), "high": float("nan"),
            "examples": int(finite.sum())}
  result = stats.auc(-keep[finite], corrupted, resamples=resamples)
  return {**result, "examples": int(finite.sum())}


# --- Measuring ----------------------------------------------------------------

def lass_box(dataset: data_lib.Dataset, standardize: bool) -> dict:
  """Per training example, LASS's ``scale``, ``low`` and ``high``: its
  preprocessing scale and the valid range of the real inputs ([0, 1] for
  pixels / 255, the range of the real inputs when standardized)."""
  if standardize:
    low = float(min(dataset.x_train.min(), dataset.x_test.min()))
    high = float(max(dataset.x_train.max(), dataset.x_test.max()))
  else:
    low, high = 0.0, 1.0
  n = len(dataset.y_train)
  return {"scale": np.asarray(dataset.train_scale, np.float32),
          "low": np.full(n, low, np.float32),
          "high": np.full(n, high, np.float32)}


def lass_keys(train: training.TrainConfig) -> jax.Array:
  """Seed lane i's LASS key: a function of its own seed only."""
  return jax.vmap(lambda key: keys.derive(key, "score_atlas LASS"))(
      keys.seed_keys(train.seed, train.num_seeds))


def seed_scores(train: training.TrainConfig, data: training.TrainData, *,
                score_epoch: int, microbatch: int,
                lass: complexity.LassConfig, box: dict, checkpoint_dir: str,
                checkpoint_seconds: float = 30.0,
                progress: str | None = None) -> dict:
  """Trains ``train.num_seeds`` seeds for ``train.max_epochs`` epochs (one
  checkpointed ``engine.fit``) and returns per-seed (S, n) raw scores:
  ``el2n`` and ``grand`` of the state kept after ``score_epoch`` epochs,
  ``forgetting_presentation``, ``forgetting_clean_eval``, ``difficulty``
  (misclassified after epoch 1) and ``critical`` (LASS with ``lass`` and the
  per-example ``box`` of ``lass_box`` on the final model); and the run's
  (epochs, S) ``train_acc`` and ``test_acc``."""
  recorder = presentations.PresentationRecorder(
      train.max_epochs, train.num_seeds, data.num_train)
  fit = engine.fit(train, data, hooks=[recorder],
                     epoch_fn=presentations.presentation_epoch,
                     checkpoint_dir=checkpoint_dir,
                     checkpoint_seconds=checkpoint_seconds, progress=progress,
                     record_examples=True, keep_epochs=(score_epoch,))
  trainer = training.cached_trainer(train, data.input_shape, data.num_classes)
  early = engine.load_kept_state(train, data, checkpoint_dir, score_epoch)
  x, y = data.x_train, data.y_train
  paul = per_example.state_scores(trainer, early, x, y, microbatch)
  correct = fit.history["train_correct"]  # (epochs, S, n)
  critical = complexity.seed_lass(trainer, fit.state, jax.numpy.asarray(x),
                                  lass, lass_keys(train), **box).critical
  return {
      "el2n": paul["el2n"], "grand": paul["grand"],
      "forgetting_presentation": presentations.forgetting(
          recorder.history(fit.epochs)).scores().astype(np.float32),
      "forgetting_clean_eval": per_example.forgetting(
          correct).scores().astype(np.float32),
      "difficulty": 1.0 - correct[0].astype(np.float32),
      "critical": np.asarray(critical, np.float32),
      "train_acc": fit.history["train_acc"],
      "test_acc": fit.history["test_acc"]}


# --- Summarizing --------------------------------------------------------------

def mode_share(values) -> float:
  """The share of the finite values equal to their most common value: near 1
  when almost every example is tied (a flag that rarely fires), so that rank
  statistics rest on the few others."""
  values = np.asarray(values, np.float64)
  values = values[np.isfinite(values)]
  if not values.size:
    return float("nan")
  return float(np.unique(values, return_counts=True)[1].max() / values.size)


def summarize(replicates: dict, corrupted, resamples: int = 1000
              ) -> tuple[dict, dict, tuple[dict, dict]]:
  """(summary, keep scores, keep scores of each half) of ``replicates`` (score
  name -> ``SeedMean`` / ``SubsetEstimate``). The summary has one row per
  score: its corrupted-label AUC with interval and on each half, its
  split-half reliability with interval, mean keep score of clean and corrupted
  examples, ``mode_share`` (ties) and ``rho_<other>``, its rank correlation
  with every score."""
  corrupted = np.asarray(corrupted, bool)
  keep, halves, summary = {}, ({}, {}), {}
  for name, reps in replicates.items():
    keep[name] = keep_score(name, reps.score())
    split = split_half(reps, resamples)
    for half, values in zip(halves, split["halves"]):
      half[name] = keep_score(name, values)
    auc = corrupted_auc(keep[name], corrupted, resamples)
    row = {"auc": auc["auc"], "auc_low": auc["low"], "auc_high": auc["high"],
           "auc_halves": [corrupted_auc(half[name], corrupted, 0)["auc"]
                          for half in halves],
           "reliability": split["reliability"],
           "reliability_low": split["reliability_low"],
           "reliability_high": split["reliability_high"],
           "half_correlation": split["half_correlation"],
           "replicates": reps.count,
           "keep_clean_mean": float(np.nanmean(keep[name][~corrupted])),
           "keep_corrupted_mean": float(np.nanmean(keep[name][corrupted])),
           "mode_share": mode_share(keep[name]),
           "orientation": SCORES[name].keep_sign, "raw": SCORES[name].raw}
    if isinstance(reps, SubsetEstimate):
      row["mean_stderr"] = float(np.nanmean(reps.estimate().stderr))
    summary[name] = row
  matrix = correlation_matrix(keep)
  for i, name in enumerate(keep):
    summary[name].update({f"rho_{other}": matrix[i, j]
                          for j, other in enumerate(keep)})
  return summary, keep, halves


def comparison(statistic, names, keep: dict, halves, resamples: int = 1000
               ) -> dict:
  """``statistic(*keep scores of names)`` on every replicate, its percentile
  bootstrap interval over examples, and its value on each half."""
  low, high = stats.bootstrap_interval(
      statistic, *(keep[n] for n in names), resamples=resamples)
  return {"value": float(statistic(*(keep[n] for n in names))), "low": low,
          "high": high,
          "halves": [float(statistic(*(half[n] for n in names)))
                     for half in halves]}


# --- Files and figure ---------------------------------------------------------

def write_scores(workdir: str, columns: dict, replicates: dict) -> str:
  """``<workdir>/scores.csv`` (the per-example ``columns``, in their order)
  and ``scores.npz`` (the same, each ``SeedMean``'s (S, n) values as
  ``<name>_per_seed`` and the subset runs' masks, correctness and ratios);
  returns the CSV's path."""
  path = os.path.join(workdir, "scores.csv")
  checkpointing.register(path)
  pd.DataFrame(columns).to_csv(path, index=False)
  arrays = dict(columns)
  for name, reps in replicates.items():
    if isinstance(reps, SeedMean):
      arrays[f"{name}_per_seed"] = np.asarray(reps.values)
    else:
      arrays.update(subset_masks=reps.masks, subset_correct=reps.correct,
                    subset_ratios=reps.ratios)
  checkpointing.save_npz(os.path.join(workdir, "scores.npz"), **arrays)
  return path


def plot(path: str, summary: dict, title: str) -> str:
  """The rank-correlation heatmap of the keep scores and each score's
  corrupted-label AUC with its interval."""
  plt = reporting.pyplot()
  names = list(summary)
  matrix = np.array([[summary[a][f"rho_{b}"] for b in names] for a in names],
                    np.float64)
  fig, (left, right) = plt.subplots(1, 2, figsize=(14, 6),
                                    gridspec_kw={"width_ratios": [1.2, 1]})
  image = left.imshow(matrix, cmap="RdBu_r", vmin=-1, vmax=1)
  left.set_xticks(range(len(names)), names, rotation=45, ha="right")
  left.set_yticks(range(len(names)), names)
  for i in range(len(names)):
    for j in range(len(names)):
      text = "-" if not np.isfinite(matrix[i, j]) else f"{matrix[i, j]:.2f}"
      left.text(j, i, text, ha="center", va="center", fontsize=7)
  fig.colorbar(image, ax=left, label="Spearman rho of keep scores")
  left.set_title(f"rank correlations ({title})")
  aucs = np.array([summary[n]["auc"] for n in names], np.float64)
  errors = np.array([[a - summary[n]["auc_low"], summary[n]["auc_high"] - a]
                     for n, a in zip(names, aucs)], np.float64).T
  right.barh(range(len(names)), np.nan_to_num(aucs),
             xerr=np.nan_to_num(errors), capsize=3, color="tab:blue")
  right.axvline(CHANCE_AUC, color="k", linestyle="--", label="chance")
  right.set_yticks(range(len(names)), names)
  right.invert_yaxis()
  right.set_xlim(0.3, 1.0)
  right.set_xlabel("ROC AUC for corrupted labels (95% bootstrap interval)")
  right.legend()
  return reporting.save_figure(fig, path)
