r"""Explicit regularization vs fitting real and random labels.

Two claims, one per mode, each on its own paper's setup and preprocessing:

* ``--mode=table1`` (Zhang et al. 2017, Table 1): explicit regularization is
  neither necessary nor sufficient for generalization. Setup: Zhang et al.'s
  CIFAR10 preprocessing, per-image standardization (zero mean, unit variance
  per image), on embedded MNIST-5k (4,000 train / 1,000 test real digits); MLPs
  1x512 and 3x512, SGD lr 0.01, momentum 0.9, batch 128, 3 seeds per row; each
  row trains until every seed fits (100% training accuracy) or 100 epochs.
  Rows: models x {crop on/off} x {weight decay on/off} x {true, random labels}.
  Test accuracy is the final one (Zhang's Table 1); ``best_test_acc`` is the
  best over epochs (early stopping, their Table 2). BatchNorm on/off is the
  model pair ``inception`` / ``inception_nobn`` (``--models``, GPU scale).
* ``--mode=sweep`` (Arpit et al. 2017, Sec. 5, Fig. 10): dropout (with
  adversarial training) hinders the memorization of random labels best without
  hurting generalization on real labels. Setup: Arpit et al.'s MNIST inputs,
  pixels / 255 in [0, 1]; from the 4,000 MNIST-5k training digits a stratified
  validation split of 1,000 is HELD OUT (never trained on) and 1,000 of the
  remaining digits are the training set; MLP 1x512, SGD lr 0.01, momentum 0.9,
  batch 128, 3 seeds, every setting trained for exactly 80 epochs on real
  labels and on random labels (uniform over the 10 classes, drawn once). Per
  setting: the random-label training accuracy after the last epoch (clean
  pass) and the best real-label validation accuracy over epochs.

Each mode's default preprocessing is its paper's: ``--standardize`` is
resolved per mode unless given (table1: standardized; sweep: pixels / 255), as
are ``--max_epochs`` (table1 100, sweep 80), ``--train_size`` (table1: all;
sweep: 1,000 training examples after the validation hold-out) and
``--workdir`` (runs/regularization_<mode>). The printed "Setup:" header says
which were used and where the setup differs from the paper.

Claims and their criteria (fixed before the runs that measure them; SE is the
standard error over seeds; a difference of two settings has the SE of two
independent means; "exceeds" means by more than 2 SE):

table1, per model --
  1. without regularizers it fits random labels: the worst seed reaches >= 99%
     training accuracy (uncertainty: Jeffreys SE of that seed's accuracy);
  2. with weight decay (no crop) it still fits random labels, the same test
     (AlexNet: the paper's exception, the claim is that no seed fits);
  3. the crop helps: real-label test accuracy with crop minus without (no
     weight decay) exceeds 2 SE;
  4. regularizers are not necessary: the best regularized real-label row beats
     the unregularized one by at most the paper's largest gain (AlexNet,
     +5.15 points): the difference plus 2 SE is <= 5.15 points.
sweep --
  A setting "keeps generalization" when its best real-label validation accuracy
  is at least the unregularized baseline's minus one SE of their difference.
  1. among settings that keep generalization, dropout or dropout + adversarial
     training has the lowest random-label training accuracy, lower than that of
     every other regularizer's settings (and of the baseline) by more than
     2 SE;
  2. dropout alone hinders memorization without hurting generalization: some
     dropout rate that keeps generalization lowers random-label training
     accuracy below the baseline's by more than 2 SE.
  Exploratory (no verdict): dropout + adversarial training vs dropout alone at
  the same rate.

Commands (embedded MNIST-5k; the defaults were sized from per-epoch timings to
take roughly 10 minutes each on an idle 2-core CPU, an estimate: the runs
below were timed on a shared one):

  python experiments/regularization.py --mode=table1
  python experiments/regularization.py --mode=sweep

Table 1 runs mlp1x512 and mlp3x512 (``--models`` adds alexnet, inception,
inception_nobn: GPU scale). "Crop" on digits is a random shift of up to 2
pixels (1/14 of the side) with zero fill; on CIFAR-like data a random crop
(the same shift of the zero-padded 28x28 centre crop, matching the paper's 28x28
crops of 32x32 images) plus horizontal flips; ``--color_jitter`` adds the
paper's brightness/contrast/saturation/hue jitter. Weight decay "on" is
``--weight_decay`` (the paper does not give its value). With
``--dataset=cifar10`` the paper's numbers are printed beside ours.
``--adversarial`` adds Arpit et al.'s adversarial training on LASS critical
samples to every Table 1 run (on standardized inputs the paper's box is one
global box: 0.3 of 255 levels mapped onto the range of the inputs).

The sweep's default grid (``--regularizers``, each at its default strengths):
weight decay 0.001, 0.003, 0.01, 0.03, 0.1; dropout 0.25, 0.5, 0.75, 0.9;
input dropout 0.25, 0.5, 0.75, 0.9; input Gaussian noise (std, in units of the
/255 inputs) 0.1, 0.3, 1; hidden Gaussian noise 0.1, 0.2, 0.3; dropout 0.5 +
adversarial training (``dropout_adversarial``), plus the unregularized
baseline; ``shift`` and ``color_jitter`` can be added. ``--strengths`` replaces
one regularizer's strengths. Strength 0 is the baseline, trained once (for
``dropout_adversarial``, 0 is adversarial training alone). The two label
conditions and all seeds of a setting train as one vmapped run (lane i < S: real
labels, seed --seed + i; lane S + i: random labels, seed --seed + S + i).
Settings differ in the compiled model or optimizer, so they train one after
another. Adversarial training (``memjax.regularizers``) extends every minibatch
by the points LASS reaches from its examples in the paper's box (r = 0.3,
alpha = 0.25, beta = 0.2 intensity levels of 255); it costs up to
``--lass_iterations`` extra forward/backward passes per step. With these
constants the search reaches the box's corner in 2 sign steps, so the default
10 iterations (the paper's public port: 100) change little but the cost.

Paper scale (Arpit's Fig. 10 ranges: dropout and input dropout 0.1-0.9, input
noise up to 5, hidden noise up to 0.3, weight decay up to 1; 2x4096 MLPs on
MNIST, up to 1,000 epochs; GPU):

  python experiments/regularization.py --mode=sweep --paper_grid \
      --dataset=mnist --data_dir=~/tensorflow_datasets --model=mlp2x4096 \
      --train_size=50000 --validation_size=10000 --max_epochs=1000 \
      --lass_iterations=100

"Does not fit" means "not within the epoch budget" (``--max_epochs``).

Result: the measured values, uncertainties and verdicts of the two default
commands are in the README's results table (generated from
runs/regularization_table1/results.json and
runs/regularization_sweep/results.json by `python experiments/report.py
--mode=readme`; `python experiments/report.py` writes the full report).
Runtime: about 40 minutes each, measured with both commands running at once
on a 2-core CPU shared with other jobs (about 10 minutes each on an idle one,
estimated above).

table1: with the crop, random labels are not fit within the 100-epoch budget
(training accuracy still rising): "not fit within the budget".

sweep: claim 1 is NOT REPRODUCED on MNIST-5k. Dropout does hinder
memorization without hurting generalization (claim 2), but it is not the best
at it: input dropout (and, within noise, input noise) lowers random-label
training accuracy as much or more while keeping generalization, and the
larger weight decays that stop more memorization cost more than one SE of
validation accuracy. Exploratory: adversarial training in the paper's box
changes nothing measurable at dropout 0.5: 0.3 of 255 intensity levels barely
moves an input.

Outputs in --workdir (default runs/regularization_<mode>): results.json
(summary: one entry per table row or sweep setting, with per-seed values and
SEs; claims with value, uncertainty, threshold and verdict), table1.png (real-
label test and random-label training accuracy curves per row) or sweep.png
(Fig. 10: random-label training accuracy vs best real-label validation
accuracy, one point per setting, +-1 SE bars), the sweep's split.npz (indices
of the training and validation examples in the training split, in dataset
order, and the random labels), and checkpoints per row or setting. Re-running
the same command resumes every row or setting where it stopped.

The study itself lives in ``memjax.regularization_study`` (Table 1) and
``memjax.regularization_sweep`` (the sweep); this script turns the flags into
one frozen config and prints, plots and saves what they return.
"""

