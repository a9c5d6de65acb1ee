"""A score atlas: every per-example score of memjax on the same examples.

Each score is measured on several independent replicates (seeds of one
vmapped run, or subset runs) and reduced to one value per training example, in
the dataset's order. To compare scores with each other they are *oriented*:
``keep`` scores are the raw score times ``+1`` or ``-1`` so that a HIGH keep
score always means the example looks easy, typical and cleanly labelled, and a
low one that it looks hard, atypical or mislabelled.

=========================  ==============================  ======  ===========
score                      raw value (per example)          keep    source
=========================  ==============================  ======  ===========
``el2n``                   ||softmax(f(x)) - onehot(y)||_2  -raw    Paul et al.
                           early in training, seed mean             2021
``grand``                  ||d loss / d params||_2 early    -raw    Paul et al.
                           in training, seed mean                   2021
``forgetting_presentation`` forgetting events per           -raw    Toneva et
                           presentation in minibatches              al. 2019
``forgetting_clean_eval``  forgetting events between        -raw    (memjax's
                           clean evaluations after epochs           variant)
``memorization``           P(correct | in) - P(correct |    -raw    Feldman &
                           out) over subset runs                    Zhang 2020
``c_score``                P(correct | held out), mean      +raw    Jiang et
                           over subset ratios                       al. 2021
``loss_sensitivity``       mean ||dL/dx||_1 over the SGD    -raw    Arpit et
                           steps that saw the example               al. 2017
``difficulty``             misclassification rate over      -raw    Arpit et
                           seeds after one epoch                    al. 2017
``critical``               share of seeds for which LASS    -raw    Arpit et
                           finds a point of another class           al. 2017
                           within the box (end of training)
=========================  ==============================  ======  ===========

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
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import stats as scipy_stats

from memjax import memorization
from memjax import stats


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
