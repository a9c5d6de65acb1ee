"""Loss sensitivity over training (Arpit et al. 2017, Sec. 3.2) and its Gini.

Arpit et al. define the loss sensitivity of training example x as
g_x = (1/T) sum_t g_x^t with g_x^t = ||dL_t/dx||_1, where L_t is the minibatch
loss at SGD step t. Two readings of dL_t/dx are computed here, both recorded
during ONE training run (one ``lax.scan`` per epoch, vmapped over seeds):

* **direct**: the gradient of x's own eval-mode loss wrt x, at step t, for the
  examples of step t's minibatch (``per_example.input_gradient_norms``). Cheap;
  for models without BatchNorm it is B times the gradient of the minibatch loss.
* **unrolled**: x also moves L_t through the parameter updates it took part in.
  The loss of the minibatch at step t + k is differentiated wrt the inputs of
  the k earlier minibatches t..t+k-1, through k SGD steps
  (``Trainer.train_step`` inside a ``lax.scan``, second-order autodiff; the
  momentum carried into step t is held fixed). This is our reading of the
  paper's Fig. 3 ("the gradient of the loss wrt a training example after
  several SGD updates"), and the only form in which the per-class matrix of
  Fig. 4 has off-diagonal entries.

Each form is averaged over the steps at which an example contributed, so every
example has the same weight whatever the epoch's shuffle. The per-class matrix
(Fig. 4) is g_ij = the mean, over unrolled windows and over earlier examples x
with label j, of ||dL^i/dx||_1, where L^i is the later minibatch's loss summed
over its examples of label i (divided by the number of its examples, so
sum_i L^i = L).

An epoch visits every example once (``Trainer.epoch_batches``): the filler of
a partial last batch has weight 0 in every loss, as in training, and is never
counted. ``track`` is one ``engine.fit`` with an epoch function that also
returns the sums and a hook that accumulates them, so it checkpoints and
resumes like any run.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from memjax import engine
from memjax import hooks
from memjax import per_example
from memjax import training


@dataclasses.dataclass(frozen=True)
class SensitivityConfig:
  norm: str = "l1"  # reduction of dL/dx: l1 (the paper's), l2 or linf
  unroll: int = 1  # k SGD steps of the unrolled form; 0: direct form only
  class_matrix: bool = True  # per-class g_ij (C x C; needs unroll >= 1)

  def __post_init__(self):
    per_example.validate_norm(self.norm)
    if self.unroll < 0:
      raise ValueError(f"unroll must be >= 0, got {self.unroll}.")
    if self.class_matrix and self.unroll == 0:
      raise ValueError("class_matrix=True needs unroll >= 1: with the direct "
                       "form a class-i loss has no gradient wrt class-j "
                       "inputs.")


def gini(values) -> np.ndarray:
  """Gini coefficient of non-negative values along the last axis.

  0 when all values are equal, (n - 1) / n when one of n is non-zero; 0 for an
  all-zero vector. G = sum_i (2i - n - 1) x_(i) / (n sum x), x sorted ascending.
  """
  x = np.sort(np.asarray(values, np.float64), axis=-1)
  if x.shape[-1] == 0:
    raise ValueError("gini needs at least one value, got an empty array.")
  if not np.all(np.isfinite(x)) or np.any(x < 0):
    raise ValueError("gini needs finite non-negative values, got min "
                     f"{np.nanmin(x)} and {np.sum(~np.isfinite(x))} "
                     "non-finite.")
  n = x.shape[-1]
  rank = np.arange(1, n + 1)
  total = x.sum(-1)
  weighted = ((2 * rank - n - 1) * x).sum(-1)
  return np.where(total > 0, weighted / (n * np.where(total > 0, total, 1)), 0.)


def unrolled_jacobian(trainer: training.Trainer, state: training.TrainState,
                      seed_key, xs, ys, class_matrix: bool, weights=None):
  """d(later minibatch loss)/d(earlier inputs) through len(xs) - 1 SGD steps.

  ``xs`` (k + 1, B, ...) and ``ys`` (k + 1, B) are k training minibatches and
  the later one; ``weights`` (k + 1, B) marks their real examples (0 for the
  filler of an epoch's partial last batch, ``Trainer.epoch_weights``; None:
  all real), weighted in every loss as ``Trainer.train_step`` weights them.
  Returns (O, k, B, ...): O = 1 (the total loss) or, with ``class_matrix``,
  C + 1 (the per-label losses L^0..L^{C-1}, then the total).
  """
  k = xs.shape[0] - 1
  if weights is None:
    weights = jnp.ones(ys.shape, jnp.float32)

  def later_losses(earlier):
    def step(st, xyw):
      st, _ = trainer.train_step(st, seed_key, *xyw)
      return st, None
    trained, _ = jax.lax.scan(step, state, (earlier, ys[:k], weights[:k]))
    logits, _ = trainer.apply(trained.params, trained.batch_stats, xs[k])
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, ys[k])
    # The later minibatch's mean loss over its real examples, as in training.
    losses = losses * weights[k] / jnp.maximum(weights[k].sum(), 1.0)
    total = losses.sum()[None]
    if not class_matrix:
      return total
    per_label = jax.ops.segment_sum(losses, ys[k], trainer.num_classes)
    return jnp.concatenate([per_label, total])
  return jax.jacrev(later_losses)(xs[:k])


def epoch_one(trainer, config: SensitivityConfig, state, seed_key, epoch, x, y,
              train_index):
  """One seed's training epoch, recording loss sensitivity at every step.

  Returns (state, losses (steps,), sums) where ``sums`` holds, in dataset order,
  the per-example sums and counts of both forms and the per-class sums. The
  filler of a partial last batch (weight 0, ``Trainer.epoch_weights``) is
  neither trained on nor counted.
  """
  batches = trainer.epoch_batches(seed_key, epoch, train_index)
  weights = trainer.epoch_weights(train_index.shape[0])
  steps, k, n = batches.shape[0], config.unroll, x.shape[0]
  # Windows that run past the epoch's end are computed on wrapped batches and
  # masked out, so that every step has the same shapes.
  padded = jnp.concatenate([batches, batches[:k]])
  padded_weights = jnp.concatenate([weights, weights[:k]])
  input_axes = tuple(range(3, 3 + x.ndim - 1))

  def step(st, t):
    b, w = batches[t], weights[t]
    out = {"direct": w * per_example.input_gradient_norms(
        trainer, st.params, st.batch_stats, x[b], y[b], config.norm)}
    if k:
      window = jax.lax.dynamic_slice_in_dim(padded, t, k + 1)
      window_weights = jax.lax.dynamic_slice_in_dim(padded_weights, t, k + 1)
      valid = (t + k < steps).astype(jnp.float32)
      jac = unrolled_jacobian(trainer, st, seed_key, x[window], y[window],
                              config.class_matrix, window_weights)
      norms = per_example.reduce_norm(jac, config.norm, input_axes)  # (O, k, B)
      # Filler inputs have weight 0 in their step's loss, so a zero gradient;
      # the weight keeps them out of the counts too.
      earlier_weights = window_weights[:k] * valid  # (k, B)
      out["unrolled"] = norms[-1] * earlier_weights
      if config.class_matrix:
        onehot = (jax.nn.one_hot(y[window[:k]], trainer.num_classes)
                  * earlier_weights[:, :, None])  # (k, B, C)
        out["class_sum"] = jnp.einsum("ikb,kbj->ij", norms[:-1], onehot)
        out["class_count"] = onehot.sum((0, 1))
    st, loss = trainer.train_step(st, seed_key, x[b], y[b], w)
    return st, (out, loss)

  state, (outs, losses) = jax.lax.scan(step, state, jnp.arange(steps))
  zeros = jnp.zeros((n,), jnp.float32)
  sums = {"direct_sum": zeros.at[batches].add(outs["direct"]),
          "direct_count": zeros.at[batches].add(weights)}
  if k:
    # (steps, k, B): the earlier minibatches of each step's window.
    window_rows = jnp.arange(steps)[:, None] + jnp.arange(k)
    earlier = padded[window_rows]
    valid = (jnp.arange(steps) + k < steps).astype(jnp.float32)
    sums["unrolled_sum"] = zeros.at[earlier].add(outs["unrolled"])
    sums["unrolled_count"] = zeros.at[earlier].add(
        padded_weights[window_rows] * valid[:, None, None])
    if config.class_matrix:
      sums["class_sum"] = outs["class_sum"].sum(0)
      sums["class_count"] = outs["class_count"].sum(0)
  return state, losses, sums


@dataclasses.dataclass
class SensitivityResult:
  """Loss sensitivity after every epoch; arrays carry a seed axis S."""

  direct: np.ndarray  # (E, S, n) running mean over steps so far; nan if unseen
  unrolled: np.ndarray | None  # (E, S, n), or None when unroll == 0
  class_matrix: np.ndarray | None  # (S, C, C) final g_ij (row i: loss class)
  batch_loss: np.ndarray  # (E, S)
  train_acc: np.ndarray  # (E, S) clean eval-mode accuracy after each epoch
  state: training.TrainState

  def gini(self, form: str = "unrolled") -> np.ndarray:
    """(E, S) Gini coefficient over the examples seen so far, per epoch."""
    values = {"direct": self.direct, "unrolled": self.unrolled}[form]
    out = np.zeros(values.shape[:2])
    for e, s in np.ndindex(*out.shape):
      seen = values[e, s][~np.isnan(values[e, s])]
      out[e, s] = gini(seen) if seen.size else np.nan
    return out


def _running_mean(total, count):
  return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@functools.partial(jax.jit, static_argnames=("trainer", "config"))
def _epoch_vmapped(trainer, config, state, seed_keys, epoch, x, y, train_index):
  return jax.vmap(functools.partial(epoch_one, trainer, config),
                  in_axes=(0, 0, None, None, None, 0))(
                      state, seed_keys, epoch, x, y, train_index)


def _zero_sums(config: SensitivityConfig, num_seeds: int, n: int,
               num_classes: int) -> dict:
  """The running sums of ``epoch_one``'s outputs before the first epoch."""
  zeros = lambda *shape: np.zeros((num_seeds,) + shape, np.float32)
  sums = {"direct_sum": zeros(n), "direct_count": zeros(n)}
  if config.unroll:
    sums.update(unrolled_sum=zeros(n), unrolled_count=zeros(n))
    if config.class_matrix:
      sums.update(class_sum=zeros(num_classes, num_classes),
                  class_count=zeros(num_classes))
  return sums


