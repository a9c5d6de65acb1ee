"""Finite-sample expressivity (Zhang et al. 2017, Sec. 4, Theorem 1), built.

Theorem 1: a two-layer ReLU network with 2n+d weights,
``c(x) = sum_j w_j max(<a, x> - b_j, 0)``, can represent any real labeling of n
points in d dimensions. The construction (``construct``):

1. draw a random direction ``a``; the projections ``z_i = <a, x_i>`` are then
   distinct with probability one unless two inputs coincide;
2. sort them, ``z_1 < ... < z_n``, and interleave the biases
   ``b_1 < z_1 < b_2 < z_2 < ... < b_n < z_n`` (here ``b_j`` is the midpoint of
   ``z_{j-1}`` and ``z_j``, and ``b_1`` sits half the first gap below ``z_1``);
3. ``A_ij = max(z_i - b_j, 0)`` is then lower triangular with the positive
   diagonal ``z_i - b_i`` (its eigenvalues; the paper's Lemma), so
   ``w = A^-1 y`` by forward substitution.

k outputs that share ``a`` and ``b`` (one-hot labels) need d + n + kn weights.
The diagonal is half the gap between neighbouring projections, which shrinks
like 1/n^2, so the system is badly conditioned: it is solved in float64 and the
network must be evaluated in float64 too (``predict``). In float32 neighbouring
projections of a few thousand points already collide. ``rounding_scale``
predicts the output error of an evaluation in a given precision; ``claims``
judges the experiment's measurements against Theorem 1.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from flax import nnx

from memjax import reporting

# The dense triangular system takes 8 n^2 bytes; refuse sizes beyond this.
MAX_SYSTEM_BYTES = 8 * 2**30


class TwoLayerReLU(nnx.Module):
  """``c(x) = relu(<x, a> - b) @ w``: one shared projection, n hinges.

  Called like the library's other models, ``model(x, train=False)`` on NHWC or
  flat inputs. ``w`` is (n,) for a scalar output or (n, k) for k outputs.
  """

  def __init__(self, a, b, w):
    self.a = nnx.Param(jnp.asarray(a))
    self.b = nnx.Param(jnp.asarray(b))
    self.w = nnx.Param(jnp.asarray(w))

  def __call__(self, x, *, train=False, rngs=None):
    del train, rngs  # no dropout or batch statistics
    x = jnp.reshape(x, (x.shape[0], -1)).astype(self.a.dtype)
    projection = x @ self.a[...]
    return jax.nn.relu(projection[:, None] - self.b[...]) @ self.w[...]


@dataclasses.dataclass(frozen=True)
class Construction:
  """The network of Theorem 1 and the numbers that describe its system."""

  model: TwoLayerReLU  # float64 parameters: evaluate with ``predict``
  params: int  # 2n + d (scalar output) or d + n + kn (k outputs)
  fit_error: float  # max |A w - y| of the float64 solve, in label units
  min_eigenvalue: float  # min_i (z_i - b_i), the Lemma's smallest eigenvalue
  condition_number: float  # 1-norm condition number of A (LAPACK dtrcon)
  weight_norm: float  # ||w||_2


def construct(x, y, key: jax.Array) -> Construction:
  """Theorem 1's network that maps each ``x[i]`` to ``y[i]`` exactly.

  Args:
    x: (n, ...) inputs, flattened to (n, d).
    y: (n,) real labels (one output) or (n, k) targets such as one-hot labels.
    key: typed PRNG key for the random projection direction ``a``.

  Raises:
    ValueError: if two inputs share a projection (duplicate inputs: they can
      only be fit if their labels agree, and the construction needs distinct
      projections either way), if shapes disagree or the system is too large.
  """
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  y = np.asarray(y, np.float64)
  n, d = x.shape
  if y.shape[0] != n or y.ndim not in (1, 2):
    raise ValueError(f"Labels of shape {y.shape} do not match {n} inputs; "
                     f"valid shapes: ({n},) or ({n}, k).")
  check_size(n, d)
  a = np.asarray(jax.random.normal(key, (d,)), np.float64)
  z = x @ a
  order = np.argsort(z, kind="stable")
  z_sorted = z[order]
  _check_distinct(x, y, order, z_sorted)
  b = interleaved_biases(z_sorted)
  system = triangular_system(z_sorted, b)
  w = scipy.linalg.solve_triangular(system, y[order], lower=True)
  fit_error = float(np.max(np.abs(system @ w - y[order])))
  rcond, _ = scipy.linalg.lapack.dtrcon(system, norm="1", uplo="L")
  with jax.enable_x64(True):
    model = TwoLayerReLU(a, b, w)
  params = d + n + w.size
  return Construction(model=model, params=params, fit_error=fit_error,
                      min_eigenvalue=float(np.min(z_sorted - b)),
                      condition_number=float(1.0 / rcond) if rcond > 0 else
                      float("inf"),
                      weight_norm=float(np.linalg.norm(w)))


def max_points() -> int:
  """The largest n whose dense triangular system fits in MAX_SYSTEM_BYTES."""
  return int(np.sqrt(MAX_SYSTEM_BYTES / 8))


def check_size(n: int, d: int) -> None:
  """Refuses (ValueError), before any work, n points in d dimensions whose
  system exceeds MAX_SYSTEM_BYTES, or whose float64 system and inputs
  (8 (n^2 + n d) bytes) do not fit in this machine's memory."""
  if n > max_points():
    raise ValueError(f"n={n} needs {8 * n * n / 2**30:.1f} GiB for the dense "
                     f"triangular system; valid: n <= {max_points()}.")
  need = 8 * (n * n + n * d)
  have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  if need > 0.8 * have:
    raise ValueError(f"{n} points in d={d} dimensions need about "
                     f"{need / 2**30:,.1f} GiB in float64; this machine has "
                     f"{have / 2**30:,.1f} GiB. Use fewer points or "
                     "dimensions.")


