"""Shared command-line plumbing of the experiments: flags -> frozen configs.

The experiments in ``experiments/`` define their flags with these helpers and
turn the parsed values into the library's frozen configs; the library itself
never reads flags. Every numeric flag carries its valid range (``define_int``,
``define_float``), checked when the flags are parsed. ``run_main`` turns bad
input into one line, ``error: ...``, naming the bad value and the valid ones,
with exit status 2; Ctrl-C into ``interrupted; re-run the same command to
resume`` with exit status 130.

The order every experiment follows: parse and validate every flag, build the
configs, load the data, then ``prepare`` (memory estimate, then claim the
workdir), then train. So bad input writes nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
import sys
import threading
import time
from typing import Callable

from absl import app
from absl import logging
from absl import flags

from memjax import checkpointing
from memjax import data as data_lib
from memjax import reporting
from memjax import sharding
from memjax import studies
from memjax import training

def _range_text(low, high, low_open, high_open, allow_none) -> str:
  show = lambda v: f"{v:g}" if isinstance(v, float) else str(v)
  if low is not None and high is not None:
    text = (f"in {'(' if low_open else '['}{show(low)}, {show(high)}"
            f"{')' if high_open else ']'}")
  elif low is not None:
    text = f"{'>' if low_open else '>='} {show(low)}"
  elif high is not None:
    text = f"{'<' if high_open else '<='} {show(high)}"
  else:
    text = "finite"
  return text + (" (or unset)" if allow_none else "")


def _in_range(value, low, high, low_open, high_open, allow_none) -> bool:
  if value is None:
    return allow_none
  if isinstance(value, float) and not math.isfinite(value):
    return False
  if low is not None and (value <= low if low_open else value < low):
    return False
  if high is not None and (value >= high if high_open else value > high):
    return False
  return True


def _define_number(define, name, default, help_text, low, high, low_open,
                   high_open):
  allow_none = default is None
  valid = _range_text(low, high, low_open, high_open, allow_none)
  define(name, default, f"{help_text} Valid: {valid}.")
  flags.register_validator(
      name, lambda v: _in_range(v, low, high, low_open, high_open, allow_none),
      message=f"--{name} must be {valid}")


def define_int(name: str, default: int | None, help_text: str, *,
               low: int | None = None, high: int | None = None) -> None:
  """An integer flag that must lie in [low, high] (None is valid only as the
  default: a default of None means "unset")."""
  _define_number(flags.DEFINE_integer, name, default, help_text, low, high,
                 False, False)


def define_float(name: str, default: float | None, help_text: str, *,
                 low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False) -> None:
  """A finite float flag in the range low..high (``*_open``: bound excluded)."""
  _define_number(flags.DEFINE_float, name, default, help_text, low, high,
                 low_open, high_open)


MAX_SEED = training.MAX_SEED


def define_data_flags(dataset: str = "mnist5k", *, standardize: bool) -> None:
  """The data flags; ``standardize`` is the paper's preprocessing: True for
  Zhang et al. (per-image standardization of CIFAR10), False for Arpit et al.
  (pixels / 255)."""
  flags.DEFINE_enum("dataset", dataset, list(data_lib.DATASETS),
                    "The dataset.")
  flags.DEFINE_string("data_dir", None,
                      "tfds data dir with the dataset prepared as array_record "
                      "(real datasets only).")
  define_int("train_size", None, "Stratified training subset size.", low=1)
  define_int("test_size", None, "Stratified test subset size.", low=1)
  define_int("image_size", None,
             "Downscale images to this side (e.g. 14 for MNIST).", low=1)
  flags.DEFINE_bool("standardize", standardize,
                    "Per-image standardization (Zhang et al.'s CIFAR10 "
                    "preprocessing: zero mean, unit variance per image); "
                    "--nostandardize: pixels / 255 (Arpit et al.).")


def define_train_flags(model: str | None = "mlp1x512", seeds: int = 3,
                       max_epochs: int = 100, batch_size: int = 128, *,
                       seed_chunk: bool = True, shard_seeds: bool = True,
                       eval_every: bool = False) -> None:
  """The training flags; ``seed_chunk``/``shard_seeds`` add the execution flags
  of experiments whose training goes through ``Trainer.train_epoch`` and
  ``engine.fit`` (an experiment without them rejects them as unknown);
  ``eval_every`` adds --eval_every, for experiments whose claims need the
  clean evaluation only to decide when a seed has fit and at the end.
  ``model=None``: no --model flag, for experiments that choose the models
  themselves (a --model they ignored would mislead)."""
  if model is not None:
    flags.DEFINE_string("model", model,
                        "mlp<depth>x<width> (e.g. mlp1x512, mlp3x512), "
                        "alexnet, inception, inception_nobn or arpit_cnn.")
  define_int("seeds", seeds, "Seeds trained at once (vmapped).", low=1)
  define_int("seed", 0, "First seed; seed lanes are seed..seed+S-1.", low=0,
             high=MAX_SEED)
  define_int("max_epochs", max_epochs, "Stop here if not every seed has fit.",
             low=1)
  define_int("batch_size", batch_size, "SGD minibatch size.", low=1)
  define_float("learning_rate", None,
               "Initial SGD rate (default: the paper's, 0.01; 0.1 for "
               "inception).", low=0, low_open=True)
  define_float("lr_decay", 0.95,
               "Learning-rate decay per 50,000 examples seen (Zhang et al.'s "
               "per-epoch decay on CIFAR10).", low=0, high=1, low_open=True)
  define_float("momentum", 0.9, "SGD momentum.", low=0, high=1, high_open=True)
  if seed_chunk:
    define_int("seed_chunk", None,
               "Vmap the seeds in chunks of this many, one chunk after another "
               "in the same compiled program (less memory); >= the number of "
               "seeds: all in one vmap. Default: memjax chooses (on a CPU one "
               "seed after another for models with little arithmetic per "
               "input value, e.g. mlp2x16, else one vmap; "
               "training.choose_seed_chunk). Results do not depend on it.",
               low=1)
  if eval_every:
    define_int("eval_every", 1,
               "Evaluate on the clean training and test sets after every "
               "this many epochs (and the last) instead of every epoch: "
               "faster, but steps to fit are then rounded up to multiples of "
               "this many epochs.", low=1)
  if shard_seeds:
    flags.DEFINE_bool("shard_seeds", False,
                      "Spread the seeds over every device JAX sees (a 'seeds' "
                      "mesh axis; memjax.sharding).")


def define_run_flags(workdir: str) -> None:
  flags.DEFINE_string("workdir", workdir,
                      "Results, figures and checkpoints; a re-run resumes "
                      "here.")
  flags.DEFINE_bool("overwrite", False, "Delete an existing --workdir first.")
  flags.DEFINE_bool("smoke", False, "Tiny, seconds-long run for tests.")
  flags.DEFINE_bool("progress", True, "Show progress bars.")
  define_float("checkpoint_seconds", 30.0,
               "Checkpoint at most this often (and at the end of a run).",
               low=0)


def define_randomization_flags() -> None:
  flags.DEFINE_enum("label_noise", "uniform",
                    ["uniform", "different_class", "pair", "patrini_mnist",
                     "patrini_cifar10"],
                    "Corrupted labels: uniform over all classes "
                    "(Zhang et al.), forced to a different class, the next "
                    "class c -> c+1 mod K (pair flips), or Patrini et al.'s "
                    "class-conditional flips of MNIST (2->7, 3->8, 5<->6, "
                    "7->1) or CIFAR-10 (truck->automobile, bird->airplane, "
                    "deer->horse, cat<->dog), both for 10 classes.")
  flags.DEFINE_bool("corrupt_test", False, "Corrupt the test labels too.")
  flags.DEFINE_bool("per_seed_randomization", False,
                    "Draw a different randomization for every seed.")
  define_int("randomization_seed", 0, "Seeds the randomization.", low=0,
             high=MAX_SEED)


# --smoke: a seconds-long run of the same code path, for tests.
SMOKE_DATA = dict(train_size=128, test_size=64)
SMOKE_TRAIN = dict(max_epochs=2)


def configs(values, smoke_data=None, smoke_train=None, **train_overrides):
  """(DataConfig, TrainConfig) of the flags and ``train_overrides``; --smoke
  also applies ``smoke_data`` (default SMOKE_DATA) and ``smoke_train`` (default
  SMOKE_TRAIN), whose ``num_seeds`` (default 2) caps --seeds."""
  data_overrides = {}
  if values.smoke:
    data_overrides = dict(SMOKE_DATA if smoke_data is None else smoke_data)
    smoke = dict(SMOKE_TRAIN if smoke_train is None else smoke_train)
    smoke["num_seeds"] = min(values.seeds, smoke.get("num_seeds", 2))
    train_overrides = {**train_overrides, **smoke}
  return (data_config(values, **data_overrides),
          train_config(values, **train_overrides))


def _sorted_values(name: str, values, convert, valid, what: str) -> list:
  """The sorted distinct ``convert``-ed items of list flag --name, or an error
  naming the flag and the values when one does not convert or is not valid."""
  try:
    parsed = sorted({convert(v) for v in values})
  except ValueError:
    parsed = []
  if not parsed or not all(valid(v) for v in parsed):
    raise ValueError(f"--{name} must be {what}, got {values}.")
  return parsed


def positive_ints(name: str, values) -> list[int]:
  """The sorted distinct integers of list flag --name, all >= 1."""
  return _sorted_values(name, values, int, lambda v: v >= 1,
                        "positive integers")


def fractions(name: str, values) -> list[float]:
  """The sorted distinct numbers of list flag --name, all in [0, 1]."""
  return _sorted_values(name, values, float, lambda v: 0.0 <= v <= 1.0,
                        "numbers in [0, 1]")


def subset_ratios(name: str, values) -> tuple[float, ...]:
  """The distinct numbers in (0, 1) of list flag --name, in the given order
  (subset ratios; the first may be special to the caller)."""
  try:
    ratios = tuple(float(r) for r in values)
  except ValueError:
    ratios = ()
  if (not ratios or len(set(ratios)) != len(ratios)
      or not all(0.0 < r < 1.0 for r in ratios)):
    raise ValueError(f"--{name} must be distinct numbers in (0, 1), got "
                     f"{values}.")
  return ratios


def study_config(values, conditions) -> studies.StudyConfig:
  """The StudyConfig of a randomization experiment (--smoke shrinks it)."""
  data, train = configs(values)
  return studies.StudyConfig(
      data=data, train=train,
      conditions=tuple(conditions), label_noise=values.label_noise,
      corrupt_test=values.corrupt_test,
      per_seed_randomization=values.per_seed_randomization,
      randomization_seed=values.randomization_seed)


def data_config(values, **overrides) -> data_lib.DataConfig:
  config = data_lib.DataConfig(
      name=values.dataset, data_dir=values.data_dir,
      train_size=values.train_size, test_size=values.test_size,
      image_size=values.image_size, standardize=values.standardize)
  config = data_lib.DataConfig(**{**config.__dict__, **overrides})
  data_lib.validate(config)
  return config


def train_config(values, **overrides) -> training.TrainConfig:
  kwargs = dict(num_seeds=values.seeds, seed=values.seed,
                max_epochs=values.max_epochs, batch_size=values.batch_size,
                learning_rate=values.learning_rate, lr_decay=values.lr_decay,
                momentum=values.momentum,
                seed_chunk=(values.seed_chunk if "seed_chunk" in values
                            else None),
                eval_every=values.eval_every if "eval_every" in values else 1)
  if "model" in values:
    kwargs["model"] = values.model
  kwargs.update(overrides)
  return training.TrainConfig(**kwargs)


@dataclasses.dataclass(frozen=True)
class RunControl:
  """How a run executes and reports, not what it computes: no field is part of
  a workdir's identity, so a re-run may change any of them."""

  overwrite: bool = False  # empty a memjax workdir first
  progress: bool = True  # progress bars
  checkpoint_seconds: float = 30.0  # checkpoint at most this often
  shard_seeds: bool = False  # spread the seeds over every device

  def mesh(self):
    """The device mesh that ``shard_seeds`` asks for, or None."""
    return sharding.make_mesh() if self.shard_seeds else None

  def bar(self, text: str) -> str | None:
    """A progress bar's description, or None (no bar)."""
    return text if self.progress else None


