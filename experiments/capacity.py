r"""Noise needs more capacity (Arpit et al. 2017, Sec. 3.3, Fig. 5).

Claim tested: for 2-layer MLPs of growing hidden size trained on data with a
fraction p of noise (randX: training inputs replaced by Gaussian noise; randY:
training labels replaced by random ones), the best validation accuracy (on the
clean validation set) needs more capacity the more noise there is, while real
data is near its best already at small sizes.

Command (embedded MNIST-5k, a stratified 1,000-example training subset and 500
validation examples; MLP 2xh for h in 32, 128, 512; noise levels 0, 0.2, 0.4,
0.6, 0.8 for randX and randY; 1 seed per cell; 30 epochs):

  python experiments/capacity.py

For each hidden size all 9 (noise type, level) cells x seeds train as ONE
vmapped run, each lane with its own randomized data (real data is level 0,
shared by both noise types). The paper trained up to 4096 units for 1,000
epochs on the full MNIST; this default takes 39 s on an idle 2-core CPU
(measured 2026-11-26), so it is far from the paper's
budget and the trend can differ from the paper's: the output says which.

Expected (measured with the default command): best validation accuracy falls
steadily with the noise level (randY: 90% real -> 61% at p=0.8; randX: -> 78%)
and rises a little with capacity at every level; with one seed and three sizes
the "size needed" to come within 1 point of the best does NOT grow with noise
on our data (the paper's capacity trend is not reproduced at this scale).

Outputs in --workdir: results.json (summary keyed real, randX_0.2, ..., randY_0.8
with ``hidden_sizes`` and ``best_val_acc`` per size), capacity.png (Fig. 5: best
validation accuracy vs hidden units, one line per level, randX and randY
panels), checkpoints per hidden size. Re-running resumes.
"""

import dataclasses
import os

from absl import flags
import numpy as np

from memjax import cli
from memjax import data as data_lib
from memjax import reporting
from memjax import studies
from memjax import training

cli.define_data_flags(standardize=False)
cli.define_train_flags(seeds=1, max_epochs=30, shard_seeds=False)
cli.define_run_flags("runs/capacity")
flags.FLAGS.set_default("train_size", 1000)
flags.FLAGS.set_default("test_size", 500)
flags.DEFINE_list("hidden_sizes", ["32", "128", "512"],
                  "Hidden units per layer of the 2-layer MLPs.")
flags.DEFINE_list("levels", ["0", "0.2", "0.4", "0.6", "0.8"],
                  "Noise fractions in [0, 1] (0 is real data).")
flags.DEFINE_list("noise", ["randX", "randY"], "Noise types: randX and/or randY.")
flags.DEFINE_integer("randomization_seed", 0, "Seeds the noise.")
FLAGS = flags.FLAGS

NOISE_TYPES = ("randX", "randY")
SMOKE = dict(hidden_sizes=[8], levels=[0.0, 0.8])
# A cell "reaches" its best accuracy within this many accuracy points.
NEAR_BEST = 0.01




def condition_name(noise: str, level: float) -> str:
  """real, randX/randY (all noise) or randX_0.4-style partial noise."""
  if level == 0.0:
    return "real"
  return noise if level == 1.0 else f"{noise}_{level:g}"


def sweep_conditions(noise_types, levels) -> list[str]:
  names = [condition_name(n, p) for n in noise_types for p in levels]
  return list(dict.fromkeys(names))


def train_sweep(config, dataset, names, hidden_sizes, seeds, workdir,
                randomization_seed, progress):
  """{condition: (hidden sizes, seeds) best validation accuracy}."""
  data, _ = studies.condition_lanes(dataset, names, seeds,
                                    randomization_seed=randomization_seed)
  best = {n: np.zeros((len(hidden_sizes), seeds)) for n in names}
  for h_index, hidden in enumerate(hidden_sizes):
    cell = dataclasses.replace(config, model=f"mlp2x{hidden}",
                               num_seeds=len(names) * seeds,
                               stop_when_fit=False)
    fit = training.fit(cell, data,
                       checkpoint_dir=os.path.join(workdir, f"h{hidden}"),
                       progress=f"mlp2x{hidden}" if progress else None)
    per_lane = np.nanmax(fit.history["test_acc"], axis=0)
    for c, name in enumerate(names):
      best[name][h_index] = per_lane[c * seeds:(c + 1) * seeds]
  return best


