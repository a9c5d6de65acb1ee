"""Many-seed training: S seeds of one model trained at once by ``jax.vmap``.

The model is split once into a static ``graphdef`` and pytrees of parameters and
BatchNorm statistics; every transformed function below is a pure function of
those pytrees, with a leading seed axis on the whole ``TrainState``. One epoch
is one jitted ``lax.scan`` over SGD steps, so there is no host sync per step.
How the seeds execute inside that program (``TrainConfig.seed_chunk``) is
chosen by ``choose_seed_chunk`` unless set: one vmap, except on a CPU for a
model with little arithmetic per input value, whose seeds run one after
another; the results are the same.

Every random choice is a pure function of (seed, step) (``memjax.keys``): seed
lane ``i`` uses the key of seed ``config.seed + i``, from which the init, the
epoch's batch order and each step's dropout and input-perturbation keys are
derived, so lane ``i`` of an S-seed run is the same run as a one-seed run with
``seed=config.seed + i``. The input perturbations of ``config.regularization``
(augmentation, input dropout and noise; ``memjax.regularizers``) apply inside
the train step only; evaluation always sees the clean inputs.

Learning rate: SGD with momentum 0.9 and Zhang et al.'s decay of 0.95 per epoch.
Their epochs had 50,000 examples; on 4,000 examples the same per-epoch decay
would shrink the rate 12.5 times faster in examples seen and freeze training
before random labels are fit. The decay is therefore expressed per
``decay_examples`` (50,000) examples seen: lr = lr0 * 0.95^(examples / 50,000),
which is the paper's schedule on CIFAR10 and the same schedule in examples seen
on every other dataset size.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from memjax import chunking
from memjax import cost
from memjax import keys
from memjax import models
from memjax import regularizers
from memjax import validation

# Seeds are int32 key data.
MAX_SEED = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything that determines a training run, apart from the data."""

  model: str = "mlp1x512"
  learning_rate: float | None = None  # None: the paper's rate for the model
  momentum: float = 0.9
  lr_decay: float = 0.95
  decay_examples: int = 50_000
  batch_size: int = 128
  max_epochs: int = 100
  weight_decay: float = 0.0
  dropout: float = 0.0
  seed: int = 0
  num_seeds: int = 1
  fit_threshold: float = 1.0  # a seed has fit when clean train acc >= this
  stop_when_fit: bool = True
  # Clean evaluation after every eval_every-th epoch and the last; a seed's
  # fit is then noticed only at those epochs (steps to fit in multiples).
  eval_every: int = 1
  eval_batch_size: int = 1000
  # Seeds vmapped in chunks of this many, one chunk after another (lax.map)
  # inside the compiled epoch; >= num_seeds: every seed in one vmap. None:
  # chosen by cached_trainer (choose_seed_chunk). Results do not depend on it.
  seed_chunk: int | None = None
  # Input perturbations and hidden noise; applied to training batches only.
  regularization: regularizers.Regularization = regularizers.Regularization()

  def __post_init__(self):
    models.validate_name(self.model)
    if not isinstance(self.regularization, regularizers.Regularization):
      raise ValueError(f"regularization must be a regularizers.Regularization, "
                       f"got {self.regularization!r}.")
    finite = validation.finite
    validation.check_fields(self, {
        "num_seeds": (self.num_seeds >= 1, ">= 1"),
        "seed": (0 <= self.seed and self.seed + self.num_seeds <= MAX_SEED,
                 f"in [0, {MAX_SEED} - seeds]"),
        "batch_size": (self.batch_size >= 1, ">= 1"),
        "max_epochs": (self.max_epochs >= 1, ">= 1"),
        "weight_decay": (finite(self.weight_decay) and self.weight_decay >= 0,
                         "a finite number >= 0"),
        "dropout": (finite(self.dropout) and 0 <= self.dropout < 1,
                    "in [0, 1)"),
        "learning_rate": (self.learning_rate is None or (
            finite(self.learning_rate) and self.learning_rate > 0),
                          "a finite number > 0"),
        "momentum": (finite(self.momentum) and 0 <= self.momentum < 1,
                     "in [0, 1)"),
        "lr_decay": (finite(self.lr_decay) and 0 < self.lr_decay <= 1,
                     "in (0, 1]"),
        "decay_examples": (self.decay_examples >= 1, ">= 1"),
        "eval_every": (self.eval_every >= 1, ">= 1"),
        "eval_batch_size": (self.eval_batch_size >= 1, ">= 1"),
        "fit_threshold": (finite(self.fit_threshold)
                          and 0 < self.fit_threshold <= 1, "in (0, 1]"),
        "seed_chunk": (self.seed_chunk is None or self.seed_chunk >= 1,
                       "unset or >= 1")}, "training")

  # Every field in exactly one group (tests/test_training.py checks it), so a
  # new field must say whether the Trainer compiles it. The Trainer's cache
  # key is exactly the COMPILED groups; the "run" group steers the loop around
  # the compiled functions (seeds, epochs, stopping), so S one-seed runs and
  # runs of any length share one compilation.
  GROUPS = {
      "model": ("model", "dropout"),
      "optimizer": ("learning_rate", "momentum", "lr_decay", "decay_examples",
                    "batch_size", "weight_decay"),
      "regularization": ("regularization",),
      "evaluation": ("eval_batch_size",),
      "execution": ("seed_chunk",),
      "run": ("seed", "num_seeds", "max_epochs", "fit_threshold",
              "stop_when_fit", "eval_every"),
  }
  COMPILED = ("model", "optimizer", "regularization", "evaluation",
              "execution")

  def compiled_fields(self) -> dict:
    """The fields of the COMPILED groups: what a Trainer's functions depend
    on."""
    return {name: getattr(self, name) for group in self.COMPILED
            for name in self.GROUPS[group]}

  @property
  def lr(self) -> float:
    if self.learning_rate is None:
      return models.default_learning_rate(self.model)
    return self.learning_rate


