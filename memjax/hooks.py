"""Per-epoch hooks of ``engine.fit``, and the two every checkpointed run gets.

A hook is an object with up to four parts (subclass ``Hook``; each is
optional):

* ``start(run: RunStart)``: called once, after a resumed run was restored and
  before the first epoch (``run.epoch`` is 0 for a fresh run, else the epochs
  already done; ``run.state`` is the state after them).
* ``end_epoch(event: EpochEnd)``: called after every epoch, once its clean
  evaluation is recorded and before the checkpoint that includes it.
* ``done()``: True once the hook has what it needs; the run then stops after
  this epoch (e.g. sharpness stops when every seed reached its measuring
  points).
* ``carry``: a pytree (numpy arrays) checkpointed with the run and restored
  on resume, so running sums or per-epoch records survive an interruption.
  ``end_epoch`` replaces or updates it in place. Set it in ``__init__``.

The states a hook sees are device arrays that the next epoch may consume
(``Trainer.train_epoch`` donates its input buffers): use them within the call
and copy what you keep (``jax.device_get``).

Example (the mean test accuracy after every epoch, kept across a resume)::

    class MeanTestAcc(hooks.Hook):
      def __init__(self, epochs):
        self.carry = np.full(epochs, np.nan, np.float32)
      def end_epoch(self, event):
        self.carry[event.epoch - 1] = event.row["test_acc"].mean()

    tracker = MeanTestAcc(config.max_epochs)
    engine.fit(config, data, hooks=[tracker], checkpoint_dir=...)
    tracker.carry  # (max_epochs,)

``MetricsLog`` writes ``metrics.jsonl`` (one JSON line per epoch and seed;
``pandas.read_json(path, lines=True)``), ``TensorBoardLog`` the same values as
TensorBoard scalars (``tensorboard --logdir runs``), and ``KeepStates`` keeps
the training state at chosen epochs for per-example scores later
(``engine.fit`` adds all three when given a ``checkpoint_dir``;
``engine.load_kept_state`` reads a kept state back). Epochs count completed
epochs: epoch e's row is ``history[e - 1]`` and epoch 0 is the
initialization.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
import time
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from memjax import checkpointing

if TYPE_CHECKING:
  from memjax import training

METRICS_FILE = "metrics.jsonl"
# One fixed name, so that a resumed run rewrites its own file instead of
# adding a second one that TensorBoard would merge with the first.
EVENTS_FILE = "events.out.tfevents.memjax"


@dataclasses.dataclass(frozen=True)
class RunStart:
  """A run about to train (fresh, resumed, or already finished)."""

  config: training.TrainConfig
  trainer: training.Trainer
  state: training.TrainState  # after ``epoch`` epochs; seed axis S
  epoch: int  # epochs done: 0 for a fresh run
  steps_per_epoch: int
  history: dict  # key -> (epoch, S): the rows of the epochs done
  fingerprint: str | None  # the run's checkpoint fingerprint; None: none


@dataclasses.dataclass(frozen=True)
class EpochEnd:
  """One finished epoch; per-seed arrays are numpy with a leading axis S."""

  config: training.TrainConfig
  trainer: training.Trainer
  epoch: int  # epochs done, this one included (1 after the first)
  step: int  # SGD steps done per seed
  state: training.TrainState  # after this epoch (device arrays)
  losses: np.ndarray  # (S, steps) per-step training losses of the epoch
  extras: Any  # the epoch function's extra outputs (numpy); None by default
  # The clean evaluation; all four None after an epoch without one
  # (TrainConfig.eval_every), the test pair also without a test set.
  train_loss: np.ndarray | None  # (S, n) eval-mode loss per training example
  train_correct: np.ndarray | None  # (S, n) bool
  test_loss: np.ndarray | None  # (S, n_test)
  test_correct: np.ndarray | None
  row: dict  # the history row: key (engine.HISTORY_KEYS) -> (S,)
  fingerprint: str | None


class Hook:
  """No-op base: override ``start`` and/or ``end_epoch``; set ``carry`` to a
  pytree to have it checkpointed with the run."""

  carry: Any = None

  def start(self, run: RunStart) -> None:
    del run

  def end_epoch(self, event: EpochEnd) -> None:
    del event

  def done(self) -> bool:
    """True: stop the run after this epoch."""
    return False


def _json_value(value) -> float | int | None:
  value = value.item() if isinstance(value, np.generic) else value
  if isinstance(value, float) and not math.isfinite(value):
    return None  # JSON has no nan; pandas reads null as nan
  return value


def history_records(history: dict, first_seed: int,
                    first_epoch: int = 1) -> list[dict]:
  """The (epochs, S) arrays of ``history`` as one record per epoch and seed:
  the epoch (``first_epoch`` for row 0), the seed and the row's values (the
  step as an integer, None where not measured)."""
  keys = sorted(k for k in history if np.ndim(history[k]) == 2)
  epochs, seeds = np.shape(history[keys[0]]) if keys else (0, 0)
  records = []
  for row in range(epochs):
    for lane in range(seeds):
      record = {"epoch": first_epoch + row, "seed": first_seed + lane}
      record.update((k, _json_value(history[k][row][lane])) for k in keys)
      if record.get("step") is not None:
        record["step"] = int(record["step"])
      records.append(record)
  return records


class HistoryLog(Hook):
  """A file of the run's history that grows as training goes: on start it is
  rewritten from the restored history (left untouched when it already holds
  exactly that), so a resumed run never duplicates or loses an epoch; after
  every epoch that epoch's rows are appended. Subclasses say how rows become
  bytes (``encode``, and ``header`` for the file's start) and when an
  existing file counts as intact."""

  path: str

  def header(self) -> list[bytes]:
    return []

  def encode(self, history: dict, first_seed: int,
             first_epoch: int) -> list[bytes]:
    raise NotImplementedError

  def intact(self, written: bytes, expected: list[bytes]) -> bool:
    return written == b"".join(expected)

  def start(self, run: RunStart) -> None:
    if jax.process_index() != 0:
      return
    checkpointing.register(self.path)
    os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
    expected = self.header() + self.encode(run.history, run.config.seed, 1)
    if os.path.exists(self.path):
      with open(self.path, "rb") as f:
        if self.intact(f.read(), expected):
          return
    tmp = self.path + ".tmp"
    with open(tmp, "wb") as f:
      f.writelines(expected)
    os.replace(tmp, self.path)

  def end_epoch(self, event: EpochEnd) -> None:
    if jax.process_index() != 0:
      return
    rows = {k: np.asarray(v)[None] for k, v in event.row.items()}
    with open(self.path, "ab") as f:
      f.writelines(self.encode(rows, event.config.seed, event.epoch))


class MetricsLog(HistoryLog):
  """``path``: one JSON line per epoch and seed, holding ``epoch``, ``seed``
  and the history row's values (``step``, ``batch_loss``, ``train_loss``,
  ``train_acc``, ``test_loss``, ``test_acc``; null where not measured); the
  file always equals the history."""

  def __init__(self, path: str):
    self.path = path

  def encode(self, history, first_seed, first_epoch):
    return [(json.dumps(r) + "\n").encode()
            for r in history_records(history, first_seed, first_epoch)]


def _tensorboardx():
  """tensorboardX's (event_pb2, summary_pb2, masked_crc32c), imported on
  first use: importing tensorboardX takes a second."""
  # pylint: disable-next=g-import-not-at-top
  from tensorboardX.proto import event_pb2, summary_pb2
  # pylint: disable-next=g-import-not-at-top
  from tensorboardX.record_writer import masked_crc32c
  return event_pb2, summary_pb2, masked_crc32c


def _event_record(event) -> bytes:
  """One event as a TFRecord: length, its checksum, data, its checksum."""
  masked_crc32c = _tensorboardx()[2]
  data = event.SerializeToString()
  header = struct.pack("Q", len(data))
  return (header + struct.pack("I", masked_crc32c(header)) + data
          + struct.pack("I", masked_crc32c(data)))


def read_events(path: str) -> list | None:
  """The events of the TFRecord file ``path``; None if it cannot be read or
  a record is damaged (a checksum does not match)."""
  try:
    with open(path, "rb") as f:
      return _parse_events(f.read())
  except OSError:
    return None


def _parse_events(data: bytes) -> list | None:
  event_pb2, _, masked_crc32c = _tensorboardx()
  events, offset = [], 0
  while offset < len(data):
    if offset + 12 > len(data):
      return None
    header = data[offset:offset + 8]
    (length,) = struct.unpack("Q", header)
    (header_crc,) = struct.unpack("I", data[offset + 8:offset + 12])
    body, end = data[offset + 12:offset + 12 + length], offset + 16 + length
    if (end > len(data) or header_crc != masked_crc32c(header)
        or struct.unpack("I", data[end - 4:end])[0] != masked_crc32c(body)):
      return None
    events.append(event_pb2.Event.FromString(body))
    offset = end
  return events


def _timeless(event) -> bytes:
  """``event`` serialized without its wall time, for comparing contents."""
  copy = type(event)()
  copy.CopyFrom(event)
  copy.ClearField("wall_time")
  return copy.SerializeToString()


class TensorBoardLog(HistoryLog):
  """``folder/events.out.tfevents.memjax``: every history value of every
  epoch as the scalar ``<name>/seed_<seed>`` at that lane's training step, so
  that ``tensorboard --logdir runs`` shows the curves live. Written with
  tensorboardX's protocol buffers and checksum (no TensorFlow); an existing
  file is intact when its events equal the history's but for wall times."""

  def __init__(self, folder: str):
    self.path = os.path.join(folder, EVENTS_FILE)

  def header(self):
    event_pb2 = _tensorboardx()[0]
    return [_event_record(event_pb2.Event(wall_time=time.time(),
                                          file_version="brain.Event:2"))]

  def encode(self, history, first_seed, first_epoch):
    event_pb2, summary_pb2, _ = _tensorboardx()
    records = []
    for record in history_records(history, first_seed, first_epoch):
      values = [summary_pb2.Summary.Value(
          tag=f"{name}/seed_{record['seed']}", simple_value=value)
                for name, value in sorted(record.items())
                if name not in ("epoch", "seed", "step") and value is not None]
      step = record.get("step")
      records.append(_event_record(event_pb2.Event(
          wall_time=time.time(),
          step=record["epoch"] if step is None else step,
          summary=summary_pb2.Summary(value=values))))
    return records

  def intact(self, written, expected):
    events = _parse_events(written)
    return events is not None and list(map(_timeless, events)) == list(
        map(_timeless, _parse_events(b"".join(expected))))


