r"""Time to fit noise vs dataset size and capacity (Arpit et al. 2017, Fig. 6).

The paper counts the epochs a 2-layer MLP needs to reach 100% training
accuracy, against the training-set size (4,096 units) and against the width
(fixed size), and reads Fig. 6 as: the time to fit grows much faster with the
dataset size for noise (randX, randY) than for real data, and more capacity
fits noise sooner. Here every "epoch" is a pass over the data: an epoch visits
every training example once (ceil(n / 128) SGD steps, the last batch partial),
so "epochs to fit" is the number of passes over the data before the first
clean evaluation pass with 100% training accuracy (``FitResult.fit_step /
FitResult.steps_per_epoch``).

Claims tested, each with a criterion fixed before the run and decided against
the seed-to-seed noise ("SE": standard error over seeds; seed i of a condition
is one lane in every cell, so its slopes are fitted over its own cells;
conditions use different seeds, so differences are of independent means). For
each noise condition:

1. Epochs to fit grow faster with the dataset size than for real data: the
   per-seed least-squares slope of log(epochs to fit) on log(n) over the
   training sizes, minus real data's, exceeds 2 SE.
2. More capacity fits noise sooner: the per-seed slope of log(epochs to fit)
   on log(hidden units) over the widths is below 0 by more than 2 SE.
3. Noise takes longer to fit than real data at the largest training set: the
   difference in epochs to fit exceeds 2 SE.

A cell (condition, width, size, seed) that does not fit within --max_epochs
enters these numbers at --max_epochs, a lower bound; that is conservative where
a longer time can only weaken the claim (e.g. noise not fit at the largest n
in claim 1). Where a longer time could strengthen it (real data not fit, or
noise not fit at a small n in claim 1 or a large width in claim 2) the claim is
undecided and reported NOT REPRODUCED, never extrapolated.

Setup (printed as the "Setup:" header): embedded MNIST-5k, pixels / 255 in
[0, 1] (Arpit et al.'s MNIST inputs), 500 validation examples; 2-layer ReLU
MLPs. Dataset-size sweep: stratified training subsets of n = 250, 500, 1,000,
2,000, 4,000 examples at h = 256 hidden units per layer (266k weights, 67 per
example at n = 4,000: about the paper's 4,096 units on 50,000 examples, 64 per
example, so the net is as capacity-limited at our largest n as the paper's at
its largest). Capacity sweep: h = 32, 64, 128, 256, 512 at n = 1,000. Real
data, randX (every training and validation input replaced by i.i.d. Gaussian
noise with the training pixels' mean and std) and randY (every training label
replaced by a class drawn uniformly from all 10), 3 seeds each; SGD learning
rate 0.01, momentum 0.9, batch 128; at most 400 epochs, a cell stops when all
its lanes have fit.

Differs from the paper: training sets up to 4,000 digits instead of 50,000,
widths up to 512 instead of 4,096, and the capacity sweep on 1,000 examples
instead of the full set (runtime on a 2-core CPU).

Command:

  python experiments/convergence_time.py

Each (width, size) cell trains every condition x seed as ONE vmapped run with
per-lane data; the cell shared by both sweeps (h = 256, n = 1,000) trains once.

Result: the measured values, uncertainties and verdicts of the default command
are in the README's results table (generated from
runs/convergence_time/results.json by `python experiments/report.py
--mode=readme`; `python experiments/report.py` writes the full report).
What does not reproduce on these data, and why:
1. Faster growth with n than real data: NOT REPRODUCED for randY and randX.
   Passes to fit stay flat with n for real data and random labels (the SGD
   steps grow in proportion to n) and fall for randX; at n <= 4,000 with 67
   weights per example the paper's steep growth for noise does not appear.
3. Noise slower than real data at n = 4,000: NOT REPRODUCED for randX, which
   fits in fewer passes than real data.
Runtime: about 4 minutes on an idle 2-core CPU (about 17 minutes when the 2
cores are shared with about 8 other jobs).

Paper scale (GPU, full MNIST prepared with `tfds build mnist
--file_format=array_record`; not run here):

  python experiments/convergence_time.py --dataset=mnist --data_dir=DIR \
      --train_sizes=5000,10000,20000,50000 --size_sweep_hidden=4096 \
      --capacity_train_size=50000 --hidden_sizes=256,512,1024,2048,4096 \
      --max_epochs=1000

Outputs in --workdir: results.json (summary keyed by condition, with
``epochs_to_fit`` / ``epochs_to_fit_se`` per width and ``epochs_to_fit_by_size``
/ ``epochs_to_fit_by_size_se`` per size (None where a seed did not fit), the
per-seed values in ``*_seeds``; every claim with value, uncertainty, threshold
and verdict), convergence_time.png (Fig. 6: epochs to fit vs hidden units and
vs dataset size), one training checkpoint folder per cell
(``h<width>_n<size>``), written at most every --checkpoint_seconds. Re-running
the same command resumes: finished cells are read back, an interrupted one
continues from its last checkpoint.
"""