class _Accumulate(hooks.Hook):
  """Adds each epoch's sums (the extras of ``_epoch``) to running sums and
  records the running means after every epoch; both are checkpointed with
  the run (``carry``)."""

  def __init__(self, config: SensitivityConfig, epochs: int, num_seeds: int,
               n: int, num_classes: int):
    per_epoch = lambda: np.full((epochs, num_seeds, n), np.nan, np.float32)
    records = {"direct": per_epoch()}
    if config.unroll:
      records["unrolled"] = per_epoch()
    self.carry = {"sums": _zero_sums(config, num_seeds, n, num_classes),
                  "records": records}

  def end_epoch(self, event: hooks.EpochEnd) -> None:
    sums = jax.tree.map(np.add, self.carry["sums"], event.extras)
    self.carry["sums"] = sums
    for form, record in self.carry["records"].items():
      record[event.epoch - 1] = _running_mean(sums[f"{form}_sum"],
                                              sums[f"{form}_count"])


def check_unroll(train_config: training.TrainConfig, unroll: int,
                 num_examples: int) -> None:
  """Raises ValueError unless an epoch has more than ``unroll`` SGD steps (a
  window of unroll + 1 minibatches must fit in one epoch)."""
  steps = training.steps_per_epoch(train_config, num_examples)
  if unroll >= steps:
    raise ValueError(f"--unroll={unroll} needs more than {unroll} SGD steps "
                     f"per epoch; {num_examples} examples in batches of "
                     f"{train_config.batch_size} give {steps}.")


