"""Flax NNX models of both papers, built by name.

========================  ===================================================
name                      model
========================  ===================================================
``mlp<depth>x<width>``    ReLU MLP, e.g. ``mlp1x512``, ``mlp3x512`` (Zhang),
                          ``mlp2x16`` (Arpit's loss-sensitivity net),
                          ``mlp1x4096`` (Arpit's capacity study)
``alexnet``               Zhang's small AlexNet (two conv-pool-LRN blocks)
``inception``             Zhang's small Inception, BatchNorm after every conv
``inception_nobn``        the same without BatchNorm
``arpit_cnn``             Arpit et al.'s CIFAR10 CNN (BatchNorm throughout)
========================  ===================================================

Every model is called as ``model(x, train=..., rngs=...)`` on NHWC images.
``train`` switches BatchNorm to batch statistics and turns dropout on; dropout
randomness comes from the ``rngs`` passed at call time, never from state, so
that training code controls every random choice through (seed, step) keys.
Models with dense hidden layers (MLPs, AlexNet, Arpit's CNN) also take
``hidden_noise``: the standard deviation of Gaussian noise added to those
layers' activations in training (Arpit et al.'s hidden noise), drawn from the
same ``dropout`` stream.

Convolutions, max-pools and LRN come from ``memjax.conv``: the same functions
as ``lax.conv_general_dilated``, ``nnx.max_pool`` and TF's LRN, written so that
XLA:CPU runs their training steps on its fast kernels (issue 15; speeds in
benchmarks/RESULTS.md).

Parameter counts on a 28x28x3 input match PAPERS.md exactly when BatchNorm's
scale and offset are left out (``count_params``): MLP 1x512 1,209,866; MLP 3x512
1,735,178; small AlexNet 1,387,786; small Inception 1,649,402 (that figure
includes the 1,712 conv biases).
"""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
from flax import nnx

from memjax import conv

FIXED_MODELS = ("alexnet", "inception", "inception_nobn", "arpit_cnn")
MODELS = ("mlp<depth>x<width>",) + FIXED_MODELS


def build(name: str, input_shape, num_classes: int, rngs: nnx.Rngs,
          dropout: float = 0.0, hidden_noise: float = 0.0) -> nnx.Module:
  """Builds model ``name`` for NHWC inputs of ``input_shape`` (without
  batch)."""
  validate_name(name)
  if not 0.0 <= dropout < 1.0:
    raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
  if hidden_noise < 0 or (hidden_noise and name.startswith("inception")):
    raise ValueError(f"hidden_noise must be >= 0 and is only for models with "
                     f"dense hidden layers (not {name!r}), got {hidden_noise}.")
  h, w, c = input_shape
  mlp = re.fullmatch(r"mlp(\d+)x(\d+)", name)
  if mlp:
    depth, width = int(mlp.group(1)), int(mlp.group(2))
    return MLP(h * w * c, (width,) * depth, num_classes, dropout, hidden_noise,
               rngs=rngs)
  if name == "alexnet":
    return SmallAlexNet((h, w, c), num_classes, dropout, hidden_noise,
                        rngs=rngs)
  if name in ("inception", "inception_nobn"):
    return SmallInception(c, num_classes, batchnorm=name == "inception",
                          rngs=rngs)
  return ArpitCNN((h, w, c), num_classes, dropout, hidden_noise, rngs=rngs)


def validate_name(name: str) -> None:
  if name in FIXED_MODELS:
    return
  mlp = re.fullmatch(r"mlp(\d+)x(\d+)", name)
  if not mlp or int(mlp.group(1)) < 1 or int(mlp.group(2)) < 1:
    raise ValueError(f"Unknown model {name!r}; valid models: "
                     f"{', '.join(MODELS)} (e.g. mlp1x512, mlp3x512).")


def default_learning_rate(name: str) -> float:
  """Zhang et al.: 0.1 for small Inception, 0.01 for AlexNet and the MLPs."""
  return 0.1 if name.startswith("inception") else 0.01


def count_params(model: nnx.Module, include_batchnorm: bool = False) -> int:
  """Number of trainable weights; BatchNorm's scale and offset only if asked."""
  total = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
  if not include_batchnorm:
    for _, module in nnx.iter_modules(model):
      if isinstance(module, nnx.BatchNorm):
        total -= sum(p.size for p in
                     jax.tree.leaves(nnx.state(module, nnx.Param)))
  return total


