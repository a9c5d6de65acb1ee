"""Critical samples (Arpit et al. 2017, Sec. 4): LASS and critical sample ratio.

An input ``x`` is *critical* when some ``x'`` with ``max|x' - x| <= r`` gets a
different predicted class; the critical sample ratio (CSR) of a set is the
fraction of its inputs that are critical. Critical points are searched with
Langevin adversarial sample search (LASS, Algorithm 1): starting at ``x``,

  x' <- clip(x' + alpha * sign(d loss_k(x') / dx') + beta * N(0, I))

where ``loss_k = -log softmax(f(x'))_k`` and ``k`` is the class predicted at
``x``; the clip keeps ``x'`` in the l-inf box of radius ``r`` around ``x`` and
in the valid input range. Each example stops as soon as its predicted class
changes, or after ``max_iterations`` steps. The paper writes the step with the
gradient of ``f_k``; moving *against* the predicted class (up its loss) is what
makes the class change, and with ``sign`` the two differ only in direction.

Input scale. The paper's alpha = 0.25, beta = 0.2 and r = 0.3 are in intensity
levels of 0-255 images. ``LassConfig.from_levels`` expresses them in units of
pixels / 255 (r = 0.3 / 255), and ``lass`` takes, per example, the factor
``scale`` by which preprocessing multiplied that image's pixels / 255
(``memjax.data.Dataset.train_scale``: 1 for /255 inputs, 1 / std of the image
after per-image standardization) and the example's valid input range
``[low, high]``. Example ``i`` is then searched in the box of radius
``r * scale[i]`` with steps ``alpha * scale[i]`` and ``beta * scale[i]``,
clipped to ``[low[i], high[i]]``: the paper's box in each input's own units.

Everything is vectorized: ``lass`` vmaps a per-example ``lax.while_loop`` over
the examples (in chunks, so memory stays bounded), and ``seed_lass`` vmaps it
over the seed axis of a ``TrainState``. Noise is a pure function of the key, the
example index and the iteration.

During training: ``MeasureCsr`` is an ``engine.fit`` hook that records which
examples of fixed probe sets (``CsrProbe``) are critical at chosen epochs,
saving each measurement as it is made so that a resumed run reuses it;
``csr_mean_se`` and ``csr_jump`` summarize such records over seeds.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import TYPE_CHECKING, Callable

import jax
import jax.numpy as jnp
import numpy as np

from memjax import checkpointing
from memjax import chunking
from memjax import hooks
from memjax import keys
from memjax import stats
from memjax import validation

if TYPE_CHECKING:
  from memjax import training

# The paper's constants, in intensity levels of 0-255 images.
(PAPER_ALPHA, PAPER_BETA, PAPER_RADIUS,
 PAPER_MAX_ITERATIONS) = 0.25, 0.2, 0.3, 100
INTENSITY_LEVELS = 255.0


@dataclasses.dataclass(frozen=True)
class LassConfig:
  """LASS step sizes and box, in the units of an input whose ``scale`` is 1
  (``lass`` multiplies them by each example's scale)."""

  radius: float
  alpha: float
  beta: float
  max_iterations: int = PAPER_MAX_ITERATIONS
  input_min: float | None = None  # valid input range unless lass gets one
  input_max: float | None = None  # per example; None: unbounded
  chunk_size: int = 1000  # examples searched at once

  def __post_init__(self):
    finite = validation.finite
    validation.check_fields(self, {
        "radius": (finite(self.radius) and self.radius > 0, "finite, > 0"),
        "alpha": (finite(self.alpha) and self.alpha >= 0, "finite, >= 0"),
        "beta": (finite(self.beta) and self.beta >= 0, "finite, >= 0"),
        "max_iterations": (self.max_iterations >= 1, ">= 1"),
        "chunk_size": (self.chunk_size >= 1, ">= 1"),
        "input_min": (self.input_min is None or finite(self.input_min),
                      "finite or None"),
        "input_max": (self.input_max is None or (
            finite(self.input_max) and (self.input_min is None
                                        or self.input_min < self.input_max)),
                      "finite and > input_min, or None")}, "LASS")

  @classmethod
  def from_levels(cls, radius: float = PAPER_RADIUS, alpha: float = PAPER_ALPHA,
                  beta: float = PAPER_BETA, *,
                  max_iterations: int = PAPER_MAX_ITERATIONS,
                  chunk_size: int = 1000) -> "LassConfig":
    """The settings given in intensity levels of 0-255 images (the paper's
    units), for inputs in units of pixels / 255: each divided by 255. Pass each
    example's preprocessing scale and valid range to ``lass``."""
    return cls(radius=radius / INTENSITY_LEVELS, alpha=alpha / INTENSITY_LEVELS,
               beta=beta / INTENSITY_LEVELS, max_iterations=max_iterations,
               chunk_size=chunk_size)

  @classmethod
  def for_inputs(cls, x, *, radius_levels: float = PAPER_RADIUS,
                 alpha_levels: float = PAPER_ALPHA,
                 beta_levels: float = PAPER_BETA,
                 max_iterations: int = PAPER_MAX_ITERATIONS,
                 chunk_size: int = 1000) -> "LassConfig":
    """One global box for every example: the 255 levels mapped linearly onto
    the range of ``x``, which is also the clip range. Exact for /255 inputs
    that span [0, 1]; ``from_levels`` with per-example scales is exact for
    every preprocessing."""
    low, high = float(np.min(x)), float(np.max(x))
    if not high > low:
      raise ValueError(f"Inputs must span a range to derive the LASS scale; "
                       f"got min {low} and max {high}.")
    level = (high - low) / INTENSITY_LEVELS
    return cls(radius=radius_levels * level, alpha=alpha_levels * level,
               beta=beta_levels * level, max_iterations=max_iterations,
               input_min=low, input_max=high, chunk_size=chunk_size)


@dataclasses.dataclass(frozen=True)
class LassResult:
  critical: jax.Array  # (n,) bool: a point of another predicted class was found
  adversarial: jax.Array  # (n, ...) the last searched point of each example
  iterations: jax.Array  # (n,) int: steps taken (max_iterations if not
                         # critical)


jax.tree_util.register_dataclass(
    LassResult, data_fields=["critical", "adversarial", "iterations"],
    meta_fields=[])


def _search_one(apply_fn, x, key, config: LassConfig, scale, low, high):
  """LASS from one example ``x``; returns (critical, x', iterations)."""
  def predict(point):
    return apply_fn(point[None])[0]

  k = jnp.argmax(predict(x))
  radius, alpha, beta = (config.radius * scale, config.alpha * scale,
                         config.beta * scale)
  box_low = jnp.maximum(x - radius, low)
  box_high = jnp.minimum(x + radius, high)

  def loss_and_logits(point):
    logits = predict(point)
    return -jax.nn.log_softmax(logits)[k], logits

  def body(carry):
    t, point, _ = carry
    grad, logits = jax.grad(loss_and_logits, has_aux=True)(point)
    changed = jnp.argmax(logits) != k
    noise = jax.random.normal(keys.derive(key, t), x.shape, x.dtype)
    moved = jnp.clip(point + alpha * jnp.sign(grad) + beta * noise, box_low,
                     box_high)
    stay = changed | (t == config.max_iterations)
    return t + 1, jnp.where(stay, point, moved), changed

  def cond(carry):
    t, _, changed = carry
    return ~changed & (t <= config.max_iterations)

  # Iteration t looks at the point after t steps: it stops if the class
  # changed, else takes step t + 1 (up to max_iterations steps).
  t, point, changed = jax.lax.while_loop(cond, body,
                                         (jnp.int32(0), x, jnp.bool_(False)))
  return changed, point, t - 1


def _per_example(value, default, shape):
  """``value`` (None -> ``default``; a scalar or an array) as float32 of
  ``shape``."""
  return jnp.broadcast_to(jnp.asarray(default if value is None else value,
                                      jnp.float32), shape)


def _bounds(config: LassConfig, scale, low, high, shape):
  """Per-example (scale, low, high) arrays of ``shape``; the range defaults to
  the config's (unbounded where it has none)."""
  config_low = -jnp.inf if config.input_min is None else config.input_min
  config_high = jnp.inf if config.input_max is None else config.input_max
  return (_per_example(scale, 1.0, shape), _per_example(low, config_low, shape),
          _per_example(high, config_high, shape))


def lass(apply_fn: Callable[[jax.Array], jax.Array], x: jax.Array,
         config: LassConfig, key: jax.Array, *, scale=None, low=None,
         high=None) -> LassResult:
  """Langevin adversarial sample search from every example of ``x``.

  ``apply_fn`` maps a batch of inputs to logits (eval mode, no interaction
  between examples). Example ``i`` uses the noise key ``fold_in(key, i)``, the
  box radius and steps of ``config`` times ``scale[i]`` (default 1) and the
  clip range ``[low[i], high[i]]`` (default the config's range); each of
  ``scale``, ``low`` and ``high`` may be a scalar or an (n,) array.
  Pure and traceable: call it inside a jitted function (e.g. a training step
  that trains on the adversarial points) or wrap it in ``jax.jit``.
  """
  x = jnp.asarray(x)
  scale, low, high = _bounds(config, scale, low, high, x.shape[:1])

  def search_chunk(ids):
    example_keys = keys.derive_each(key, ids)
    critical, points, iterations = jax.vmap(
        lambda *args: _search_one(apply_fn, *args[:2], config, *args[2:]))(
            x[ids], example_keys, scale[ids], low[ids], high[ids])
    return LassResult(critical, points, iterations)

  return chunking.batched(search_chunk, jnp.arange(x.shape[0]),
                          config.chunk_size)


def critical_sample_ratio(apply_fn: Callable[[jax.Array], jax.Array],
                          x: jax.Array, config: LassConfig, key: jax.Array,
                          **box) -> jax.Array:
  """Fraction of the examples in ``x`` that LASS finds critical (``box``:
  ``lass``'s per-example ``scale``, ``low``, ``high``)."""
  return lass(apply_fn, x, config, key, **box).critical.mean()


def seed_lass(trainer: training.Trainer, state: training.TrainState, x,
              config: LassConfig, keys: jax.Array, *,
              per_seed_inputs: bool = False, scale=None, low=None,
              high=None) -> LassResult:
  """LASS for every seed of a seed-stacked ``state`` (one vmapped search).

  ``keys`` has one typed key per seed; ``x`` is (n, ...) shared by all seeds or
  (S, n, ...) with ``per_seed_inputs``, and ``scale``, ``low``, ``high`` (as in
  ``lass``) are scalars or arrays of the leading shape of ``x``, (n,) or
  (S, n). Results carry a leading seed axis.
  """
  leading = x.shape[:2] if per_seed_inputs else x.shape[:1]
  box = _bounds(config, scale, low, high, leading)
  return _seed_lass_fn(trainer, config, per_seed_inputs)(state, x, keys, *box)


@functools.lru_cache(maxsize=32)
def _seed_lass_fn(trainer: training.Trainer, config: LassConfig,
                  per_seed_inputs: bool):
  """One jitted search per (trainer, config), reused across calls."""
  def one_seed(state, xs, key, scale, low, high):
    apply_fn = lambda xb: trainer.apply(state.params, state.batch_stats, xb)[0]
    return lass(apply_fn, xs, config, key, scale=scale, low=low, high=high)
  inputs = 0 if per_seed_inputs else None
  return jax.jit(jax.vmap(one_seed,
                          in_axes=(0, inputs, 0, inputs, inputs, inputs)))


def seed_csr(trainer: training.Trainer, state: training.TrainState, x,
             config: LassConfig, keys: jax.Array, *,
             per_seed_inputs: bool = False, **box) -> np.ndarray:
  """(S,) critical sample ratio of ``x`` for every seed of ``state``."""
  result = seed_lass(trainer, state, x, config, keys,
                     per_seed_inputs=per_seed_inputs, **box)
  return np.asarray(result.critical.mean(axis=1))


@dataclasses.dataclass(frozen=True)
class CsrProbe:
  """The examples whose CSR is measured during training and their LASS boxes
  (``lass``'s ``scale``, ``low``, ``high``), per seed lane."""

  ids: np.ndarray  # (m,) positions in the split, the same for every lane
  x: np.ndarray  # (lanes, m, ...) inputs
  scale: np.ndarray  # (lanes, m) preprocessing scale of pixels / 255
  low: np.ndarray  # (lanes, m) valid input range
  high: np.ndarray


class MeasureCsr(hooks.Hook):
  """An ``engine.fit`` hook: which examples of each probe (name ->
  ``CsrProbe``) are critical, per lane, at each of ``epochs`` (0: the
  initialization).

  Each measurement is saved to ``folder/epoch_<e>.npz`` as soon as it is made,
  tied to the run's checkpoint fingerprint (pass the LASS config, ``seed`` and
  the probes as ``fit``'s ``fingerprint_parts``); a resumed run reloads the
  saved ones (the run's checkpoint is never ahead of them) and measures the
  rest. The LASS keys of epoch e are ``derive(seed_key(seed), e)`` split over
  the lanes, so a measurement does not depend on when the run was resumed.
  """

  def __init__(self, probes: dict, config: LassConfig, seed: int, epochs,
               folder: str):
    self.probes, self.config, self.seed = probes, config, seed
    self.epochs, self.folder = list(epochs), folder
    self.critical = {}  # epoch -> probe name -> (lanes, m) bool
    checkpointing.register(folder)
    os.makedirs(folder, exist_ok=True)

  def path(self, epoch: int) -> str:
    return os.path.join(self.folder, f"epoch_{epoch:05d}.npz")

  def measure(self, trainer, state, epoch: int, run_stamp: str) -> None:
    path, stamp = self.path(epoch), checkpointing.fingerprint(run_stamp, epoch)
    if os.path.exists(path):
      self.critical[epoch] = checkpointing.load_npz(path, stamp)
      return
    lanes = jax.tree.leaves(state)[0].shape[0]
    search_keys = keys.split(keys.derive(keys.seed_key(self.seed), epoch),
                             lanes)
    critical = {name: np.asarray(seed_lass(
        trainer, state, p.x, self.config, search_keys, per_seed_inputs=True,
        scale=p.scale, low=p.low, high=p.high).critical)
                for name, p in self.probes.items()}
    checkpointing.save_npz(path, stamp, **critical)
    self.critical[epoch] = critical

  def start(self, run: hooks.RunStart) -> None:
    for epoch in self.epochs:
      if 0 < epoch <= run.epoch and not os.path.exists(self.path(epoch)):
        raise ValueError(f"{self.path(epoch)} is missing but the checkpoint "
                         f"of epoch {run.epoch} needs it; re-run with "
                         "--overwrite to start again.")
    # After a restore every earlier measurement is on disk (checked above), so
    # ``run.state`` is measured only at the initialization of a fresh run.
    for epoch in self.epochs:
      if epoch <= run.epoch:
        self.measure(run.trainer, run.state, epoch, run.fingerprint)

  def end_epoch(self, event: hooks.EpochEnd) -> None:
    if event.epoch in self.epochs:
      self.measure(event.trainer, event.state, event.epoch, event.fingerprint)

  def stacked(self) -> dict:
    """{"epoch": (M,), probe name: (M, lanes, m) bool} over ``epochs``."""
    return {"epoch": np.array(self.epochs),
            **{name: np.stack([self.critical[e][name] for e in self.epochs])
               for name in self.probes}}


def csr_mean_se(critical: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean CSR over seeds and its standard error at every measurement.

  ``critical``: (measurements, seeds, examples) bool. The SE is the larger of
  the standard error over seeds and the Jeffreys standard error of the pooled
  proportion (critical examples out of examples x seeds), so it is never zero
  and never smaller than the binomial noise of a finite probe set.
  """
  counts = critical.sum(-1).astype(np.float64)
  seeds, examples = critical.shape[1:]
  per_seed = counts / examples
  mean = per_seed.mean(1)
  seed_se = np.array([stats.mean_se(row)[1] for row in per_seed])
  binomial_se = stats.jeffreys_se(counts.sum(1), seeds * examples)
  return mean, np.fmax(seed_se, binomial_se)


def csr_jump(curve, se, epochs) -> dict | None:
  """The CSR jump: the largest rise of ``curve`` between consecutive
  measurements among those larger than ``stats.SIGMAS`` standard errors of the
  rise (the two SEs in quadrature); None when no rise exceeds its noise."""
  curve, se = np.asarray(curve, float), np.asarray(se, float)
  rises, rise_se = np.diff(curve), np.hypot(se[1:], se[:-1])
  significant = rises > stats.SIGMAS * rise_se
  if not significant.any():
    return None
  i = int(np.argmax(np.where(significant, rises, -np.inf)))
  return {"start": int(epochs[i]), "end": int(epochs[i + 1]),
          "rise": float(rises[i]), "se": float(rise_se[i])}
