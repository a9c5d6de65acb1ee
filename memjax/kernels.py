"""Implicit regularization (Zhang et al. 2017, Sec. 5): minimum-norm solutions.

For a linear model ``f(x) = <w, phi(x)>`` trained on the squared loss, SGD from
``w = 0`` only ever adds multiples of the training features, so it stays in
their span, ``w = Phi^T alpha``. If it interpolates, ``Phi Phi^T alpha = y``:
it has found the minimum-l2-norm interpolating solution. Replacing ``Phi Phi^T``
by any kernel matrix ``K`` gives kernel interpolation, ``K alpha = y``, which
the paper solves on MNIST with one LAPACK call (1.2% test error, no
regularization).

This module's one job is those solutions and the SGD that should find them:

* ``sgd_least_squares``: minibatch SGD on a linear model, one jitted
  ``lax.scan`` per run, with its distance to a reference solution after every
  epoch; and ``min_norm_weights``, the minimum-norm interpolating solution it
  should approach, by a least-squares (SVD) solve of ``Phi w = y`` (default)
  or, for comparison, a Cholesky solve of ``Phi Phi^T alpha = y``, which
  squares the condition number.
* ``random_fourier_features``: an explicit feature map of the RBF kernel, so a
  kernel model can be trained by SGD too.
* ``fit`` / ``predict``: kernel interpolation with a linear or RBF kernel, by a
  float64 Cholesky solve (one LAPACK ``posv``), a float64 pseudo-inverse
  (``pinv``: the minimum-norm least-squares solution, for singular kernels such
  as the linear kernel with more points than dimensions, which cannot
  interpolate), or float32 conjugate gradients for systems whose
  float64 matrix would not fit in memory (60,000 MNIST digits: 28.8 GB in
  float64, 14.4 GB in float32). ``memory_bytes`` states the cost.

The study's Gabor preprocessing and its claims are in ``memjax.kernel_study``.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from memjax import keys

KERNELS = ("rbf", "linear")
SOLVERS = ("auto", "cholesky", "pinv", "cg")


@dataclasses.dataclass(frozen=True)
class KernelConfig:
  """Which kernel, and how ``K alpha = y`` is solved."""

  kernel: str = "rbf"
  gamma: float | None = None  # rbf: exp(-gamma |x - x'|^2); None: 1 / (d var x)
  solver: str = "auto"  # auto: cholesky if the float64 matrix fits, else cg
  max_dense_gib: float = 4.0  # memory allowed for a float64 kernel matrix
  cg_tol: float = 1e-5  # relative residual |K alpha - y| / |y| to stop at
  cg_max_iters: int = 3000
  block_size: int = 2048  # rows of the kernel matrix built at a time

  def __post_init__(self):
    if self.kernel not in KERNELS:
      raise ValueError(f"Unknown kernel {self.kernel!r}; valid kernels: "
                       f"{', '.join(KERNELS)}.")
    if self.solver not in SOLVERS:
      raise ValueError(f"Unknown solver {self.solver!r}; valid solvers: "
                       f"{', '.join(SOLVERS)}.")
    if self.gamma is not None and not (np.isfinite(self.gamma)
                                       and self.gamma > 0):
      raise ValueError(f"gamma must be positive and finite (or None), got "
                       f"{self.gamma}.")
    if not (np.isfinite(self.max_dense_gib) and self.max_dense_gib > 0):
      raise ValueError(f"max_dense_gib must be positive and finite, got "
                       f"{self.max_dense_gib}.")
    if min(self.cg_max_iters, self.block_size) < 1 or self.cg_tol <= 0:
      raise ValueError("cg_max_iters and block_size must be >= 1 and cg_tol "
                       f"> 0, got {self.cg_max_iters}, {self.block_size}, "
                       f"{self.cg_tol}.")


@dataclasses.dataclass(frozen=True)
class KernelModel:
  """``f(x) = sum_i alpha_i k(x_i, x)``, with how the solve went."""

  config: KernelConfig
  x_train: np.ndarray  # (n, d)
  alpha: np.ndarray  # (n, k)
  gamma: float | None
  solver: str  # the solver that ran
  norm: float  # sqrt(trace(alpha^T K alpha)): the solution's l2 / RKHS norm
  relative_residual: float  # |K alpha - y|_F / |y|_F
  iterations: int | None  # cg only
  matrix_bytes: int  # memory of the matrix the solve held
  train_outputs: np.ndarray  # (n, k) K alpha: the fit on the training set


def solver_dtype(solver: str):
  """cg works in float32 (to fit larger n); the dense solvers in float64."""
  return np.float32 if solver == "cg" else np.float64


def memory_bytes(n: int, solver: str) -> int:
  """Memory of the n x n kernel matrix a solver holds."""
  return n * n * np.dtype(solver_dtype(solver)).itemsize


def require_memory(need: int, what: str, advice: str) -> None:
  """Refuses (ValueError naming ``what`` and ``advice``) work that needs more
  than 80% of this machine's memory."""
  have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  if need > 0.8 * have:
    raise ValueError(f"{what} needs about {need / 2**30:,.1f} GiB; this "
                     f"machine has {have / 2**30:,.1f} GiB. {advice}")