class GaussianNoise(nnx.Module):
  """Adds N(0, stddev^2) noise in training; the key comes from
  ``rngs.dropout``."""

  def __init__(self, stddev=0.0):
    self.stddev = stddev

  def __call__(self, x, *, deterministic, rngs=None):
    if deterministic or not self.stddev:
      return x
    if rngs is None:
      raise ValueError("hidden_noise needs rngs with a 'dropout' stream in "
                       "training.")
    return x + self.stddev * jax.random.normal(rngs.dropout(), x.shape, x.dtype)


class MLP(nnx.Module):
  """Flatten -> [Dense(width) -> ReLU -> Noise -> Dropout] x depth -> Dense."""

  def __init__(self, in_features, widths, num_classes, dropout=0.0,
               hidden_noise=0.0, *, rngs):
    sizes = (in_features,) + tuple(widths)
    self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs)
                            for a, b in zip(sizes[:-1], sizes[1:])])
    self.noise = GaussianNoise(hidden_noise)
    self.dropout = nnx.Dropout(dropout)
    self.head = nnx.Linear(sizes[-1], num_classes, rngs=rngs)

  def __call__(self, x, *, train=False, rngs=None):
    x = x.reshape(x.shape[0], -1)
    for layer in self.hidden:
      x = self.noise(jax.nn.relu(layer(x)), deterministic=not train, rngs=rngs)
      x = self.dropout(x, deterministic=not train, rngs=rngs)
    return self.head(x)


def max_pool(x, window=3, stride=2):
  """3x3/2 "SAME" max-pool (``conv.max_pool``)."""
  return conv.max_pool(x, window, stride)


def local_response_norm(x):
  """tf.nn.local_response_normalization with the cifar10 tutorial's constants
  (depth radius 4, bias 1, alpha 0.001 / 9, beta 0.75; ``conv``)."""
  return conv.local_response_norm(x, depth_radius=4, bias=1.0,
                                  alpha=0.001 / 9.0, beta=0.75)


def conv_layer(cin, cout, kernel, stride=1, *, rngs) -> nnx.Conv:
  """``nnx.Conv`` with "SAME" padding and canonical backward convolutions."""
  return nnx.Conv(cin, cout, (kernel, kernel), strides=stride, padding="SAME",
                  conv_general_dilated=conv.conv_general_dilated, rngs=rngs)


def _pooled_side(side: int, pools: int) -> int:
  for _ in range(pools):
    side = math.ceil(side / 2)
  return side


class SmallAlexNet(nnx.Module):
  """[Conv5x5(64) -> ReLU -> MaxPool3x3/2 -> LRN] x 2 -> 384 -> 192 ->
  classes."""

  def __init__(self, input_shape, num_classes, dropout=0.0, hidden_noise=0.0,
               *, rngs):
    h, w, c = input_shape
    self.conv1 = conv_layer(c, 64, 5, rngs=rngs)
    self.conv2 = conv_layer(64, 64, 5, rngs=rngs)
    flat = _pooled_side(h, 2) * _pooled_side(w, 2) * 64
    self.fc1 = nnx.Linear(flat, 384, rngs=rngs)
    self.fc2 = nnx.Linear(384, 192, rngs=rngs)
    self.head = nnx.Linear(192, num_classes, rngs=rngs)
    self.noise = GaussianNoise(hidden_noise)
    self.dropout = nnx.Dropout(dropout)

  def __call__(self, x, *, train=False, rngs=None):
    x = local_response_norm(max_pool(jax.nn.relu(self.conv1(x))))
    x = local_response_norm(max_pool(jax.nn.relu(self.conv2(x))))
    x = x.reshape(x.shape[0], -1)
    for layer in (self.fc1, self.fc2):
      x = self.noise(jax.nn.relu(layer(x)), deterministic=not train, rngs=rngs)
      x = self.dropout(x, deterministic=not train, rngs=rngs)
    return self.head(x)


class ConvBlock(nnx.Module):
  """Conv -> (BatchNorm) -> ReLU."""

  def __init__(self, cin, cout, kernel, stride=1, batchnorm=True, *, rngs):
    self.conv = conv_layer(cin, cout, kernel, stride, rngs=rngs)
    self.bn = (nnx.BatchNorm(cout, momentum=0.9, rngs=rngs) if batchnorm
               else None)

  def __call__(self, x, train):
    x = self.conv(x)
    if self.bn is not None:
      x = self.bn(x, use_running_average=not train)
    return jax.nn.relu(x)