import os
import sys

from absl import flags

from memjax import cli
from memjax import complexity
from memjax import data as data_lib
from memjax import regularization_study as table1_lib
from memjax import regularization_sweep as sweep_lib
from memjax import reporting
from memjax import studies

MODES = ("table1", "sweep")
# Each mode's paper setup, used for every flag the user did not set.
MODE_DEFAULTS = {
    "table1": dict(standardize=True, max_epochs=100, train_size=None,
                   workdir="runs/regularization_table1"),
    "sweep": dict(standardize=False, max_epochs=80, train_size=1000,
                  workdir="runs/regularization_sweep"),
}
# Flags that only one mode reads; giving one in the other mode is an error.
MODE_FLAGS = {
    "table1": ("models", "weight_decay", "crop_shift", "color_jitter",
               "adversarial"),
    "sweep": ("model", "regularizers", "strengths", "paper_grid",
              "validation_size"),
}
# --smoke: the sweep's training and validation examples.
SMOKE_SPLIT = (128, 64)


def define_flags() -> None:
  """This experiment's flags, defined when it runs (not on import, so that
  tests can run several experiments in one process)."""
  cli.define_data_flags(standardize=MODE_DEFAULTS["table1"]["standardize"])
  cli.define_train_flags(seeds=3,
                         max_epochs=MODE_DEFAULTS["table1"]["max_epochs"])
  cli.define_run_flags(MODE_DEFAULTS["table1"]["workdir"])
  per_mode = lambda name: ", ".join(
      f"{m}: {MODE_DEFAULTS[m][name]}" for m in MODES)
  for name in ("standardize", "max_epochs", "train_size", "workdir"):
    flags.FLAGS[name].help += (
        f" Default per --mode, the paper's setup ({per_mode(name)}); the "
        "default shown is table1's.")
  flags.FLAGS["train_size"].help += (" With --mode=sweep: the training "
                                     "examples left after --validation_size "
                                     "are held out.")
  flags.DEFINE_enum(
      "mode", "table1", MODES,
      "table1: Zhang et al. Table 1 (per-image standardized inputs); sweep: "
      "Arpit et al. Fig. 10 (pixels / 255).")
  flags.DEFINE_list("models", ["mlp1x512", "mlp3x512"],
                    "table1: the models (rows).")
  cli.define_float("weight_decay", 5e-4, "table1: weight decay when 'on'.",
                   low=0, low_open=True)
  cli.define_int("crop_shift", None,
                 "table1: crop = random shift of up to this many pixels, "
                 "smaller than the image side (default: 1/14 of the side, 2 "
                 "on 28x28).", low=1)
  cli.define_float("color_jitter", 0.0,
                   "table1: colour jitter strength added to 'crop'.", low=0,
                   high=1)
  flags.DEFINE_bool("adversarial", False,
                    "table1: add adversarial training on LASS critical "
                    "samples to every run (in the sweep: "
                    f"--regularizers={sweep_lib.DROPOUT_ADVERSARIAL}).")
  flags.DEFINE_list("regularizers", list(sweep_lib.DEFAULT_FAMILIES),
                    f"sweep: any of {', '.join(sweep_lib.FAMILIES)}.")
  flags.DEFINE_list("strengths", None,
                    "sweep: the strengths of the one --regularizers given "
                    "(> 0; 0 is the baseline, always trained); default per "
                    f"regularizer: {sweep_lib.DEFAULT_STRENGTHS}.")
  flags.DEFINE_bool("paper_grid", False,
                    "sweep: Arpit et al.'s Fig. 10 ranges instead of the "
                    f"default grid: {sweep_lib.PAPER_STRENGTHS}.")
  cli.define_int("validation_size", 1000,
                 "sweep: real-label validation examples held out from the "
                 "training split (stratified; never trained on).", low=1)
  cli.define_int("lass_iterations", 10,
                 "LASS steps per search in adversarial training (the paper's "
                 "public port: 100; the paper's box is reached in 2).", low=1)


