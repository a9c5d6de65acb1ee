r"""Training speed side by side: memjax against PyTorch eager, same nets.

  python benchmarks/vs_pytorch.py                      # every net, 5 rounds
  python benchmarks/vs_pytorch.py --nets=alexnet --rounds=3

For each net both frameworks train the same architecture with SGD (momentum
0.9, the paper's learning rate, batch 128) on the same number of examples, and
the sides are timed in alternating rounds (memjax first in odd rounds, PyTorch
first in even ones) so that a change in the machine's load hits both. Each
round times one epoch of each side; compilation and PyTorch's first-call
set-up are excluded by a warm-up epoch. The table gives the min and median
training examples/s of each side and the ratio of the medians (memjax /
PyTorch; above 1 means memjax is faster).

Nets (``--nets``):

  mlp1x512_mnist5k  MLP 1x512 on the 4,000 MNIST-5k training digits, one
                    epoch (32 steps, the last one partial), as
                    ``Trainer.train_epoch`` and, separately, as a
                    10-epoch ``engine.fit`` (per epoch), which adds a clean
                    evaluation of the training and test sets after every
                    epoch, or with ``eval_every=10`` only after the last.
  mlp1x512_cifar    MLP 1x512 on 4,000 synthetic 28x28x3 images.
  alexnet, arpit_cnn, inception, inception_nobn
                    memjax's conv models on ``--conv_examples`` synthetic
                    28x28x3 images (PyTorch: the same layers in NCHW; for
                    the conv nets also a channels_last side).

memjax's side is one seed through ``Trainer.train_epoch`` (the jitted
``lax.scan`` epoch every experiment uses). PyTorch is an optional,
benchmark-only dependency (``pip install torch==2.13.0``, a CPU wheel); without
it the PyTorch columns are skipped with a message. PyTorch uses all cores
(``torch.get_num_threads()``), as XLA does.

Measured figures: benchmarks/RESULTS.md ("memjax vs PyTorch").
"""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import statistics
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from memjax import cli
from memjax import data as data_lib
from memjax import engine
from memjax import keys
from memjax import models
from memjax import training

try:
  import torch
  from torch import nn
except ImportError:  # benchmark-only dependency
  torch = None

NETS = ("mlp1x512_mnist5k", "mlp1x512_cifar", "alexnet", "arpit_cnn",
        "inception", "inception_nobn")
BATCH_SIZE = 128
FIT_EPOCHS = 10


def define_flags() -> None:
  """This script's flags (defined only when it runs, so that other
  benchmarks can import its sides)."""
  flags.DEFINE_list("nets", list(NETS), f"Subset of {', '.join(NETS)}.")
  flags.DEFINE_integer("rounds", 5, "Alternating timed rounds per net.",
                       lower_bound=1)
  flags.DEFINE_integer("conv_examples", 512,
                       "Training examples of one conv-net epoch (4 steps of "
                       "128 by default).", lower_bound=1)
  flags.DEFINE_integer("mlp_examples", 4000,
                       "Synthetic examples of the mlp1x512_cifar epoch.",
                       lower_bound=1)
  flags.DEFINE_bool("smoke", False, "One round on a few examples (tests).")
  flags.DEFINE_string("output", None, "Also write the results as JSON to "
                      "this new file (an existing one is refused).")


FLAGS = flags.FLAGS


