"""Mapping a function over an array in fixed-size chunks, inside jit.

Evaluation, per-example gradients and critical-sample searches touch every
example; doing them in chunks bounds the memory a single XLA program holds.
"""

import jax
import jax.numpy as jnp


def batched(fn, x, batch_size):
  """fn over x in chunks of batch_size with lax.map (pads the last chunk)."""
  n = x.shape[0]
  batch_size = min(batch_size, n)
  chunks = -(-n // batch_size)
  pad = chunks * batch_size - n
  xp = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
  out = jax.lax.map(fn, xp.reshape((chunks, batch_size) + x.shape[1:]))
  return jax.tree.map(lambda o: o.reshape((-1,) + o.shape[2:])[:n], out)