import dataclasses
import os
import sys

from absl import flags
import numpy as np

from memjax import cli
from memjax import data as data_lib
from memjax import engine
from memjax import reporting
from memjax import stats
from memjax import studies
from memjax import training

CONDITIONS = ("real", "randX", "randY")
HIDDEN_SIZES = (32, 64, 128, 256, 512)
TRAIN_SIZES = (250, 500, 1000, 2000, 4000)
SMOKE = dict(hidden_sizes=(8, 16), train_sizes=(64, 128),
             capacity_train_size=64, size_sweep_hidden=8)


def define_flags() -> None:
  """This experiment's flags, defined when it runs (not on import, so that
  tests can import ``claims`` of several experiments into one process)."""
  cli.define_data_flags(standardize=False)
  cli.define_train_flags(model=None, seeds=3, max_epochs=400, shard_seeds=False)
  cli.define_run_flags("runs/convergence_time")
  flags.FLAGS.set_default("test_size", 500)
  flags.DEFINE_list("conditions", list(CONDITIONS),
                    "real, randX, randY or randX_<p> / randY_<p>; the claims "
                    "compare each noise condition with real.")
  flags.DEFINE_list("hidden_sizes", [str(h) for h in HIDDEN_SIZES],
                    "Hidden units per layer for the capacity sweep.")
  cli.define_int("capacity_train_size", 1000,
                 "Training examples in the capacity sweep.", low=1)
  flags.DEFINE_list("train_sizes", [str(n) for n in TRAIN_SIZES],
                    "Training subset sizes for the dataset-size sweep.")
  cli.define_int("size_sweep_hidden", 256,
                 "Hidden units per layer in the dataset-size sweep.", low=1)
  cli.define_int("randomization_seed", 0, "Seeds the noise.", low=0,
                 high=cli.MAX_SEED)


@dataclasses.dataclass(frozen=True)
class Config:
  """Both sweeps: every condition x seed in every (width, size) cell."""

  data: data_lib.DataConfig  # each cell sets train_size
  train: training.TrainConfig  # per condition; each cell sets the model
  conditions: tuple[str, ...] = CONDITIONS
  hidden_sizes: tuple[int, ...] = HIDDEN_SIZES  # the capacity sweep
  capacity_train_size: int = 1000
  train_sizes: tuple[int, ...] = TRAIN_SIZES  # the dataset-size sweep
  size_sweep_hidden: int = 256
  randomization_seed: int = 0

  def __post_init__(self):
    studies.parse_conditions("conditions", self.conditions)
    if self.data.train_size is not None:
      raise ValueError("--train_size is not used here: set --train_sizes (the "
                       "dataset-size sweep) and --capacity_train_size.")
    # Increasing, as the flags parse: the claims read the last point.
    for name in ("hidden_sizes", "train_sizes"):
      points = list(getattr(self, name))
      if cli.positive_ints(name, points) != points:
        raise ValueError(f"--{name} must be increasing, got {points}.")
    for name in ("capacity_train_size", "size_sweep_hidden"):
      if getattr(self, name) < 1:
        raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}.")

  def cells(self) -> list[tuple[int, int]]:
    """Every (width, training-set size) to train, in order; the cell the two
    sweeps share trains once."""
    return list(dict.fromkeys(
        [(h, self.capacity_train_size) for h in self.hidden_sizes]
        + [(self.size_sweep_hidden, n) for n in self.train_sizes]))


