"""The one training loop: ``fit`` trains S seeds until they fit or time is up.

``fit`` drives the pure functions of ``training.Trainer``: it restores a run
from its checkpoint, runs one jitted epoch at a time (``EpochFn``; the default
is ``Trainer.train_epoch``), evaluates every seed on the clean training and
test sets, records the history, calls the per-epoch hooks
(``memjax.hooks``: metrics.jsonl, kept states, measurements such as critical
samples or loss sensitivity) and checkpoints, in small functions of their own.
It also holds the checks every loop shares: a non-finite or exploding loss
stops a run naming the seed and step.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from memjax import checkpointing
from memjax import hooks as hooks_lib
from memjax import keys
from memjax import sharding
from memjax import training


def first_nonfinite(losses) -> tuple[int, int] | None:
  """(lane, step) of the first non-finite loss of the first lane that has one,
  in (lanes, steps) ``losses``; None when every loss is finite."""
  finite = np.isfinite(np.asarray(losses))
  if finite.all():
    return None
  lane = int(np.argmin(finite.all(axis=1)))
  return lane, int(np.argmin(finite[lane]))


def check_finite(losses, config: training.TrainConfig, first_step: int):
  """Raises FloatingPointError naming the first seed and step with a bad loss.

  ``losses``: (seeds, steps) per-step training losses of one epoch."""
  bad = first_nonfinite(losses)
  if bad is not None:
    lane, step = bad
    raise FloatingPointError(
        f"Non-finite training loss for seed {config.seed + lane} at step "
        f"{first_step + step} (model {config.model}, learning rate "
        f"{config.lr}). Lower --learning_rate or check the inputs.")


# A mean clean cross-entropy this large means logits of order 1e6 against
# the true class: only diverged training gets there.
DIVERGED_LOSS = 1e6


def check_finite_eval(losses, config: training.TrainConfig, step: int,
                      what: str):
  """Raises FloatingPointError naming the first seed whose clean evaluation
  loss after ``step`` is not finite or above ``DIVERGED_LOSS`` (divergence on
  the last update).

  ``losses``: (seeds, examples) per-example evaluation losses."""
  losses = np.asarray(losses)
  with np.errstate(invalid="ignore"):
    healthy = (np.isfinite(losses).all(axis=1)
               & (losses.mean(axis=1) <= DIVERGED_LOSS))
  if not healthy.all():
    lane = int(np.argmin(healthy))
    raise FloatingPointError(
        f"Non-finite or exploding (mean > {DIVERGED_LOSS:g}) {what} loss for "
        f"seed {config.seed + lane} after step "
        f"{step} (model {config.model}, learning rate {config.lr}): training "
        "diverged. Lower --learning_rate or check the inputs.")


def run_fingerprint(config: training.TrainConfig, data: training.TrainData,
                    train_index) -> str:
  """Identifies what a run's checkpoints depend on: the config (less how the
  seeds execute) and the data it trains and evaluates on."""
  return checkpointing.fingerprint(
      dataclasses.replace(config, seed_chunk=None), data.x_train, data.y_train,
      data.x_test, data.y_test, data.num_classes, np.asarray(train_index))


HISTORY_KEYS = ("step", "batch_loss", "train_loss", "train_acc", "test_loss",
                "test_acc")


@dataclasses.dataclass
class FitResult:
  """A finished (or stopped) S-seed run; arrays have a trailing seed axis."""

  state: training.TrainState
  history: dict  # key -> (epochs, S); "train_correct" -> (epochs, S, n)
  fit_step: np.ndarray  # (S,) step of the first clean pass with acc >= bar
  epochs: int
  steps_per_epoch: int

  def all_fit(self) -> bool:
    return bool((self.fit_step >= 0).all())


# An epoch function: (trainer, state, seed_keys, epoch, x_train, y_train,
# train_index, *, per_seed_inputs, per_seed_labels) -> (state, (S, steps)
# losses, extras); ``extras`` (a pytree with a leading seed axis, or None)
# reaches the hooks as numpy (``hooks.EpochEnd.extras``).
EpochFn = Callable[..., tuple[training.TrainState, jax.Array, Any]]


def train_epoch(trainer: training.Trainer, state, seed_keys, epoch, x, y,
                train_index, **axes):
  """The default ``EpochFn``: ``Trainer.train_epoch``, no extras."""
  state, losses = trainer.train_epoch(state, seed_keys, epoch, x, y,
                                      train_index, **axes)
  return state, losses, None


@dataclasses.dataclass(frozen=True)
class _Run:
  """What stays fixed during one fit: the trainer, the seeds' keys, and the
  data where it lives (with a mesh, placed and padded to the mesh's seeds)."""

  config: training.TrainConfig
  trainer: training.Trainer
  data: training.TrainData
  seed_keys: jax.Array
  train_index: jax.Array  # (S, m) each seed's training examples
  in_subset: np.ndarray  # (S, n) bool: train_index as a mask
  steps: int  # SGD steps per epoch
  fingerprint: str | None
  placement: sharding.SeedPlacement | None

  def to_host(self, x) -> np.ndarray:
    """A per-seed device array as numpy, the S real seeds."""
    if self.placement is None:
      return np.asarray(x)
    return self.placement.to_host(x)

  def unpad(self, tree):
    return tree if self.placement is None else self.placement.unpadded(tree)


def _prepare(config: training.TrainConfig, data: training.TrainData, mesh,
             stamp_parts,
             checkpointed: bool) -> _Run:
  s = config.num_seeds
  train_index = (training.default_train_index(data, s)
                 if data.train_index is None
                 else jnp.asarray(data.train_index, jnp.int32))
  in_subset = np.zeros((s, data.num_train), bool)
  np.put_along_axis(in_subset, np.asarray(train_index), True, axis=1)
  stamp = None
  if checkpointed:
    stamp = run_fingerprint(config, data, train_index)
    if stamp_parts:
      stamp = checkpointing.fingerprint(stamp, *stamp_parts)
  seed_keys, placement = keys.seed_keys(config.seed, s), None
  if mesh is not None:
    if config.seed_chunk is not None:
      raise ValueError(f"seed_chunk={config.seed_chunk} is for one device; "
                       "with a mesh leave it None (each device vmaps its own "
                       "seeds).")
    placement = sharding.SeedPlacement(mesh, s)
    seed_keys = placement.keys(config)
    train_index = placement.place_per_seed(train_index)
    data = placement.place_data(data)
  trainer = training.cached_trainer(config, data.input_shape, data.num_classes,
                                   sharded=mesh is not None)
  return _Run(config, trainer, data, seed_keys, train_index, in_subset,
              training.steps_per_epoch(config, train_index.shape[1]), stamp,
              placement)


def _initial_carry(run: _Run, record_examples: bool, hooks) -> dict:
  """The checkpointed pytree of a fresh run: state, history (NaN rows until
  measured), fit steps (-1: not yet), epochs done, and the hooks' carries."""
  config, s = run.config, run.config.num_seeds
  history = {k: np.full((config.max_epochs, s), np.nan, np.float32)
             for k in HISTORY_KEYS}
  if record_examples:
    history["train_correct"] = np.zeros(
        (config.max_epochs, s, run.data.num_train), np.uint8)
  state = run.trainer.init(run.seed_keys)
  if run.placement:
    state = run.placement.place_state(state)
  carry = {"state": state, "history": history,
           "fit_step": np.full((s,), -1, np.int32), "epoch": np.int32(0)}
  hook_carries = _hook_carries(hooks)
  if hook_carries:
    carry["hooks"] = hook_carries
  return carry


def _hook_carries(hooks) -> dict:
  return {str(i): h.carry for i, h in enumerate(hooks) if h.carry is not None}


def _restore(checkpointer: checkpointing.RunCheckpointer, carry: dict,
             run: _Run, hooks) -> dict:
  """The latest checkpoint, as host numpy (writable) apart from the state,
  which goes where the run computes; the hooks get their carries back."""
  if run.placement:
    carry = {**carry,
             "state": run.placement.abstract_unpadded(carry["state"])}
  restored = checkpointer.restore(carry)
  if run.placement:
    restored["state"] = run.placement.place_unpadded_state(restored["state"])
  restored["history"] = {k: np.array(v)
                         for k, v in restored["history"].items()}
  restored["fit_step"] = np.array(restored["fit_step"])
  for i, hook_carry in restored.get("hooks", {}).items():
    hooks[int(i)].carry = jax.tree.map(
        lambda got, like: np.array(got) if isinstance(
            like, (np.ndarray, np.generic)) else got,
        hook_carry, carry["hooks"][i])
  return restored


def _evaluate(run: _Run, state, epoch: int):
  """Clean eval-mode per-example (losses, correct) on the training and test
  sets after ``epoch`` epochs, as (S, n) numpy; the test pair is None without
  a test set. FloatingPointError on a diverged evaluation."""
  data, step = run.data, (epoch + 1) * run.steps
  train_loss, train_correct = map(run.to_host, run.trainer.evaluate(
      state, data.x_train, data.y_train, **data.layout))
  check_finite_eval(train_loss, run.config, step, "training-set")
  if data.x_test is None:
    return train_loss, train_correct, None, None
  test_loss, test_correct = map(run.to_host, run.trainer.evaluate(
      state, data.x_test, data.y_test, **data.layout))
  check_finite_eval(test_loss, run.config, step, "test-set")
  return train_loss, train_correct, test_loss, test_correct


def _evaluates(config: training.TrainConfig, epoch: int) -> bool:
  """Whether the epoch after ``epoch`` epochs ends with a clean evaluation."""
  return (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.max_epochs


def _history_row(run: _Run, epoch: int, losses, train_loss, train_correct,
                 test_loss, test_correct) -> dict:
  """Epoch ``epoch``'s history row (key -> (S,)); the training-set means are
  over each seed's own training subset; NaN where not evaluated."""
  subset_mean = lambda v: (v * run.in_subset).sum(1) / run.in_subset.sum(1)
  missing = np.full(run.config.num_seeds, np.nan, np.float32)
  mean = lambda v, reduce: missing if v is None else reduce(v)
  return {"step": (epoch + 1) * run.steps,
          "batch_loss": losses.mean(1),
          "train_loss": mean(train_loss, subset_mean),
          "train_acc": mean(train_correct, subset_mean),
          "test_loss": mean(test_loss, lambda v: v.mean(1)),
          "test_acc": mean(test_correct, lambda v: v.mean(1))}


def _record(carry: dict, epoch: int, row: dict, train_correct,
            fit_threshold: float) -> dict:
  """Writes ``row`` into the history, marks the seeds that fit now, and
  returns the row as stored (float32)."""
  history, fit_step = carry["history"], carry["fit_step"]
  for k, v in row.items():
    history[k][epoch] = v
  if "train_correct" in history:
    history["train_correct"][epoch] = train_correct
  newly_fit = (row["train_acc"] >= fit_threshold) & (fit_step < 0)
  fit_step[newly_fit] = row["step"]
  return {k: history[k][epoch].copy() for k in row}


def _run_epoch(run: _Run, epoch_fn: EpochFn, state, epoch: int):
  """One epoch of every seed: (state, (S, steps) losses as numpy, extras as
  numpy); FloatingPointError naming the first non-finite loss."""
  state, losses, extras = epoch_fn(run.trainer, state, run.seed_keys, epoch,
                                   run.data.x_train, run.data.y_train,
                                   run.train_index, **run.data.layout)
  losses = run.to_host(losses)
  check_finite(losses, run.config, first_step=epoch * run.steps)
  return state, losses, jax.tree.map(run.to_host, extras)


def fit(config: training.TrainConfig, data: training.TrainData, *,
        hooks: Sequence = (),
        epoch_fn: EpochFn = train_epoch, checkpoint_dir: str | None = None,
        checkpoint_seconds: float = 30.0, progress: str | None = None,
        record_examples: bool = False, keep_epochs: Sequence[int] = (),
        fingerprint_parts: Sequence = (), mesh=None) -> FitResult:
  """Trains ``config.num_seeds`` seeds at once until all fit or max_epochs.

  After every epoch (every ``config.eval_every``-th and the last; the other
  rows hold NaN and their hook events None) a clean eval-mode pass over the
  training set (each seed's training subset) and the test set (skipped when
  ``data.x_test`` is None) records loss and accuracy, and each of ``hooks``
  (``memjax.hooks``) sees the epoch. ``epoch_fn`` replaces the training epoch
  (``EpochFn``), e.g. to record per-step quantities as its extras.

  With ``checkpoint_dir`` the run (state, history, the hooks' carries)
  checkpoints at most every ``checkpoint_seconds`` and at the end, and resumes
  from the latest checkpoint when re-run; ``fingerprint_parts`` are the
  settings of ``epoch_fn`` and the hooks that the checkpoint also depends on.
  A checkpointed run writes ``checkpoint_dir/metrics.jsonl`` and TensorBoard
  scalars as it goes (``hooks.MetricsLog``, ``hooks.TensorBoardLog``) and
  keeps the state after each of ``keep_epochs``
  (0: the initialization; ``load_kept_state``). ``record_examples`` also
  keeps each epoch's per-example train correctness. With a
  ``jax.sharding.Mesh`` (``memjax.sharding.make_mesh``) the seeds are spread
  over its ``seeds`` axis, padded to a multiple of it; padded seeds are
  dropped from every result, hook event and checkpoint.
  """
  hooks = list(hooks)
  if checkpoint_dir is not None:
    hooks.append(hooks_lib.MetricsLog(
        os.path.join(checkpoint_dir, hooks_lib.METRICS_FILE)))
    hooks.append(hooks_lib.TensorBoardLog(checkpoint_dir))
    if keep_epochs:
      hooks.append(hooks_lib.KeepStates(checkpoint_dir, keep_epochs))
  _check_keep_epochs(keep_epochs, config, checkpoint_dir)
  if record_examples and config.eval_every != 1:
    raise ValueError("recording per-example correctness needs a clean "
                     f"evaluation every epoch; got eval_every="
                     f"{config.eval_every}.")
  run = _prepare(config, data, mesh, tuple(fingerprint_parts),
                 checkpointed=checkpoint_dir is not None)
  carry = _initial_carry(run, record_examples, hooks)
  checkpointer = None
  if checkpoint_dir is not None:
    checkpointer = checkpointing.RunCheckpointer(checkpoint_dir,
                                                 run.fingerprint)
    if checkpointer.latest_step() is not None:
      carry = _restore(checkpointer, carry, run, hooks)
  state, history, fit_step = carry["state"], carry["history"], carry["fit_step"]
  epoch = int(carry["epoch"])
  if hooks:
    start = hooks_lib.RunStart(
        config, run.trainer, run.unpad(state), epoch, run.steps,
        {k: v[:epoch] for k, v in history.items()}, run.fingerprint)
    for hook in hooks:
      hook.start(start)

  def done():
    return (epoch >= config.max_epochs or (config.stop_when_fit and
                                           (fit_step >= 0).all())
            or any(hook.done() for hook in hooks))

  bar = tqdm.tqdm(total=config.max_epochs, initial=epoch, desc=progress,
                  disable=progress is None, unit="epoch", leave=False)
  last_save = time.monotonic()
  while not done():
    state, losses, extras = _run_epoch(run, epoch_fn, state, epoch)
    evaluation = (_evaluate(run, state, epoch) if _evaluates(config, epoch)
                  else (None,) * 4)
    row = _history_row(run, epoch, losses, *evaluation)
    row = _record(carry, epoch, row, evaluation[1], config.fit_threshold)
    epoch += 1
    if hooks:
      event = hooks_lib.EpochEnd(config, run.trainer, epoch, epoch * run.steps,
                                 run.unpad(state), losses, extras, *evaluation,
                                 row, run.fingerprint)
      for hook in hooks:
        hook.end_epoch(event)
    bar.update(1)
    bar.set_postfix(train_acc=f"{row['train_acc'].min():.3f}",
                    test_acc=f"{row['test_acc'].mean():.3f}",
                    fit=f"{(fit_step >= 0).sum()}/{config.num_seeds}")
    if checkpointer and (done() or
                         time.monotonic() - last_save >= checkpoint_seconds):
      saved = {"state": run.unpad(state), "history": history,
               "fit_step": fit_step, "epoch": np.int32(epoch)}
      if "hooks" in carry:
        saved["hooks"] = _hook_carries(hooks)
      checkpointer.save(epoch, saved)
      last_save = time.monotonic()
  bar.close()
  if checkpointer:
    checkpointer.close()
  history = {k: v[:epoch] for k, v in history.items()}
  return FitResult(run.unpad(state), history, fit_step, epoch, run.steps)


def _check_keep_epochs(keep_epochs, config: training.TrainConfig,
                       checkpoint_dir: str | None) -> None:
  bad = [e for e in keep_epochs if not 0 <= e <= config.max_epochs]
  if bad:
    raise ValueError(f"--keep_epochs={list(keep_epochs)} is invalid: each "
                     f"must be in [0, {config.max_epochs}] (the epochs "
                     f"trained; 0 is the initialization), not {bad}.")
  if keep_epochs and checkpoint_dir is None:
    raise ValueError("keep_epochs needs a checkpoint_dir to keep states in.")


def load_kept_state(config: training.TrainConfig, data: training.TrainData,
                    checkpoint_dir: str, epoch: int,
                    fingerprint_parts: Sequence = ()) -> training.TrainState:
  """The S-seed state that ``fit(config, data, checkpoint_dir=...,
  keep_epochs=...)`` kept after ``epoch`` epochs (on the host), e.g. for
  ``per_example.over_seeds(per_example.logit_scores, ...)`` (EL2N) or
  ``per_example.grand``. ValueError naming the file when that state was not
  kept or was kept by a run of another config or data."""
  run = _prepare(config, data, None, tuple(fingerprint_parts),
                 checkpointed=True)
  like = jax.eval_shape(run.trainer.init, run.seed_keys)
  return hooks_lib.load_state(checkpoint_dir, epoch, like, run.fingerprint)