class InceptionModule(nnx.Module):
  """1x1 conv(a) and 3x3 conv(b) in parallel, concatenated: a+b channels."""

  def __init__(self, cin, ch1, ch3, batchnorm, *, rngs):
    self.branch1 = ConvBlock(cin, ch1, 1, batchnorm=batchnorm, rngs=rngs)
    self.branch3 = ConvBlock(cin, ch3, 3, batchnorm=batchnorm, rngs=rngs)
    self.out_channels = ch1 + ch3

  def __call__(self, x, train):
    return jnp.concatenate([self.branch1(x, train), self.branch3(x, train)], -1)


class DownsampleModule(nnx.Module):
  """Stride-2 3x3 conv(c) and 3x3/2 max-pool in parallel: c+cin channels."""

  def __init__(self, cin, ch3, batchnorm, *, rngs):
    self.conv = ConvBlock(cin, ch3, 3, stride=2, batchnorm=batchnorm, rngs=rngs)
    self.out_channels = ch3 + cin

  def __call__(self, x, train):
    return jnp.concatenate([self.conv(x, train), max_pool(x)], -1)


# Zhang et al. Fig. 3: ("inc", 1x1, 3x3) or ("down", 3x3) after a 3x3(96) stem.
_INCEPTION_LAYOUT = (("inc", 32, 32), ("inc", 32, 48), ("down", 80),
                     ("inc", 112, 48), ("inc", 96, 64), ("inc", 80, 80),
                     ("inc", 48, 96), ("down", 96), ("inc", 176, 160),
                     ("inc", 176, 160))


class SmallInception(nnx.Module):
  """Zhang et al.'s small Inception for 28x28 inputs (global mean pool,
  Dense)."""

  def __init__(self, in_channels, num_classes, batchnorm=True, *, rngs):
    self.stem = ConvBlock(in_channels, 96, 3, batchnorm=batchnorm, rngs=rngs)
    blocks, channels = [], 96
    for spec in _INCEPTION_LAYOUT:
      if spec[0] == "inc":
        block = InceptionModule(channels, spec[1], spec[2], batchnorm,
                                rngs=rngs)
      else:
        block = DownsampleModule(channels, spec[1], batchnorm, rngs=rngs)
      blocks.append(block)
      channels = block.out_channels
    self.blocks = nnx.List(blocks)
    self.head = nnx.Linear(channels, num_classes, rngs=rngs)

  def __call__(self, x, *, train=False, rngs=None):
    del rngs  # no dropout in this model
    x = self.stem(x, train)
    for block in self.blocks:
      x = block(x, train)
    return self.head(x.mean(axis=(1, 2)))


class ArpitCNN(nnx.Module):
  """Arpit et al.'s CIFAR CNN: 2 x [Conv5x5(200) -> BN -> ReLU -> MaxPool3x3/2]
  -> Dense(384) -> BN -> ReLU -> Dense(192) -> BN -> ReLU -> Dense(classes).

  The paper's Crop(2,2) of 32x32 images is the data module's centre crop to 28.
  """

  def __init__(self, input_shape, num_classes, dropout=0.0, hidden_noise=0.0,
               *, rngs):
    h, w, c = input_shape
    self.conv1 = ConvBlock(c, 200, 5, rngs=rngs)
    self.conv2 = ConvBlock(200, 200, 5, rngs=rngs)
    flat = _pooled_side(h, 2) * _pooled_side(w, 2) * 200
    self.fc1 = nnx.Linear(flat, 384, rngs=rngs)
    self.bn1 = nnx.BatchNorm(384, momentum=0.9, rngs=rngs)
    self.fc2 = nnx.Linear(384, 192, rngs=rngs)
    self.bn2 = nnx.BatchNorm(192, momentum=0.9, rngs=rngs)
    self.head = nnx.Linear(192, num_classes, rngs=rngs)
    self.noise = GaussianNoise(hidden_noise)
    self.dropout = nnx.Dropout(dropout)

  def __call__(self, x, *, train=False, rngs=None):
    x = max_pool(self.conv1(x, train))
    x = max_pool(self.conv2(x, train))
    x = x.reshape(x.shape[0], -1)
    for fc, bn in ((self.fc1, self.bn1), (self.fc2, self.bn2)):
      x = jax.nn.relu(bn(fc(x), use_running_average=not train))
      x = self.noise(x, deterministic=not train, rngs=rngs)
      x = self.dropout(x, deterministic=not train, rngs=rngs)
    return self.head(x)