def cell_config(config: training.TrainConfig, hidden: int,
                lanes: int) -> training.TrainConfig:
  """One cell's run: stops once every lane has reached 100% training
  accuracy."""
  return dataclasses.replace(config, model=f"mlp2x{hidden}", num_seeds=lanes,
                             fit_threshold=1.0, stop_when_fit=True)


def train_cell(config, data, names, seeds, checkpoint_dir, checkpoint_seconds,
               progress):
  """(conditions, seeds) epochs (passes over the data) to 100% training
  accuracy, NaN where a lane did not fit within ``config.max_epochs``."""
  fit = engine.fit(config, data, checkpoint_dir=checkpoint_dir,
                     checkpoint_seconds=checkpoint_seconds, progress=progress)
  epochs = np.where(fit.fit_step >= 0, fit.fit_step / fit.steps_per_epoch,
                    np.nan)
  return epochs.reshape(len(names), seeds)


def _seed_values(row) -> list:
  return [None if np.isnan(v) else float(v) for v in row]


def _mean_se(row):
  """(mean, SE) over seeds, or (None, None) unless every seed fit."""
  if np.isnan(row).any():
    return None, None
  return stats.mean_se(row)


def summarize(names, hidden_sizes, capacity_size, train_sizes, size_hidden,
              max_epochs, by_hidden, by_size) -> dict:
  """Per condition: epochs to fit per width and per size (mean and SE over
  seeds, None unless every seed fit) and per seed (None: not fit)."""
  summary = {}
  for c, name in enumerate(names):
    entry = {"hidden_sizes": list(hidden_sizes),
             "capacity_train_size": capacity_size,
             "train_sizes": list(train_sizes),
             "size_sweep_hidden": size_hidden, "max_epochs": max_epochs}
    for key, sweep, points in (("epochs_to_fit", by_hidden, hidden_sizes),
                               ("epochs_to_fit_by_size", by_size,
                                train_sizes)):
      stats_ = [_mean_se(sweep[x][c]) for x in points]
      entry[key] = [m for m, _ in stats_]
      entry[f"{key}_se"] = [se for _, se in stats_]
      entry[f"{key}_seeds"] = [_seed_values(sweep[x][c]) for x in points]
    summary[name] = entry
  return summary


def _slope_weights(xs) -> np.ndarray:
  """w with w @ log(y) the least-squares slope of log(y) on log(x)."""
  centered = np.log(np.asarray(xs, np.float64))
  centered -= centered.mean()
  return centered / (centered ** 2).sum()


def _epochs(per_seed, max_epochs) -> tuple[np.ndarray, np.ndarray]:
  """(points, seeds) epochs with cells not fit at ``max_epochs`` (a lower
  bound), and the mask of those cells."""
  values = np.array(per_seed, np.float64)  # None -> NaN
  censored = np.isnan(values)
  return np.where(censored, max_epochs, values), censored


def log_slopes(xs, per_seed, max_epochs) -> tuple[np.ndarray, np.ndarray]:
  """Per seed, the least-squares slope of log(epochs to fit) on log(x); and
  per point, whether some seed did not fit there (counted at max_epochs)."""
  epochs, censored = _epochs(per_seed, max_epochs)
  return _slope_weights(xs) @ np.log(epochs), censored.any(axis=1)


