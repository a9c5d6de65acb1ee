"""Per-example quantities of a trained model, vectorized over examples, seeds.

Every function here takes the ``Trainer`` and ONE seed's ``params`` and
``batch_stats`` and works on a clean, eval-mode pass (BatchNorm running
statistics, no dropout, no augmentation), so that a quantity of example ``i``
depends on example ``i`` alone. Results come back as arrays of shape (n, ...) in
the order of ``x`` (the dataset's original order). ``over_seeds`` runs any of
them for every seed of a seed-stacked ``TrainState`` at once (jit + vmap);
``state_scores`` gives EL2N and GraNd of every seed at once.

============================  ==================================================
function                      per example
============================  ==================================================
``logit_scores``              loss, correctness, margin (true-class logit minus
                              the largest other logit) and EL2N
                              (||softmax(f(x)) - onehot(y)||_2, Paul et al.
                              2021)
``input_gradients``           dL/dx, the input's own loss gradient
``input_gradient_norms``      its l1, l2 or l-inf norm
``grand``                     GraNd: ||dL/d params||_2 (Paul et al. 2021), in
                              microbatches so that at most ``microbatch`` x P
                              gradient entries exist at once
``forgetting``                Toneva et al. 2019 forgetting events (1 -> 0
                              transitions of correctness across evaluations),
                              never-learned examples and the first-learned
                              evaluation, from a (T, ..., n) correctness history
``difficulty``                misclassification rate over S seeds, its spread
                              (with a bootstrap SE over seeds) and a chi-square
                              test of overdispersion against a binomial within
                              each class
============================  ==================================================
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import stats as scipy_stats

from memjax import chunking
from memjax import stats
from memjax import training

NORMS = ("l1", "l2", "linf")
# Standard errors from the half-width of a 95% interval.
_Z = float(scipy_stats.norm.ppf(1 - (1 - stats.LEVEL) / 2))


def validate_norm(norm: str) -> None:
  if norm not in NORMS:
    raise ValueError(f"Unknown norm {norm!r}; valid norms: {', '.join(NORMS)}.")


def reduce_norm(g: jax.Array, norm: str, axes=None) -> jax.Array:
  """l1, l2 or l-inf norm of ``g`` over ``axes`` (default: all axes)."""
  validate_norm(norm)
  if norm == "l1":
    return jnp.abs(g).sum(axes)
  if norm == "l2":
    return jnp.sqrt(jnp.square(g).sum(axes))
  return jnp.abs(g).max(axes)


def example_loss(trainer: training.Trainer, params, batch_stats, x, y):
  """Eval-mode cross-entropy of ONE example (``x`` without a batch axis)."""
  logits, _ = trainer.apply(params, batch_stats, x[None])
  return optax.softmax_cross_entropy_with_integer_labels(logits[0], y)


def _over_examples(fn, x, y, batch_size: int):
  """fn(x_chunk, y_chunk) over chunks of ``batch_size`` examples, joined."""
  return chunking.batched(lambda index: fn(x[index], y[index]),
                          jnp.arange(x.shape[0]), batch_size)


def input_gradients(trainer, params, batch_stats, x, y, batch_size=None):
  """(n, *input_shape) gradients of each example's own loss wrt its input."""
  grad = jax.grad(functools.partial(example_loss, trainer, params, batch_stats))
  batch_size = batch_size or trainer.config.eval_batch_size
  return _over_examples(jax.vmap(grad), x, y, batch_size)


def input_gradient_norms(trainer, params, batch_stats, x, y, norm="l1",
                         batch_size=None):
  """(n,) norms of each example's input gradient, a chunk at a time."""
  grad = jax.grad(functools.partial(example_loss, trainer, params, batch_stats))
  per_example = lambda xi, yi: reduce_norm(grad(xi, yi), norm)
  batch_size = batch_size or trainer.config.eval_batch_size
  return _over_examples(jax.vmap(per_example), x, y, batch_size)


def grand(trainer, params, batch_stats, x, y, microbatch=64):
  """(n,) GraNd scores, l2 norm of each example's parameter gradient.

  Per-example gradients of ``microbatch`` examples at a time (a microbatch x P
  array) are reduced to norms before the next microbatch, bounding memory.
  """
  if microbatch < 1:
    raise ValueError(f"microbatch must be >= 1, got {microbatch}.")
  grad = jax.grad(example_loss, argnums=1)

  def norm_of(xi, yi):
    leaves = jax.tree.leaves(grad(trainer, params, batch_stats, xi, yi))
    return jnp.sqrt(sum(jnp.square(g).sum() for g in leaves))
  return _over_examples(jax.vmap(norm_of), x, y, microbatch)


def logit_scores(trainer, params, batch_stats, x, y) -> dict:
  """Eval-mode per-example loss, correct, margin and el2n, each (n,)."""
  logits = trainer.logits(params, batch_stats, x)
  onehot = jax.nn.one_hot(y, logits.shape[-1])
  true_logit = (logits * onehot).sum(-1)
  best_other = jnp.where(onehot > 0, -jnp.inf, logits).max(-1)
  return {
      "loss": optax.softmax_cross_entropy_with_integer_labels(logits, y),
      "correct": logits.argmax(-1) == y,
      "margin": true_logit - best_other,
      "el2n": jnp.linalg.norm(jax.nn.softmax(logits) - onehot, axis=-1),
  }


@functools.partial(jax.jit, static_argnames=("fn", "trainer", "per_seed_inputs",
                                             "per_seed_labels", "options"))
