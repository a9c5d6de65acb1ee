"""Implicit regularization (Zhang et al. 2017, Sec. 5): minimum-norm solutions.

For a linear model ``f(x) = <w, phi(x)>`` trained on the squared loss, SGD from
``w = 0`` only ever adds multiples of the training features, so it stays in
their span, ``w = Phi^T alpha``. If it interpolates, ``Phi Phi^T alpha = y``:
it has found the minimum-l2-norm interpolating solution. Replacing ``Phi Phi^T``
by any kernel matrix ``K`` gives kernel interpolation, ``K alpha = y``, which
the paper solves on MNIST with one LAPACK call (1.2% test error, no
regularization).

This module holds:

* ``sgd_least_squares``: minibatch SGD on a linear model, one jitted
  ``lax.scan`` per run, with the weights after every epoch; and
  ``min_norm_weights``, the pseudo-inverse solution it should approach.
* ``random_fourier_features``: an explicit feature map of the RBF kernel, so a
  kernel model can be trained by SGD too.
* ``fit`` / ``predict``: kernel interpolation with a linear or RBF kernel, by a
  float64 Cholesky solve (one LAPACK ``posv``), a float64 pseudo-inverse
  (``pinv``: the minimum-norm least-squares solution, for singular kernels such
  as the linear kernel with more points than dimensions, which cannot
  interpolate), or float32 conjugate gradients for systems whose
  float64 matrix would not fit in memory (60,000 MNIST digits: 28.8 GB in
  float64, 14.4 GB in float32). ``memory_bytes`` states the cost.
* ``gabor_features``: a fixed Gabor filter bank, the kind of preprocessing the
  paper found to halve the MNIST error while raising the solution's norm.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from memjax import data as data_lib

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
    if self.gamma is not None and self.gamma <= 0:
      raise ValueError(f"gamma must be positive (or None), got {self.gamma}.")
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
    # time and without ever holding the n x n matrix.
    x64 = x_train.astype(np.float64)
    u, s, _ = np.linalg.svd(x64, full_matrices=False)
    alpha = pseudo_inverse_solve(s ** 2, u, targets)
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


def pseudo_inverse_solve(eigenvalues, eigenvectors, targets) -> np.ndarray:
  """K^+ targets for a symmetric PSD K given as (eigenvalues, eigenvectors),
  dropping eigenvalues below the numerical rank threshold n * eps * max
  eigenvalue (as ``np.linalg.matrix_rank``)."""
  n = len(eigenvectors)
  cutoff = n * np.finfo(np.float64).eps * eigenvalues.max()
  keep = eigenvalues > cutoff
  basis = eigenvectors[:, keep]
  return basis @ ((basis.T @ targets) / eigenvalues[keep][:, None])


def conjugate_gradients(k_matrix, targets, tol: float, max_iters: int):
  """Solves ``k_matrix @ alpha = targets`` column by column, all columns at once.

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
    if min(self.epochs, self.batch_size) < 1 or self.init_scale < 0 or (
        self.learning_rate is not None and self.learning_rate <= 0):
      raise ValueError(f"Invalid SGDConfig {self}: epochs and batch_size must "
                       "be >= 1, init_scale >= 0, learning_rate > 0.")