def needed_size(hidden_sizes, accuracy) -> int:
  """The smallest hidden size within NEAR_BEST of the best accuracy."""
  return int(hidden_sizes[np.argmax(accuracy >= accuracy.max() - NEAR_BEST)])


def summarize(names, hidden_sizes, best):
  summary = {}
  for name in names:
    acc = best[name].mean(1)
    summary[name] = {"hidden_sizes": hidden_sizes, "best_val_acc": acc,
                     "best_val_acc_std": best[name].std(1),
                     "max_best_val_acc": float(acc.max()),
                     "size_needed": needed_size(hidden_sizes, acc)}
  return summary


def claims(summary, noise_types, levels) -> list[reporting.Claim]:
  out = []
  noisy = [p for p in levels if p > 0]
  if "real" not in summary or not noisy:
    return out
  real = summary["real"]
  for noise in noise_types:
    cells = [summary[condition_name(noise, p)] for p in noisy]
    sizes = [real["size_needed"]] + [c["size_needed"] for c in cells]
    measured = ", ".join(f"p={p:g}: {s}" for p, s in zip([0.0] + noisy, sizes))
    out.append(reporting.Claim(
        f"{noise}: the hidden size needed to come within {NEAR_BEST:.0%} of "
        "the best validation accuracy grows with the noise level and is larger "
        "at the highest level than for real data",
        all(a <= b for a, b in zip(sizes, sizes[1:])) and sizes[-1] > sizes[0],
        f"size needed: {measured}"))
    acc = [real["max_best_val_acc"]] + [c["max_best_val_acc"] for c in cells]
    out.append(reporting.Claim(
        f"{noise}: best validation accuracy falls as the noise level grows",
        all(a >= b for a, b in zip(acc, acc[1:])),
        ", ".join(f"p={p:g}: {a:.2%}" for p, a in zip([0.0] + noisy, acc))))
  return out


def main(argv):
  del argv
  hidden_sizes = cli.positive_ints("hidden_sizes", FLAGS.hidden_sizes)
  levels = cli.fractions("levels", FLAGS.levels)
  noise_types = list(dict.fromkeys(FLAGS.noise))
  for noise in noise_types:
    if noise not in NOISE_TYPES:
      raise ValueError(f"Unknown --noise {noise!r}; valid: {NOISE_TYPES}.")
  if FLAGS.smoke:
    hidden_sizes, levels = SMOKE["hidden_sizes"], SMOKE["levels"]
  data_config, config = cli.configs(
      FLAGS, smoke_train=dict(cli.SMOKE_TRAIN, num_seeds=1))
  seeds = config.num_seeds
  names = sweep_conditions(noise_types, levels)
  cli.prepare(FLAGS)
  dataset = data_lib.load(data_config)
  best = train_sweep(config, dataset, names, hidden_sizes, seeds, FLAGS.workdir,
                     FLAGS.randomization_seed, FLAGS.progress)
  summary = summarize(names, hidden_sizes, best)
  rows = [{"condition": n, **{f"h={h}": a for h, a in
                              zip(hidden_sizes, s["best_val_acc"])},
           "size_needed": s["size_needed"]} for n, s in summary.items()]
  print("Best validation accuracy (mean over seeds) per hidden size:")
  print(reporting.format_table(
      rows, ["condition"] + [f"h={h}" for h in hidden_sizes] + ["size_needed"]))
  verdicts = claims(summary, noise_types, levels)
  print(reporting.format_claims(verdicts))
  panels = [{"title": f"{noise} ({data_config.name}, {config.max_epochs} epochs)",
             "xlabel": "hidden units per layer (log2)",
             "ylabel": "best validation accuracy",
             "lines": {f"p={p:g}": (np.log2(hidden_sizes),
                                    summary[condition_name(noise, p)][
                                        "best_val_acc"],
                                    summary[condition_name(noise, p)][
                                        "best_val_acc_std"])
                       for p in levels}} for noise in noise_types]
  figure = reporting.plot_panels(f"{FLAGS.workdir}/capacity.png", panels)
  runs = {n: [{"seed": config.seed + c * seeds + i, "hidden_sizes": hidden_sizes,
               "best_val_acc": best[n][:, i]} for i in range(seeds)]
          for c, n in enumerate(names)}
  path = cli.write_results(FLAGS, "capacity", runs, summary, verdicts)
  print(f"Wrote {path} and {figure}")


if __name__ == "__main__":
  cli.run_main(main)
