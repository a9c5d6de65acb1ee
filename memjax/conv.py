"""Convolution, pooling and LRN layers in forms that XLA:CPU runs fast.

Why this module exists (issue 15): XLA:CPU sends a convolution to its fast
(Eigen) kernels only when it is in the canonical layout: NHWC input, HWIO
kernel, NHWC output, no window reversal. The convolutions that autodiff builds
for the backward pass (a kernel-flipped, in/out-swapped convolution for the
input gradient, and a batch-contracting one for the kernel gradient) are not in
that layout, and XLA canonicalizes them only outside loops; inside the
``lax.scan`` of a training epoch they ran on a slow generic path, 25 examples/s
for the small AlexNet on a 2-core CPU. Here:

* ``conv_general_dilated``: a drop-in for ``lax.conv_general_dilated`` (for
  ``nnx.Conv(conv_general_dilated=...)``) whose ``jax.custom_vjp`` writes both
  backward convolutions as canonical NHWC/HWIO convolutions (explicit
  transposes and kernel flip around them). The input gradient of a strided
  convolution is one stride-1 convolution per phase of the stride
  (``_strided_input_gradient``) instead of a convolution of the zero-dilated
  output gradient, which did stride^2 times the work (4.6x the time for
  Inception's 3x3/2 convolutions at 28x28x80). Same values and gradients as
  ``lax.conv_general_dilated`` (tests/test_conv.py). It supports what the
  models use: 2-D, NHWC/HWIO, window strides, explicit or "SAME"/"VALID"
  padding, no dilation, one feature group. Reverse mode (``jax.grad``,
  ``jax.vjp``, forward-over-reverse Hessian-vector products) works;
  forward mode of the layer itself (``jax.jvp`` of the model) does not, as for
  every ``custom_vjp``.
* ``max_pool``: a "SAME" max-pool as a max over strided slices, first along
  the rows, then along the columns. Its gradient is strided pads and selects
  instead of ``select_and_scatter``, which XLA:CPU runs slowly. Values equal
  ``nnx.max_pool``; gradients equal it wherever each window has one maximum
  (on ties jnp.maximum splits the gradient, select_and_scatter picks one
  element; after a ReLU the only ties are zeros, whose gradient the ReLU
  drops).
* ``local_response_norm``: TF's LRN with the window sum over channels as a
  sum of shifted slices of the zero-padded squares, which XLA fuses into one
  elementwise loop, instead of ``reduce_window``.

On accelerators these formulations compile to the same kind of kernels as the
plain ones.

The one XLA flag memjax sets, here and nowhere else, when this module is
imported (``import memjax.models`` or anything that trains imports it):
``--xla_cpu_experimental_ynn_fusion_type=reduce`` (YNNPACK fusions for
reductions only), appended to ``XLA_FLAGS`` before JAX creates its backends.
XLA:CPU's default list also hands convolutions to YNNPACK, which runs the
kernel gradients of these models' convolutions up to 8x slower than XLA's
Eigen kernels. Reductions stay on YNNPACK because without it XLA rewrites
every sum over more than 32 values (BatchNorm's per-channel statistics, every
bias gradient) into a ``reduce-window`` over windows of 32 (its
TreeReductionRewriter), which XLA:CPU runs about 3x slower. The measurements
behind both choices are in benchmarks/RESULTS.md ("memjax vs PyTorch on this
CPU" and "YNNPACK's reductions back on"). The flag affects only the CPU
backend. It is left out when ``XLA_FLAGS`` already names it (the user's own
choice wins), when jaxlib is not the 0.10 series pinned in requirements.txt,
on which it was measured (XLA aborts on flags it does not know), and, with a
warning, when JAX's backends already exist (too late to take effect). When it
is appended to a non-empty ``XLA_FLAGS`` set by the user, a warning says so.
``XLA_FLAG_STATUS`` records what happened.
"""

from __future__ import annotations

import functools
import os
from typing import Sequence

from absl import logging
import jax
import jax.numpy as jnp
import jaxlib.version
from jax import lax
from jax._src import xla_bridge

YNN_FUSION_FLAG = "xla_cpu_experimental_ynn_fusion_type"
XLA_FLAG = f"--{YNN_FUSION_FLAG}=reduce"
TESTED_JAXLIB = "0.10."