def censoring_could_help(xs, censored, sign: float) -> bool:
  """Whether cells counted at the epoch budget could inflate a quantity that
  adds ``sign`` x this condition's slope: a longer true time at point i moves
  the slope by its weight w_i, so with sign * w_i < 0 a lower bound there
  favours the claim."""
  return bool((censored & (sign * _slope_weights(xs) < 0)).any())


def _fmt(mean, se) -> str:
  return "not fit" if mean is None else f"{mean:.1f} +- {se:.1f}"


def claims(summary: dict) -> list[reporting.Claim]:
  """The module docstring's claims, decided on ``summary`` alone (every noise
  condition against "real"; none without "real")."""
  out = []
  real = summary.get("real")
  if real is None:
    return out
  sigmas = stats.SIGMAS
  budget = real["max_epochs"]
  sizes, widths = real["train_sizes"], real["hidden_sizes"]
  lower_bound = f"(a seed not fit counts as {budget} epochs, a lower bound)"
  for name in (n for n in summary if n != "real"):
    noise = summary[name]
    if len(sizes) >= 2:
      slope_noise, cens_noise = log_slopes(
          sizes, noise["epochs_to_fit_by_size_seeds"], budget)
      slope_real, cens_real = log_slopes(
          sizes, real["epochs_to_fit_by_size_seeds"], budget)
      diff, se = stats.difference(slope_noise, slope_real)
      undecided = (censoring_could_help(sizes, cens_noise, +1)
                   or censoring_could_help(sizes, cens_real, -1))
      by_size = "; ".join(
          f"n={n}: real {_fmt(r, rs)}, {name} {_fmt(m, ms)}" for n, r, rs, m, ms
          in zip(sizes, real["epochs_to_fit_by_size"],
                 real["epochs_to_fit_by_size_se"],
                 noise["epochs_to_fit_by_size"],
                 noise["epochs_to_fit_by_size_se"]))
      out.append(reporting.Claim(
          f"{name}: epochs to fit (passes over the data) grow faster with the "
          f"dataset size than for real data: log-log slope of epochs vs n "
          f"(h={real['size_sweep_hidden']}, n={sizes[0]}..{sizes[-1]}) minus "
          f"real data's > {sigmas:g} SE",
          not undecided and stats.exceeds(diff, se),
          f"slope {name} {slope_noise.mean():.3f} vs real "
          f"{slope_real.mean():.3f}; epochs {by_size} {lower_bound}"
          + ("; UNDECIDED: a cell not fit could favour the claim"
             if undecided else ""),
          value=diff, uncertainty=se, threshold=sigmas * se))
    if len(widths) >= 2:
      slope, cens = log_slopes(widths, noise["epochs_to_fit_seeds"], budget)
      mean, se = stats.mean_se(slope)
      undecided = censoring_could_help(widths, cens, -1)
      by_width = ", ".join(
          f"h={h}: {_fmt(m, s)}" for h, m, s in
          zip(widths, noise["epochs_to_fit"], noise["epochs_to_fit_se"]))
      out.append(reporting.Claim(
          f"{name}: more capacity fits it in fewer epochs: log-log slope of "
          f"epochs vs hidden units (n={real['capacity_train_size']}, "
          f"h={widths[0]}..{widths[-1]}) < 0 by > {sigmas:g} SE",
          not undecided and stats.exceeds(-mean, se),
          f"slope {mean:.3f}; epochs {by_width} {lower_bound}"
          + ("; UNDECIDED: a cell not fit could favour the claim"
             if undecided else ""),
          value=mean, uncertainty=se, threshold=-sigmas * se))
    # A noise lane not fit at the largest n only weakens claim 3.
    noise_last, _ = _epochs(noise["epochs_to_fit_by_size_seeds"][-1:], budget)
    real_last, real_cens = _epochs(real["epochs_to_fit_by_size_seeds"][-1:],
                                   budget)
    diff, se = stats.difference(noise_last[0], real_last[0])
    undecided = bool(real_cens.any())
    out.append(reporting.Claim(
        f"{name} takes more epochs to fit than real data at the largest "
        f"training set (n={sizes[-1]}, h={real['size_sweep_hidden']}): "
        f"difference > {sigmas:g} SE",
        not undecided and stats.exceeds(diff, se),
        f"""{name} {_fmt(noise['epochs_to_fit_by_size'][-1],
                         noise['epochs_to_fit_by_size_se'][-1])}"""
        f""" vs real {_fmt(real['epochs_to_fit_by_size'][-1],
                           real['epochs_to_fit_by_size_se'][-1])}"""
        f" epochs {lower_bound}"
        + ("; UNDECIDED: real data not fit" if undecided else ""),
        value=diff, uncertainty=se, threshold=sigmas * se))
  return out