def synthetic(num_examples: int, shape=(28, 28, 3), seed: int = 0):
  """Gaussian NHWC images and uniform labels of 10 classes."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((num_examples,) + shape, dtype=np.float32)
  return x, rng.integers(0, 10, num_examples).astype(np.int32)


def net_data(net: str, size: dict):
  """(x_train, y_train, x_test, y_test) of ``net``; test only for fit."""
  if net == "mlp1x512_mnist5k":
    dataset = data_lib.load(data_lib.DataConfig("mnist5k"))
    x, y = dataset.x_train[:size["mnist_examples"]], dataset.y_train[
        :size["mnist_examples"]]
    return x, y, dataset.x_test, dataset.y_test
  examples = size["mlp_examples" if net.startswith("mlp") else "conv_examples"]
  return synthetic(examples) + (None, None)


def model_name(net: str) -> str:
  return "mlp1x512" if net.startswith("mlp") else net


class MemjaxSide:
  """One seed of ``net`` trained by ``Trainer.train_epoch``."""

  def __init__(self, net: str, x, y):
    self.config = training.TrainConfig(model=model_name(net),
                                       batch_size=BATCH_SIZE)
    self.trainer = training.cached_trainer(self.config, x.shape[1:], 10)
    self.keys = keys.seed_keys(self.config.seed, self.config.num_seeds)
    self.state = self.trainer.init(self.keys)
    self.x, self.y = jnp.asarray(x), jnp.asarray(y)
    self.index = jnp.arange(x.shape[0], dtype=jnp.int32)[None]
    self.epoch = 0

  def run_epoch(self) -> None:
    self.epoch += 1
    self.state, losses = self.trainer.train_epoch(
        self.state, self.keys, self.epoch, self.x, self.y, self.index)
    jax.block_until_ready((self.state, losses))


class MemjaxFitSide:
  """``engine.fit`` for ``FIT_EPOCHS`` epochs, each followed by its clean
  evaluation of the training and test sets, or (``eval_every``) only every
  that many epochs and the last; one round is the whole fit, counted as
  ``FIT_EPOCHS`` epochs."""

  def __init__(self, net: str, x, y, x_test, y_test, eval_every: int = 1):
    self.config = training.TrainConfig(
        model=model_name(net), batch_size=BATCH_SIZE, max_epochs=FIT_EPOCHS,
        stop_when_fit=False, eval_every=eval_every)
    self.data = training.TrainData(x, y, x_test, y_test, 10)
    self.examples = FIT_EPOCHS * x.shape[0]

  def run_epoch(self) -> None:
    engine.fit(self.config, self.data)


def _same_padding_max_pool():
  # TF "SAME" 3x3/2 pooling gives ceil(n / 2) outputs, as padding 1 does.
  return nn.MaxPool2d(3, 2, padding=1)


def torch_net(net: str, in_shape) -> "nn.Module":
  """The PyTorch twin of memjax's model (NCHW; same layers and widths)."""
  h, w, c = in_shape
  if net.startswith("mlp"):
    return nn.Sequential(nn.Flatten(), nn.Linear(h * w * c, 512), nn.ReLU(),
                         nn.Linear(512, 10))
  side = lambda n: math.ceil(math.ceil(n / 2) / 2)  # two 2x poolings
  if net == "alexnet":
    # TF's LRN multiplies the window sum by alpha; PyTorch by alpha / size.
    lrn = lambda: nn.LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0)
    return nn.Sequential(
        nn.Conv2d(c, 64, 5, padding=2), nn.ReLU(), _same_padding_max_pool(),
        lrn(), nn.Conv2d(64, 64, 5, padding=2), nn.ReLU(),
        _same_padding_max_pool(), lrn(), nn.Flatten(),
        nn.Linear(side(h) * side(w) * 64, 384), nn.ReLU(), nn.Linear(384, 192),
        nn.ReLU(), nn.Linear(192, 10))
  if net == "arpit_cnn":
    block = lambda cin: [nn.Conv2d(cin, 200, 5, padding=2),
                         nn.BatchNorm2d(200), nn.ReLU(),
                         _same_padding_max_pool()]
    return nn.Sequential(
        *block(c), *block(200), nn.Flatten(),
        nn.Linear(side(h) * side(w) * 200, 384), nn.BatchNorm1d(384),
        nn.ReLU(), nn.Linear(384, 192), nn.BatchNorm1d(192), nn.ReLU(),
        nn.Linear(192, 10))
  return TorchInception(c, batchnorm=net == "inception")


