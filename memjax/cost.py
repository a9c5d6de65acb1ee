"""Arithmetic cost of a model, counted from its layer shapes.

The multiply-adds of every dense and convolution layer in one example's
forward pass, read off the model's jaxpr, so the count is the same on every
backend (XLA's cost analysis of a compiled program misses the cuBLAS/cuDNN
calls that carry a GPU's work). Used for the benchmarks' FLOPs and utilization
(``benchmarks/report.py``) and for how seeds execute on a CPU
(``training.choose_seed_chunk``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from memjax import keys


def jaxpr_equations(jaxpr):
  """Every equation of ``jaxpr`` and of the jaxprs nested in it."""
  for eqn in jaxpr.eqns:
    yield eqn
    for value in eqn.params.values():
      for sub in value if isinstance(value, (list, tuple)) else (value,):
        sub = getattr(sub, "jaxpr", sub)
        if hasattr(sub, "eqns"):
          yield from jaxpr_equations(sub)


def _multiply_adds(eqn) -> int:
  """Multiply-adds of a dot_general or convolution equation (else 0)."""
  if eqn.primitive.name not in ("dot_general", "conv_general_dilated"):
    return 0
  out = math.prod(eqn.outvars[0].aval.shape)
  lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
  if eqn.primitive.name == "dot_general":
    (lhs_contracting, _), _ = eqn.params["dimension_numbers"]
    return out * math.prod(lhs[d] for d in lhs_contracting)
  spec = eqn.params["dimension_numbers"].rhs_spec  # (out, in, spatial...)
  return out * math.prod(rhs[d] for d in spec[1:])


def layer_multiply_adds(trainer, batch_size: int = 1) -> list[int]:
  """Multiply-adds of each dense or conv layer, in order, in the eval-mode
  forward pass of one seed's ``trainer`` (``memjax.training.Trainer``) over
  a batch of ``batch_size`` examples; nothing is computed."""
  params, batch_stats = jax.eval_shape(
      lambda: (lambda s: (s.params, s.batch_stats))(
          trainer.init_one(keys.seed_key(0))))
  x = jax.ShapeDtypeStruct((batch_size,) + tuple(trainer.input_shape),
                           jnp.float32)
  forward = jax.make_jaxpr(
      lambda p, b, x: trainer.apply(p, b, x)[0])(params, batch_stats, x)
  return [m for m in map(_multiply_adds, jaxpr_equations(forward.jaxpr)) if m]


def training_flops(trainer, batch_size: int) -> float:
  """FLOPs of one SGD step of one seed per example: every layer costs 2 FLOPs
  per multiply-add in the forward pass, the same again for its weight
  gradient and again for its input gradient, except the first layer, whose
  input needs no gradient: 2 x (3 x all multiply-adds - the first layer's).
  Elementwise work (ReLU, pooling, LRN, BatchNorm, the optimizer) is left
  out: it is a few percent of the conv and matmul FLOPs of these models."""
  layers = layer_multiply_adds(trainer, batch_size)
  return 2 * (3 * sum(layers) - layers[0]) / batch_size


def multiply_adds_per_input_value(trainer) -> float:
  """Forward multiply-adds of one example per value of its input: how much
  arithmetic each input value that a training step reads in carries."""
  return sum(layer_multiply_adds(trainer)) / math.prod(trainer.input_shape)