def check_memory(n: int, config: KernelConfig) -> None:
  """Refuses, before any work, a solve whose n x n kernel matrix and the
  solver's working copy of it cannot fit in this machine's memory."""
  solver = choose_solver(n, config)
  require_memory(2 * memory_bytes(n, solver),
                 f"The {n} x {n} kernel matrix with solver {solver!r} (the "
                 "matrix and a working copy)", "Use a smaller --train_size.")


def choose_solver(n: int, config: KernelConfig) -> str:
  if config.solver != "auto":
    return config.solver
  fits = memory_bytes(n, "cholesky") <= config.max_dense_gib * 2**30
  return "cholesky" if fits else "cg"


def default_gamma(x: np.ndarray) -> float:
  """1 / (d var(x)), so that gamma |x - x'|^2 is of order one."""
  x = _flat(x)
  return float(1.0 / (x.shape[1] * x.var()))


def _kernel_blocks(x1, x2, kernel: str, gamma: float | None, dtype,
                   block_size: int):
  """(start, k(x1[start:start + block_size], x2)) for every block of rows."""
  x1, x2 = _flat(x1).astype(dtype), _flat(x2).astype(dtype)
  sq2 = np.sum(x2 * x2, axis=1)
  for start in range(0, len(x1), block_size):
    rows = x1[start:start + block_size]
    block = rows @ x2.T
    if kernel == "rbf":
      sq1 = np.sum(rows * rows, axis=1)[:, None]
      block = np.exp(-gamma * np.maximum(sq1 + sq2[None, :] - 2 * block, 0))
    yield start, block


def kernel_matrix(x1, x2, kernel: str, gamma: float | None = None,
                  dtype=np.float64, block_size: int = 2048) -> np.ndarray:
  """k(x1_i, x2_j) in ``dtype``, built ``block_size`` rows at a time."""
  out = np.empty((len(x1), len(x2)), dtype)
  for start, block in _kernel_blocks(x1, x2, kernel, gamma, dtype, block_size):
    out[start:start + block_size] = block
  return out