def setup_details(config, dataset, names, hidden_sizes, capacity_size,
                  train_sizes, size_hidden) -> dict:
  """The Setup header's lines after data and preprocessing."""
  noise = {
      "randX": ("randX: every training and validation input replaced by "
                "Gaussian noise with the training pixels' mean and std"),
      "randY": ("randY: every training label replaced by a uniform class; "
                "validation labels clean")}
  differs = []
  if max(train_sizes) < 50_000:
    differs.append(f"training sets up to {max(train_sizes):,} instead of "
                   "50,000")
  if size_hidden != 4096:
    weights = training.num_params(cell_config(config, size_hidden, 1),
                                  dataset.input_shape, dataset.num_classes)
    differs.append(f"size sweep at h={size_hidden} instead of 4,096: "
                   f"{weights / max(train_sizes):.0f} weights per example at "
                   f"n={max(train_sizes)}, the paper's 4,096 units have 64 "
                   "at n=50,000")
  if capacity_size < 50_000:
    differs.append(f"capacity sweep on {capacity_size:,} examples instead of "
                   "50,000")
  return {
      "model": (f"mlp2xh; size sweep: h={size_hidden}, n = "
                f"{', '.join(map(str, train_sizes))}; capacity sweep: n="
                f"{capacity_size}, h = {', '.join(map(str, hidden_sizes))}; "
                f"{config.num_seeds} seeds per condition; SGD momentum "
                f"{config.momentum}, learning rate {config.lr}, batch "
                f"{config.batch_size}, at most {config.max_epochs} epochs "
                "(each a pass over every training example)"),
      "noise": "; ".join(noise.get(n, n) for n in names if n != "real")
               or "none",
      "measured at": ("epochs to fit: passes over the data before the first "
                      "clean evaluation pass with 100% training accuracy"),
      "differs from paper": "; ".join(differs) or "no",
  }


def config_from_flags(values) -> Config:
  """The run's frozen config (--smoke shrinks it); raises ValueError on bad
  input."""
  conditions = studies.parse_conditions("conditions", values.conditions)
  hidden_sizes = cli.positive_ints("hidden_sizes", values.hidden_sizes)
  train_sizes = cli.positive_ints("train_sizes", values.train_sizes)
  sweeps = dict(hidden_sizes=tuple(hidden_sizes),
                train_sizes=tuple(train_sizes),
                capacity_train_size=values.capacity_train_size,
                size_sweep_hidden=values.size_sweep_hidden)
  if values.smoke:
    sweeps = SMOKE
  data, train = cli.configs(
      values, smoke_data=dict(test_size=cli.SMOKE_DATA["test_size"]))
  return Config(data=data, train=train, conditions=conditions,
                randomization_seed=values.randomization_seed, **sweeps)


