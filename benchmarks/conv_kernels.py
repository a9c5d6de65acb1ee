r"""The convolutions of a training step alone: memjax (XLA:CPU) vs PyTorch.

  python benchmarks/conv_kernels.py                  # alexnet, arpit_cnn, inception
  python benchmarks/conv_kernels.py --nets=arpit_cnn --rounds=3

Why (issue 15, item 1): a conv net's training step is its convolutions
(forward, input gradient, kernel gradient) plus memory-bound passes
(BatchNorm, ReLU, pooling, concatenation, layout copies). If memjax's
convolutions alone take longer than PyTorch's whole step, no change to the
passes around them can make memjax's step as fast: that needs faster
convolution kernels than the ones XLA:CPU calls. This benchmark measures that
bound.

For each net it reads every convolution of the model from its jaxpr (input,
kernel, strides and padding at batch 128) and times each one by itself, in
alternating rounds (memjax first in odd rounds, PyTorch first in even ones):

* memjax: the forward convolution, ``conv.input_gradient`` and
  ``conv.kernel_gradient`` (what ``conv.canonical_conv``'s backward pass
  runs), each jitted inside a ``lax.fori_loop``, as in the ``lax.scan`` of a
  training epoch. The first convolution (on the data) has no input gradient.
* PyTorch: ``F.conv2d`` and its backward pass (``torch.autograd.grad``, input
  and kernel gradients in one call), channels_last, all cores.

The same rounds also time one whole training step of each side (the
``benchmarks/vs_pytorch.py`` sides, an epoch of 4 steps over 4: memjax's
``Trainer.train_epoch``; PyTorch NCHW and channels_last, the faster one
counts). Printed per net: each convolution's
milliseconds per step on both sides (medians over rounds), the sums, their
GFLOP/s (2 x multiply-adds), and the sums as fractions of the best PyTorch
step. Measured figures: benchmarks/RESULTS.md ("The convolutions alone").
"""

from __future__ import annotations

import collections
import os
import statistics
import sys
import time

from absl import app
from absl import flags
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vs_pytorch  # pylint: disable=g-import-not-at-top,wrong-import-position

from memjax import cli  # pylint: disable=wrong-import-position
from memjax import conv  # pylint: disable=wrong-import-position
from memjax import cost  # pylint: disable=wrong-import-position
from memjax import models  # pylint: disable=wrong-import-position

torch = vs_pytorch.torch
NETS = ("alexnet", "arpit_cnn", "inception", "inception_nobn")
INPUT_SHAPE = (28, 28, 3)
CALLS_PER_TIMING = 2
STEPS_PER_EPOCH = 4  # whole steps are timed as epochs of 4 (as vs_pytorch)


def define_flags() -> None:
  """This script's flags (defined only when it runs, so that tests can
  import it)."""
  flags.DEFINE_list("nets", ["alexnet", "arpit_cnn", "inception"],
                    f"Subset of {', '.join(NETS)}.")
  flags.DEFINE_integer("rounds", 5, "Alternating timed rounds.",
                       lower_bound=1)
  flags.DEFINE_bool("smoke", False, "One round at batch 4 (tests).")
  flags.DEFINE_string("output", None, "Also write the results as JSON to "
                      "this new file (an existing one is refused).")


FLAGS = flags.FLAGS

Conv = collections.namedtuple("Conv", "x_shape kernel_shape strides padding "
                              "needs_input_gradient")


def model_convs(net: str, batch: int) -> list[Conv]:
  """The convolutions of ``net``'s forward pass on a batch of 28x28x3."""
  model = models.build(net, INPUT_SHAPE, 10, nnx.Rngs(0))
  images = jnp.zeros((batch,) + INPUT_SHAPE, jnp.float32)
  jaxpr = jax.make_jaxpr(lambda x: model(x))(images).jaxpr
  equations = [e for e in cost.jaxpr_equations(jaxpr)
               if e.primitive.name == "conv_general_dilated"]
  convs = []
  for index, equation in enumerate(equations):
    x, kernel = (v.aval.shape for v in equation.invars)
    convs.append(Conv(tuple(x), tuple(kernel),
                      tuple(equation.params["window_strides"]),
                      tuple(tuple(p) for p in equation.params["padding"]),
                      needs_input_gradient=index > 0))
  return convs


