"""Explicit regularizers of Zhang et al. (Table 1) and Arpit et al. (Fig. 10).

Each regularizer is a named strength on a ``training.TrainConfig``:

==================  ========================================  ===============
name                meaning                                   valid strength
==================  ========================================  ===============
``weight_decay``    l2 penalty added to the gradient           finite, >= 0
                    (``TrainConfig.weight_decay``)
``dropout``         dropout on hidden layers                   [0, 1)
                    (``TrainConfig.dropout``)
``input_dropout``   dropout on input pixels, rescaled by       [0, 1)
                    1 / (1 - rate) as hidden dropout is
``input_noise``     additive N(0, s^2) on the inputs, in the   finite, >= 0
                    inputs' own units (pixels / 255 or
                    per-image standardized)
``hidden_noise``    additive N(0, s^2) on hidden activations   finite, >= 0
                    (models with dense hidden layers)
``shift``           random crop with zero padding: every       integer >= 0,
                    image moved by up to ``shift`` pixels      below the image
                    in each direction                          side
``color_jitter``    random brightness and contrast, plus       [0, 1]
                    saturation and hue on RGB images
==================  ========================================  ===============

The last five live in the frozen ``Regularization`` carried by
``TrainConfig.regularization`` (with ``flip`` for horizontal flips); weight
decay and dropout stay the engine's own fields, so every strength has one
source of truth. ``with_strength`` sets any of them by name. A shift needs the
image side to be checked (``check_input_shape``): a shift of the whole side
would train on blank images.

Input perturbations act only on the training minibatch, inside the train step,
through ``perturb(regularization, key, x)`` with a key derived from (seed,
step); the clean evaluation pass and the test set never see them. Nothing here
depends on the batch being full: an epoch's partial last batch is padded with
filler examples of weight 0 (``training.Trainer.epoch_weights``), which are
perturbed and searched like the others but do not count in the loss. We read
Zhang et al.'s "random crop" as a random 28x28 crop of the 32x32 CIFAR image
(their evaluation crop is the centre 28x28), i.e. the centre crop shifted by up
to 2 pixels; on the already-cropped arrays the same shift is a crop of the
zero-padded image (zero is each image's mean after per-image
standardization). Colour jitter acts on the standardized images
(re-standardizing afterwards would undo brightness and contrast).

Adversarial training (Arpit et al. Sec. 5): with ``adversarial`` set to a
``memjax.complexity.LassConfig``, every training minibatch is extended by the
points that Langevin adversarial sample search reaches from its examples (the
critical samples, or the last searched point when none is found within the
box), with the original labels; the search uses the current model in eval
mode. The train step gives each found point its example's weight (the weights
are doubled along with the batch), so filler rows stay at weight 0. It costs
up to ``max_iterations`` extra forward/backward passes per step: under ``vmap``
every search of a batch runs until the last one stops, which with the paper's
small box (0.3 of 255 intensity levels) is almost always ``max_iterations``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from memjax import complexity
from memjax import keys
from memjax import validation

REGULARIZERS = ("weight_decay", "dropout", "input_dropout", "input_noise",
                "hidden_noise", "shift", "color_jitter")
# Strengths held by TrainConfig itself rather than by Regularization.
ENGINE_FIELDS = ("weight_decay", "dropout")
# Models whose hidden layers are convolutions only: no dropout or hidden noise.
NO_DENSE_HIDDEN_LAYERS = ("inception", "inception_nobn")
RGB_FLIP_DATASETS = ("cifar10", "cifar100")

# ITU-R BT.601 luma and the YIQ transform used for saturation and hue.
_LUMA = np.array([0.299, 0.587, 0.114])
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                        [0.596, -0.274, -0.322],
                        [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


@dataclasses.dataclass(frozen=True)
class Regularization:
  """Strengths of the regularizers that the model and train step apply."""

  input_dropout: float = 0.0
  input_noise: float = 0.0
  hidden_noise: float = 0.0
  shift: int = 0
  flip: bool = False
  color_jitter: float = 0.0
  adversarial: Any = None  # a complexity.LassConfig: adversarial training

  def __post_init__(self):
    # Comparisons are False for NaN, so NaN fails every check; inf is refused
    # explicitly (noise of infinite scale is not a regularizer).
    validation.check_fields(self, {
        "input_dropout": (0 <= self.input_dropout < 1, "in [0, 1)"),
        "input_noise": (0 <= self.input_noise < math.inf, "finite, >= 0"),
        "hidden_noise": (0 <= self.hidden_noise < math.inf, "finite, >= 0"),
        "shift": (isinstance(self.shift, int) and self.shift >= 0,
                  "an integer >= 0"),
        "color_jitter": (0 <= self.color_jitter <= 1, "in [0, 1]")},
                            "regularization")
    if self.adversarial is not None:
      if not isinstance(self.adversarial, complexity.LassConfig):
        raise ValueError(f"adversarial must be a complexity.LassConfig or "
                         f"None, got {self.adversarial!r}.")

  @property
  def perturbs_inputs(self) -> bool:
    return bool(self.input_dropout or self.input_noise or self.shift or
                self.flip or self.color_jitter)


def validate(name: str, strength: float) -> None:
  """Raises ValueError unless ``strength`` is valid for regularizer ``name``."""
  if name not in REGULARIZERS:
    raise ValueError(f"Unknown regularizer {name!r}; valid: "
                     f"{', '.join(REGULARIZERS)}.")
  engine_ok = {"weight_decay": lambda: 0 <= strength < math.inf,
               "dropout": lambda: 0 <= strength < 1}
  if name not in engine_ok:
    Regularization(**{name: _field_value(name, strength)})  # validates
  elif not engine_ok[name]():
    raise ValueError(f"Invalid {name}={strength!r} (valid: weight_decay finite "
                     "and >= 0; dropout in [0, 1)).")


def _field_value(name: str, strength: float):
  if name == "shift":
    if not math.isfinite(strength) or strength != int(strength):
      raise ValueError(f"Invalid shift={strength!r}: a whole number of pixels "
                       ">= 0.")
    return int(strength)
  return float(strength)


def with_strength(train_config, name: str, strength: float):
  """``train_config`` (a TrainConfig) with regularizer ``name`` set."""
  validate(name, strength)
  if name in ENGINE_FIELDS:
    return dataclasses.replace(train_config, **{name: float(strength)})
  regularization = dataclasses.replace(
      train_config.regularization, **{name: _field_value(name, strength)})
  return dataclasses.replace(train_config, regularization=regularization)


def check_model(model: str, dropout: float,
                regularization: Regularization) -> None:
  """Refuses hidden-layer regularizers on models without dense hidden layers."""
  if model in NO_DENSE_HIDDEN_LAYERS and (dropout or
                                          regularization.hidden_noise):
    raise ValueError(
        f"Model {model!r} has no dense hidden layers, so dropout={dropout} "
        f"and hidden_noise={regularization.hidden_noise} must be 0 (use them "
        "with mlp<depth>x<width>, alexnet or arpit_cnn).")


def check_input_shape(regularization: Regularization, input_shape) -> None:
  """Refuses a shift that would move every pixel out of an image of
  ``input_shape`` (H, W, C): it must be smaller than both sides."""
  side = min(input_shape[0], input_shape[1])
  if regularization.shift >= side:
    raise ValueError(f"Invalid shift={regularization.shift}: it must be "
                     f"smaller than the image side ({side} pixels).")


def crop_augmentation(dataset: str, side: int) -> Regularization:
  """Zhang et al.'s crop, adapted to the data: random crops (shifts of up to
  1/14 of the side, 2 pixels on 28x28) with horizontal flips for CIFAR-like
  natural images; shifts only for digits, whose mirror images are not digits."""
  return Regularization(shift=max(1, round(side / 14)),
                        flip=dataset in RGB_FLIP_DATASETS)


def perturb(regularization: Regularization, key: jax.Array,
            x: jax.Array) -> jax.Array:
  """One training minibatch ``x`` (B, H, W, C) with the input perturbations.

  A pure function of ``key``; augmentation first (shift, flip, colour), then
  input dropout, then input noise. Without any, ``x`` is returned unchanged.
  """
  r = regularization
  if not r.perturbs_inputs:
    return x
  per_example = lambda stream: keys.split(keys.derive(key, stream),
                                         x.shape[0])
  if r.shift:
    x = jax.vmap(random_shift, in_axes=(0, 0, None))(
        per_example(keys.SHIFT), x, r.shift)
  if r.flip:
    flips = jax.random.bernoulli(keys.derive(key, keys.FLIP), 0.5,
                                 (x.shape[0], 1, 1, 1))
    x = jnp.where(flips, x[:, :, ::-1], x)
  if r.color_jitter:
    x = jax.vmap(color_jitter, in_axes=(0, 0, None))(
        per_example(keys.JITTER), x, r.color_jitter)
  if r.input_dropout:
    keep = jax.random.bernoulli(keys.derive(key, keys.INPUT_DROPOUT),
                                1.0 - r.input_dropout, x.shape)
    x = jnp.where(keep, x / (1.0 - r.input_dropout), 0.0)
  if r.input_noise:
    x = x + r.input_noise * jax.random.normal(
        keys.derive(key, keys.INPUT_NOISE), x.shape, x.dtype)
  return x


def with_critical_samples(lass_config, apply_fn: Callable[[jax.Array],
                                                          jax.Array],
                          key: jax.Array, x: jax.Array, y: jax.Array):
  """(x, y) extended by the LASS points found from each example of ``x``.

  ``apply_fn`` maps a batch to eval-mode logits; the search is not
  differentiated through (the found points are data, as in adversarial
  training). Example ``i`` searches with ``fold_in(key, i)``.
  """
  found = complexity.lass(apply_fn, jax.lax.stop_gradient(x), lass_config, key)
  points = jax.lax.stop_gradient(found.adversarial)
  return jnp.concatenate([x, points]), jnp.concatenate([y, y])


def random_shift(key: jax.Array, image: jax.Array, shift: int) -> jax.Array:
  """One (H, W, C) image moved by up to ``shift`` pixels each way, zero fill."""
  padded = jnp.pad(image, ((shift, shift), (shift, shift), (0, 0)))
  top, left = jax.random.randint(key, (2,), 0, 2 * shift + 1)
  return jax.lax.dynamic_slice(padded, (top, left, 0), image.shape)


def color_jitter(key: jax.Array, image: jax.Array, strength: float):
  """Random brightness and contrast of one (H, W, C) image; on RGB images also
  saturation and hue. Each factor is drawn from a range set by ``strength``:
  brightness +-strength, contrast and saturation x[1 - s, 1 + s], hue rotated
  by up to +-strength * pi."""
  k_bright, k_contrast, k_sat, k_hue = keys.split(key, 4)
  uniform = lambda k, lo, hi: jax.random.uniform(k, (), image.dtype, lo, hi)
  mean = image.mean(axis=(0, 1), keepdims=True)
  contrast = uniform(k_contrast, 1 - strength, 1 + strength)
  image = (image - mean) * contrast + mean
  image = image + uniform(k_bright, -strength, strength)
  if image.shape[-1] != 3:
    return image
  grey = (image @ _LUMA.astype(image.dtype))[..., None]
  image = grey + (image - grey) * uniform(k_sat, 1 - strength, 1 + strength)
  angle = uniform(k_hue, -strength * math.pi, strength * math.pi)
  cos, sin = jnp.cos(angle), jnp.sin(angle)
  rotate_iq = jnp.array([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
  return image @ (_YIQ_TO_RGB @ rotate_iq @ _RGB_TO_YIQ).T.astype(image.dtype)