def run_control(values) -> RunControl:
  return RunControl(
      overwrite=values.overwrite, progress=values.progress,
      checkpoint_seconds=values.checkpoint_seconds,
      shard_seeds="shard_seeds" in values and values.shard_seeds)


# Config fields that say how seeds execute, not what a run computes: a workdir
# may resume under other values.
EXECUTION_FIELDS = ("seed_chunk",)


def config_dict(config) -> dict:
  """An experiment's frozen config as JSON, less its execution fields: what
  its workdir is tied to (config.json) and what results.json records."""
  def strip(value):
    if isinstance(value, dict):
      return {k: strip(v) for k, v in value.items()
              if k not in EXECUTION_FIELDS}
    if isinstance(value, (list, tuple)):
      return [strip(v) for v in value]
    return value
  return strip(reporting.to_jsonable(config))


def claim_workdir(workdir: str, config, control: RunControl,
                  dataset: data_lib.Dataset | None = None, train_configs=(),
                  per_seed_data: bool = False) -> None:
  """Claims ``workdir`` for ``config`` (refuses a workdir of another config).

  Call after the config has been built (which validates it) and the data
  loaded. The config, or any of its fields, may refuse the loaded data first
  (a ``check_data(dataset)`` method). Each of ``train_configs`` is first
  checked to fit in memory on ``dataset`` (``per_seed_data``: every seed holds
  its own copy of the inputs)."""
  if dataset is not None:
    fields = (dataclasses.fields(config) if dataclasses.is_dataclass(config)
              else ())
    for part in (config, *(getattr(config, f.name) for f in fields)):
      if hasattr(part, "check_data"):
        part.check_data(dataset)
    data_bytes = dataset.x_train.nbytes + dataset.x_test.nbytes
    for train in train_configs:
      training.check_memory(
          train, dataset.input_shape, dataset.num_classes,
          data_bytes * (train.num_seeds if per_seed_data else 1))
  checkpointing.prepare_workdir(workdir, config_dict(config),
                                overwrite=control.overwrite)
  _CLAIMED[os.path.realpath(workdir)] = (time.perf_counter(),
                                         time.process_time())