def flops(c: Conv) -> dict:
  """Multiply-adds x 2 of the forward pass, per backward piece the same."""
  n, h, w, _ = c.x_shape
  kh, kw, cin, cout = c.kernel_shape
  (lo_h, hi_h), (lo_w, hi_w) = c.padding
  oh = (h + lo_h + hi_h - kh) // c.strides[0] + 1
  ow = (w + lo_w + hi_w - kw) // c.strides[1] + 1
  forward = 2 * n * oh * ow * kh * kw * cin * cout
  return {"forward": forward,
          "backward": forward * (2 if c.needs_input_gradient else 1),
          "output_shape": (n, oh, ow, cout)}


def _looped(fn):
  """``fn`` called ``calls`` times in a jitted ``fori_loop``. The trip count
  is an argument, so XLA cannot unroll the loop and merge the calls, and the
  barrier ties the inputs to the step, so nothing is hoisted out of the loop
  (either way a static loop of two calls ran one convolution). The second
  barrier keeps each output whole: no slice is pushed into it."""

  def loop(calls, *args):
    def body(step, total):
      *inputs, _ = lax.optimization_barrier((*args, step))
      outputs = lax.optimization_barrier(fn(*inputs))
      return total + sum(o.ravel()[0] for o in jax.tree.leaves(outputs))
    return lax.fori_loop(0, calls, body, jnp.float32(0))

  return jax.jit(loop)


class MemjaxConv:
  """One convolution of a memjax model: forward, then both gradients."""

  def __init__(self, c: Conv):
    rng = np.random.default_rng(0)
    self.x = jnp.asarray(rng.standard_normal(c.x_shape, np.float32))
    self.kernel = jnp.asarray(
        0.05 * rng.standard_normal(c.kernel_shape, np.float32))
    self.grad_out = jnp.asarray(
        rng.standard_normal(flops(c)["output_shape"], np.float32))
    self.forward = _looped(
        lambda x, k: conv.canonical_conv(x, k, c.strides, c.padding))

    def backward(x, kernel, grad_out):
      grads = [conv.kernel_gradient(x, grad_out, kernel.shape, c.strides,
                                    c.padding)]
      if c.needs_input_gradient:
        grads.append(conv.input_gradient(grad_out, kernel, x.shape, c.strides,
                                         c.padding))
      return grads

    self.backward = _looped(backward)

  def run(self) -> dict:
    seconds = {}
    for name, fn, args in (
        ("forward", self.forward, (self.x, self.kernel)),
        ("backward", self.backward, (self.x, self.kernel, self.grad_out))):
      start = time.perf_counter()
      jax.block_until_ready(fn(CALLS_PER_TIMING, *args))
      seconds[name] = (time.perf_counter() - start) / CALLS_PER_TIMING
    return seconds


class TorchConv:
  """The same convolution in PyTorch, channels_last."""

  def __init__(self, c: Conv):
    (lo_h, hi_h), (lo_w, hi_w) = c.padding
    # TF "SAME" pads (0, 1) for a 3x3/2 on an even size; padding 1 on both
    # sides gives the same output size and work.
    self.padding = (max(lo_h, hi_h), max(lo_w, hi_w))
    self.stride = c.strides
    last = torch.channels_last
    n, h, w, cin = c.x_shape
    kh, kw, _, cout = c.kernel_shape
    self.x = torch.randn(n, cin, h, w).contiguous(memory_format=last)
    self.kernel = (0.05 * torch.randn(cout, cin, kh, kw)).contiguous(
        memory_format=last)
    self.x.requires_grad_(c.needs_input_gradient)
    self.kernel.requires_grad_(True)
    self.inputs = [self.kernel] + ([self.x] if c.needs_input_gradient else [])
    with torch.no_grad():
      shape = self._conv().shape
    expected = flops(c)["output_shape"]
    if tuple(shape) != (expected[0], expected[3]) + tuple(expected[1:3]):
      raise AssertionError(f"PyTorch output {tuple(shape)} vs {expected}")
    self.grad_out = torch.randn(*shape).contiguous(memory_format=last)

  def _conv(self):
    return torch.nn.functional.conv2d(self.x, self.kernel, stride=self.stride,
                                      padding=self.padding)

  def run(self) -> dict:
    start = time.perf_counter()
    with torch.no_grad():
      for _ in range(CALLS_PER_TIMING):
        self._conv()
    forward = (time.perf_counter() - start) / CALLS_PER_TIMING
    output = self._conv()
    start = time.perf_counter()
    for _ in range(CALLS_PER_TIMING):
      torch.autograd.grad(output, self.inputs, self.grad_out,
                          retain_graph=True)
    return {"forward": forward,
            "backward": (time.perf_counter() - start) / CALLS_PER_TIMING}