@flax.struct.dataclass
class TrainState:
  params: Any
  batch_stats: Any
  opt_state: Any
  step: jax.Array


@dataclasses.dataclass(frozen=True)
class TrainData:
  """Training and test arrays; inputs and/or labels may carry a seed axis.

  ``train_index`` (S, m) optionally restricts seed ``s`` to the training
  examples ``train_index[s]`` (subset training); by default every seed sees
  all of them.
  """

  x_train: Any
  y_train: Any
  x_test: Any
  y_test: Any
  num_classes: int
  per_seed_inputs: bool = False
  per_seed_labels: bool = False
  train_index: Any = None

  @property
  def layout(self) -> dict:
    """Which arrays carry a seed axis, as the Trainer's keyword arguments."""
    return dict(per_seed_inputs=self.per_seed_inputs,
                per_seed_labels=self.per_seed_labels)

  @property
  def input_shape(self):
    return tuple(self.x_train.shape[2 if self.per_seed_inputs else 1:])

  @property
  def num_train(self) -> int:
    return self.x_train.shape[1 if self.per_seed_inputs else 0]


def seed_axes(per_seed_inputs: bool, per_seed_labels: bool) -> tuple:
  """vmap ``in_axes`` of (inputs, labels) over seeds: 0 where the array has a
  seed axis, None where every seed shares it."""
  return (0 if per_seed_inputs else None, 0 if per_seed_labels else None)