def resolve_mode_defaults(values) -> None:
  """Sets every per-mode flag the user did not give to its mode's paper
  default (--workdir too, which the command line reads after the config), and
  refuses flags that the chosen mode does not read."""
  for name, value in MODE_DEFAULTS[values.mode].items():
    if not values[name].present:
      setattr(values, name, value)
  other = next(m for m in MODES if m != values.mode)
  for name in MODE_FLAGS[other]:
    if values[name].present:
      raise ValueError(f"--{name} is for --mode={other}; this is "
                       f"--mode={values.mode}.")


def config_from_flags(values):
  """The run's frozen config, a ``Table1Config`` or a ``SweepConfig`` by
  --mode (--smoke shrinks it); raises ValueError on bad input."""
  resolve_mode_defaults(values)
  if values.mode == "table1":
    data, train = cli.configs(values)
    return table1_lib.Table1Config(
        data=data, train=train,
        models=table1_lib.distinct("models", values.models),
        weight_decay=values.weight_decay, crop_shift=values.crop_shift,
        color_jitter=values.color_jitter, adversarial=values.adversarial,
        lass_iterations=values.lass_iterations)
  smoke = values.smoke
  seeds = min(values.seeds, 2) if smoke else values.seeds
  data = cli.data_config(
      values, train_size=None,
      **({"test_size": cli.SMOKE_DATA["test_size"]} if smoke else {}))
  train = cli.train_config(
      values, num_seeds=len(table1_lib.CONDITIONS) * seeds,
      stop_when_fit=False,
      **({"max_epochs": cli.SMOKE_TRAIN["max_epochs"]} if smoke else {}))
  train_size, validation_size = SMOKE_SPLIT if smoke else (
      values.train_size, values.validation_size)
  grid = sweep_lib.sweep_grid(values.regularizers, values.strengths,
                              values.paper_grid, smoke)
  return sweep_lib.SweepConfig(
      data=data, train=train, seeds=seeds, train_size=train_size,
      validation_size=validation_size,
      settings=sweep_lib.grid_settings(grid),
      lass_iterations=values.lass_iterations)


