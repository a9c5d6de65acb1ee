r"""Noise needs more capacity (Arpit et al. 2017, Sec. 3.3, Fig. 5).

The paper trains 2-layer MLPs of growing width on MNIST with a fraction p of
noise and reads Fig. 5 as: "with noise, best validation performance needs more
capacity", while real data is near its best already at small widths.

Claims tested, each with a criterion fixed before the run and decided against
the seed-to-seed noise ("SE": standard error over seeds; conditions use
different seeds, so differences are of independent means). For each noise type
(randX, randY), with a(h) a seed's best validation accuracy at width h and
chance c = 1/K, the capacity gain of a seed is

    G = (a(largest width) - a(smallest width)) / (a(largest width) - c),

the share of its best above-chance validation accuracy that the smallest net
lacks. The gain is relative because randX replaces the same fraction p of the
VALIDATION inputs by noise (labels kept), which no network can classify: the
validation accuracy is then about (1 - p) a_clean + p c, so absolute gains
shrink by (1 - p) whatever the capacity needs; the ratio removes that factor.
For randY (clean validation labels) it is the same reading. The absolute gain,
in accuracy points, is printed beside it.

1. Noise needs more capacity: G at the highest noise level exceeds G on real
   data by more than 2 SE.
2. The capacity needed grows with the noise level: the least-squares slope of
   the seed-mean G over the levels (0 = real, 0.2, ..., 0.8) exceeds 2 SE (its
   SE propagated from each level's SE).
3. Noise lowers the best validation accuracy: at the largest width, real minus
   the highest noise level exceeds 2 SE.

Setup (printed as the "Setup:" header): embedded MNIST-5k, a stratified
1,000-example training subset and 500 validation examples; pixels / 255 in
[0, 1] (Arpit et al.'s MNIST inputs); 2-layer ReLU MLPs (mlp2xh) with h = 32,
64, 128, 256, 512, 1,024 hidden units per layer; noise levels p = 0 (real),
0.2, 0.4, 0.6, 0.8. randX: a fraction p of the training inputs, and the same
fraction of the validation inputs (fresh draws), replaced by i.i.d. Gaussian
noise with the training pixels' mean and std, labels kept. randY: each training
label replaced with probability p by a class drawn uniformly from all 10 (it
may keep the true one); validation labels clean. SGD learning rate 0.01,
momentum 0.9, batch 128, 40 epochs (each a pass over every training example:
ceil(1,000 / 128) = 8 steps); best validation accuracy = the highest accuracy
of the clean evaluation passes after each epoch; 3 seeds per cell.

Differs from the paper: 1,000 training examples instead of MNIST's 50,000, 40
epochs instead of 1,000, widths up to 1,024 instead of 4,096 (runtime on a
2-core CPU).

Command:

  python experiments/capacity.py

For each width, all 9 (noise type, level) conditions x 3 seeds train as ONE
vmapped run of 27 lanes, each lane with its own randomized data (real data is
level 0, shared by both noise types).

Result: the measured values, uncertainties and verdicts of the default command
are in the README's results table (generated from
runs/capacity/results.json by `python experiments/report.py
--mode=readme`; `python experiments/report.py` writes the full report).
The randX verdicts are near their thresholds: most of the rise is at p = 0.8,
where G has the largest SE (80% of its validation inputs are noise). Runtime:
about 4.5 minutes on an idle 2-core CPU (about 25 minutes when the 2 cores
are shared with about 8 other jobs).

Paper scale (GPU; not run here):

  python experiments/capacity.py --train_size=4000 --test_size=1000 \
      --hidden_sizes=32,64,128,256,512,1024,2048,4096 --max_epochs=1000

or with the full MNIST (`--dataset=mnist --data_dir=DIR --train_size=50000`).

Outputs in --workdir: results.json (summary keyed real, randX_0.2, ...,
randY_0.8, each with ``hidden_sizes``, ``best_val_acc`` and ``best_val_acc_se``
per width and ``best_val_acc_seeds`` per width and seed; every claim with
value, uncertainty, threshold and verdict), capacity.png (Fig. 5: best
validation accuracy vs hidden units, one line per level, randX and randY
panels), one training checkpoint folder per width (``mlp2x<h>``), written at
most every --checkpoint_seconds. Re-running the same command resumes: finished
widths are read back, an interrupted one continues from its last checkpoint.
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

NOISE_TYPES = ("randX", "randY")
HIDDEN_SIZES = (32, 64, 128, 256, 512, 1024)
LEVELS = (0.0, 0.2, 0.4, 0.6, 0.8)
SMOKE = dict(hidden_sizes=(8, 16), levels=(0.0, 0.8))


def define_flags() -> None:
  """This experiment's flags, defined when it runs (not on import, so that
  tests can import ``claims`` of several experiments into one process)."""
  cli.define_data_flags(standardize=False)
  cli.define_train_flags(model=None, seeds=3, max_epochs=40, shard_seeds=False)
  cli.define_run_flags("runs/capacity")
  flags.FLAGS.set_default("train_size", 1000)
  flags.FLAGS.set_default("test_size", 500)
  flags.DEFINE_list("hidden_sizes", [str(h) for h in HIDDEN_SIZES],
                    "Hidden units per layer of the 2-layer MLPs; the claims "
                    "compare the smallest with the largest.")
  flags.DEFINE_list("levels", [f"{p:g}" for p in LEVELS],
                    "Noise fractions in [0, 1] (0 is real data).")
  flags.DEFINE_list("noise", list(NOISE_TYPES),
                    f"Noise types: one or more of {', '.join(NOISE_TYPES)}.")
  cli.define_int("randomization_seed", 0, "Seeds the noise.", low=0,
                 high=cli.MAX_SEED)


@dataclasses.dataclass(frozen=True)
class Config:
  """One capacity sweep: every (noise type, level) x seed at every width."""

  data: data_lib.DataConfig
  train: training.TrainConfig  # per condition; each width sets the model
  noise_types: tuple[str, ...] = NOISE_TYPES
  levels: tuple[float, ...] = LEVELS
  hidden_sizes: tuple[int, ...] = HIDDEN_SIZES
  randomization_seed: int = 0

  def __post_init__(self):
    parse_noise(self.noise_types)
    # Increasing, as the flags parse: the claims read the first and last.
    for name, parse in (("levels", cli.fractions),
                        ("hidden_sizes", cli.positive_ints)):
      values = list(getattr(self, name))
      if parse(name, values) != values:
        raise ValueError(f"--{name} must be increasing, got {values}.")

  @property
  def conditions(self) -> list[str]:
    return sweep_conditions(self.noise_types, self.levels)


def parse_noise(values) -> list[str]:
  """The distinct noise types of --noise; ValueError naming the flag when it
  is empty or names an unknown type."""
  noise = list(dict.fromkeys(v.strip() for v in values))
  if not noise or any(n not in NOISE_TYPES for n in noise):
    raise ValueError(f"--noise must be one or more of "
                     f"{', '.join(NOISE_TYPES)}, got {list(values)}.")
  return noise


def condition_name(noise: str, level: float) -> str:
  """real, randX/randY (all noise) or randX_0.4-style partial noise."""
  if level == 0.0:
    return "real"
  return noise if level == 1.0 else studies.corruption_name(level, noise)


def sweep_conditions(noise_types, levels) -> list[str]:
  names = [condition_name(n, p) for n in noise_types for p in levels]
  return list(dict.fromkeys(names))


def width_configs(config: training.TrainConfig, hidden_sizes,
                  lanes: int) -> dict[int, training.TrainConfig]:
  """The training run of each width: every lane trains all epochs (best
  validation accuracy is read over the whole run)."""
  return {h: dataclasses.replace(config, model=f"mlp2x{h}", num_seeds=lanes,
                                 stop_when_fit=False)
          for h in hidden_sizes}


def train_sweep(widths, data, names, seeds, workdir, checkpoint_seconds,
                progress):
  """{condition: (widths, seeds) best validation accuracy over the epochs}.

  Each width is one ``engine.fit`` with its own checkpoint folder, so a
  re-run reads finished widths back and resumes an interrupted one."""
  best = {n: np.zeros((len(widths), seeds)) for n in names}
  for index, (hidden, config) in enumerate(widths.items()):
    fit = engine.fit(config, data,
                       checkpoint_dir=os.path.join(workdir, f"mlp2x{hidden}"),
                       checkpoint_seconds=checkpoint_seconds,
                       progress=f"mlp2x{hidden}" if progress else None)
    per_lane = fit.history["test_acc"].max(axis=0)
    for c, name in enumerate(names):
      best[name][index] = per_lane[c * seeds:(c + 1) * seeds]
  return best


def summarize(names, hidden_sizes, best) -> dict:
  """Per condition: per-width mean, SE and per-seed best validation accuracy."""
  summary = {}
  for name in names:
    per_width = [stats.mean_se(row) for row in best[name]]
    summary[name] = {"hidden_sizes": list(hidden_sizes),
                     "best_val_acc": [m for m, _ in per_width],
                     "best_val_acc_se": [se for _, se in per_width],
                     "best_val_acc_seeds": best[name].tolist()}
  return summary


def capacity_gain(cell: dict, chance: float) -> np.ndarray:
  """Per seed, G = (a(largest) - a(smallest)) / (a(largest) - chance): the
  share of the best above-chance accuracy that the smallest width lacks (NaN
  where the largest width is not above chance)."""
  acc = np.asarray(cell["best_val_acc_seeds"], np.float64)
  large, small = acc[-1], acc[0]
  above = large - chance
  safe = np.where(above > 0, above, 1.0)
  return np.where(above > 0, (large - small) / safe, np.nan)


def absolute_gain(cell: dict) -> np.ndarray:
  """Per seed, a(largest) - a(smallest) in accuracy."""
  acc = np.asarray(cell["best_val_acc_seeds"], np.float64)
  return acc[-1] - acc[0]


def trend(levels, means, ses) -> tuple[float, float]:
  """Least-squares slope of ``means`` on ``levels``, with its SE propagated
  from the independent SE of each mean."""
  levels = np.asarray(levels, np.float64)
  centered = levels - levels.mean()
  weights = centered / (centered ** 2).sum()
  slope = float(weights @ np.asarray(means, np.float64))
  se = float(np.sqrt((weights ** 2) @ np.asarray(ses, np.float64) ** 2))
  return slope, se


def claims(summary: dict, noise_types, levels,
           num_classes: int) -> list[reporting.Claim]:
  """The module docstring's claims, decided on ``summary`` alone (claims whose
  conditions were not run are left out)."""
  out = []
  chance = 1.0 / num_classes
  noisy = sorted(p for p in levels if p > 0)
  if "real" not in summary or not noisy:
    return out
  sigmas = stats.SIGMAS
  for noise in noise_types:
    grid = [0.0] + noisy
    cells = [summary[condition_name(noise, p)] for p in grid]
    sizes = cells[0]["hidden_sizes"]
    span = f"h={sizes[0]} -> {sizes[-1]}"
    gains = [stats.mean_se(capacity_gain(c, chance)) for c in cells]
    points = [stats.mean_se(absolute_gain(c)) for c in cells]
    listed = ", ".join(
        f"p={p:g}: G {g:.3f} +- {gse:.3f} ({a * 100:+.1f} +- {ase * 100:.1f} "
        "points)" for p, (g, gse), (a, ase) in zip(grid, gains, points))
    top = grid[-1]
    diff, se = stats.difference(capacity_gain(cells[-1], chance),
                                capacity_gain(cells[0], chance))
    out.append(reporting.Claim(
        f"{noise}: noise needs more capacity: the share G of the best "
        f"above-chance validation accuracy gained from {span} is larger at "
        f"p={top:g} than on real data by > {sigmas:g} SE",
        stats.exceeds(diff, se), listed, value=diff, uncertainty=se,
        threshold=sigmas * se))
    slope, slope_se = trend(grid, [g for g, _ in gains], [s for _, s in gains])
    out.append(reporting.Claim(
        f"{noise}: the capacity needed grows with the noise level: "
        f"least-squares slope of G ({span}) over p = "
        f"{', '.join(f'{p:g}' for p in grid)} is > {sigmas:g} SE",
        stats.exceeds(slope, slope_se),
        f"slope {slope:.3f} +- {slope_se:.3f} per unit of p; {listed}",
        value=slope, uncertainty=slope_se, threshold=sigmas * slope_se))
    real_acc = np.asarray(cells[0]["best_val_acc_seeds"])[-1]
    noisy_acc = np.asarray(cells[-1]["best_val_acc_seeds"])[-1]
    drop, drop_se = stats.difference(real_acc, noisy_acc)
    out.append(reporting.Claim(
        f"{noise}: noise lowers the best validation accuracy: at h={sizes[-1]},"
        f" real minus p={top:g} exceeds {sigmas:g} SE",
        stats.exceeds(drop, drop_se),
        f"real {real_acc.mean():.2%} vs p={top:g} {noisy_acc.mean():.2%} "
        f"(chance {chance:.0%})",
        value=drop, uncertainty=drop_se, threshold=sigmas * drop_se))
  return out


def setup_details(data_config, config, noise_types, levels,
                  hidden_sizes) -> dict:
  """The Setup header's lines after data and preprocessing."""
  noise = {
      "randX": ("randX: a fraction p of the training inputs and of the "
                "validation inputs (fresh draws) replaced by Gaussian noise "
                "with the training pixels' mean and std, labels kept"),
      "randY": ("randY: each training label replaced with probability p by a "
                "uniform class; validation labels clean")}
  differs = []
  if data_config.name == "mnist5k":
    differs.append("embedded MNIST-5k subset instead of MNIST's 50,000")
  if config.max_epochs < 1000:
    differs.append(f"{config.max_epochs} epochs instead of 1,000")
  if max(hidden_sizes) < 4096:
    differs.append(f"widths up to {max(hidden_sizes)} instead of 4,096")
  return {
      "model": (f"mlp2xh for h = {', '.join(map(str, hidden_sizes))}; "
                f"{config.num_seeds} seeds per cell; SGD momentum "
                f"{config.momentum}, learning rate {config.lr}, batch "
                f"{config.batch_size}, {config.max_epochs} epochs (each a pass "
                "over every training example)"),
      "noise": (f"p = {', '.join(f'{p:g}' for p in levels)}; "
                + "; ".join(noise[n] for n in noise_types)),
      "measured at": ("best validation accuracy over the clean evaluation "
                      "passes after each epoch"),
      "differs from paper": "; ".join(differs) or "no",
  }


