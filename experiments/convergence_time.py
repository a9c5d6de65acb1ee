r"""Time to fit noise vs capacity and dataset size (Arpit et al. 2017, Fig. 6).

Claim tested: the number of epochs a 2-layer MLP needs to reach 100% training
accuracy grows much faster with the dataset size for noise (randX: Gaussian
training inputs; randY: random labels) than for real data, and real data fits
faster than random labels at every capacity and size; more capacity shortens
the time needed to memorize noise.

Command (embedded MNIST-5k; MLP 2xh; hidden sizes 32, 128, 512 at 500 training
examples, and training subsets of 250, 500, 1000, 2000 examples at h = 512;
real, randX and randY with 1 seed each; at most 100 epochs):

  python experiments/convergence_time.py

Each (hidden size, dataset size) cell trains real, randX and randY (x seeds) as
ONE vmapped run with per-lane data; a run stops when every lane fits. Cells that
do not fit within --max_epochs are reported as not fit (``epochs_to_fit`` null),
never extrapolated. The paper used 4096 units and up to 50,000 examples; this
default takes 51 s on an idle 2-core CPU (measured 2026-11-26).

Expected (measured with the default command): real data fits in fewer epochs
than randY in every cell (e.g. 24 vs 38 at h=512, n=500) and more capacity
fits noise sooner (randY 70 -> 38 epochs from h=32 to 512; randX does not fit
at h=32 within 100 epochs); randX fits faster than real data at h=512. But
epochs to fit FALL with dataset size for every condition here (an epoch of
n = 250 is a single SGD step of 128), so the paper's steep growth with dataset
size for noise is not reproduced at these sizes.

Outputs in --workdir: results.json (summary keyed real, randX, randY with
``epochs_to_fit`` per hidden size and per dataset size), convergence_time.png
(Fig. 6: epochs to fit vs hidden units and vs dataset size), checkpoints per
cell. Re-running resumes.
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

CONDITIONS = ("real", "randX", "randY")

cli.define_data_flags(standardize=False)
cli.define_train_flags(seeds=1, max_epochs=100, shard_seeds=False)
cli.define_run_flags("runs/convergence_time")
flags.FLAGS.set_default("test_size", 500)
flags.DEFINE_list("conditions", list(CONDITIONS),
                  "real, randX, randY or randX_<p> / randY_<p>.")
flags.DEFINE_list("hidden_sizes", ["32", "128", "512"],
                  "Hidden units per layer for the capacity sweep.")
flags.DEFINE_integer("capacity_train_size", 500,
                     "Training examples in the capacity sweep.")
flags.DEFINE_list("train_sizes", ["250", "500", "1000", "2000"],
                  "Training subset sizes for the dataset-size sweep.")
flags.DEFINE_integer("size_sweep_hidden", 512,
                     "Hidden units per layer in the dataset-size sweep.")
flags.DEFINE_integer("randomization_seed", 0, "Seeds the noise.")
FLAGS = flags.FLAGS

SMOKE = dict(hidden_sizes=[8], train_sizes=[64], capacity_train_size=64,
             size_sweep_hidden=8)



def train_cell(config, data, names, seeds, hidden, size, workdir, progress):
  """(conditions, seeds) epochs to 100% train accuracy (NaN: did not fit) on
  the lanes ``data`` of ``size`` training examples."""
  cell = dataclasses.replace(config, model=f"mlp2x{hidden}",
                             num_seeds=len(names) * seeds, fit_threshold=1.0,
                             stop_when_fit=True)
  label = f"h{hidden}_n{size}"
  fit = training.fit(cell, data, checkpoint_dir=os.path.join(workdir, label),
                     progress=label if progress else None)
  epochs = np.where(fit.fit_step >= 0, fit.fit_step / fit.steps_per_epoch,
                    np.nan)
  return epochs.reshape(len(names), seeds)


def median_or_none(values):
  """Median over seeds, or None unless every seed fit."""
  return None if np.isnan(values).any() else float(np.median(values))


def summarize(names, hidden_sizes, train_sizes, by_hidden, by_size):
  return {name: {
      "hidden_sizes": hidden_sizes,
      "epochs_to_fit": [median_or_none(by_hidden[h][c]) for h in hidden_sizes],
      "train_sizes": train_sizes,
      "epochs_to_fit_by_size": [median_or_none(by_size[n][c])
                                for n in train_sizes],
  } for c, name in enumerate(names)}


def claims(summary) -> list[reporting.Claim]:
  out = []
  fmt = lambda v: "not fit" if v is None else f"{v:g}"
  everything = [v for s in summary.values()
                for v in s["epochs_to_fit"] + s["epochs_to_fit_by_size"]]
  out.append(reporting.Claim(
      "every cell reaches 100% training accuracy within the epoch budget",
      all(v is not None for v in everything),
      f"{sum(v is None for v in everything)} of {len(everything)} cells not fit"))
  real = summary.get("real")
  if real is None:
    return out
  if "randY" in summary:
    pairs = list(zip(real["epochs_to_fit"] + real["epochs_to_fit_by_size"],
                     summary["randY"]["epochs_to_fit"]
                     + summary["randY"]["epochs_to_fit_by_size"]))
    out.append(reporting.Claim(
        "real data fits in fewer epochs than randY in every cell",
        all(r is not None and (y is None or r < y) for r, y in pairs),
        ", ".join(f"{fmt(r)} vs {fmt(y)}" for r, y in pairs)))

  def growth(s):
    first, last = s["epochs_to_fit_by_size"][0], s["epochs_to_fit_by_size"][-1]
    if first is None:
      return None
    return np.inf if last is None else last / first

  for name in (n for n in summary if n.startswith("rand")):
    g, gr = growth(summary[name]), growth(real)
    ratio = lambda v: "-" if v is None else f"{v:.3g}x"
    out.append(reporting.Claim(
        f"epochs to fit grow with dataset size for {name} (ratio largest / "
        "smallest size > 1), and faster than for real data",
        g is not None and gr is not None and g > 1 and g > gr,
        f"ratio {name} {ratio(g)}, real {ratio(gr)} (inf: largest size not "
        f"fit); epochs {summary[name]['epochs_to_fit_by_size']} vs "
        f"{real['epochs_to_fit_by_size']}"))
    small, large = (summary[name]["epochs_to_fit"][0],
                    summary[name]["epochs_to_fit"][-1])
    out.append(reporting.Claim(
        f"{name}: more capacity fits noise in fewer epochs (largest vs "
        "smallest hidden size)",
        large is not None and (small is None or large < small),
        f"{fmt(large)} vs {fmt(small)} epochs"))
  return out


def main(argv):
  del argv
  names = list(dict.fromkeys(FLAGS.conditions))
  hidden_sizes = cli.positive_ints("hidden_sizes", FLAGS.hidden_sizes)
  train_sizes = cli.positive_ints("train_sizes", FLAGS.train_sizes)
  capacity_size = FLAGS.capacity_train_size
  size_hidden = FLAGS.size_sweep_hidden
  for name, value in (("capacity_train_size", capacity_size),
                      ("size_sweep_hidden", size_hidden)):
    if value < 1:
      raise ValueError(f"--{name} must be >= 1, got {value}.")
  if FLAGS.smoke:
    hidden_sizes, train_sizes = SMOKE["hidden_sizes"], SMOKE["train_sizes"]
    capacity_size, size_hidden = (SMOKE["capacity_train_size"],
                                  SMOKE["size_sweep_hidden"])
  data_config, config = cli.configs(
      FLAGS, smoke_data=dict(test_size=cli.SMOKE_DATA["test_size"]),
      smoke_train=dict(cli.SMOKE_TRAIN, num_seeds=1))
  studies.StudyConfig(data_config, config, conditions=tuple(names))
  cli.prepare(FLAGS)
  seeds = config.num_seeds
  lanes = {}  # training-set size -> every condition's lanes, built once
  cells = {}
  for hidden, size in ([(h, capacity_size) for h in hidden_sizes]
                       + [(size_hidden, n) for n in train_sizes]):
    if size not in lanes:
      dataset = data_lib.load(dataclasses.replace(data_config,
                                                  train_size=size))
      lanes[size], _ = studies.condition_lanes(
          dataset, names, seeds, randomization_seed=FLAGS.randomization_seed)
    if (hidden, size) not in cells:  # cells shared by both sweeps train once
      cells[hidden, size] = train_cell(config, lanes[size], names, seeds,
                                       hidden, size, FLAGS.workdir,
                                       FLAGS.progress)
  by_hidden = {h: cells[h, capacity_size] for h in hidden_sizes}
  by_size = {n: cells[size_hidden, n] for n in train_sizes}
  summary = summarize(names, hidden_sizes, train_sizes, by_hidden, by_size)
  print(f"Epochs to 100% training accuracy (median over seeds; '-' = not fit "
        f"within {config.max_epochs}), {capacity_size} examples:")
  print(reporting.format_table(
      [{"condition": n, **{f"h={h}": v for h, v in
                           zip(hidden_sizes, s["epochs_to_fit"])}}
       for n, s in summary.items()],
      ["condition"] + [f"h={h}" for h in hidden_sizes]))
  print(f"... and with h={size_hidden} hidden units per layer:")
  print(reporting.format_table(
      [{"condition": n, **{f"n={m}": v for m, v in
                           zip(train_sizes, s["epochs_to_fit_by_size"])}}
       for n, s in summary.items()],
      ["condition"] + [f"n={m}" for m in train_sizes]))
  print(f"Note: an epoch is n // {config.batch_size} SGD steps, so at small n "
        "an epoch is only a few steps and epochs to fit can fall as n grows.")
  verdicts = claims(summary)
  print(reporting.format_claims(verdicts))
  nan = lambda values: [np.nan if v is None else v for v in values]
  figure = reporting.plot_panels(f"{FLAGS.workdir}/convergence_time.png", [
      {"title": f"{capacity_size} examples", "xlabel": "hidden units (log2)",
       "ylabel": "epochs to 100% train accuracy",
       "lines": {n: (np.log2(hidden_sizes), nan(s["epochs_to_fit"]))
                 for n, s in summary.items()}},
      {"title": f"MLP 2x{size_hidden}", "xlabel": "training examples",
       "ylabel": "epochs to 100% train accuracy",
       "lines": {n: (train_sizes, nan(s["epochs_to_fit_by_size"]))
                 for n, s in summary.items()}}])
  runs = {n: [{"seed": config.seed + c * seeds + i,
               "epochs_to_fit": [by_hidden[h][c, i] for h in hidden_sizes],
               "epochs_to_fit_by_size": [by_size[m][c, i] for m in train_sizes]}
              for i in range(seeds)] for c, n in enumerate(names)}
  path = cli.write_results(FLAGS, "convergence_time", runs, summary, verdicts)
  print(f"Wrote {path} and {figure}")


if __name__ == "__main__":
  cli.run_main(main)