# Wall and CPU clocks when each workdir was claimed in this process, so that
# results.json can say what the run cost (data loading excluded).
_CLAIMED: dict[str, tuple[float, float]] = {}


def save_results(workdir: str, experiment: str, config, runs, summary,
                 verdicts) -> dict:
  """Writes results.json into ``workdir`` and returns what it holds."""
  results = {"experiment": experiment, "config": config_dict(config),
             "runs": runs, "summary": summary, "claims": list(verdicts)}
  claimed = _CLAIMED.pop(os.path.realpath(workdir), None)
  if claimed is not None:
    # Of this process only: a resumed run counts the part it ran itself.
    results["timing"] = {
        "wall_seconds": round(time.perf_counter() - claimed[0], 1),
        "cpu_seconds": round(time.process_time() - claimed[1], 1)}
  reporting.write_results(workdir, **results)
  return results


INTERRUPTED = "interrupted; re-run the same command to resume"


def parse_flags(argv):
  """absl's parser, with a bad flag reported as one line and exit status 2."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


def _guarded(function: Callable[[], None]) -> int:
  """Runs ``function``; bad input becomes ``error: ...`` and status 2,
  Ctrl-C one line and status 130; returns the exit status."""
  try:
    function()
  except (ValueError, FloatingPointError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(INTERRUPTED, file=sys.stderr)
    return 130
  return 0


def _exit(code: int) -> None:
  """Exits with ``code``. If checkpoint I/O threads are still alive, exits at
  once: their shutdown would print tracebacks about a closed event loop after
  the one-line message."""
  if threading.active_count() > 1:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access
  sys.exit(code)


def _run_parsed(experiment, values, args) -> None:
  """Runs ``experiment`` on the parsed flags ``values``."""
  if args:
    raise ValueError(f"unexpected arguments {list(args)}: every setting is a "
                     "--flag (see --help).")
  config = experiment.config_from_flags(values)
  checkpointing.check_workdir_path(values.workdir)
  experiment.run(config, values.workdir, run_control(values))


def main(experiment) -> None:
  """The command line of ``experiment``, a module with ``define_flags()``,
  ``config_from_flags(values)`` and ``run(config, workdir, control)``:

    if __name__ == "__main__":
      cli.main(sys.modules[__name__])
  """
  experiment.define_flags()
  def guarded(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    code = _guarded(lambda: _run_parsed(experiment, flags.FLAGS, argv[1:]))
    if code:
      _exit(code)
  try:
    app.run(guarded, flags_parser=parse_flags)
  except KeyboardInterrupt:
    print(INTERRUPTED, file=sys.stderr)
    _exit(130)


@contextlib.contextmanager
def _flags_of(experiment, args):
  """absl's FLAGS holding only ``experiment``'s flags, parsed from ``args``,
  for the duration; the flags defined before (e.g. those of a running
  command, which may share names such as --workdir) are set aside with their
  values and restored after, so that one process can run several
  experiments, also from within another's command line."""
  aside = {name: flags.FLAGS[name] for name in list(flags.FLAGS)}
  was_parsed = flags.FLAGS.is_parsed()
  for name in aside:
    delattr(flags.FLAGS, name)
  experiment.define_flags()
  try:
    try:
      rest = flags.FLAGS(["experiment", *args])
    except flags.Error as e:
      raise ValueError(str(e)) from None
    yield flags.FLAGS, rest[1:]
  finally:
    flags.FLAGS.unparse_flags()
    for name in list(flags.FLAGS):
      delattr(flags.FLAGS, name)
    for name, flag in aside.items():
      if name == flag.name:  # a short name comes back with its flag
        flags.FLAGS[name] = flag
    if was_parsed:
      flags.FLAGS.mark_as_parsed()


def from_args(experiment, args) -> tuple:
  """(config, workdir, control) of ``experiment``'s command line ``args``
  (without the program name), in this process; bad input raises ValueError."""
  with _flags_of(experiment, args) as (values, rest):
    if rest:
      raise ValueError(f"unexpected arguments {rest}")
    return (experiment.config_from_flags(values), values.workdir,
            run_control(values))


def execute(experiment, args) -> int:
  """``python experiments/<experiment>.py *args`` in this process (for tests
  and many-case runners): prints what the command prints and returns its exit
  status."""
  def run():
    with _flags_of(experiment, args) as (values, rest):
      try:
        _run_parsed(experiment, values, rest)
      finally:  # as the command's exit would
        checkpointing.release(values.workdir)
  return _guarded(run)


def execute_captured(experiment, args) -> tuple[int, str, str]:
  """``execute`` with what the command prints returned instead of printed:
  (exit status, stdout, stderr)."""
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = execute(experiment, args)
  return code, out.getvalue(), err.getvalue()