if torch is not None:

  class TorchConvBlock(nn.Module):

    def __init__(self, cin, cout, kernel, stride=1, batchnorm=True):
      super().__init__()
      self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2)
      self.bn = nn.BatchNorm2d(cout) if batchnorm else nn.Identity()

    def forward(self, x):
      return torch.relu(self.bn(self.conv(x)))

  class TorchInception(nn.Module):
    """memjax's SmallInception (models._INCEPTION_LAYOUT) in PyTorch."""

    def __init__(self, cin, batchnorm=True):
      super().__init__()
      self.stem = TorchConvBlock(cin, 96, 3, batchnorm=batchnorm)
      self.blocks, channels = nn.ModuleList(), 96
      for spec in models._INCEPTION_LAYOUT:  # pylint: disable=protected-access
        if spec[0] == "inc":
          self.blocks.append(nn.ModuleList([
              TorchConvBlock(channels, spec[1], 1, batchnorm=batchnorm),
              TorchConvBlock(channels, spec[2], 3, batchnorm=batchnorm)]))
          channels = spec[1] + spec[2]
        else:
          self.blocks.append(nn.ModuleList([
              TorchConvBlock(channels, spec[1], 3, 2, batchnorm=batchnorm),
              _same_padding_max_pool()]))
          channels += spec[1]
      self.head = nn.Linear(channels, 10)

    def forward(self, x):
      x = self.stem(x)
      for first, second in self.blocks:
        x = torch.cat([first(x), second(x)], 1)
      return self.head(x.mean((2, 3)))


class TorchSide:
  """PyTorch eager training of the twin net, one epoch per call."""

  def __init__(self, net: str, x, y, channels_last: bool = False):
    self.model = torch_net(net, x.shape[1:])
    self.x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    if channels_last:
      self.model = self.model.to(memory_format=torch.channels_last)
      self.x = self.x.contiguous(memory_format=torch.channels_last)
    self.y = torch.from_numpy(y.astype(np.int64))
    self.optimizer = torch.optim.SGD(self.model.parameters(),
                                     lr=models.default_learning_rate(
                                         model_name(net)), momentum=0.9)
    self.loss = nn.CrossEntropyLoss()
    self.model.train()

  def run_epoch(self) -> None:
    order = torch.randperm(self.x.shape[0])
    for batch in order.split(BATCH_SIZE):
      self.optimizer.zero_grad(set_to_none=True)
      self.loss(self.model(self.x[batch]), self.y[batch]).backward()
      self.optimizer.step()


def sides(net: str, size: dict) -> dict:
  """name -> object with ``run_epoch()``: the columns of ``net``'s row."""
  x, y, x_test, y_test = net_data(net, size)
  out = {"memjax": MemjaxSide(net, x, y)}
  if net == "mlp1x512_mnist5k":
    out["memjax fit"] = MemjaxFitSide(net, x, y, x_test, y_test)
    out[f"memjax fit eval_every={FIT_EPOCHS}"] = MemjaxFitSide(
        net, x, y, x_test, y_test, eval_every=FIT_EPOCHS)
  if torch is not None:
    out["pytorch"] = TorchSide(net, x, y)
    if not net.startswith("mlp"):
      out["pytorch channels_last"] = TorchSide(net, x, y, channels_last=True)
  return out


def timed(side) -> float:
  start = time.perf_counter()
  side.run_epoch()
  return time.perf_counter() - start


def compare(net: str, size: dict) -> dict:
  """Warm-up, then ``rounds`` alternating timed epochs; examples/s per side."""
  columns = sides(net, size)
  examples = columns["memjax"].x.shape[0]
  for side in columns.values():
    side.run_epoch()  # compilation, allocation, first-call set-up
  seconds = {name: [] for name in columns}
  for round_ in range(size["rounds"]):
    names = list(columns) if round_ % 2 == 0 else list(columns)[::-1]
    for name in names:
      seconds[name].append(timed(columns[name]))
  row = {"net": net, "examples_per_epoch": examples, "batch_size": BATCH_SIZE,
         "rounds": size["rounds"], "sides": {}}
  for name, times in seconds.items():
    rates = [getattr(columns[name], "examples", examples) / t
             for t in times]
    row["sides"][name] = {"median_examples_per_s": statistics.median(rates),
                          "min_examples_per_s": min(rates),
                          "examples_per_s": rates}
  if torch is not None:
    torch_best = max(row["sides"][name]["median_examples_per_s"]
                     for name in row["sides"] if name.startswith("pytorch"))
    for name in row["sides"]:
      if name.startswith("memjax"):
        row["sides"][name]["vs_best_pytorch"] = (
            row["sides"][name]["median_examples_per_s"] / torch_best)
  return row