def kept_state_path(checkpoint_dir: str, epoch: int) -> str:
  return os.path.join(checkpoint_dir, f"state_epoch_{epoch:05d}.npz")


def _kept_fingerprint(run_fingerprint: str, epoch: int) -> str:
  return checkpointing.fingerprint(run_fingerprint, "kept state", epoch)


def _leaf_names(tree) -> list[str]:
  return [jax.tree_util.keystr(path)
          for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


class KeepStates(Hook):
  """Keeps the (S-seed) training state after each epoch of ``epochs`` (0: the
  initialization) in ``checkpoint_dir/state_epoch_<e>.npz``, tied to the
  run's fingerprint; a resumed run re-keeps what it replays. Epochs after an
  early stop (``stop_when_fit``) are not reached and so not kept."""

  def __init__(self, checkpoint_dir: str, epochs):
    self.checkpoint_dir = checkpoint_dir
    self.epochs = frozenset(int(e) for e in epochs)

  def _keep(self, state, epoch: int, run_fingerprint: str) -> None:
    if epoch not in self.epochs or jax.process_index() != 0:
      return
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(state)]
    checkpointing.save_npz(
        kept_state_path(self.checkpoint_dir, epoch),
        _kept_fingerprint(run_fingerprint, epoch),
        **{f"leaf_{i}": leaf for i, leaf in enumerate(leaves)},
        names=np.array(_leaf_names(state)))

  def start(self, run: RunStart) -> None:
    if run.fingerprint is None:
      raise ValueError("keeping states needs a checkpointed run "
                       "(a checkpoint_dir).")
    for epoch in sorted(self.epochs):
      path = kept_state_path(self.checkpoint_dir, epoch)
      if 0 < epoch <= run.epoch and not os.path.exists(path):
        raise ValueError(f"{path} is missing but the checkpoint of epoch "
                         f"{run.epoch} is past it; re-run with --overwrite "
                         "to start again.")
    if run.epoch == 0:
      self._keep(run.state, 0, run.fingerprint)

  def end_epoch(self, event: EpochEnd) -> None:
    self._keep(event.state, event.epoch, event.fingerprint)