def interleaved_biases(z_sorted: np.ndarray) -> np.ndarray:
  """b_1 < z_1 < b_2 < ... < b_n < z_n: midpoints, and half a gap below z_1."""
  if len(z_sorted) == 1:
    return z_sorted - 1.0
  first_gap = z_sorted[1] - z_sorted[0]
  return np.concatenate([[z_sorted[0] - first_gap / 2],
                         (z_sorted[:-1] + z_sorted[1:]) / 2])


def triangular_system(z_sorted: np.ndarray, b: np.ndarray) -> np.ndarray:
  """A_ij = max(z_i - b_j, 0), lower triangular for interleaved biases."""
  return np.maximum(z_sorted[:, None] - b[None, :], 0.0)


def predict(model: TwoLayerReLU, x, dtype=np.float64,
            batch_size: int = 1000) -> np.ndarray:
  """The network's outputs on ``x``, evaluated in ``dtype`` (float64 or
  float32).

  float64 runs inside a scoped ``jax.enable_x64``; float32 shows what the
  construction is worth at the precision networks are usually run in. Inputs go
  through in batches, so the (batch, n) hidden layer bounds the memory.
  """
  dtype = np.dtype(dtype)
  if dtype not in (np.float64, np.float32):
    raise ValueError(f"dtype must be float64 or float32, got {dtype}.")
  x = np.asarray(x, dtype)
  with jax.enable_x64(dtype == np.float64):
    cast = TwoLayerReLU(*(np.asarray(p[...], dtype)
                          for p in (model.a, model.b, model.w)))
    return np.concatenate([np.asarray(cast(jnp.asarray(x[i:i + batch_size])))
                           for i in range(0, len(x), batch_size)])


def rounding_scale(model: TwoLayerReLU, x, dtype=np.float64) -> float:
  """eps(dtype) * max_i |<a, x_i>| * max_k |w_k|_1: the first-order size of
  the output error from evaluating the network in ``dtype``.

  Each hidden unit ``max(<a, x> - b_j, 0)`` carries a rounding error of about
  eps * |<a, x>|, and the output sums those errors weighted by ``w``. The
  weights grow with the triangular system's condition number, so this is how
  the condition number limits exactness: the rounded outputs stay exact while
  it is well below 0.5 (the distance from an integer label to the rounding
  boundary).
  """
  a = np.asarray(model.a[...], np.float64)
  w = np.asarray(model.w[...], np.float64).reshape(len(model.b[...]), -1)
  projection = np.asarray(x, np.float64).reshape(len(x), -1) @ a
  return float(np.finfo(dtype).eps * np.max(np.abs(projection))
               * np.max(np.sum(np.abs(w), axis=0)))