def _set_xla_flag() -> str:
  """Appends ``XLA_FLAG`` to XLA_FLAGS where it can take effect (see the
  module docstring); returns what was done."""
  existing = os.environ.get("XLA_FLAGS", "")
  if YNN_FUSION_FLAG in existing:
    return "left to the user's XLA_FLAGS"
  if not jaxlib.version.__version__.startswith(TESTED_JAXLIB):
    return f"not set: jaxlib {jaxlib.version.__version__} is untested"
  if xla_bridge.backends_are_initialized():
    logging.warning("memjax: JAX's backends were created before memjax.conv "
                    "was imported, so %s (faster conv training on CPUs) is "
                    "not in effect; import memjax first or add it to "
                    "XLA_FLAGS.", XLA_FLAG)
    return "not set: JAX's backends already existed"
  os.environ["XLA_FLAGS"] = f"{existing} {XLA_FLAG}".strip()
  if existing:
    logging.warning("memjax: appended %s to your XLA_FLAGS (faster conv "
                    "training on CPUs; memjax/conv.py); set the flag yourself "
                    "in XLA_FLAGS to override it.", XLA_FLAG)
  return "set"


XLA_FLAG_STATUS = _set_xla_flag()

# Input, kernel and output layouts of every convolution below.
CANONICAL = ("NHWC", "HWIO", "NHWC")


def _explicit_padding(x_shape, kernel_shape, strides, padding):
  """``padding`` ("SAME", "VALID" or pairs) as ((lo, hi), (lo, hi))."""
  if isinstance(padding, str):
    return tuple(lax.padtype_to_pads(x_shape[1:3], kernel_shape[:2], strides,
                                     padding))
  return tuple((int(lo), int(hi)) for lo, hi in padding)


def _conv(x, kernel, strides, padding, rhs_dilation=(1, 1)):
  return lax.conv_general_dilated(x, kernel, strides, padding,
                                  rhs_dilation=rhs_dilation,
                                  dimension_numbers=CANONICAL)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def canonical_conv(x, kernel, strides: tuple[int, int],
                   padding: tuple[tuple[int, int], tuple[int, int]]):
  """NHWC x HWIO -> NHWC convolution with explicit ``padding`` pairs."""
  return _conv(x, kernel, strides, padding)


def _canonical_conv_fwd(x, kernel, strides, padding):
  return _conv(x, kernel, strides, padding), (x, kernel)


def _flipped(kernel):
  """The spatially flipped kernel with its in/out features swapped (HWIO)."""
  return jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)


def _input_gradient(grad_out, kernel, x_shape, padding):
  """Input gradient of a stride-1 convolution: the output gradient convolved
  with the flipped kernel."""
  input_padding = []
  for size, k, out, (lo, _) in zip(x_shape[1:3], kernel.shape[:2],
                                   grad_out.shape[1:3], padding):
    before = k - 1 - lo
    input_padding.append((before, size + k - 1 - out - before))
  return _conv(grad_out, _flipped(kernel), (1, 1), input_padding)