def load_state(checkpoint_dir: str, epoch: int, like, run_fingerprint: str):
  """The state ``KeepStates`` kept at ``epoch``, as the pytree ``like`` (its
  leaves: arrays or ``jax.ShapeDtypeStruct``s of the same shapes). ValueError
  naming the file when it is missing, damaged or from another run."""
  path = kept_state_path(checkpoint_dir, epoch)
  if not os.path.exists(path):
    kept = sorted(int(name[len("state_epoch_"):-len(".npz")])
                  for name in os.listdir(checkpoint_dir)
                  if name.startswith("state_epoch_") and name.endswith(".npz")
                  ) if os.path.isdir(checkpoint_dir) else []
    raise ValueError(f"No state kept at epoch {epoch} ({path} does not "
                     f"exist); kept epochs: {kept or 'none'}.")
  arrays = checkpointing.load_npz(path, _kept_fingerprint(run_fingerprint,
                                                          epoch))
  names = _leaf_names(like)
  likes, treedef = jax.tree.flatten(like)
  if [str(n) for n in arrays["names"]] != names:
    raise ValueError(f"{path} holds another model's state; delete it or "
                     "re-run with --overwrite.")
  leaves = []
  for i, want in enumerate(likes):
    leaf = arrays[f"leaf_{i}"]
    if leaf.shape != tuple(want.shape) or leaf.dtype != want.dtype:
      raise ValueError(f"{path}: {names[i]} has shape {leaf.shape} "
                       f"{leaf.dtype}, expected {tuple(want.shape)} "
                       f"{want.dtype}.")
    leaves.append(leaf)
  return jax.tree.unflatten(treedef, leaves)
