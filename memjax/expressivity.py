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
projections of a few thousand points already collide.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from flax import nnx

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
  if 8 * n * n > MAX_SYSTEM_BYTES:
    raise ValueError(f"n={n} needs {8 * n * n / 2**30:.1f} GiB for the dense "
                     f"triangular system; valid: n <= "
                     f"{int(np.sqrt(MAX_SYSTEM_BYTES / 8))}.")
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
  """The network's outputs on ``x``, evaluated in ``dtype`` (float64 or float32).

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


def classification_error(outputs: np.ndarray, labels: np.ndarray) -> float:
  """Scalar outputs are rounded to the nearest class; k outputs use argmax."""
  if outputs.ndim == 1:
    predicted = np.rint(outputs)
  else:
    predicted = np.argmax(outputs, axis=-1)
  return float(np.mean(predicted != np.asarray(labels)))


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