def fit(config: KernelConfig, x_train, targets) -> KernelModel:
  """Solves ``K alpha = targets`` ((n,) or (n, k)) with no regularization."""
  x_train = _flat(x_train)
  targets = np.asarray(targets, np.float64).reshape(len(x_train), -1)
  gamma = None
  if config.kernel == "rbf":
    gamma = config.gamma if config.gamma is not None else default_gamma(x_train)
  solver = choose_solver(len(x_train), config)
  iterations = None
  if solver == "pinv" and config.kernel == "linear":
    # K = X X^T = U S^2 U^T: its eigenpairs from the thin SVD of X, in O(n d^2)
    # time and without ever holding the n x n matrix. The rank is decided on
    # the singular values of X (as the least-squares solve), not on their
    # squares, whose cutoff would drop directions that X resolves.
    x64 = x_train.astype(np.float64)
    u, s, _ = np.linalg.svd(x64, full_matrices=False)
    alpha = pseudo_inverse_solve(s ** 2, u, targets,
                                 lstsq_rcond(*x64.shape) ** 2)
    fitted = x64 @ (x64.T @ alpha)
    matrix_bytes = x64.nbytes + u.nbytes
  else:
    k_matrix = kernel_matrix(x_train, x_train, config.kernel, gamma,
                             solver_dtype(solver), config.block_size)
    matrix_bytes = k_matrix.nbytes
    if solver == "cg":
      alpha, iterations = conjugate_gradients(
          k_matrix, targets.astype(np.float32), config.cg_tol,
          config.cg_max_iters)
    elif solver == "cholesky":
      alpha = _cholesky_solve(
          k_matrix, targets,
          f"{config.kernel} kernel matrix of {len(k_matrix)} points",
          "use solver 'pinv' for the minimum-norm least-squares solution "
          f"(valid solvers: {', '.join(SOLVERS)}).")
    else:
      alpha = pseudo_inverse_solve(*np.linalg.eigh(k_matrix), targets)
    fitted = k_matrix @ alpha
  residual = np.linalg.norm(fitted - targets) / np.linalg.norm(targets)
  norm = np.sqrt(max(float(np.sum(alpha * fitted)), 0.0))
  return KernelModel(config=config, x_train=x_train, alpha=alpha, gamma=gamma,
                     solver=solver, norm=float(norm),
                     relative_residual=float(residual), iterations=iterations,
                     matrix_bytes=matrix_bytes,
                     train_outputs=np.asarray(fitted, np.float64))


def _cholesky_solve(matrix, targets, what: str, advice: str) -> np.ndarray:
  """matrix^-1 targets for a positive-definite ``matrix``; a singular one is
  a ValueError naming ``what`` it is and ``advice``."""
  try:
    return scipy.linalg.solve(matrix, targets, assume_a="pos")
  except np.linalg.LinAlgError as e:
    raise ValueError(f"The {what} is singular ({e}); {advice}") from e


def predict(model: KernelModel, x) -> np.ndarray:
  """(m, k) outputs, in blocks of test points."""
  blocks = _kernel_blocks(x, model.x_train, model.config.kernel, model.gamma,
                          model.alpha.dtype, model.config.block_size)
  return np.concatenate([block @ model.alpha
                         for _, block in blocks]).astype(np.float64)


def pseudo_inverse_solve(eigenvalues, eigenvectors, targets,
                         relative_cutoff: float | None = None) -> np.ndarray:
  """K^+ targets for a symmetric PSD K given as (eigenvalues, eigenvectors),
  dropping eigenvalues below ``relative_cutoff`` times the largest (default:
  n * eps, the numerical rank threshold of ``np.linalg.matrix_rank``)."""
  n = len(eigenvectors)
  if relative_cutoff is None:
    relative_cutoff = n * np.finfo(np.float64).eps
  cutoff = relative_cutoff * eigenvalues.max()
  keep = eigenvalues > cutoff
  basis = eigenvectors[:, keep]
  return basis @ ((basis.T @ targets) / eigenvalues[keep][:, None])


def conjugate_gradients(k_matrix, targets, tol: float, max_iters: int):
  """Solves ``k_matrix @ alpha = targets`` column by column, all columns at
  once.

  Plain CG for a symmetric positive definite matrix; each iteration is one
  matrix product with the stored matrix (float32 BLAS, no copy of it). Stops
  when every column's relative residual is below ``tol``. Returns (alpha,
  iterations).
  """
  alpha = np.zeros_like(targets)
  residual = targets.copy()
  direction = residual.copy()
  rr = np.sum(residual * residual, axis=0)
  stop = (tol ** 2) * np.sum(targets * targets, axis=0)
  iteration = 0
  while iteration < max_iters and np.any(rr > stop):
    product = k_matrix @ direction
    step = rr / np.maximum(np.sum(direction * product, axis=0), 1e-30)
    alpha += step * direction
    residual -= step * product
    rr_new = np.sum(residual * residual, axis=0)
    direction = residual + (rr_new / np.maximum(rr, 1e-30)) * direction
    rr = rr_new
    iteration += 1
  return alpha, iteration