def run(config, workdir: str,
        control: cli.RunControl = cli.RunControl()) -> dict:
  """Runs the mode of ``config`` (a ``Table1Config`` or ``SweepConfig``),
  prints the claims and writes results.json and the figure into ``workdir``;
  returns results.json's contents."""
  if isinstance(config, table1_lib.Table1Config):
    return run_table1(config, workdir, control)
  return run_sweep(config, workdir, control)


def table1_setup(config: table1_lib.Table1Config, dataset, crop) -> dict:
  """The Setup header's lines after data and preprocessing."""
  train = config.train
  return dict(
      models=", ".join(config.models),
      rows="{crop on/off} x {weight decay on/off} x {true, random labels}",
      crop=(f"random shift of up to {crop.shift} pixels, zero fill"
            + (", horizontal flips" if crop.flip else "")
            + (f", colour jitter {crop.color_jitter:g}"
               if crop.color_jitter else "")),
      weight_decay=f"{config.weight_decay:g} when on",
      training=(f"{train.num_seeds} seeds per row, until every seed fits or "
                f"{train.max_epochs} epochs"
                + (", LASS adversarial training" if config.adversarial
                   else "")),
      measured="final training and test accuracy (best_test_acc: the best "
               "test accuracy over epochs)",
      differs_from_paper=(
          "none in the data (the weight decay value and the crop are our "
          "reading)" if dataset.name == "cifar10" else
          f"{dataset.name} digits and small models instead of CIFAR10 (use "
          "--dataset=cifar10 --models=inception,alexnet,... on a GPU); the "
          "crop on digits shifts without flips"))


def run_table1(config: table1_lib.Table1Config, workdir: str,
               control: cli.RunControl) -> dict:
  dataset = data_lib.load(config.data)
  crop = table1_lib.crop_regularization(config, dataset.input_shape)
  rows = table1_lib.table1_rows(config, crop, dataset.x_train)
  cli.claim_workdir(workdir, config, control, dataset,
                    [row.train for row in rows])
  print(reporting.format_setup(config.data, dataset,
                               **table1_setup(config, dataset, crop)))
  summary, results = table1_lib.train_rows(
      config, rows, dataset, workdir, progress=control.progress,
      checkpoint_seconds=control.checkpoint_seconds, mesh=control.mesh())
  columns = ["model", "labels", "crop", "weight_decay", "train_acc",
             "train_acc_min", "test_acc", "test_acc_se", "best_test_acc",
             "seeds_fit", "seeds", "epochs"]
  if dataset.name == "cifar10":
    columns += ["paper_train_acc", "paper_test_acc"]
  verdicts = table1_lib.table1_claims(summary)
  print(reporting.format_table(list(summary.values()), columns))
  print(reporting.format_claims(verdicts))
  figure = table1_lib.plot_table1(os.path.join(workdir, "table1.png"),
                                  config.models, results)
  saved = cli.save_results(workdir, "regularization_table1", config,
                           studies.per_seed_runs(results, config.train.seed),
                           summary, verdicts)
  print(f"Wrote {workdir}/results.json and {figure}")
  return saved