def config_from_flags(values) -> Config:
  """The run's frozen config (--smoke shrinks it); raises ValueError on bad
  input."""
  hidden_sizes = cli.positive_ints("hidden_sizes", values.hidden_sizes)
  levels = cli.fractions("levels", values.levels)
  noise_types = parse_noise(values.noise)
  if values.smoke:
    hidden_sizes, levels = SMOKE["hidden_sizes"], SMOKE["levels"]
  data, train = cli.configs(values)
  return Config(data=data, train=train, noise_types=tuple(noise_types),
                levels=tuple(levels), hidden_sizes=tuple(hidden_sizes),
                randomization_seed=values.randomization_seed)


def run(config: Config, workdir: str,
        control: cli.RunControl = cli.RunControl()) -> dict:
  """Trains every width, prints the claims and writes results.json and the
  figure into ``workdir``; returns results.json's contents."""
  hidden_sizes, levels = list(config.hidden_sizes), list(config.levels)
  seeds = config.train.num_seeds
  names = config.conditions
  widths = width_configs(config.train, hidden_sizes, len(names) * seeds)
  dataset = data_lib.load(config.data)
  data, _ = studies.condition_lanes(
      dataset, names, seeds, randomization_seed=config.randomization_seed)
  cli.claim_workdir(workdir, config, control, dataset, list(widths.values()),
                    per_seed_data=True)
  print(reporting.format_setup(
      config.data, dataset,
      **setup_details(config.data, config.train, config.noise_types, levels,
                      hidden_sizes)))
  best = train_sweep(widths, data, names, seeds, workdir,
                     control.checkpoint_seconds, control.progress)
  summary = summarize(names, hidden_sizes, best)
  chance = 1.0 / dataset.num_classes
  rows = [{"condition": n,
           **{f"h={h}": a for h, a in zip(hidden_sizes, s["best_val_acc"])},
           "gain_points": float(absolute_gain(s).mean()),
           "G": float(np.nanmean(capacity_gain(s, chance)))}
          for n, s in summary.items()]
  print(f"Best validation accuracy (mean over {seeds} seeds) per hidden size; "
        "gain: largest minus smallest width; G: that gain over the largest "
        "width's accuracy above chance:")
  print(reporting.format_table(
      rows, ["condition"] + [f"h={h}" for h in hidden_sizes]
      + ["gain_points", "G"]))
  verdicts = claims(summary, config.noise_types, levels, dataset.num_classes)
  print(reporting.format_claims(verdicts))
  panels = [{"title": f"{noise} ({config.data.name}, "
                      f"{config.train.max_epochs} epochs)",
             "xlabel": "hidden units per layer (log2)",
             "ylabel": "best validation accuracy",
             "lines": {f"p={p:g}": (np.log2(hidden_sizes),
                                    summary[condition_name(noise, p)][
                                        "best_val_acc"],
                                    summary[condition_name(noise, p)][
                                        "best_val_acc_se"])
                       for p in levels}} for noise in config.noise_types]
  figure = reporting.plot_panels(os.path.join(workdir, "capacity.png"), panels)
  runs = {n: [{"seed": config.train.seed + c * seeds + i,
               "hidden_sizes": hidden_sizes,
               "best_val_acc": best[n][:, i]} for i in range(seeds)]
          for c, n in enumerate(names)}
  saved = cli.save_results(workdir, "capacity", config, runs, summary,
                           verdicts)
  print(f"Wrote {workdir}/results.json and {figure}")
  return saved


if __name__ == "__main__":
  cli.main(sys.modules[__name__])
