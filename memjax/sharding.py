r"""Spreading the seeds of a many-seed run over every device JAX sees.

A ``Mesh`` with a ``seeds`` axis (and an optional ``data`` axis) places the
seed-stacked ``TrainState``, the seed keys and every per-seed array (per-seed
inputs or labels, ``train_index``) with ``NamedSharding(mesh, P("seeds"))``;
arrays shared by all seeds are replicated. The jitted training and evaluation
functions of ``training.Trainer`` are unchanged: ``jax.jit`` follows the
shardings of its inputs, so each device trains its own block of seeds and no
collective is needed inside a step.

Seed counts that do not divide the ``seeds`` axis are padded: lanes
``S..S'-1`` train seeds ``seed+S..seed+S'-1`` on copies of the last seed's
per-seed data and are dropped from every result (history, fit steps, returned
state, checkpoints). Checkpoints hold exactly the S real seeds, so a run can
resume on a different device count (or without a mesh at all).

The ``data`` axis holds replicas of each seed block: the state is replicated
over it and the shared datasets are split over it along the example axis
(storage only). Splitting a single seed's minibatch over it would need a
sharding constraint inside the training step, which this module does not add;
use ``data`` > 1 only to spread large datasets' memory.

Multi-host runs use JAX's own runtime: ``initialize_distributed(True)`` calls
``jax.distributed.initialize()`` (coordinator, process count and id come from
the cluster environment: SLURM, Open MPI, Cloud TPU, or the flags below); the
mesh then spans every process's devices; ``reporting.write_process_results``
and ``reporting.merge_process_results`` write and merge each process's part of
the results.

Launch commands (``benchmarks/report.py`` takes ``--distributed``):

  # One host, 8 GPUs: a single process sees all 8; no distributed runtime.
  python benchmarks/report.py

  # Cluster of GPU hosts (one process per host; run on every host):
  python benchmarks/report.py --distributed \
      --coordinator_address=HOST0:1234 --num_processes=4 --process_id=$RANK
  # or under SLURM (the runtime reads the SLURM environment):
  srun --nodes=4 --ntasks-per-node=1 python benchmarks/report.py --distributed

  # TPU pod slice (the runtime reads the TPU metadata; run on every worker):
  gcloud compute tpus tpu-vm ssh $TPU --zone=$ZONE --worker=all \
      --command="cd memjax && python benchmarks/report.py --distributed"
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from memjax import keys

if TYPE_CHECKING:
  from memjax import training

SEEDS, DATA = "seeds", "data"


def make_mesh(devices=None, data_parallel: int = 1) -> Mesh:
  """A (seeds, data) mesh over ``devices`` (default: every device JAX sees)."""
  devices = list(jax.devices() if devices is None else devices)
  if data_parallel < 1 or len(devices) % data_parallel:
    raise ValueError(f"data_parallel={data_parallel} must be >= 1 and divide "
                     f"the device count {len(devices)}.")
  grid = np.array(devices, dtype=object).reshape(-1, data_parallel)
  return Mesh(grid, (SEEDS, DATA), axis_types=(AxisType.Auto, AxisType.Auto))


def initialize_distributed(enabled: bool, coordinator_address=None,
                           num_processes=None, process_id=None) -> None:
  """``jax.distributed.initialize`` when ``enabled`` (call before any JAX op).

  Arguments left as None are read by JAX from the cluster environment.
  """
  if enabled:
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes,
                               process_id=process_id)


def padded_num_seeds(num_seeds: int, mesh: Mesh) -> int:
  """``num_seeds`` rounded up to a multiple of the mesh's ``seeds`` axis."""
  lanes = mesh.shape[SEEDS]
  return -(-num_seeds // lanes) * lanes


def pad_seeds(x, num_padded: int):
  """Pads the leading seed axis to ``num_padded`` by repeating the last seed."""
  pad = num_padded - x.shape[0]
  if pad < 0:
    raise ValueError(f"Cannot pad {x.shape[0]} seeds down to {num_padded}.")
  if pad == 0:
    return x
  return jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)])