def _over_seeds(fn, trainer, state, x, y, per_seed_inputs, per_seed_labels,
                options):
  def one_seed(params, batch_stats, xs, ys):
    return fn(trainer, params, batch_stats, xs, ys, **dict(options))
  in_axes = (0, 0, *training.seed_axes(per_seed_inputs, per_seed_labels))
  return jax.vmap(one_seed, in_axes=in_axes)(state.params, state.batch_stats,
                                             x, y)


def over_seeds(fn, trainer: training.Trainer, state: training.TrainState, x, y,
               *, per_seed_inputs=False, per_seed_labels=False, **options):
  """``fn(trainer, params, batch_stats, x, y, **options)`` for every seed of the
  seed-stacked ``state``, jitted and vmapped; outputs gain a leading seed axis.

  ``fn`` is one of this module's per-example functions, e.g.
  ``over_seeds(grand, trainer, state, x, y, microbatch=32)`` -> (S, n).
  """
  return _over_seeds(fn, trainer, state, jnp.asarray(x), jnp.asarray(y),
                     per_seed_inputs, per_seed_labels,
                     tuple(sorted(options.items())))


def state_scores(trainer: training.Trainer, state: training.TrainState, x, y,
                 microbatch: int = 64) -> dict[str, np.ndarray]:
  """Paul et al.'s scores of every seed of ``state``: (S, n) numpy arrays
  ``el2n`` and ``grand`` (in microbatches of ``microbatch``), and the
  eval-mode ``loss`` and ``margin`` they come with. The same function scores
  a state during a run and one kept by ``engine.fit(..., keep_epochs=...)``
  later (``engine.load_kept_state``), so the two agree."""
  logits = over_seeds(logit_scores, trainer, state, x, y)
  return {"el2n": np.asarray(logits["el2n"]),
          "grand": np.asarray(over_seeds(grand, trainer, state, x, y,
                                         microbatch=microbatch)),
          "loss": np.asarray(logits["loss"]),
          "margin": np.asarray(logits["margin"])}


@dataclasses.dataclass(frozen=True)
class Forgetting:
  """Forgetting statistics; arrays have the history's shape without T."""

  events: np.ndarray  # int: number of correct -> incorrect transitions
  never_learned: np.ndarray  # bool: never correct at any evaluation
  first_learned: np.ndarray  # int: first correct evaluation (0-based);
                             # -1: never
  num_evaluations: int  # T

  def scores(self) -> np.ndarray:
    """Toneva et al.'s ranking score: events, with never-learned examples put
    above every learned one (T // 2 + 1 exceeds any possible event count)."""
    return np.where(self.never_learned, self.num_evaluations // 2 + 1,
                    self.events)


def forgetting(correct) -> Forgetting:
  """Forgetting events of a (T, ..., n) boolean correctness history.

  ``correct[t]`` is the per-example correctness at evaluation t (e.g. after
  epoch t, from ``engine.fit(..., record_examples=True)``).
  """
  correct = np.asarray(correct).astype(bool)
  if correct.ndim < 2:
    raise ValueError(
        f"correct must have shape (T, ..., n), got {correct.shape}.")
  events = (correct[:-1] & ~correct[1:]).sum(0)
  ever = correct.any(0)
  first = np.where(ever, correct.argmax(0), -1)
  return Forgetting(events.astype(np.int32), ~ever, first.astype(np.int32),
                    correct.shape[0])


@dataclasses.dataclass(frozen=True)
class Difficulty:
  """How example-specific the misclassification rate over S seeds is."""

  rate: np.ndarray  # (n,) fraction of seeds that misclassify the example
  std: float  # std across examples of ``rate``
  std_se: float  # its standard error, from a bootstrap over seeds
  dispersion: float  # within-class dispersion index (chi-square / dof)
  p_value: float  # chi-square p-value of within-class overdispersion
  dof: int  # its degrees of freedom (n - classes; classes at 0 or 1 add none)
  dispersion_pooled: float  # the same index with one mean rate for all
  null_std: float  # std of ``dispersion`` if rates were within-class binomial


def _rate_std(correct) -> float:
  return float((1.0 - correct.mean(0)).std())


def difficulty(correct, labels, resamples: int = 1000) -> Difficulty:
  """Per-example difficulty from (S, n) correctness of S independent runs.

  If every example of class c were misclassified independently with the same
  probability p_c, each example's miss count would be Binomial(S, p_c) and the
  within-class dispersion index (chi-square of the counts against their class
  mean, over its n - C degrees of freedom; ``stats.dispersion_test``) would be
  about 1, with a chi-square p-value uniform on [0, 1]; example-specific
  difficulty makes it larger. Run-level effects shared by a whole class (a
  seed biased toward some class) only lower it. ``dispersion_pooled`` uses one
  mean for all examples, so it also counts differences between classes.
  ``std_se`` resamples the S runs (``resamples`` times, fixed seed).
  """
  correct = np.asarray(correct, np.float64)
  if correct.ndim != 2:
    raise ValueError(f"correct must have shape (S, n), got {correct.shape}.")
  labels = np.asarray(labels)
  num_trials, n = correct.shape
  misses = num_trials - correct.sum(0)
  within = stats.dispersion_test(misses, num_trials, labels)
  pooled = stats.dispersion_test(misses, num_trials)
  low, high = stats.bootstrap_interval(_rate_std, correct, resamples=resamples)
  std_se = (high - low) / (2 * _Z) if num_trials > 1 else np.nan
  return Difficulty(rate=misses / num_trials, std=_rate_std(correct),
                    std_se=float(std_se), dispersion=within["index"],
                    p_value=within["p_value"], dof=within["dof"],
                    dispersion_pooled=pooled["index"],
                    null_std=float(np.sqrt(2.0 / max(within["dof"], 1))))
