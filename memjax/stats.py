"""Uncertainty of measured quantities, so that every claim's verdict can fail.

A claim compares a measured value with a threshold fixed before the run, or two
conditions with each other; each comparison here takes the measurement's
uncertainty into account:

* ``mean_se``: mean and standard error over seeds (sample std / sqrt(S)).
* ``difference``: the difference of two seed means with its standard error; a
  difference "exceeds noise" when it is larger than ``SIGMAS`` standard errors.
* ``jeffreys_interval``: the Jeffreys interval of a binomial proportion (it is
  not degenerate at 0 or 1, unlike the plug-in sqrt(p (1 - p) / n)).
* ``dispersion_test``: chi-square test of binomial counts for overdispersion.
* ``bootstrap_interval``: a percentile bootstrap interval of any statistic.
* ``auc``: the rank AUC of scores separating two groups, with a bootstrap
  interval.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy import stats as scipy_stats

from memjax import keys

# Two conditions differ when their difference exceeds this many standard errors.
SIGMAS = 2.0
LEVEL = 0.95


def mean_se(values, axis=None) -> tuple[float, float]:
  """Mean and standard error of the mean (NaN SE for a single value)."""
  values = np.asarray(values, np.float64)
  n = values.size if axis is None else values.shape[axis]
  mean = np.mean(values, axis=axis)
  if n < 2:
    return float(mean), float("nan")
  se = np.std(values, axis=axis, ddof=1) / np.sqrt(n)
  return float(mean), float(se)


def difference(a, b) -> tuple[float, float]:
  """mean(a) - mean(b) and its standard error, for independent seed samples."""
  mean_a, se_a = mean_se(a)
  mean_b, se_b = mean_se(b)
  return mean_a - mean_b, float(np.hypot(se_a, se_b))


def exceeds(diff: float, se: float, sigmas: float = SIGMAS) -> bool:
  """Whether a difference is positive and larger than ``sigmas`` SEs."""
  if not np.isfinite(diff) or not np.isfinite(se):
    return False
  return diff > sigmas * se


def jeffreys_interval(successes, trials, level: float = LEVEL):
  """(low, high) Jeffreys interval of successes / trials (elementwise).

  The posterior of a binomial proportion under the Beta(1/2, 1/2) prior; the
  bounds are 0 and 1 at zero and full counts, as is customary."""
  successes = np.asarray(successes, np.float64)
  trials = np.asarray(trials, np.float64)
  tail = (1 - level) / 2
  low = scipy_stats.beta.ppf(tail, successes + 0.5, trials - successes + 0.5)
  high = scipy_stats.beta.ppf(1 - tail, successes + 0.5,
                              trials - successes + 0.5)
  low = np.where(successes <= 0, 0.0, low)
  high = np.where(successes >= trials, 1.0, high)
  return low, high


def jeffreys_se(successes, trials, level: float = LEVEL):
  """Half the width of the Jeffreys interval, in standard-error units (a
  non-zero uncertainty also where the proportion is 0 or 1)."""
  low, high = jeffreys_interval(successes, trials, level)
  z = scipy_stats.norm.ppf(1 - (1 - level) / 2)
  return (high - low) / (2 * z)


def dispersion_test(counts, trials: int, groups=None) -> dict:
  """Chi-square test that binomial ``counts`` (out of ``trials`` each) have no
  more spread than Binomial(trials, p): within each group (e.g. class) p is the
  group's mean rate.

  Returns the dispersion index (chi-square / degrees of freedom; 1 without
  example-specific rates), the statistic, degrees of freedom and the one-sided
  p-value of overdispersion."""
  counts = np.asarray(counts, np.float64)
  groups = np.zeros(len(counts), int) if groups is None else np.asarray(groups)
  chi2, dof = 0.0, 0
  for g in np.unique(groups):
    c = counts[groups == g]
    p = c.mean() / trials
    variance = trials * p * (1 - p)
    if variance <= 0 or len(c) < 2:
      continue
    chi2 += float(((c - c.mean()) ** 2).sum() / variance)
    dof += len(c) - 1
  if dof == 0:
    return {"index": float("nan"), "chi2": float("nan"), "dof": 0,
            "p_value": float("nan")}
  return {"index": chi2 / dof, "chi2": chi2, "dof": dof,
          "p_value": float(scipy_stats.chi2.sf(chi2, dof))}


def bootstrap_interval(statistic: Callable[..., float], *arrays,
                       resamples: int = 1000, seed: int = 0,
                       level: float = LEVEL) -> tuple[float, float]:
  """Percentile bootstrap interval of ``statistic(*arrays)``, resampling the
  rows of every array together."""
  arrays = [np.asarray(a) for a in arrays]
  n = len(arrays[0])
  rng = keys.numpy_rng(seed)
  values = []
  for _ in range(resamples):
    rows = rng.integers(0, n, n)
    value = statistic(*(a[rows] for a in arrays))
    if np.isfinite(value):
      values.append(value)
  if not values:
    return float("nan"), float("nan")
  tail = 100 * (1 - level) / 2
  low, high = np.percentile(values, [tail, 100 - tail])
  return float(low), float(high)


def auc_value(scores, positive) -> float:
  """P(score of a random positive > score of a random negative), ties 1/2."""
  scores = np.asarray(scores, np.float64)
  positive = np.asarray(positive, bool)
  n_pos, n_neg = positive.sum(), (~positive).sum()
  if n_pos == 0 or n_neg == 0:
    return float("nan")
  ranks = scipy_stats.rankdata(scores)
  return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2)
               / (n_pos * n_neg))


def auc(scores, positive, resamples: int = 1000, seed: int = 0) -> dict:
  """AUC of ``scores`` for telling ``positive`` examples from the rest, with a
  stratified-free percentile bootstrap interval over examples."""
  value = auc_value(scores, positive)
  low, high = bootstrap_interval(auc_value, scores, positive,
                                 resamples=resamples, seed=seed)
  return {"auc": value, "low": low, "high": high}


def spearman(a, b) -> float:
  """Spearman rank correlation of two score vectors."""
  return float(scipy_stats.spearmanr(a, b).statistic)