@dataclasses.dataclass(frozen=True)
class SGDConfig:
  """Minibatch SGD on 0.5 * mean squared error of a linear model."""

  epochs: int = 100
  batch_size: int = 10
  learning_rate: float | None = None  # None: 1 / max_i |phi_i|^2 (stable)
  init_scale: float = 0.0  # 0: start at w = 0 (the paper); else N(0, scale^2)
  seed: int = 0

  def __post_init__(self):
    if min(self.epochs, self.batch_size) < 1 or not (
        np.isfinite(self.init_scale) and self.init_scale >= 0) or (
            self.learning_rate is not None
            and not (np.isfinite(self.learning_rate)
                     and self.learning_rate > 0)):
      raise ValueError(f"Invalid SGDConfig {self}: epochs and batch_size must "
                       "be >= 1, init_scale finite and >= 0, learning_rate "
                       "finite and > 0.")


@dataclasses.dataclass(frozen=True)
class SGDRun:
  """What ``sgd_least_squares`` returns."""

  initial: np.ndarray  # (d, k) float32 starting point
  weights: np.ndarray  # (d, k) float32 weights after the last epoch
  # (epochs + 1,) |w_e - reference|_F / |reference|_F after each epoch e (0: the
  # start), in float32; None without a reference.
  distances: np.ndarray | None


def sgd_least_squares(features, targets, config: SGDConfig,
                      reference=None) -> SGDRun:
  """SGD from ``config``'s starting point, and its distance to ``reference``.

  An epoch visits every example exactly once, in a fresh permutation
  (``fold_in(key, epoch)``): ``ceil(n / batch_size)`` minibatches, the last
  one partial when the batch size does not divide n (filled up with the
  epoch's first examples at weight 0; a step's gradient is the mean over its
  real examples), as in ``memjax.training``.
  """
  features = jnp.asarray(_flat(features), jnp.float32)
  targets = jnp.asarray(np.asarray(targets).reshape(len(features), -1),
                        jnp.float32)
  n, d = features.shape
  if config.batch_size > n:
    raise ValueError(f"batch_size {config.batch_size} exceeds the {n} "
                     f"training examples; valid: 1..{n}.")
  lr = config.learning_rate
  if lr is None:
    lr = 1.0 / float(jnp.max(jnp.sum(features * features, axis=1)))
  key = keys.seed_key(config.seed)
  init_key, order_key = keys.split(key, 2)
  w0 = config.init_scale * jax.random.normal(init_key, (d, targets.shape[1]))
  has_reference = reference is not None
  reference = jnp.asarray(reference if has_reference else jnp.zeros_like(w0),
                          jnp.float32).reshape(w0.shape)
  w, distances = _sgd_epochs(features, targets, w0, reference, order_key, lr,
                             config.epochs, config.batch_size)
  return SGDRun(initial=np.asarray(w0), weights=np.asarray(w),
                distances=np.asarray(distances) if has_reference else None)