def classification_error(outputs: np.ndarray, labels: np.ndarray) -> float:
  """Scalar outputs are rounded to the nearest class; k outputs use argmax."""
  if outputs.ndim == 1:
    predicted = np.rint(outputs)
  else:
    predicted = np.argmax(outputs, axis=-1)
  return float(np.mean(predicted != np.asarray(labels)))


def _cases_text(rows: dict, field: str, fmt: str) -> str:
  return ", ".join(f"{name}: {format(row[field], fmt)}"
                   for name, row in rows.items())


def claims(summary: dict, sweep: list[dict],
           prefix: str) -> list[reporting.Claim]:
  """Theorem 1's claims, judged on experiments/expressivity.py's rows (a
  pure function of them).

  ``summary`` maps case names to rows (n, d, outputs, params, train_error,
  output_error, condition_number); ``sweep`` holds the Gaussian rows; cases
  whose name starts with ``prefix`` are the dataset's. Criteria, fixed before
  measuring: the scalar construction has exactly 2n+d weights; its training
  error is 0 (float64) on every case; the k-output network has d+n+kn
  weights and training error 0. All are exact counts of a deterministic
  construction, so the uncertainty is 0; the margin (largest output error,
  exact while < 0.5) is reported with them.
  """
  scalar = {**{f"gaussian n={r['n']}": r for r in sweep},
            **{k: v for k, v in summary.items()
               if v["outputs"] == 1 and k.startswith(prefix)}}
  extra = max(abs(r["params"] - (2 * r["n"] + r["d"])) for r in scalar.values())
  out = [reporting.Claim(
      "the construction has exactly 2n+d weights (scalar output)",
      extra == 0,
      ", ".join(f"{k}: {r['params']} (2n+d={2 * r['n'] + r['d']})"
                for k, r in scalar.items()),
      value=float(extra), uncertainty=0.0, threshold=0.0)]
  worst = max(r["train_error"] for r in scalar.values())
  largest = max(r["n"] for r in sweep)
  out.append(reporting.Claim(
      "it fits every labeling: training error 0 (float64) on random labels of "
      f"Gaussian data for every n up to {largest} and on {prefix} true and "
      "random labels",
      worst == 0,
      f"training error {_cases_text(scalar, 'train_error', '.2%')}; largest "
      "output error max|f(x_i) - y_i| "
      f"{max(r['output_error'] for r in scalar.values()):.2g} (exact while "
      "< 0.5), condition numbers up to "
      f"{max(r['condition_number'] for r in scalar.values()):.2g}",
      value=float(worst), uncertainty=0.0, threshold=0.0))
  onehot = summary.get(f"{prefix}_random_labels_onehot")
  if onehot:
    n, d, k = onehot["n"], onehot["d"], onehot["outputs"]
    out.append(reporting.Claim(
        "k one-hot outputs sharing a and b: exactly d+n+kn weights, training "
        "error 0 (float64)",
        onehot["params"] == d + n + k * n and onehot["train_error"] == 0,
        f"{onehot['params']} weights (d+n+kn={d + n + k * n}), training error "
        f"{onehot['train_error']:.2%}, output error "
        f"{onehot['output_error']:.2g}",
        value=float(onehot["train_error"]), uncertainty=0.0, threshold=0.0))
  return out


def _check_distinct(x, y, order, z_sorted) -> None:
  ties = np.flatnonzero(np.diff(z_sorted) <= 0)
  if not len(ties):
    return
  i, j = order[ties[0]], order[ties[0] + 1]
  same_input = np.array_equal(x[i], x[j])
  same_label = np.array_equal(y[i], y[j])
  reason = ("they are the same input" if same_input else
            "their projections coincide")
  advice = ("with different labels they cannot be fit by any function; "
            if same_input and not same_label else "")
  raise ValueError(
      f"Inputs {i} and {j} have the same projection <a, x> ({reason}; "
      f"labels {y[i]} and {y[j]}); {advice}Theorem 1 needs n distinct "
      f"projections: remove duplicate inputs ({len(ties)} tie(s) found).")
