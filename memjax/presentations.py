"""Forgetting as Toneva et al. (2019) define it: per presentation in training.

Toneva et al. count a forgetting event when an example that the network
classified correctly the last time it appeared in a training minibatch is
misclassified at its next appearance; the prediction is the one the SGD step
makes on the minibatch, before its update (train mode: dropout and input
perturbations on). An example that is never classified correctly at any
presentation has, in their ranking, more events than any learned one.

memjax has two versions, named apart everywhere they are reported:

* ``forgetting_presentation`` (this module): Toneva et al.'s definition.
  ``PresentationRecorder`` is a ``engine.fit`` hook with an epoch function
  (``presentation_epoch``) that records, for every epoch, each example's
  correctness at its presentation; an epoch presents every example once.
* ``forgetting_clean_eval`` (``per_example.forgetting`` on the history of
  ``engine.fit(..., record_examples=True)``): the same transitions counted on
  a clean eval-mode pass over the whole training set after every epoch.

The two differ because a minibatch prediction is made mid-epoch, with
dropout, on a model that has not yet seen the rest of the epoch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from memjax import hooks
from memjax import per_example

if TYPE_CHECKING:
  from memjax import training

NOT_PRESENTED = -1  # recorded for an example a seed did not see that epoch


def _scatter_presented(batch_index, weights, correct, num_train: int):
  """(n,) int8 of one seed's epoch: 1/0 correctness at each example's
  presentation; NOT_PRESENTED where the example was not in the epoch. The
  filler rows of a partial last batch (weight 0) repeat presented examples and
  are dropped."""
  rows = jnp.where(weights > 0, batch_index, num_train).reshape(-1)
  return jnp.full((num_train,), NOT_PRESENTED, jnp.int8).at[rows].set(
      correct.reshape(-1).astype(jnp.int8), mode="drop")


def presentation_epoch(trainer: training.Trainer, state, seed_keys, epoch,
                       x, y, train_index, *, per_seed_inputs=False,
                       per_seed_labels=False):
  """A ``engine.EpochFn`` whose extras are (S, n) int8 presentation
  correctness (``NOT_PRESENTED`` for examples outside a seed's subset). The
  training itself is ``Trainer.train_epoch``'s: same steps, same state."""
  state, (losses, batch_index, weights, correct) = trainer.train_epoch(
      state, seed_keys, epoch, x, y, train_index,
      per_seed_inputs=per_seed_inputs, per_seed_labels=per_seed_labels,
      presented=True)
  num_train = x.shape[1 if per_seed_inputs else 0]
  presented = jax.vmap(_scatter_presented, in_axes=(0, 0, 0, None))(
      batch_index, weights, correct, num_train)
  return state, losses, presented


class PresentationRecorder(hooks.Hook):
  """Keeps every epoch's presentation correctness, (epochs, S, n) int8, as
  its checkpointed carry. Use with ``epoch_fn=presentation_epoch``."""

  def __init__(self, max_epochs: int, num_seeds: int, num_train: int):
    self.carry = np.full((max_epochs, num_seeds, num_train), NOT_PRESENTED,
                         np.int8)

  def end_epoch(self, event) -> None:
    self.carry[event.epoch - 1] = event.extras

  def history(self, epochs: int) -> np.ndarray:
    """(epochs, S, n) correctness of the first ``epochs`` epochs."""
    return self.carry[:epochs]


def forgetting(presented) -> per_example.Forgetting:
  """Toneva et al.'s forgetting events of a (T, ..., n) presentation history
  (1 correct, 0 incorrect, ``NOT_PRESENTED``): a correct presentation
  followed by an incorrect next presentation of the same example. When every
  example is presented at every epoch this is ``per_example.forgetting`` of
  the history."""
  presented = np.asarray(presented)
  if presented.ndim < 2:
    raise ValueError(
        f"presented must have shape (T, ..., n), got {presented.shape}.")
  last = np.full(presented.shape[1:], NOT_PRESENTED, np.int8)
  events = np.zeros(presented.shape[1:], np.int32)
  first = np.full(presented.shape[1:], -1, np.int32)
  for t, now in enumerate(presented):
    seen = now != NOT_PRESENTED
    events += seen & (last == 1) & (now == 0)
    first = np.where((first < 0) & (now == 1), t, first)
    last = np.where(seen, now, last)
  return per_example.Forgetting(events, first < 0, first, presented.shape[0])