class SeedPlacement:
  """Where the arrays of one S-seed run live on ``mesh``."""

  def __init__(self, mesh: Mesh, num_seeds: int):
    if set(mesh.axis_names) != {SEEDS, DATA}:
      raise ValueError(f"Mesh axes {mesh.axis_names} must be ({SEEDS!r}, "
                       f"{DATA!r}); build the mesh with make_mesh.")
    self.mesh = mesh
    self.num_seeds = num_seeds
    self.num_padded = padded_num_seeds(num_seeds, mesh)
    self.per_seed = NamedSharding(mesh, P(SEEDS))
    self.replicated = NamedSharding(mesh, P())
    self.per_example = NamedSharding(mesh, P(DATA))

  @property
  def unpadded_sharding(self) -> NamedSharding:
    """Sharding of S-seed arrays: over seeds when S divides the axis."""
    even = self.num_padded == self.num_seeds
    return self.per_seed if even else self.replicated

  def keys(self, config: training.TrainConfig) -> jax.Array:
    """Seed keys of the padded lanes (padding lanes get the next seeds)."""
    padded = dataclasses.replace(config, num_seeds=self.num_padded)
    return jax.device_put(keys.seed_keys(padded.seed, padded.num_seeds),
                          self.per_seed)

  def place_per_seed(self, x) -> jax.Array:
    """A per-seed array (leading axis S), padded and sharded over seeds."""
    return jax.device_put(pad_seeds(jnp.asarray(x), self.num_padded),
                          self.per_seed)

  def place_shared(self, x) -> jax.Array:
    """An array shared by all seeds, split over ``data`` along examples."""
    x = jnp.asarray(x)
    divisible = x.shape[0] % self.mesh.shape[DATA] == 0
    return jax.device_put(x, self.per_example if divisible else self.replicated)

  def place_state(self, state):
    """A padded (S', ...) pytree, sharded over seeds."""
    return jax.device_put(state, self.per_seed)

  def place_unpadded_state(self, state):
    """An S-seed pytree (e.g. restored), padded and sharded over seeds."""
    return self.place_state(jax.tree.map(
        lambda x: pad_seeds(x, self.num_padded), state))

  def place_data(self, data: training.TrainData) -> training.TrainData:
    place = lambda x, per_seed: (self.place_per_seed(x) if per_seed
                                 else self.place_shared(x))
    return dataclasses.replace(
        data, x_train=place(data.x_train, data.per_seed_inputs),
        y_train=place(data.y_train, data.per_seed_labels),
        x_test=place(data.x_test, data.per_seed_inputs),
        y_test=place(data.y_test, data.per_seed_labels))

  def unpadded(self, tree):
    """The S real seeds of a padded pytree, on ``unpadded_sharding``."""
    return _unpad(tree, self.num_seeds, self.unpadded_sharding)

  def abstract_unpadded(self, tree):
    """ShapeDtypeStructs of ``unpadded(tree)``: a restore target for orbax."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct((self.num_seeds,) + x.shape[1:],
                                       x.dtype,
                                       sharding=self.unpadded_sharding), tree)

  def to_host(self, x) -> np.ndarray:
    """A padded per-seed device array as numpy on every process, S seeds."""
    if jax.process_count() > 1:
      x = multihost_utils.process_allgather(x, tiled=True)
    return np.asarray(x)[:self.num_seeds]

  def local_seeds(self) -> list[int]:
    """Real seed lanes with a shard on this process's devices."""
    index_map = self.per_seed.devices_indices_map((self.num_padded,))
    lanes = set()
    for device, (rows,) in index_map.items():
      if device.process_index == jax.process_index():
        lanes.update(range(*rows.indices(self.num_padded)))
    return sorted(lane for lane in lanes if lane < self.num_seeds)


@functools.partial(jax.jit, static_argnames=("num_seeds", "sharding"))
def _unpad(tree, num_seeds: int, sharding: NamedSharding):
  # Module-level, so that every fit with a mesh shares one compilation.
  return jax.lax.with_sharding_constraint(
      jax.tree.map(lambda x: x[:num_seeds], tree), sharding)
