"""Checkpoint and resume with orbax, and guarding a workdir against mixed flags.

A run directory holds the latest training checkpoint (train state, history so
far, epochs done). Because batch order and every random choice are functions of
(seed, step), a run resumed from any checkpoint replays exactly what the
uninterrupted run would have done. Orbax writes each checkpoint to a temporary
folder and renames it when complete, so a ``kill -9`` mid-save leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

CONFIG_FILE = "config.json"


class RunCheckpointer:
  """Latest-only synchronous checkpoints of a pytree in ``directory``."""

  def __init__(self, directory: str):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=1,
                                           enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, tree: Any) -> None:
    self._manager.save(step, args=ocp.args.StandardSave(tree), force=True)
    self._manager.wait_until_finished()

  def restore(self, like: Any) -> Any:
    """The latest checkpoint, shaped and typed as the pytree ``like``.

    Leaves of ``like`` may be arrays or ``jax.ShapeDtypeStruct``s; a leaf's
    sharding is where it is restored, whatever the sharding it was saved with.
    """
    # Orbax's restore accepts no numpy scalars: describe them as 0-d arrays.
    as_array = lambda x: np.asarray(x) if isinstance(x, np.generic) else x
    abstract = jax.tree.map(
        lambda x: ocp.utils.to_shape_dtype_struct(as_array(x)), like)
    return self._manager.restore(self.latest_step(),
                                 args=ocp.args.StandardRestore(abstract))

  def close(self) -> None:
    self._manager.close()


def prepare_workdir(workdir: str, config: dict, overwrite: bool = False) -> None:
  """Creates ``workdir`` for ``config``, refusing one used with other flags.

  ``config`` must be JSON-serializable. With ``overwrite`` an existing workdir is
  emptied first; otherwise a workdir made with the same config is resumed.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if overwrite and os.path.isdir(workdir):
    shutil.rmtree(workdir)
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    normalized = json.loads(json.dumps(config))
    if saved != normalized:
      changed = sorted(k for k in set(saved) | set(normalized)
                       if saved.get(k) != normalized.get(k))
      details = ", ".join(f"{k}: {saved.get(k)!r} -> {normalized.get(k)!r}"
                          for k in changed)
      raise ValueError(
          f"Workdir {workdir!r} holds a run with different flags ({details}). "
          "Re-run with the original flags to resume, choose another --workdir, "
          "or pass --overwrite to delete it and start again.")
    return
  os.makedirs(workdir, exist_ok=True)
  with open(path, "w") as f:
    json.dump(config, f, indent=2, sort_keys=True)