def sweep_setup(config: sweep_lib.SweepConfig, dataset) -> dict:
  """The Setup header's lines after data and preprocessing."""
  train, iterations = config.train, config.lass_iterations
  return dict(
      split=(f"{config.train_size} training and {config.validation_size} "
             "validation examples from the training split (stratified; the "
             "validation examples are never trained on); the test set is used "
             "only for real_test_acc"),
      model=train.model,
      labels=("real, and random labels (uniform over the "
              f"{dataset.num_classes} classes, drawn once); validation labels "
              "are real"),
      training=(f"{config.seeds} seeds per condition, exactly "
                f"{train.max_epochs} epochs for every setting"),
      measured=("random labels: training accuracy after the last epoch "
                "(clean pass); real labels: best validation accuracy over "
                "epochs"),
      settings=", ".join(s.name for s in config.settings),
      adversarial_training=(
          f"LASS box r = 0.3, alpha = 0.25, beta = 0.2 intensity levels, "
          f"{iterations} iterations" if config.adversarial else "none"),
      differs_from_paper=(
          f"{dataset.name} with {config.train_size} training examples and "
          f"{train.model} instead of MNIST's 50,000 and 2x4096 MLPs; "
          f"{train.max_epochs} epochs instead of up to 1,000, so the "
          "baseline may not fit random labels completely"
          + (f"; LASS {iterations} iterations (the paper's port: "
             f"{complexity.PAPER_MAX_ITERATIONS})"
             if config.adversarial
             and iterations != complexity.PAPER_MAX_ITERATIONS else "")))


def run_sweep(config: sweep_lib.SweepConfig, workdir: str,
              control: cli.RunControl) -> dict:
  dataset = data_lib.load(config.data)
  train_index, validation_index = sweep_lib.validation_split(
      dataset.y_train, config.train_size, config.validation_size,
      config.data.split_seed)
  data, random_labels = sweep_lib.lanes_data(dataset, train_index,
                                             validation_index, config.seeds)
  train_configs = config.train_configs(data.x_train)
  cli.claim_workdir(workdir, config, control, dataset, train_configs)
  print(reporting.format_setup(config.data, dataset,
                               **sweep_setup(config, dataset)))
  sweep_lib.save_split(workdir, config.data, train_index, validation_index,
                       random_labels)
  fits = [sweep_lib.train_setting(
      setting, train, data, workdir, progress=control.progress,
      checkpoint_seconds=control.checkpoint_seconds, mesh=control.mesh())
          for setting, train in zip(config.settings, train_configs)]
  summary = sweep_lib.summarize(config, train_configs, fits, dataset)
  verdicts = sweep_lib.sweep_claims(summary)
  print("Accuracies are means over seeds (+- SE in the _se columns); "
        "val_vs_baseline: best real-label validation accuracy minus the "
        "baseline's.")
  print(reporting.format_table(
      sweep_lib.sweep_table(summary),
      ["setting", "random_train_acc", "random_train_acc_se",
       "real_best_val_acc", "real_best_val_acc_se", "val_vs_baseline",
       "val_vs_baseline_se", "keeps_generalization", "real_test_acc"]))
  print(reporting.format_claims(verdicts))
  figure = sweep_lib.plot_sweep(os.path.join(workdir, "sweep.png"), summary)
  runs = sweep_lib.sweep_runs(config.settings, fits, config.seeds,
                              config.train.seed)
  saved = cli.save_results(workdir, "regularization_sweep", config, runs,
                           summary, verdicts)
  print(f"Wrote {workdir}/results.json and {figure}")
  return saved


if __name__ == "__main__":
  cli.main(sys.modules[__name__])
