"""Workdirs that memjax owns, checkpoints tied to the config that wrote them.

A workdir is claimed by ``prepare_workdir``, which experiments call only after
every flag has been validated and the data loaded, so a failed bad-input run
writes nothing. A claimed workdir holds:

* ``.memjax-workdir``: the marker, and the manifest of every file and folder
  memjax wrote there (``register``). ``--overwrite`` deletes a workdir only if
  it carries the marker and holds nothing outside the manifest; a folder with
  a file memjax did not write is refused, naming the file.
* ``.memjax-lock``: an exclusive ``flock`` held while a run lives; a second run
  on the same workdir is refused at once, naming the holder.
* ``config.json``: the run's flags; a re-run with other flags is refused.

Training checkpoints (``RunCheckpointer``) and per-chunk result files
(``save_npz``) carry the fingerprint of the configuration that wrote them, and
a mismatch is refused, so a run never resumes from another run's state even if
config.json was deleted. Because batch order and every random choice are
functions of (seed, step), a run resumed from any checkpoint replays exactly
what the uninterrupted run would have done. Orbax writes each checkpoint to a
temporary folder and renames it when complete, so a ``kill -9`` mid-save
leaves the previous checkpoint intact; damaged files give a one-line error
naming the file and the way out.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import sys
import time
import zipfile
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

CONFIG_FILE = "config.json"
MARKER_FILE = ".memjax-workdir"
LOCK_FILE = ".memjax-lock"
FINGERPRINT_FILE = "fingerprint.txt"
_OWN_FILES = (MARKER_FILE, LOCK_FILE, CONFIG_FILE)
# Lock file descriptors this process holds, by workdir: a process may claim
# its workdir again (tests run experiments in-process).
_HELD_LOCKS: dict[str, int] = {}


def fingerprint(*parts: Any) -> str:
  """A short hash of configs (dataclasses, dicts, scalars) and arrays."""
  digest = hashlib.sha256()
  def add(part):
    if dataclasses.is_dataclass(part) and not isinstance(part, type):
      part = {"__class__": type(part).__name__, **dataclasses.asdict(part)}
    if isinstance(part, (np.ndarray, jax.Array)):
      array = np.ascontiguousarray(np.asarray(part))
      digest.update(f"array{array.shape}{array.dtype}".encode())
      digest.update(array.tobytes())
    elif isinstance(part, (list, tuple)):
      digest.update(f"seq{len(part)}".encode())
      for p in part:
        add(p)
    elif isinstance(part, dict):
      digest.update(f"dict{len(part)}".encode())
      for k in sorted(part, key=str):
        add(str(k))
        add(part[k])
    else:
      digest.update(f"{type(part).__name__}:{part!r};".encode())
  for part in parts:
    add(part)
  return digest.hexdigest()[:16]


# --- Workdirs ---------------------------------------------------------------

def _workdir_root(path: str) -> str | None:
  """The nearest folder at or above ``path`` that carries the marker."""
  path = os.path.abspath(path)
  while True:
    if os.path.isfile(os.path.join(path, MARKER_FILE)):
      return path
    parent = os.path.dirname(path)
    if parent == path:
      return None
    path = parent


def _manifest(root: str) -> set[str]:
  with open(os.path.join(root, MARKER_FILE)) as f:
    lines = f.read().splitlines()
  return {line for line in lines[1:] if line}


def register(path: str) -> None:
  """Records ``path`` (a file or folder about to be written) as memjax's in the
  manifest of the workdir that holds it; a no-op outside a workdir."""
  root = _workdir_root(os.path.dirname(os.path.abspath(path)))
  if root is None:
    return
  relative = os.path.relpath(os.path.abspath(path), root)
  if relative.startswith("..") or relative in _manifest(root):
    return
  with open(os.path.join(root, MARKER_FILE), "a") as f:
    f.write(relative + "\n")


def _foreign_file(root: str) -> str | None:
  """A file under ``root`` that memjax did not write, or None."""
  manifest = _manifest(root)
  def ours(relative):
    if relative in _OWN_FILES:
      return True
    parts = relative.split(os.sep)
    prefixes = {os.sep.join(parts[:i]) for i in range(1, len(parts) + 1)}
    if relative.endswith(".tmp"):
      prefixes.add(relative[:-len(".tmp")])
    return bool(prefixes & manifest)
  for folder, folders, files in os.walk(root):
    # os.walk does not descend into linked folders: a link is an entry too.
    links = [d for d in folders if os.path.islink(os.path.join(folder, d))]
    for name in sorted(files + links):
      relative = os.path.relpath(os.path.join(folder, name), root)
      if not ours(relative):
        return os.path.join(root, relative)
  return None


def check_workdir_path(workdir: str) -> None:
  """Raises ValueError unless ``workdir`` can be a folder memjax writes to."""
  path = os.path.abspath(workdir)
  if os.path.exists(path) and not os.path.isdir(path):
    raise ValueError(f"--workdir {workdir!r} is a file, not a folder; choose "
                     "another --workdir.")
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise ValueError(f"--workdir {workdir!r} lies under the file "
                     f"{existing!r}; choose another --workdir.")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise ValueError(f"--workdir {workdir!r}: no permission to write in "
                     f"{existing!r}; choose another --workdir.")


def _lock(root: str) -> None:
  """Holds the workdir's lock for the life of this process, or refuses."""
  if root in _HELD_LOCKS:
    return
  path = os.path.join(root, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    holder = os.read(fd, 4096).decode(errors="replace").strip() or "unknown"
    os.close(fd)
    raise ValueError(f"Workdir {root!r} is in use by another run ({holder}); "
                     "wait for it to finish or choose another --workdir."
                     ) from None
  os.ftruncate(fd, 0)
  os.write(fd, (f"pid {os.getpid()}, started "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')}: "
                f"{' '.join(sys.argv)[:500]}").encode())
  _HELD_LOCKS[root] = fd


def release(workdir: str) -> None:
  """Releases this process's lock on ``workdir`` (tests; a process that exits
  releases it anyway)."""
  fd = _HELD_LOCKS.pop(os.path.abspath(workdir), None)
  if fd is not None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _read_config(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f"{path} is damaged ({type(e).__name__}); re-run with "
                     "--overwrite to start again.") from None


# A setting one of two configs lacks (config_changes).
ABSENT = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()


def config_changes(config, other, path: str = "") -> list[tuple]:
  """(dotted path, value in ``config``, value in ``other``) wherever the two
  JSON configs differ, nested objects compared setting by setting; a setting
  only one of them has is ``ABSENT`` in the other."""
  if isinstance(config, dict) and isinstance(other, dict):
    return [change for key in sorted(set(config) | set(other))
            for change in config_changes(
                config.get(key, ABSENT), other.get(key, ABSENT),
                f"{path}.{key}" if path else key)]
  return [] if config == other else [(path or "config", config, other)]


def prepare_workdir(workdir: str, config: dict,
                    overwrite: bool = False) -> None:
  """Claims ``workdir`` for ``config``: creates it with the marker, takes the
  lock, and writes config.json; resumes a workdir made with the same config.

  Call only after every input has been validated. ``config`` must be
  JSON-serializable. Refuses (ValueError) a non-empty folder memjax did not
  create, a workdir another run holds, and one used with other flags. With
  ``overwrite`` a memjax workdir is emptied first, unless it holds a file
  memjax did not write.
  """
  check_workdir_path(workdir)
  root = os.path.abspath(workdir)
  if os.path.isdir(root) and os.listdir(root) and not os.path.isfile(
      os.path.join(root, MARKER_FILE)):
    example = sorted(os.listdir(root))[0]
    raise ValueError(
        f"--workdir {workdir!r} is a folder memjax did not create (it holds "
        f"{os.path.join(root, example)!r}); memjax never writes into or "
        "deletes such a folder. Choose a new or empty --workdir.")
  os.makedirs(root, exist_ok=True)
  marker = os.path.join(root, MARKER_FILE)
  if not os.path.exists(marker):
    with open(marker, "w") as f:
      f.write("memjax workdir; files memjax wrote here:\n")
  _lock(root)
  path = os.path.join(root, CONFIG_FILE)
  if overwrite:
    foreign = _foreign_file(root)
    if foreign is not None:
      raise ValueError(
          f"--overwrite refused: {foreign!r} was not written by memjax. Move "
          "it out of the workdir, or choose another --workdir.")
    for name in os.listdir(root):
      if name in (MARKER_FILE, LOCK_FILE):
        continue
      entry = os.path.join(root, name)
      if os.path.isdir(entry) and not os.path.islink(entry):
        shutil.rmtree(entry)
      else:
        os.remove(entry)
    with open(marker, "w") as f:
      f.write("memjax workdir; files memjax wrote here:\n")
  normalized = json.loads(json.dumps(config))
  if os.path.exists(path):
    saved = _read_config(path)
    if saved != normalized:
      changes = config_changes(saved, normalized)
      details = ", ".join(
          f"{key}: {'(absent)' if old is ABSENT else repr(old)} -> "
          f"{'(absent)' if new is ABSENT else repr(new)}"
          for key, old, new in changes)
      newer = any(old is ABSENT for _, old, _ in changes)
      raise ValueError(
          f"Workdir {workdir!r} holds a run with different settings "
          f"({details}). "
          + ("A setting absent from that run was added to memjax after it "
             "ran, so this version cannot resume it: " if newer else
             "Re-run with the original flags to resume, ")
          + "choose another --workdir, or pass --overwrite to delete it and "
          "start again.")
    return
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(normalized, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


# --- Checkpoints and per-chunk files -----------------------------------------

def _damaged(path: str, error: Exception, way_out: str) -> ValueError:
  return ValueError(f"{path} is damaged ({type(error).__name__}); {way_out}")


class RunCheckpointer:
  """Latest-only synchronous checkpoints of a pytree in ``directory``, tied to
  the ``fingerprint`` of the configuration that writes them."""

  def __init__(self, directory: str, fingerprint: str):
    self.directory = os.path.abspath(directory)
    register(self.directory)
    options = ocp.CheckpointManagerOptions(max_to_keep=1,
                                           enable_async_checkpointing=False)
    try:
      self._manager = ocp.CheckpointManager(self.directory, options=options)
      latest = self._manager.latest_step()
    except Exception as e:  # orbax raises many types for a damaged folder
      raise _damaged(self.directory, e, "re-run with --overwrite to start "
                     "again.") from None
    stamp = os.path.join(self.directory, FINGERPRINT_FILE)
    if latest is None:
      with open(stamp, "w") as f:
        f.write(fingerprint)
      return
    saved = open(stamp).read().strip() if os.path.exists(stamp) else None
    if saved != fingerprint:
      self._manager.close()
      raise ValueError(
          f"Checkpoint {self.directory} was written by a run with a different "
          f"configuration (fingerprint {saved} != {fingerprint}); re-run with "
          "the original flags, or with --overwrite to start again.")

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
    step = self.latest_step()
    try:
      return self._manager.restore(step,
                                   args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # orbax/tensorstore raise many types
      self._manager.close()
      step_dir = os.path.join(self.directory, str(step))
      raise _damaged(step_dir, e, f"delete {step_dir} to resume from the "
                     "start of the run, or re-run with --overwrite.") from None

  def close(self) -> None:
    self._manager.close()


FINGERPRINT_KEY = "memjax_fingerprint"


def save_npz(path: str, fingerprint_: str | None = None, **arrays) -> str:
  """Writes ``arrays`` to ``path`` atomically (a reader never sees half a
  file), registered in the workdir, with the fingerprint that ties it to the
  configuration that computed it."""
  register(path)
  if fingerprint_ is not None:
    arrays[FINGERPRINT_KEY] = np.array(fingerprint_)
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    np.savez_compressed(f, **arrays)
  os.replace(tmp, path)
  return path


def load_npz(path: str, fingerprint_: str | None = None) -> dict:
  """The arrays of a ``save_npz`` file; ValueError naming the file when it is
  damaged or was written under another configuration."""
  way_out = f"delete {path} to recompute it, or re-run with --overwrite."
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
    raise _damaged(path, e, way_out) from None
  saved = arrays.pop(FINGERPRINT_KEY, None)
  if fingerprint_ is not None and (saved is None or str(saved) != fingerprint_):
    raise ValueError(f"{path} was computed under a different configuration; "
                     f"{way_out}")
  return arrays


def cached_case(workdir: str, name: str, fingerprint_: str, compute
                ) -> tuple[dict, dict]:
  """``compute()``'s (row, arrays), saved to <workdir>/cases/<name>.npz; a
  re-run with the same fingerprint loads them instead of computing (resume
  after a kill).

  ``row`` is a dict of JSON numbers, strings and None (numpy scalars allowed);
  ``arrays`` a dict of numpy arrays. The row is stored as JSON with NaN kept as
  NaN, so a loaded row equals the computed one.
  """
  path = os.path.join(workdir, "cases", f"{name}.npz")
  if os.path.exists(path):
    arrays = load_npz(path, fingerprint_)
    return json.loads(str(arrays.pop("row"))), arrays
  row, arrays = compute()
  register(os.path.dirname(path))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  text = json.dumps(row, default=lambda value: value.tolist())  # numpy
  save_npz(path, fingerprint_, **arrays, row=np.array(text))
  return row, arrays