def machine() -> dict:
  return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds"), "cpu_count": os.cpu_count(),
          "load_average": list(os.getloadavg()),
          "processor": platform.processor() or platform.machine(),
          "platform": jax.default_backend(), "jax": jax.__version__,
          "torch": torch.__version__ if torch is not None else None,
          "torch_threads": torch.get_num_threads() if torch is not None
          else None,
          "xla_flags": os.environ.get("XLA_FLAGS", "")}


def format_row(row: dict) -> list[str]:
  lines = [f"{row['net']} ({row['examples_per_epoch']:,} examples per epoch, "
           f"batch {row['batch_size']}, {row['rounds']} rounds)"]
  for name, side in row["sides"].items():
    ratio = (f"  {side['vs_best_pytorch']:.2f}x best PyTorch"
             if "vs_best_pytorch" in side else "")
    lines.append(f"  {name:<26} median {side['median_examples_per_s']:>10,.0f}"
                 f"  min {side['min_examples_per_s']:>10,.0f} ex/s{ratio}")
  return lines


def check_flags(argv: list[str], valid_nets: tuple[str, ...]) -> None:
  """Checks a benchmark's command line before any measuring. Bad ``--nets``,
  an ``--output`` that exists already (never overwritten) or cannot be
  written: one ``error:`` line naming it, exit status 2 (as memjax's
  experiments), not a traceback minutes later."""
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  unknown = sorted(set(FLAGS.nets) - set(valid_nets))
  if unknown or not FLAGS.nets:
    print(f"error: --nets: unknown or empty {unknown}; valid: "
          f"{', '.join(valid_nets)}.", file=sys.stderr)
    sys.exit(2)
  output = FLAGS.output
  if output and os.path.exists(output):
    print(f"error: --output={output} already exists; benchmarks never "
          "overwrite a file (choose a new name or remove it).",
          file=sys.stderr)
    sys.exit(2)
  if output and not os.path.isdir(os.path.dirname(os.path.abspath(output))):
    print(f"error: --output={output}: not a file in an existing folder.",
          file=sys.stderr)
    sys.exit(2)


def note_missing_torch() -> None:
  if torch is None:
    print("PyTorch is not installed, so its columns are skipped (install the "
          "benchmark-only dependency with `pip install torch==2.13.0`).",
          file=sys.stderr)


def finish(report: dict, output: str | None) -> None:
  """Prints the machine (with its load at the end) and writes ``report`` as
  JSON to ``output`` if given."""
  report["machine"]["load_average_at_end"] = list(os.getloadavg())
  print(f"machine: {json.dumps(report['machine'])}")
  if output:
    with open(output, "w") as f:
      json.dump(report, f, indent=1)
      f.write("\n")


def main(argv):
  check_flags(argv, NETS)
  size = {"rounds": FLAGS.rounds, "conv_examples": FLAGS.conv_examples,
          "mlp_examples": FLAGS.mlp_examples, "mnist_examples": 4000}
  if FLAGS.smoke:
    size = {"rounds": 1, "conv_examples": 16, "mlp_examples": 256,
            "mnist_examples": 256}
  note_missing_torch()
  report = {"machine": machine(), "rows": []}
  for net in FLAGS.nets:
    row = compare(net, size)
    report["rows"].append(row)
    print("\n".join(format_row(row)), flush=True)
  finish(report, FLAGS.output)


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=cli.parse_flags)