class Trainer:
  """Pure, jitted functions of a (seed-stacked) TrainState for one model."""

  def __init__(self, config: TrainConfig, input_shape, num_classes: int):
    self.config = config
    self.input_shape = tuple(input_shape)
    self.num_classes = num_classes
    abstract = nnx.eval_shape(lambda: self._build(keys.seed_key(0)))
    self.graphdef, _, _ = nnx.split(abstract, nnx.Param, nnx.BatchStat)
    self.schedule = schedule = lambda step: config.lr * config.lr_decay ** (
        step * config.batch_size / config.decay_examples)
    self.tx = optax.chain(optax.add_decayed_weights(config.weight_decay),
                          optax.sgd(schedule, momentum=config.momentum))
    self.init = jax.jit(jax.vmap(self.init_one))
    # The state is donated: S seeds' parameters and momentum are not held
    # twice. Callers must use the returned state, never the one passed in.
    self.train_epoch = jax.jit(self._train_epoch_vmapped, donate_argnums=0,
                               static_argnames=("per_seed_inputs",
                                                "per_seed_labels",
                                                "presented"))
    self.evaluate = jax.jit(self._evaluate_vmapped,
                            static_argnames=("per_seed_inputs",
                                             "per_seed_labels"))

  def _build(self, key):
    return models.build(self.config.model, self.input_shape, self.num_classes,
                        nnx.Rngs(key), dropout=self.config.dropout,
                        hidden_noise=self.config.regularization.hidden_noise)

  def init_one(self, seed_key: jax.Array) -> TrainState:
    model = self._build(keys.derive(seed_key, keys.INIT))
    _, params, batch_stats = nnx.split(model, nnx.Param, nnx.BatchStat)
    return TrainState(params, batch_stats, self.tx.init(params),
                      jnp.zeros((), jnp.int32))

  def apply(self, params, batch_stats, x, *, train=False, dropout_key=None):
    """Logits of one seed's model; returns (logits, new batch_stats)."""
    model = nnx.merge(self.graphdef, params, batch_stats, copy=True)
    rngs = nnx.Rngs(dropout=dropout_key) if dropout_key is not None else None
    logits = model(x, train=train, rngs=rngs)
    return logits, nnx.state(model, nnx.BatchStat)

  def loss_fn(self, params, batch_stats, x, y, dropout_key, weights=None):
    """Mean loss over the batch; with ``weights`` (1 for a real example, 0 for
    the filler of a partial last batch) the mean over the real examples."""
    logits, batch_stats = self.apply(params, batch_stats, x, train=True,
                                     dropout_key=dropout_key)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    if weights is None:
      return losses.mean(), (batch_stats, logits)
    loss = (losses * weights).sum() / jnp.maximum(weights.sum(), 1.0)
    return loss, (batch_stats, logits)

  def train_step(self, state: TrainState, seed_key, x, y, weights=None):
    """One SGD step of one seed on the batch (x, y); returns (state, loss).

    ``weights`` (batch,) marks the real examples of a partial last batch
    (``epoch_batches``); None: every example counts."""
    state, loss, _ = self.update(state, seed_key, x, y, weights)
    return state, loss

  def update(self, state: TrainState, seed_key, x, y, weights=None):
    """``train_step`` that also returns the batch's train-mode logits, the
    predictions the step made before its update: (state, loss, logits)."""
    batch = x.shape[0]
    dropout_key = keys.derive(seed_key, keys.DROPOUT, state.step)
    perturb_key = keys.derive(seed_key, keys.PERTURB, state.step)
    x = regularizers.perturb(self.config.regularization, perturb_key, x)
    if self.config.regularization.adversarial is not None:
      adversarial_key = keys.derive(seed_key, keys.ADVERSARIAL, state.step)
      x, y = regularizers.with_critical_samples(
          self.config.regularization.adversarial,
          lambda xb: self.apply(state.params, state.batch_stats, xb)[0],
          adversarial_key, x, y)
      if weights is not None:
        weights = jnp.concatenate([weights, weights])
    grad_fn = jax.value_and_grad(self.loss_fn, has_aux=True)
    (loss, (batch_stats, logits)), grads = grad_fn(
        state.params, state.batch_stats, x, y, dropout_key, weights)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return (TrainState(params, batch_stats, opt_state, state.step + 1), loss,
            logits[:batch])

  def epoch_batches(self, seed_key, epoch, train_index):
    """(steps, batch) example indices of one seed's epoch, a function of (seed,
    epoch). An epoch visits every example of ``train_index`` exactly once:
    when the batch size does not divide the number of examples, the last
    batch is partial, filled up with the epoch's first examples, which
    ``epoch_weights`` gives weight 0."""
    m = train_index.shape[0]
    batch = min(self.config.batch_size, m)
    steps = -(-m // batch)
    order_key = keys.derive(seed_key, keys.ORDER, epoch)
    order = train_index[jax.random.permutation(order_key, m)]
    order = jnp.concatenate([order, order[:steps * batch - m]])
    return order.reshape(steps, batch)

  def epoch_weights(self, num_examples: int) -> jax.Array:
    """(steps, batch) 1 for an epoch's real examples, 0 for the filler."""
    batch = min(self.config.batch_size, num_examples)
    steps = -(-num_examples // batch)
    return (jnp.arange(steps * batch) < num_examples).astype(
        jnp.float32).reshape(steps, batch)

  def train_epoch_one(self, state, seed_key, epoch, x, y, train_index, *,
                      presented=False):
    """One seed's epoch as a lax.scan; returns (state, per-step losses).

    With ``presented`` the losses come with each step's presentations: (losses,
    (steps, batch) example indices, their weights, and whether the step's
    train-mode prediction, made before its update, was correct)."""
    def step(state, batch):
      batch_index, weights = batch
      state, loss, logits = self.update(state, seed_key, x[batch_index],
                                        y[batch_index], weights)
      if not presented:
        return state, loss
      return state, (loss, batch_index, weights,
                     logits.argmax(-1) == y[batch_index])
    state, out = jax.lax.scan(
        step, state, (self.epoch_batches(seed_key, epoch, train_index),
                      self.epoch_weights(train_index.shape[0])))
    return state, out

  def _train_epoch_vmapped(self, state, seed_keys, epoch, x, y, train_index,
                           *, per_seed_inputs=False, per_seed_labels=False,
                           presented=False):
    in_axes = (0, 0, None, *seed_axes(per_seed_inputs, per_seed_labels), 0)
    one_epoch = functools.partial(self.train_epoch_one, presented=presented)
    chunk = self.config.seed_chunk
    if chunk is None or chunk >= seed_keys.shape[0]:
      return jax.vmap(one_epoch, in_axes=in_axes)(
          state, seed_keys, epoch, x, y, train_index)
    per_seed = (state, seed_keys, train_index, x if per_seed_inputs else None,
                y if per_seed_labels else None)
    def one_seed(lane):
      state, key, index, x_lane, y_lane = lane
      return one_epoch(state, key, epoch, x if x_lane is None else x_lane,
                       y if y_lane is None else y_lane, index)
    return jax.lax.map(one_seed, per_seed, batch_size=chunk)

  def logits(self, params, batch_stats, x):
    """Eval-mode logits of one seed over all of ``x``, in eval-sized chunks."""
    return chunking.batched(lambda xb: self.apply(params, batch_stats, xb)[0],
                            x, self.config.eval_batch_size)

  def evaluate_one(self, state, x, y):
    """Clean eval-mode per-example (losses, correct) of one seed."""
    logits = self.logits(state.params, state.batch_stats, x)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return losses, logits.argmax(-1) == y

  def _evaluate_vmapped(self, state, x, y, *, per_seed_inputs=False,
                        per_seed_labels=False):
    in_axes = (0, *seed_axes(per_seed_inputs, per_seed_labels))
    return jax.vmap(self.evaluate_one, in_axes=in_axes)(state, x, y)


def cached_trainer(config: TrainConfig, input_shape, num_classes: int, *,
                   sharded: bool = False) -> Trainer:
  """One Trainer (and so one set of compiled functions) per compiled config
  (``TrainConfig.COMPILED`` groups) and shape; its config holds the run
  group's defaults. ``seed_chunk=None`` becomes ``choose_seed_chunk``'s
  choice, unless the seeds are ``sharded`` over a mesh (one vmap each)."""
  compiled = TrainConfig(**config.compiled_fields())
  input_shape = tuple(input_shape)
  if compiled.seed_chunk is None and not sharded:
    compiled = dataclasses.replace(compiled, seed_chunk=_chosen_seed_chunk(
        compiled.model, input_shape, num_classes, jax.default_backend()))
  return _trainer(compiled, input_shape, num_classes)


@functools.lru_cache(maxsize=8)
def _trainer(config: TrainConfig, input_shape, num_classes: int) -> Trainer:
  return Trainer(config, input_shape, num_classes)


# On a CPU, seeds of a model with fewer forward multiply-adds per input value
# than this train faster one after another inside the compiled epoch than in
# one vmap (benchmarks/RESULTS.md, "Choosing seed_chunk", 2026-12-02): a
# vmapped step gathers every seed's minibatch at once, which leaves the cache,
# and such a model does too little arithmetic per input value to hide it.
SEQUENTIAL_SEEDS_BELOW = 100.0


def choose_seed_chunk(trainer: Trainer, backend: str) -> int | None:
  """How ``trainer``'s seeds execute when the config leaves it open: 1 (one
  seed after another, inside the compiled epoch) on a CPU for a model below
  ``SEQUENTIAL_SEEDS_BELOW`` forward multiply-adds per input value
  (``memjax.cost``; mlp2x16: 16, mlp1x64: 64), else None (every seed in one
  vmap: mlp1x128 and wider, the conv nets, every accelerator). Per-seed
  results are the same either way (tests/test_training.py)."""
  if backend != "cpu":
    return None
  intensity = cost.multiply_adds_per_input_value(trainer)
  return 1 if intensity < SEQUENTIAL_SEEDS_BELOW else None


@functools.lru_cache(maxsize=32)
def _chosen_seed_chunk(model: str, input_shape, num_classes: int,
                       backend: str) -> int | None:
  # Per model, not per config: the count depends on the layers alone. A
  # Trainer of its own (nothing compiles): one from _trainer's cache would
  # take the place of a trainer that runs.
  return choose_seed_chunk(
      Trainer(TrainConfig(model=model), input_shape, num_classes), backend)


def default_train_index(data: TrainData, num_seeds: int) -> jax.Array:
  return jnp.broadcast_to(jnp.arange(data.num_train, dtype=jnp.int32),
                          (num_seeds, data.num_train))


def steps_per_epoch(config: TrainConfig, examples_per_seed: int) -> int:
  """SGD steps of an epoch that visits every example once (the last batch may
  be partial)."""
  return -(-examples_per_seed // min(config.batch_size, examples_per_seed))


def num_params(config: TrainConfig, input_shape, num_classes: int) -> int:
  model = nnx.eval_shape(lambda: models.build(
      config.model, tuple(input_shape), num_classes, nnx.Rngs(0),
      dropout=config.dropout,
      hidden_noise=config.regularization.hidden_noise))
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(
      nnx.state(model, nnx.Param)))


def memory_limit_bytes() -> int:
  """The memory of the device that trains: an accelerator's own, else RAM."""
  stats = jax.devices()[0].memory_stats() or {}
  if "bytes_limit" in stats:
    return int(stats["bytes_limit"])
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(config: TrainConfig, input_shape, num_classes: int,
                 data_bytes: int = 0) -> None:
  """Refuses, before any work, a run whose parameters, momentum, gradients and
  updates (4 float32 copies per seed) plus ``data_bytes`` cannot fit."""
  params = num_params(config, input_shape, num_classes)
  need = 16 * params * config.num_seeds + int(data_bytes)
  have = memory_limit_bytes()
  if need > 0.8 * have:
    raise ValueError(
        f"--seeds={config.num_seeds} of {config.model} needs about "
        f"{need / 2**30:,.1f} GiB ({params:,} parameters x "
        f"{config.num_seeds} seeds x 16 bytes, plus {data_bytes / 2**30:.1f} "
        f"GiB of data); this device has {have / 2**30:,.1f} GiB. Use fewer "
        "--seeds or a smaller --model.")
