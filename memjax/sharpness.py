"""Sharpness of a minimum: Hessian spectrum (Lanczos) and epsilon-sharpness.

Krueger et al. (ICLR 2017 workshop) compare the largest eigenvalue of the
Hessian of the training loss at convergence for real and noise data; Keskar et
al.'s epsilon-sharpness is a second measure. ``hessian_top``
computes the top-k eigenvalues with the Lanczos algorithm on Hessian-vector
products, each a forward-over-reverse ``jax.jvp`` of ``jax.grad`` (no Hessian
is ever formed). Lanczos keeps every basis vector and re-orthogonalizes against
all of them, so ``num_iterations`` vectors of the parameter size are held in
memory; with ``num_iterations`` equal to the parameter count it is exact.

``epsilon_sharpness`` is Keskar et al.'s (2017) second measure: the largest
relative rise of the loss within the box ``|delta_i| <= eps (|w_i| + 1)``,
100 (max L(w + delta) - L(w)) / (1 + L(w)), with the maximum searched by
projected sign-gradient ascent from a random point of the box (Keskar et al.
use L-BFGS-B).

``seed_sharpness`` applies both to every seed of a seed-stacked ``TrainState``
in one vmapped computation, on the training loss in eval mode.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from memjax import keys
from memjax import training
from memjax import validation


@dataclasses.dataclass(frozen=True)
class SharpnessConfig:
  """How the Hessian spectrum and the epsilon-sharpness are estimated."""

  num_iterations: int = 20  # Lanczos vectors (Krylov dimension)
  top_k: int = 1  # eigenvalues reported, largest first
  epsilon: float = 1e-3  # Keskar's box half-width, relative to |w| + 1
  ascent_steps: int = 10  # projected sign-gradient steps for epsilon-sharpness

  def __post_init__(self):
    validation.check_fields(self, {
        "num_iterations": (self.num_iterations >= 1, ">= 1"),
        "top_k": (1 <= self.top_k <= self.num_iterations,
                  "in [1, num_iterations]"),
        "epsilon": (self.epsilon > 0, "> 0"),
        "ascent_steps": (self.ascent_steps >= 1, ">= 1")}, "sharpness")


def lanczos_bytes(config: SharpnessConfig, num_params: int) -> int:
  """Memory of one seed's Lanczos basis: ``num_iterations`` float32 vectors
  of the parameter size (plus two of workspace)."""
  return 4 * (min(config.num_iterations, num_params) + 2) * num_params


def hvp(loss_fn: Callable, params, vector):
  """Hessian-vector product of ``loss_fn`` at ``params``,
  forward-over-reverse."""
  return jax.jvp(jax.grad(loss_fn), (params,), (vector,))[1]


def lanczos(matvec: Callable[[jax.Array], jax.Array], dim: int,
            num_iterations: int, key: jax.Array, dtype=jnp.float32):
  """Eigenvalues (ascending) of the Lanczos tridiagonal of a symmetric operator.

  Full re-orthogonalization; an invariant subspace found early (beta ~ 0) is
  handled by restarting from a fresh random vector orthogonal to the basis,
  whose eigenvalue then decouples exactly.
  """
  num_iterations = min(num_iterations, dim)
  v0 = jax.random.normal(key, (dim,), dtype)
  basis = jnp.zeros((num_iterations, dim), dtype).at[0].set(
      v0 / jnp.linalg.norm(v0))

  def orthogonalize(w, basis):
    # Rows not yet written are zero, so projecting on all rows is exact.
    for _ in range(2):  # twice is enough (Giraud et al.)
      w = w - basis.T @ (basis @ w)
    return w

  def step(carry, i):
    basis, alphas, betas = carry
    w = matvec(basis[i])
    alpha = basis[i] @ w
    w = orthogonalize(w, basis)
    beta = jnp.linalg.norm(w)
    fresh = orthogonalize(
        jax.random.normal(keys.derive(key, i + 1), (dim,), dtype),
        basis)
    restart = beta < 1e-6 * (jnp.abs(alpha) + 1.0)
    nxt = jnp.where(restart, fresh / jnp.linalg.norm(fresh), w / beta)
    beta = jnp.where(restart, 0.0, beta)
    basis = basis.at[i + 1].set(nxt, mode="drop")  # no row after the last
    return (basis, alphas.at[i].set(alpha), betas.at[i].set(beta)), None

  init = (basis, jnp.zeros(num_iterations, dtype),
          jnp.zeros(num_iterations, dtype))
  (_, alphas, betas), _ = jax.lax.scan(step, init, jnp.arange(num_iterations))
  off = betas[:-1]
  tridiagonal = jnp.diag(alphas) + jnp.diag(off, 1) + jnp.diag(off, -1)
  return jnp.linalg.eigvalsh(tridiagonal)


def hessian_top(loss_fn: Callable, params, config: SharpnessConfig,
                key: jax.Array) -> jax.Array:
  """The ``top_k`` largest Hessian eigenvalues of ``loss_fn`` at ``params``."""
  flat, unravel = ravel_pytree(params)
  flat_loss = lambda f: loss_fn(unravel(f))
  matvec = lambda v: hvp(flat_loss, flat, v)
  eigenvalues = lanczos(matvec, flat.shape[0], config.num_iterations, key,
                        flat.dtype)
  return eigenvalues[::-1][:config.top_k]


def epsilon_sharpness(loss_fn: Callable, params, config: SharpnessConfig,
                      key: jax.Array) -> jax.Array:
  """Keskar's 100 (max_{box} L(w + d) - L(w)) / (1 + L(w)), by sign ascent.

  The ascent starts from a uniform random point of the box (``key``), so that it
  also leaves an exact stationary point, where the gradient's sign is zero.
  """
  flat, unravel = ravel_pytree(params)
  flat_loss = lambda f: loss_fn(unravel(f))
  bound = config.epsilon * (jnp.abs(flat) + 1.0)
  step_size = 2.0 * bound / config.ascent_steps
  base = flat_loss(flat)

  def ascend(carry, _):
    delta, best = carry
    loss, grad = jax.value_and_grad(flat_loss)(flat + delta)
    delta = jnp.clip(delta + step_size * jnp.sign(grad), -bound, bound)
    return (delta, jnp.maximum(best, loss)), None

  start = bound * jax.random.uniform(key, flat.shape, flat.dtype, -1.0, 1.0)
  (delta, best), _ = jax.lax.scan(ascend, (start, base), None,
                                  length=config.ascent_steps)
  best = jnp.maximum(best, flat_loss(flat + delta))
  return 100.0 * (best - base) / (1.0 + base)


def training_loss(trainer: training.Trainer, batch_stats, x, y) -> Callable:
  """params -> mean cross-entropy of one seed on (x, y), in eval mode."""
  def loss_fn(params):
    logits = trainer.apply(params, batch_stats, x)[0]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  return loss_fn


def seed_sharpness(trainer: training.Trainer, state: training.TrainState, x, y,
                   config: SharpnessConfig, keys: jax.Array, *,
                   per_seed_inputs: bool = False,
                   per_seed_labels: bool = False) -> dict[str, np.ndarray]:
  """Per seed: ``eigenvalues`` (S, top_k); ``epsilon_sharpness``, ``loss``
  (S,)."""
  fn = _seed_sharpness_fn(trainer, config, per_seed_inputs, per_seed_labels)
  return {k: np.asarray(v) for k, v in fn(state, x, y, keys).items()}


@functools.lru_cache(maxsize=32)
def _seed_sharpness_fn(trainer, config, per_seed_inputs, per_seed_labels):
  def one_seed(state, x, y, key):
    loss_fn = training_loss(trainer, state.batch_stats, x, y)
    lanczos_key, ascent_key = keys.split(key, 2)
    return {"eigenvalues": hessian_top(loss_fn, state.params, config,
                                       lanczos_key),
            "epsilon_sharpness": epsilon_sharpness(loss_fn, state.params,
                                                   config, ascent_key),
            "loss": loss_fn(state.params)}
  in_axes = (0, 0 if per_seed_inputs else None, 0 if per_seed_labels else None,
             0)
  return jax.jit(jax.vmap(one_seed, in_axes=in_axes))