def measure(net: str, batch: int, rounds: int) -> dict:
  """Per-convolution and whole-step seconds of both sides, median over
  alternating rounds."""
  convs = model_convs(net, batch)
  sides = {"memjax": [MemjaxConv(c) for c in convs]}
  if torch is not None:
    sides["pytorch"] = [TorchConv(c) for c in convs]
  steps = vs_pytorch.sides(net, {"conv_examples": STEPS_PER_EPOCH * batch,
                                 "rounds": rounds})
  for runner in [r for rs in sides.values() for r in rs]:
    runner.run()  # compilation, first-call set-up
  for step in steps.values():
    step.run_epoch()
  conv_seconds = {side: [collections.defaultdict(list) for _ in convs]
                  for side in sides}
  step_seconds = {name: [] for name in steps}
  for round_ in range(rounds):
    order = list(sides) if round_ % 2 == 0 else list(sides)[::-1]
    for side in order:
      for index, runner in enumerate(sides[side]):
        for piece, seconds in runner.run().items():
          conv_seconds[side][index][piece].append(seconds)
    for name in list(steps) if round_ % 2 == 0 else list(steps)[::-1]:
      step_seconds[name].append(vs_pytorch.timed(steps[name]) /
                                STEPS_PER_EPOCH)
  result = {"net": net, "batch": batch, "rounds": rounds, "convs": [],
            "conv_step_seconds": {}, "step_seconds": {
                name: statistics.median(times) for name, times in
                step_seconds.items()}}
  for index, c in enumerate(convs):
    row = {"x_shape": c.x_shape, "kernel_shape": c.kernel_shape,
           "strides": c.strides, "flops": flops(c)}
    for side in sides:
      row[side] = {piece: statistics.median(times) for piece, times in
                   conv_seconds[side][index].items()}
    result["convs"].append(row)
  result["conv_flops_per_step"] = sum(
      r["flops"]["forward"] + r["flops"]["backward"] for r in result["convs"])
  for side in sides:
    seconds = sum(sum(r[side].values()) for r in result["convs"])
    result["conv_step_seconds"][side] = seconds
  pytorch_steps = [s for name, s in result["step_seconds"].items()
                   if name.startswith("pytorch")]
  if pytorch_steps:
    result["best_pytorch_step_seconds"] = min(pytorch_steps)
  return result


def format_result(r: dict) -> list[str]:
  sides = [s for s in ("memjax", "pytorch") if s in r["convs"][0]]
  lines = [f"{r['net']}: {len(r['convs'])} convolutions, batch {r['batch']}, "
           f"{r['rounds']} rounds; ms per step (forward / backward)"]
  for c in r["convs"]:
    cells = "   ".join(
        f"{s} {1e3 * c[s]['forward']:7.1f} / {1e3 * c[s]['backward']:7.1f}"
        for s in sides)
    n, h, w, cin = c["x_shape"]
    kh, kw, _, cout = c["kernel_shape"]
    lines.append(f"  {h:>2}x{w:<2} {cin:>3}->{cout:<3} {kh}x{kw}/"
                 f"{c['strides'][0]}   {cells}")
  gflop = r["conv_flops_per_step"] / 1e9
  for side in sides:
    seconds = r["conv_step_seconds"][side]
    line = (f"  convolutions alone, {side:<7}: {1e3 * seconds:7.1f} ms "
            f"({gflop / seconds:5.1f} GFLOP/s)")
    if "best_pytorch_step_seconds" in r:
      line += (f" = {seconds / r['best_pytorch_step_seconds']:.2f} of "
               f"PyTorch's whole step")
    lines.append(line)
  for name, seconds in r["step_seconds"].items():
    lines.append(f"  whole step, {name:<21}: {1e3 * seconds:7.1f} ms")
  return lines


def main(argv):
  vs_pytorch.check_flags(argv, NETS)
  batch, rounds = ((4, 1) if FLAGS.smoke else
                   (vs_pytorch.BATCH_SIZE, FLAGS.rounds))
  vs_pytorch.note_missing_torch()
  report = {"machine": vs_pytorch.machine(), "nets": []}
  for net in FLAGS.nets:
    result = measure(net, batch, rounds)
    report["nets"].append(result)
    print("\n".join(format_result(result)), flush=True)
  vs_pytorch.finish(report, FLAGS.output)


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=cli.parse_flags)