@jax.jit(static_argnums=(6, 7))
def _sgd_epochs(features, targets, w0, reference, order_key, lr, epochs,
                batch_size):
  n = features.shape[0]
  steps = -(-n // batch_size)
  weights = (jnp.arange(steps * batch_size) < n).astype(jnp.float32).reshape(
      steps, batch_size)
  reference_norm = jnp.maximum(jnp.linalg.norm(reference), 1e-30)
  distance = lambda w: jnp.linalg.norm(w - reference) / reference_norm

  def step(w, batch):
    index, weight = batch
    x, y = features[index], targets[index]
    grad = x.T @ (weight[:, None] * (x @ w - y)) / jnp.sum(weight)
    return w - lr * grad, None

  def epoch(w, index):
    order = jax.random.permutation(keys.derive(order_key, index), n)
    order = jnp.concatenate([order, order[:steps * batch_size - n]])
    w, _ = jax.lax.scan(step, w, (order.reshape(steps, batch_size), weights))
    return w, distance(w)

  w, distances = jax.lax.scan(epoch, w0, jnp.arange(epochs))
  return w, jnp.concatenate([distance(w0)[None], distances])


MIN_NORM_SOLVERS = ("lstsq", "cholesky")


def lstsq_rcond(n: int, d: int) -> float:
  """Relative singular-value cutoff of the least-squares solve: max(n, d) *
  float64 eps, the rank threshold of ``np.linalg.matrix_rank`` and the default
  of ``np.linalg.lstsq``. Singular values below rcond * s_max are treated as
  zero; a feature matrix with fewer than n above it has no interpolant."""
  return max(n, d) * float(np.finfo(np.float64).eps)


def singular_values(features) -> np.ndarray:
  """The singular values of the (n, d) feature matrix, in float64, descending;
  cond(Phi) = s[0] / s[-1], and cond(Phi Phi^T) is its square."""
  return np.linalg.svd(_flat(features).astype(np.float64), compute_uv=False)


def min_norm_weights(features, targets, solver: str = "lstsq") -> np.ndarray:
  """The minimum-l2-norm weights ``w`` with ``Phi w = y``, in float64.

  ``solver``:
    * ``lstsq`` (default): ``w = V S^-1 U^T y`` from the thin SVD of ``Phi``
      itself, keeping singular values above ``lstsq_rcond(n, d) * s_max``. Its
      error grows like cond(Phi) * eps.
    * ``cholesky``: ``w = Phi^T alpha`` with ``Phi Phi^T alpha = y`` solved by
      Cholesky. The Gram matrix's condition number is cond(Phi)^2, so this
      loses twice as many digits; kept to compare with.

  Needs n <= d linearly independent rows (else no interpolant exists): a
  ValueError otherwise.
  """
  if solver not in MIN_NORM_SOLVERS:
    raise ValueError(f"Unknown minimum-norm solver {solver!r}; valid: "
                     f"{', '.join(MIN_NORM_SOLVERS)}.")
  features = _flat(features).astype(np.float64)
  targets = np.asarray(targets, np.float64).reshape(len(features), -1)
  n, d = features.shape
  what = f"feature matrix of {n} points in {d} dimensions"
  advice = "interpolation needs n <= d linearly independent points."
  if solver == "cholesky":
    alpha = _cholesky_solve(features @ features.T, targets,
                            f"Gram matrix of the {what}", advice)
    return features.T @ alpha
  u, s, vt = np.linalg.svd(features, full_matrices=False)
  rank = int(np.sum(s > lstsq_rcond(n, d) * s[0])) if s.size else 0
  if rank < n:
    raise ValueError(f"The {what} has numerical rank {rank} < {n}; {advice}")
  return vt.T @ ((u.T @ targets) / s[:, None])


def random_fourier_bytes(points: int, d: int, num_features: int) -> int:
  """float32 memory of ``points`` random Fourier features and the (d, D)
  projection (with the pre-activation copy)."""
  return 4 * (2 * points + d) * num_features


def random_fourier_features(x, num_features: int, gamma: float,
                            key: jax.Array) -> np.ndarray:
  """phi(x) = sqrt(2/D) cos(Wx + u): phi(x).phi(x') ~ exp(-gamma |x - x'|^2)."""
  x = _flat(x).astype(np.float32)
  w_key, u_key = keys.split(key, 2)
  w = jax.random.normal(w_key, (x.shape[1], num_features)) * jnp.sqrt(2 * gamma)
  u = jax.random.uniform(u_key, (num_features,), maxval=2 * jnp.pi)
  return np.asarray(jnp.sqrt(2.0 / num_features) * jnp.cos(x @ w + u))


def _flat(x) -> np.ndarray:
  x = np.asarray(x)
  return x.reshape(len(x), -1)
