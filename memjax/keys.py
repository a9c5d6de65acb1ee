"""Every random key of memjax: a pure function of (seed, stream, step).

This module is the one place that derives keys; everything else only draws
from the keys it is given (``jax.random.normal(key, ...)``). The scheme:

* A run starts from integer seeds: ``seed_key(seed)``. Seed lane ``i`` of an
  S-seed training run uses ``seed_key(config.seed + i)`` (``seed_keys``), so
  lane ``i`` is the same run as a one-seed run with that seed.
* A seed key is split into named streams, and a stream into steps:
  ``derive(key, stream, step)`` folds each in turn (``jax.random.fold_in``).
  Training uses the streams below: ``INIT`` (parameters), ``ORDER`` (the batch
  order, per epoch), ``DROPOUT``, ``PERTURB`` (input perturbations) and
  ``ADVERSARIAL`` (critical-sample search), the last three per SGD step.
  Steps and epochs are folded in, never split off, so resuming at step t
  draws what an uninterrupted run draws at step t.
* A condition (a randomization of the data: random labels, noise inputs...)
  gets ``condition_key(randomization_seed, name)``: the name is folded in as
  its CRC-32, so adding a condition does not change the others' draws. A
  per-seed randomization folds the seed lane into that key.
* Many small runs (memorization estimates) get ``run_keys(seed, group, runs)``:
  run ``r`` of group (subset ratio) ``k`` is ``derive(seed_key(seed), k, r)``,
  independent of how runs are chunked.
* Per-example searches (critical samples) fold the example's index into the
  search key (``derive_each``), so an example's result does not depend on which
  other examples share its batch.
* ``split`` is kept only where a fixed number of independent keys is drawn
  once (e.g. the train / test / permutation keys of one randomization).
* NumPy code (stratified splits, bootstraps) seeds ``numpy_rng(*parts)``.
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np

# Streams of a training seed's key.
INIT, ORDER, DROPOUT, PERTURB, ADVERSARIAL = range(5)
# Streams of a memorization run's key.
RUN_TRAINING, RUN_SUBSET = range(2)
# Streams of an input-perturbation key (``regularizers.perturb``).
SHIFT, FLIP, JITTER, INPUT_DROPOUT, INPUT_NOISE = range(5)


def seed_key(seed: int) -> jax.Array:
  """The typed key of an integer seed."""
  return jax.random.key(seed)


def seed_keys(first_seed: int, num_seeds: int) -> jax.Array:
  """(num_seeds,) keys of seeds first_seed, first_seed + 1, ..."""
  return jax.vmap(jax.random.key)(first_seed + jnp.arange(num_seeds))


def _fold(key: jax.Array, part) -> jax.Array:
  if isinstance(part, str):
    part = zlib.crc32(part.encode())
  return jax.random.fold_in(key, part)


def derive(key: jax.Array, *path) -> jax.Array:
  """``key`` with each of ``path`` (ints, traced ints, or names) folded in."""
  for part in path:
    key = _fold(key, part)
  return key


def derive_each(key: jax.Array, indices) -> jax.Array:
  """(len(indices),) keys, ``derive(key, i)`` for each i of ``indices``."""
  return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.asarray(indices))


def split(key: jax.Array, num: int) -> jax.Array:
  """(num,) independent keys drawn once from ``key``."""
  return jax.random.split(key, num)


def condition_key(seed: int, name: str) -> jax.Array:
  """The key of condition ``name``'s randomization (see the module doc)."""
  return derive(seed_key(seed), name)


def run_keys(seed: int, group: int, runs) -> jax.Array:
  """(len(runs),) keys of runs ``runs`` of ``group`` (see the module doc)."""
  return derive_each(derive(seed_key(seed), group), runs)


def numpy_rng(*parts: int) -> np.random.Generator:
  """A NumPy generator seeded by the integers ``parts``."""
  return np.random.default_rng(list(parts) if len(parts) > 1 else parts[0])