def _strided_input_gradient(grad_out, kernel, x_shape, strides, padding):
  """Input gradient of a strided convolution, one stride-1 convolution per
  phase (padded input position modulo the stride), interleaved.

  Input position t of the padded input receives dy[o] * w[k] for
  o * stride + k = t, so the positions of phase r = t mod stride see only the
  taps w[r::stride]: a stride-1 convolution of dy with that sub-kernel. The
  phases together do the forward pass's FLOPs; a convolution of the
  zero-dilated dy (autodiff's form) does stride^2 times as many.
  """
  n, h, w = x_shape[:3]
  channels = kernel.shape[2]
  (sh, sw), ((lo_h, _), (lo_w, _)) = strides, padding
  # Phase rows q cover padded positions [0, q * stride) >= the input's.
  qh, qw = -(-(h + lo_h) // sh), -(-(w + lo_w) // sw)
  grad_out = grad_out[:, :qh, :qw]  # later outputs reach only padding
  oh, ow = grad_out.shape[1:3]
  rows = []
  for rh in range(sh):
    row = []
    for rw in range(sw):
      sub = kernel[rh::sh, rw::sw]
      if 0 in sub.shape[:2]:  # a phase no tap reaches (kernel < stride)
        row.append(jnp.zeros((n, qh, qw, channels), grad_out.dtype))
        continue
      pads = ((sub.shape[0] - 1, qh - oh), (sub.shape[1] - 1, qw - ow))
      row.append(_conv(grad_out, _flipped(sub), (1, 1), pads))
    rows.append(jnp.stack(row, axis=3))  # (n, qh, qw, sw, channels)
  padded = jnp.stack(rows, axis=2).reshape(n, qh * sh, qw * sw, channels)
  return padded[:, lo_h:lo_h + h, lo_w:lo_w + w]


def input_gradient(grad_out, kernel, x_shape, strides, padding):
  """Gradient of ``canonical_conv`` with respect to its input."""
  if strides == (1, 1):
    return _input_gradient(grad_out, kernel, x_shape, padding)
  return _strided_input_gradient(grad_out, kernel, x_shape, strides, padding)


def kernel_gradient(x, grad_out, kernel_shape, strides, padding):
  """Gradient of ``canonical_conv`` with respect to its kernel.

  The input with its channels as the batch and its batch as the features,
  convolved with the output gradient (batch as its input features) dilated by
  the strides. Positions past the last one that the strided forward pass
  reached come out beyond the kernel and are dropped.
  """
  kh, kw = kernel_shape[:2]
  grad_kernel = _conv(x.transpose(3, 1, 2, 0), grad_out.transpose(1, 2, 0, 3),
                      (1, 1), padding, rhs_dilation=strides)
  return grad_kernel[:, :kh, :kw].transpose(1, 2, 0, 3)


def _canonical_conv_bwd(strides, padding, residuals, grad_out):
  x, kernel = residuals
  return (input_gradient(grad_out, kernel, x.shape, strides, padding),
          kernel_gradient(x, grad_out, kernel.shape, strides, padding))


canonical_conv.defvjp(_canonical_conv_fwd, _canonical_conv_bwd)


def conv_general_dilated(lhs, rhs, window_strides: Sequence[int], padding,
                         lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count: int = 1,
                         precision=None, **unused_kwargs):
  """``lax.conv_general_dilated`` for the layers of memjax's models, with
  canonical backward convolutions (``canonical_conv``).

  Takes ``nnx.Conv``'s arguments; raises ValueError for what it does not
  support (dilation, feature groups, a precision, non-NHWC/HWIO layouts).
  """
  del unused_kwargs  # nnx.Conv's out_sharding: no sharding inside a model
  dims = lax.conv_dimension_numbers(lhs.shape, rhs.shape,
                                    dimension_numbers or CANONICAL)
  canonical = lax.conv_dimension_numbers(lhs.shape, rhs.shape, CANONICAL)
  dilated = any(d != 1 for d in tuple(lhs_dilation or ()) +
                tuple(rhs_dilation or ()))
  if (lhs.ndim != 4 or dims != canonical or dilated or feature_group_count != 1
      or precision is not None):
    raise ValueError(
        "memjax.conv supports 2-D NHWC/HWIO convolutions without dilation, "
        "feature groups or precision settings.")
  strides = tuple(int(s) for s in window_strides)
  return canonical_conv(lhs, rhs, strides,
                        _explicit_padding(lhs.shape, rhs.shape, strides,
                                          padding))


def _max_pool_axis(x, axis: int, window: int, stride: int):
  """"SAME" max-pool of ``x`` along one spatial ``axis``."""
  size = x.shape[axis]
  out = -(-size // stride)
  total = max((out - 1) * stride + window - size, 0)
  pads = [(0, 0)] * x.ndim
  pads[axis] = (total // 2, total - total // 2)
  padded = jnp.pad(x, pads, constant_values=-jnp.inf)
  pooled = None
  for offset in range(window):
    part = lax.slice_in_dim(padded, offset, offset + (out - 1) * stride + 1,
                            stride, axis)
    pooled = part if pooled is None else jnp.maximum(pooled, part)
  return pooled


def max_pool(x, window: int = 3, stride: int = 2):
  """``nnx.max_pool(x, (window, window), (stride, stride), "SAME")`` of NHWC
  ``x`` as a separable max over strided slices (see the module docstring)."""
  return _max_pool_axis(_max_pool_axis(x, 1, window, stride), 2, window,
                        stride)


def local_response_norm(x, depth_radius: int = 4, bias: float = 1.0,
                        alpha: float = 0.001 / 9.0, beta: float = 0.75):
  """tf.nn.local_response_normalization of NHWC ``x`` over its channels:
  x / (bias + alpha * sum of x^2 over the 2 * depth_radius + 1 channels
  around) ** beta, as a sum of shifted slices (see the module docstring)."""
  channels = x.shape[-1]
  squares = jnp.pad(x * x, [(0, 0)] * (x.ndim - 1)
                    + [(depth_radius, depth_radius)])
  window_sum = sum(squares[..., offset:offset + channels]
                   for offset in range(2 * depth_radius + 1))
  return x / (bias + alpha * window_sum) ** beta