def track(train_config: training.TrainConfig, config: SensitivityConfig, x, y,
          num_classes: int, epochs: int, progress: str | None = None,
          checkpoint_dir: str | None = None,
          checkpoint_seconds: float = 30.0) -> SensitivityResult:
  """Trains ``train_config.num_seeds`` seeds at once for ``epochs`` epochs on
  (x, y), recording both forms of loss sensitivity at every SGD step.

  One ``engine.fit`` (no early stop, no test set) whose epoch function
  also returns the epoch's sensitivity sums; runs on data of the same shapes
  share one ``training.cached_trainer`` and so one compilation. With
  ``checkpoint_dir`` the run (state, running sums and per-epoch records)
  checkpoints at most every ``checkpoint_seconds`` and at the end, tied to
  the fingerprint of its configs and data, and a re-run resumes from it (a
  finished run returns without training).
  """
  if epochs < 1:
    raise ValueError(f"epochs must be >= 1, got {epochs}.")
  x, y = jnp.asarray(x), jnp.asarray(y)
  s, n = train_config.num_seeds, x.shape[0]
  check_unroll(train_config, config.unroll, n)
  run_config = dataclasses.replace(train_config, max_epochs=epochs,
                                   stop_when_fit=False)
  accumulate = _Accumulate(config, epochs, s, n, num_classes)

  def epoch_fn(trainer, state, seed_keys, epoch, x, y, train_index, *,
               per_seed_inputs, per_seed_labels):
    del per_seed_inputs, per_seed_labels  # x and y are shared by all seeds
    return _epoch_vmapped(trainer, config, state, seed_keys, epoch, x, y,
                          train_index)

  result = engine.fit(run_config, training.TrainData(x, y, None, None,
                                                       num_classes),
                        hooks=[accumulate], epoch_fn=epoch_fn,
                        checkpoint_dir=checkpoint_dir,
                        checkpoint_seconds=checkpoint_seconds,
                        progress=progress, fingerprint_parts=(config,))
  sums, records = accumulate.carry["sums"], accumulate.carry["records"]
  class_matrix = None
  if config.unroll and config.class_matrix:
    class_matrix = _running_mean(sums["class_sum"],
                                 sums["class_count"][:, None, :])
  return SensitivityResult(records["direct"], records.get("unrolled"),
                           class_matrix, result.history["batch_loss"],
                           result.history["train_acc"], result.state)