def sgd_least_squares(features, targets, config: SGDConfig) -> np.ndarray:
  """The weights (epochs + 1, d, k) after each epoch of SGD, starting point first.

  Each epoch visits a fresh permutation of the n examples
  (``fold_in(key, epoch)``) in ``n // batch_size`` minibatches.
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
  key = jax.random.key(config.seed)
  init_key, order_key = jax.random.split(key)
  w0 = config.init_scale * jax.random.normal(init_key, (d, targets.shape[1]))
  return np.asarray(_sgd_epochs(features, targets, w0, order_key, lr,
                                config.epochs, config.batch_size))


@jax.jit(static_argnums=(5, 6))
def _sgd_epochs(features, targets, w0, order_key, lr, epochs, batch_size):
  n = features.shape[0]
  steps = n // batch_size

  def step(w, batch):
    x, y = features[batch], targets[batch]
    grad = x.T @ (x @ w - y) / batch_size
    return w - lr * grad, None

  def epoch(w, index):
    order = jax.random.permutation(jax.random.fold_in(order_key, index), n)
    batches = order[:steps * batch_size].reshape(steps, batch_size)
    w, _ = jax.lax.scan(step, w, batches)
    return w, w

  _, trajectory = jax.lax.scan(epoch, w0, jnp.arange(epochs))
  return jnp.concatenate([w0[None], trajectory])


def min_norm_weights(features, targets) -> np.ndarray:
  """``Phi^T alpha`` with ``Phi Phi^T alpha = y`` (float64 Cholesky).

  The minimum-l2-norm weights that interpolate; needs n <= d independent rows.
  """
  features = _flat(features).astype(np.float64)
  targets = np.asarray(targets, np.float64).reshape(len(features), -1)
  alpha = _cholesky_solve(
      features @ features.T, targets,
      f"Gram matrix of {features.shape[0]} points in {features.shape[1]} "
      "dimensions", "interpolation needs n <= d linearly independent points.")
  return features.T @ alpha


def random_fourier_features(x, num_features: int, gamma: float,
                            key: jax.Array) -> np.ndarray:
  """phi(x) = sqrt(2/D) cos(Wx + u): phi(x).phi(x') ~ exp(-gamma |x - x'|^2)."""
  x = _flat(x).astype(np.float32)
  w_key, u_key = jax.random.split(key)
  w = jax.random.normal(w_key, (x.shape[1], num_features)) * jnp.sqrt(2 * gamma)
  u = jax.random.uniform(u_key, (num_features,), maxval=2 * jnp.pi)
  return np.asarray(jnp.sqrt(2.0 / num_features) * jnp.cos(x @ w + u))


def gabor_bank(size: int = 9, orientations: int = 4,
               wavelengths=(4.0, 8.0)) -> np.ndarray:
  """(size, size, 1, 2 * filters) even and odd Gabor filters, zero-mean."""
  half = size // 2
  yy, xx = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float32)
  filters = []
  for wavelength in wavelengths:
    sigma = 0.5 * wavelength
    envelope = np.exp(-(xx ** 2 + yy ** 2) / (2 * sigma ** 2))
    for i in range(orientations):
      theta = np.pi * i / orientations
      phase = 2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / wavelength
      for wave in (np.cos(phase), np.sin(phase)):
        f = envelope * wave
        f -= envelope * f.sum() / envelope.sum()  # no response to flat regions
        filters.append(f / np.linalg.norm(f))
  return np.stack(filters, -1)[:, :, None, :].astype(np.float32)


def gabor_features(images, bank: np.ndarray | None = None, pool: int = 2,
                   batch_size: int = 1000) -> np.ndarray:
  """Fixed preprocessing: Gabor energy (even^2 + odd^2)^(1/2) per filter pair,
  average-pooled by ``pool`` and standardized per image; (n, features)."""
  bank = gabor_bank() if bank is None else bank
  images = np.asarray(images, np.float32)
  if images.ndim != 4 or images.shape[-1] != 1:
    raise ValueError(f"gabor_features takes (n, H, W, 1) images, got shape "
                     f"{images.shape}.")
  out = [np.asarray(_gabor_energy(jnp.asarray(images[i:i + batch_size]),
                                  jnp.asarray(bank), pool))
         for i in range(0, len(images), batch_size)]
  features = np.concatenate(out)
  return data_lib.per_image_standardization(features).reshape(len(images), -1)


@jax.jit(static_argnums=2)
def _gabor_energy(images, bank, pool):
  responses = jax.lax.conv_general_dilated(
      images, bank, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  even, odd = responses[..., 0::2], responses[..., 1::2]
  energy = jnp.sqrt(even ** 2 + odd ** 2 + 1e-12)
  n, h, w, c = energy.shape
  energy = energy[:, :h - h % pool, :w - w % pool]
  return energy.reshape(n, h // pool, pool, w // pool, pool, c).mean((2, 4))


def _flat(x) -> np.ndarray:
  x = np.asarray(x)
  return x.reshape(len(x), -1)