def run(config: Config, workdir: str,
        control: cli.RunControl = cli.RunControl()) -> dict:
  """Trains every cell, prints the claims and writes results.json and the
  figure into ``workdir``; returns results.json's contents."""
  names = list(config.conditions)
  hidden_sizes, train_sizes = (list(config.hidden_sizes),
                               list(config.train_sizes))
  capacity_size, size_hidden = (config.capacity_train_size,
                                config.size_sweep_hidden)
  seeds = config.train.num_seeds
  cells = config.cells()
  configs = {h: cell_config(config.train, h, len(names) * seeds)
             for h in {h for h, _ in cells}}
  datasets = {n: data_lib.load(dataclasses.replace(config.data, train_size=n))
              for n in sorted({n for _, n in cells})}
  lane_data = {n: studies.condition_lanes(
      d, names, seeds, randomization_seed=config.randomization_seed)[0]
               for n, d in datasets.items()}
  largest = datasets[max(datasets)]
  cli.claim_workdir(workdir, config, control, largest, list(configs.values()),
                    per_seed_data=True)
  print(reporting.format_setup(
      config.data, largest,
      **setup_details(config.train, largest, names, hidden_sizes,
                      capacity_size, train_sizes, size_hidden)))
  epochs = {}
  for hidden, size in cells:
    label = f"h{hidden}_n{size}"
    epochs[hidden, size] = train_cell(
        configs[hidden], lane_data[size], names, seeds,
        os.path.join(workdir, label), control.checkpoint_seconds,
        control.bar(label))
  by_hidden = {h: epochs[h, capacity_size] for h in hidden_sizes}
  by_size = {n: epochs[size_hidden, n] for n in train_sizes}
  max_epochs = config.train.max_epochs
  summary = summarize(names, hidden_sizes, capacity_size, train_sizes,
                      size_hidden, max_epochs, by_hidden, by_size)
  print(f"Epochs (passes over the data) to 100% training accuracy, mean +- SE "
        f"over {seeds} seeds ('not fit': a seed did not fit within "
        f"{max_epochs}); n={capacity_size}:")
  print(reporting.format_table(
      [{"condition": n, **{f"h={h}": _fmt(m, s) for h, m, s in
                           zip(hidden_sizes, e["epochs_to_fit"],
                               e["epochs_to_fit_se"])}}
       for n, e in summary.items()],
      ["condition"] + [f"h={h}" for h in hidden_sizes]))
  print(f"... and with h={size_hidden} hidden units per layer:")
  print(reporting.format_table(
      [{"condition": n, **{f"n={m}": _fmt(v, s) for m, v, s in
                           zip(train_sizes, e["epochs_to_fit_by_size"],
                               e["epochs_to_fit_by_size_se"])}}
       for n, e in summary.items()],
      ["condition"] + [f"n={m}" for m in train_sizes]))
  verdicts = claims(summary)
  print(reporting.format_claims(verdicts))
  nan = lambda values: [np.nan if v is None else v for v in values]
  figure = reporting.plot_panels(
      os.path.join(workdir, "convergence_time.png"), [
          {"title": f"{capacity_size} examples",
           "xlabel": "hidden units per layer (log2)",
           "ylabel": "epochs (passes) to 100% train accuracy",
           "lines": {n: (np.log2(hidden_sizes), nan(s["epochs_to_fit"]),
                         nan(s["epochs_to_fit_se"]))
                     for n, s in summary.items()}},
          {"title": f"MLP 2x{size_hidden}", "xlabel": "training examples",
           "ylabel": "epochs (passes) to 100% train accuracy",
           "lines": {n: (train_sizes, nan(s["epochs_to_fit_by_size"]),
                         nan(s["epochs_to_fit_by_size_se"]))
                     for n, s in summary.items()}}])
  runs = {n: [{"seed": config.train.seed + c * seeds + i,
               "epochs_to_fit": [by_hidden[h][c, i] for h in hidden_sizes],
               "epochs_to_fit_by_size": [by_size[m][c, i] for m in train_sizes]}
              for i in range(seeds)] for c, n in enumerate(names)}
  saved = cli.save_results(workdir, "convergence_time", config, runs, summary,
                           verdicts)
  print(f"Wrote {workdir}/results.json and {figure}")
  return saved


if __name__ == "__main__":
  cli.main(sys.modules[__name__])
