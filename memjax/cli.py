"""Shared command-line plumbing of the experiments: flags -> frozen configs.

The experiments in ``experiments/`` define their flags with these helpers and
turn the parsed values into the library's frozen configs; the library itself
never reads flags. ``run_main`` turns bad input into a one-line error naming the
bad value and the valid ones, with a non-zero exit status.
"""

from __future__ import annotations

import sys
from typing import Callable

from absl import app
from absl import logging
from absl import flags

from memjax import checkpointing
from memjax import data as data_lib
from memjax import reporting
from memjax import studies
from memjax import training

# Flags that change where or how a run is stored, not what it computes.
NOT_IN_RUN_CONFIG = ("workdir", "overwrite", "progress", "checkpoint_seconds")
# How a run executes, not what it computes: a workdir may resume under others.
EXECUTION_FLAGS = ("seed_chunk", "shard_seeds")


def define_data_flags(dataset: str = "mnist5k") -> None:
  flags.DEFINE_string("dataset", dataset,
                      f"One of {', '.join(data_lib.DATASETS)}.")
  flags.DEFINE_string("data_dir", None,
                      "tfds data dir with the dataset prepared as array_record "
                      "(real datasets only).")
  flags.DEFINE_integer("train_size", None, "Stratified training subset size.")
  flags.DEFINE_integer("test_size", None, "Stratified test subset size.")
  flags.DEFINE_integer("image_size", None,
                       "Downscale images to this side (e.g. 14 for MNIST).")
  flags.DEFINE_bool("standardize", True, "Per-image standardization.")


def define_train_flags(model: str = "mlp1x512", seeds: int = 3,
                       max_epochs: int = 100, batch_size: int = 128, *,
                       seed_chunk: bool = True,
                       shard_seeds: bool = True) -> None:
  """The training flags; ``seed_chunk``/``shard_seeds`` add the execution flags
  of experiments whose training goes through ``Trainer.train_epoch`` and
  ``training.fit`` (an experiment without them rejects them as unknown)."""
  flags.DEFINE_string("model", model,
                      "mlp<depth>x<width> (e.g. mlp1x512, mlp3x512), alexnet, "
                      "inception, inception_nobn or arpit_cnn.")
  flags.DEFINE_integer("seeds", seeds, "Seeds trained at once (vmapped).")
  flags.DEFINE_integer("seed", 0, "First seed; seed lanes are seed..seed+S-1.")
  flags.DEFINE_integer("max_epochs", max_epochs,
                       "Stop here if not every seed has fit.")
  flags.DEFINE_integer("batch_size", batch_size, "SGD minibatch size.")
  flags.DEFINE_float("learning_rate", None,
                     "Initial SGD rate (default: the paper's, 0.01; 0.1 for "
                     "inception).")
  flags.DEFINE_float("lr_decay", 0.95,
                     "Learning-rate decay per 50,000 examples seen (Zhang et "
                     "al.'s per-epoch decay on CIFAR10).")
  flags.DEFINE_float("momentum", 0.9, "SGD momentum.")
  if seed_chunk:
    flags.DEFINE_integer("seed_chunk", None,
                         "Vmap the seeds in chunks of this many, one chunk "
                         "after another in the same compiled program (faster "
                         "on a CPU, e.g. 8); default: all seeds in one vmap.")
  if shard_seeds:
    flags.DEFINE_bool("shard_seeds", False,
                      "Spread the seeds over every device JAX sees (a 'seeds' "
                      "mesh axis; memjax.sharding).")


def define_run_flags(workdir: str) -> None:
  flags.DEFINE_string("workdir", workdir,
                      "Results, figures and checkpoints; a re-run resumes here.")
  flags.DEFINE_bool("overwrite", False, "Delete an existing --workdir first.")
  flags.DEFINE_bool("smoke", False, "Tiny, seconds-long run for tests.")
  flags.DEFINE_bool("progress", True, "Show progress bars.")
  flags.DEFINE_float("checkpoint_seconds", 30.0,
                     "Checkpoint at most this often (and at the end of a run).")


def define_randomization_flags() -> None:
  flags.DEFINE_enum("label_noise", "uniform", ["uniform", "different_class"],
                    "Corrupted labels: uniform over all classes (Zhang et al.) "
                    "or forced to a different class.")
  flags.DEFINE_bool("corrupt_test", False, "Corrupt the test labels too.")
  flags.DEFINE_bool("per_seed_randomization", False,
                    "Draw a different randomization for every seed.")
  flags.DEFINE_integer("randomization_seed", 0, "Seeds the randomization.")


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
  kwargs = dict(model=values.model, num_seeds=values.seeds, seed=values.seed,
                max_epochs=values.max_epochs, batch_size=values.batch_size,
                learning_rate=values.learning_rate, lr_decay=values.lr_decay,
                momentum=values.momentum,
                seed_chunk=values.seed_chunk if "seed_chunk" in values else None)
  kwargs.update(overrides)
  return training.TrainConfig(**kwargs)


def mesh(values):
  """The device mesh that --shard_seeds asks for, or None."""
  if "shard_seeds" not in values or not values.shard_seeds:
    return None
  from memjax import sharding  # pylint: disable=g-import-not-at-top
  return sharding.make_mesh()


def run_config(values) -> dict:
  """Every flag the user can set (not absl's own), as a JSON-able dict."""
  config = {}
  for module, module_flags in values.flags_by_module_dict().items():
    if module.startswith("absl"):
      continue
    for flag in module_flags:
      if flag.name not in NOT_IN_RUN_CONFIG:
        config[flag.name] = flag.value
  return dict(sorted(config.items()))


def write_results(values, experiment: str, runs, summary, verdicts) -> str:
  """``reporting.write_results`` into --workdir, with every flag as config."""
  return reporting.write_results(values.workdir, experiment, run_config(values),
                                 runs, summary, verdicts)


def prepare(values) -> None:
  """Claims --workdir for this run's flags (refuses other flags there)."""
  config = {k: v for k, v in run_config(values).items()
            if k not in EXECUTION_FLAGS}
  checkpointing.prepare_workdir(values.workdir, config,
                                overwrite=values.overwrite)


def run_main(main: Callable[[list[str]], None]) -> None:
  """app.run(main), with bad input reported as ``error: ...`` and exit code 2."""
  def guarded(argv):
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    try:
      main(argv)
    except (ValueError, FileNotFoundError, FloatingPointError) as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
  app.run(guarded)
