r"""Explicit regularization vs fitting real and random labels.

Two claims, one per mode:

* ``--mode=table1`` (Zhang et al. 2017, Table 1): explicit regularization is
  neither necessary nor sufficient for generalization. Every model fits random
  labels without regularizers, still fits them with weight decay (AlexNet with
  weight decay was the paper's one exception), and the regularizers improve
  real-label test accuracy by only a few points (paper, CIFAR10: at most +5.2).
  Rows: models x {crop on/off} x {weight decay on/off} x {true, random labels}.
  BatchNorm on/off is the model pair ``inception`` / ``inception_nobn``.
* ``--mode=sweep`` (Arpit et al. 2017, Fig. 10): well-tuned dropout hinders the
  memorization of random labels more than learning from real data. For each
  regularizer and strength: the final training accuracy on random labels and
  the best validation (test-set) accuracy on real labels, plotted against each
  other, one curve per regularizer.

Early stopping is reported as the best test accuracy reached during training
(``best_test_acc``) beside the final one, as Zhang et al.'s Table 2 does.

Commands (embedded MNIST-5k, 2 seeds per row, at most 100 epochs; measured on
a shared 2-core CPU: 4.3 minutes for table1 and 3.6 for the sweep under light
load, up to 32 and 9 minutes when other jobs hold the cores):

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

``--adversarial`` adds Arpit et al.'s adversarial training on critical samples
found by LASS (``memjax.complexity``, the paper's step sizes rescaled to our
inputs) to every run; it multiplies the cost of a step by up to
``--lass_iterations``, so it is for GPUs or small runs.

The sweep covers ``--regularizers`` (default dropout and weight_decay; also
input_dropout, input_noise, hidden_noise, shift, color_jitter) of ``--model``,
each at its default strengths or ``--strengths``; strength 0 (no regularizer)
is always included as the reference and trained once for all regularizers.

Expected on MNIST-5k (measured, 2 seeds): both MLPs fit random labels with and
without weight decay 5e-4 (>= 99.95% on every seed) at ~9% test accuracy; the
crop raises real-label test accuracy from ~94.5% to ~97.3% (+2.7 points for
1x512, +3.1 for 3x512; weight decay alone changes it by < 0.2 points) and keeps
random labels at 30-38% training accuracy after 100 epochs (still rising).
Sweep (mlp1x512): dropout 0.75 lowers random-label training accuracy from
100% to 92.4% while raising the best real-label test accuracy from 94.9% to
96.5%; weight decay 0.1 stops random-label fitting (13%) but costs 3.8 points
on real labels, 0.01 costs 1.9 points of memorization and none of learning.
Unregularized runs stop when they fit (``stop_when_fit``) while regularized
ones may train longer, and budgets are finite (``--max_epochs``): "does not
fit" means "not within the budget".

Outputs in --workdir (default runs/regularization_<mode>): results.json
(summary: one entry per table row or sweep point with train_acc, test_acc,
best_test_acc, seeds; a sweep point's train_acc is on random labels and its
test accuracies on real labels), table1.png (real-label test and random-label
training accuracy curves per row) or sweep.png (Fig. 10 and accuracy vs
strength per regularizer), checkpoints per run. Re-running the same command
resumes.
"""

from __future__ import annotations

import dataclasses
import itertools
import os

from absl import flags

from memjax import cli
from memjax import complexity
from memjax import data as data_lib
from memjax import regularizers
from memjax import reporting
from memjax import studies

MODES = ("table1", "sweep")
CONDITIONS = ("true_labels", "random_labels")
DEFAULT_STRENGTHS = {
    "weight_decay": (0.001, 0.01, 0.1),
    "dropout": (0.25, 0.5, 0.75),
    "input_dropout": (0.2, 0.4, 0.6, 0.8),
    "input_noise": (0.5, 1.0, 2.0, 4.0),
    "hidden_noise": (0.1, 0.2, 0.3),
    "shift": (1, 2, 3),
    "color_jitter": (0.25, 0.5, 1.0),
}
# Zhang et al. Table 1 (CIFAR10): (model, crop, weight decay, labels) ->
# (train %, test %).
PAPER_TABLE1 = {
    ("inception", True, True, "true_labels"): (100.0, 89.05),
    ("inception", True, False, "true_labels"): (100.0, 89.31),
    ("inception", False, True, "true_labels"): (100.0, 86.03),
    ("inception", False, False, "true_labels"): (100.0, 85.75),
    ("inception", False, False, "random_labels"): (100.0, 9.78),
    ("inception_nobn", False, True, "true_labels"): (100.0, 83.00),
    ("inception_nobn", False, False, "true_labels"): (100.0, 82.00),
    ("inception_nobn", False, False, "random_labels"): (100.0, 10.12),
    ("alexnet", True, True, "true_labels"): (99.90, 81.22),
    ("alexnet", True, False, "true_labels"): (99.82, 79.66),
    ("alexnet", False, True, "true_labels"): (100.0, 77.36),
    ("alexnet", False, False, "true_labels"): (100.0, 76.07),
    ("alexnet", False, False, "random_labels"): (99.82, 9.86),
    ("mlp3x512", False, True, "true_labels"): (100.0, 53.35),
    ("mlp3x512", False, False, "true_labels"): (100.0, 52.39),
    ("mlp3x512", False, False, "random_labels"): (100.0, 10.48),
    ("mlp1x512", False, True, "true_labels"): (99.80, 50.39),
    ("mlp1x512", False, False, "true_labels"): (100.0, 50.51),
    ("mlp1x512", False, False, "random_labels"): (99.34, 10.61),
}
# The paper's largest test-accuracy gain from regularizers (AlexNet, points).
PAPER_MAX_GAIN = 81.22 - 76.07
# A regularizer "hinders memorization" when it costs random-label training
# accuracy at least this much (points of accuracy, as a fraction).
MEMORIZATION_DROP = 0.05

cli.define_data_flags(standardize=True)
cli.define_train_flags(seeds=2, max_epochs=100)
cli.define_run_flags("runs/regularization_table1")
flags.DEFINE_enum("mode", "table1", MODES,
                  "table1: Zhang et al. Table 1; sweep: Arpit et al. Fig. 10.")
flags.DEFINE_list("models", ["mlp1x512", "mlp3x512"],
                  "table1: the models (rows); the sweep uses --model.")
flags.DEFINE_float("weight_decay", 5e-4, "table1: weight decay when 'on'.")
flags.DEFINE_integer("crop_shift", None,
                     "table1: crop = random shift of up to this many pixels "
                     "(default: 1/14 of the image side, 2 on 28x28).")
flags.DEFINE_float("color_jitter", 0.0,
                   "table1: colour jitter strength in [0, 1] added to 'crop'.")
flags.DEFINE_list("regularizers", ["dropout", "weight_decay"],
                  f"sweep: any of {', '.join(regularizers.REGULARIZERS)}.")
flags.DEFINE_list("strengths", None,
                  "sweep: strengths (one regularizer only); default per "
                  f"regularizer: {DEFAULT_STRENGTHS}.")
flags.DEFINE_bool("adversarial", False,
                  "Add adversarial training on LASS critical samples to every "
                  "run (Arpit's dropout + adversarial training: --mode=sweep "
                  "--regularizers=dropout --adversarial). Costs up to "
                  "--lass_iterations extra passes per step.")
flags.DEFINE_integer("lass_iterations", 100,
                     "LASS steps per search (the paper's public port: 100).")
FLAGS = flags.FLAGS


def run_conditions(name, data_config, train_config, dataset, progress):
  """Both label conditions of one training setup, resumable under workdir."""
  study = studies.StudyConfig(data=data_config, train=train_config,
                              conditions=CONDITIONS)
  return studies.run(study, os.path.join(FLAGS.workdir, name),
                     progress=progress, dataset=dataset, mesh=cli.mesh(FLAGS))


# ---------------------------------------------------------------- table 1 ---


def crop_regularization(values, dataset) -> regularizers.Regularization:
  crop = regularizers.crop_augmentation(dataset.name, dataset.input_shape[0])
  if values.crop_shift is not None:
    crop = dataclasses.replace(crop, shift=values.crop_shift)
  return dataclasses.replace(crop, color_jitter=values.color_jitter)


def table1(data_config, base, dataset):
  """Summary rows and per-row results of Zhang et al.'s Table 1 layout."""
  crop = crop_regularization(FLAGS, dataset)
  summary, results = {}, {}
  for model, use_crop, use_wd in itertools.product(
      FLAGS.models, (True, False), (True, False)):
    train = dataclasses.replace(
        base, model=model, weight_decay=FLAGS.weight_decay if use_wd else 0.0,
        regularization=crop if use_crop else regularizers.Regularization())
    name = f"{model}/crop_{'yes' if use_crop else 'no'}_wd_" + (
        "yes" if use_wd else "no")
    out = run_conditions(name, data_config, train, dataset, FLAGS.progress)
    rows = studies.summarize(out)
    for condition, result in out.items():
      key = (model, use_crop, use_wd, condition)
      row = {"model": model, "labels": condition, "crop": use_crop,
             "weight_decay": train.weight_decay, **rows[condition]}
      if dataset.name == "cifar10" and key in PAPER_TABLE1:
        row["paper_train_acc"], row["paper_test_acc"] = (
            v / 100 for v in PAPER_TABLE1[key])
      summary[f"{name}/{condition}"] = row
      results[f"{name}/{condition}"] = result
  return summary, results


def table1_claims(summary) -> list[reporting.Claim]:
  rows = list(summary.values())
  pick = lambda **kv: [r for r in rows if all(r[k] == v for k, v in kv.items())]
  fits = lambda rs: ", ".join(f"{r['model']} {r['train_acc_min']:.2%}"
                              for r in rs)
  plain_random = pick(labels="random_labels", crop=False, weight_decay=0.0)
  out = [reporting.Claim(
      "without regularizers every model fits random labels (>= 99% training "
      "accuracy on every seed)",
      all(r["train_acc_min"] >= 0.99 for r in plain_random),
      fits(plain_random))]
  wd_random = [r for r in pick(labels="random_labels", crop=False)
               if r["weight_decay"] > 0 and r["model"] != "alexnet"]
  if wd_random:
    out.append(reporting.Claim(
        "weight decay is not sufficient: the models still fit random labels "
        "with it (paper: Inception and MLPs do; AlexNet is the exception)",
        all(r["train_acc_min"] >= 0.99 for r in wd_random), fits(wd_random)))
  gains = []
  for model in dict.fromkeys(r["model"] for r in rows):
    true_rows = pick(model=model, labels="true_labels")
    plain = [r for r in true_rows if not r["crop"] and not r["weight_decay"]]
    regularized = [r for r in true_rows if r not in plain]
    if plain and regularized:
      best = max(regularized, key=lambda r: r["test_acc"])
      gains.append((model, best["test_acc"] - plain[0]["test_acc"],
                    plain[0]["test_acc"]))
  if gains:
    out.append(reporting.Claim(
        "regularizers are not necessary: the best regularized row beats the "
        f"unregularized one by at most the paper's largest gain "
        f"({PAPER_MAX_GAIN:.1f} points)",
        all(g * 100 <= PAPER_MAX_GAIN for _, g, _ in gains),
        ", ".join(f"{m}: {p:.2%} without, {g * 100:+.2f} points with"
                  for m, g, p in gains)))
  return out


def plot_table1(path, results) -> str:
  panels = []
  for model in FLAGS.models:
    for condition, metric, label in (
        ("true_labels", "test_acc", "true labels: test accuracy"),
        ("random_labels", "train_acc", "random labels: train accuracy")):
      lines = {}
      for name, r in results.items():
        if name.startswith(f"{model}/") and name.endswith(condition):
          h = r.fit.history
          setting = name.split("/")[1].replace("_", " ")
          lines[setting] = (h["step"][:, 0], h[metric].mean(1))
      panels.append({"title": f"{model}, {label}", "xlabel": "SGD steps",
                     "ylabel": metric.replace("_", " "), "lines": lines})
  return reporting.plot_panels(path, panels)


# ------------------------------------------------------------------ sweep ---


def sweep_strengths(values) -> dict[str, list[float]]:
  for name in values.regularizers:
    regularizers.validate(name, 0.0)
  if values.strengths and len(values.regularizers) != 1:
    raise ValueError(f"--strengths needs exactly one --regularizers, got "
                     f"{values.regularizers}.")
  out = {}
  for name in values.regularizers:
    raw = values.strengths or DEFAULT_STRENGTHS[name]
    try:
      strengths = sorted({0.0, *(float(s) for s in raw)})
    except ValueError:
      raise ValueError(f"--strengths must be numbers, got {raw}.") from None
    for s in strengths:
      regularizers.validate(name, s)
    out[name] = strengths
  return out


def sweep_points(base):
  """(regularizer, strength, TrainConfig) of every sweep point, validated."""
  points = [(reg, strength, regularizers.with_strength(base, reg, strength))
            for reg, strengths in sweep_strengths(FLAGS).items()
            for strength in strengths]
  for _, _, train in points:
    regularizers.check_model(train.model, train.dropout, train.regularization)
  return points


def sweep(data_config, base, dataset):
  """Summary points and runs of every (regularizer, strength)."""
  summary, results, trained = {}, {}, {}
  for reg, strength, train in sweep_points(base):
    name = "no_regularizer" if train == base else f"{reg}_{strength:g}"
    if train not in trained:
      trained[train] = run_conditions(name, data_config, train, dataset,
                                      FLAGS.progress)
    out = trained[train]
    rows = studies.summarize(out)
    real, rand = (rows[c] for c in CONDITIONS)
    summary[f"{reg}={strength:g}"] = {
        "regularizer": reg, "strength": strength,
        "train_acc": rand["train_acc"], "train_acc_min": rand["train_acc_min"],
        "test_acc": real["test_acc"], "best_test_acc": real["best_test_acc"],
        "real_train_acc": real["train_acc"],
        "random_test_acc": rand["test_acc"],
        "random_epochs": rand["epochs"], "real_epochs": real["epochs"],
        "seeds": real["seeds"]}
    for condition in CONDITIONS:
      results[f"{reg}={strength:g}/{condition}"] = out[condition]
  return summary, results


def sweep_effects(summary) -> dict[str, list[tuple[float, float, float]]]:
  """Per regularizer: (strength, drop of random-label train acc, drop of
  real-label best test acc) against strength 0."""
  effects = {}
  for point in summary.values():
    effects.setdefault(point["regularizer"], []).append(point)
  out = {}
  for reg, points in effects.items():
    ref = next(p for p in points if p["strength"] == 0)
    out[reg] = [(p["strength"], ref["train_acc"] - p["train_acc"],
                 ref["best_test_acc"] - p["best_test_acc"])
                for p in points if p["strength"] != 0]
  return out


def sweep_claims(summary) -> list[reporting.Claim]:
  effects = sweep_effects(summary)
  out = []
  for reg, points in effects.items():
    measured = "; ".join(
        f"{reg}={s:g}: random-label train acc {-m * 100:+.1f} points, real "
        f"best test acc {-g * 100:+.1f} points" for s, m, g in points)
    out.append(reporting.Claim(
        f"{reg} hinders memorization more than learning: at some strength it "
        f"lowers random-label training accuracy by >= "
        f"{MEMORIZATION_DROP * 100:g} points and by more than it lowers "
        "real-label best validation accuracy",
        any(m >= MEMORIZATION_DROP and m > g for _, m, g in points), measured))
  if "dropout" in effects and len(effects) > 1:
    # Arpit et al.: dropout hinders memorization best *without hurting
    # generalization*, so compare only strengths that keep the real-label best
    # validation accuracy at least at the unregularized level.
    harmless = {reg: [(s, m) for s, m, g in pts if g <= 0]
                for reg, pts in effects.items()}
    best = {reg: max(pts, key=lambda p: p[1]) if pts else None
            for reg, pts in harmless.items()}
    margin = {reg: max(m - g for _, m, g in pts)
              for reg, pts in effects.items()}
    out.append(reporting.Claim(
        "dropout hinders memorization best without hurting generalization: "
        "among strengths that do not lower real-label best validation "
        "accuracy, dropout lowers random-label training accuracy the most",
        best["dropout"] is not None and
        max(best, key=lambda r: best[r][1] if best[r] else -1.0) == "dropout",
        "; ".join(f"{reg}: " + (f"-{b[1] * 100:.1f} points at {b[0]:g}"
                                if b else "every strength lowers it")
                  for reg, b in best.items()) +
        " (over all strengths, the largest random-label drop minus "
        "real-label drop: " + ", ".join(f"{reg} {v * 100:+.1f} points"
                                        for reg, v in margin.items()) + ")"))
  return out


def plot_sweep(path, summary) -> str:
  by_reg = {}
  for point in summary.values():
    by_reg.setdefault(point["regularizer"], []).append(point)
  fig10 = {"title": "Arpit et al. Fig. 10", "ylabel":
           "real labels: best validation accuracy",
           "xlabel": "random labels: final training accuracy",
           "lines": {reg: ([p["train_acc"] for p in pts],
                           [p["best_test_acc"] for p in pts])
                     for reg, pts in by_reg.items()}}
  panels = [fig10] + [
      {"title": reg, "xlabel": f"{reg} strength", "ylabel": "accuracy",
       "lines": {"random labels: train": ([p["strength"] for p in pts],
                                          [p["train_acc"] for p in pts]),
                 "real labels: best test": ([p["strength"] for p in pts],
                                            [p["best_test_acc"] for p in pts])}}
      for reg, pts in by_reg.items()]
  return reporting.plot_panels(path, panels)


# ------------------------------------------------------------------- main ---


def main(argv):
  del argv
  if not FLAGS["workdir"].present:  # each mode has its own default workdir
    FLAGS.workdir = f"runs/regularization_{FLAGS.mode}"
  data_config, base = cli.configs(FLAGS)
  # Refuse bad settings before claiming the workdir or training anything.
  if FLAGS.mode == "table1":
    for model in FLAGS.models:
      dataclasses.replace(base, model=model)
    regularizers.validate("weight_decay", FLAGS.weight_decay)
    regularizers.Regularization(shift=FLAGS.crop_shift or 0,
                                color_jitter=FLAGS.color_jitter)
  else:
    sweep_points(base)
  if FLAGS.lass_iterations < 1:
    raise ValueError(f"--lass_iterations must be >= 1, got "
                     f"{FLAGS.lass_iterations}.")
  cli.prepare(FLAGS)
  dataset = data_lib.load(data_config)
  if FLAGS.adversarial:
    lass = complexity.LassConfig.for_inputs(
        dataset.x_train, max_iterations=FLAGS.lass_iterations,
        chunk_size=base.batch_size)
    base = dataclasses.replace(base, regularization=dataclasses.replace(
        base.regularization, adversarial=lass))
  if FLAGS.mode == "table1":
    summary, results = table1(data_config, base, dataset)
    columns = ["model", "labels", "crop", "weight_decay", "train_acc",
               "test_acc", "best_test_acc", "seeds_fit", "seeds", "epochs"]
    if dataset.name == "cifar10":
      columns += ["paper_train_acc", "paper_test_acc"]
    verdicts = table1_claims(summary)
    figure = plot_table1(os.path.join(FLAGS.workdir, "table1.png"), results)
  else:
    summary, results = sweep(data_config, base, dataset)
    columns = ["regularizer", "strength", "train_acc", "train_acc_min",
               "random_epochs", "real_train_acc", "test_acc", "best_test_acc",
               "seeds"]
    verdicts = sweep_claims(summary)
    figure = plot_sweep(os.path.join(FLAGS.workdir, "sweep.png"), summary)
  print(f"{dataset.name}, {base.num_seeds} seeds per row, at most "
        f"{base.max_epochs} epochs"
        + (", LASS adversarial training" if FLAGS.adversarial else "")
        + "; accuracies are means over seeds"
        + (" (sweep: train_acc on random labels, test accuracies on real "
           "labels)" if FLAGS.mode == "sweep" else ""))
  print(reporting.format_table(list(summary.values()), columns))
  print(reporting.format_claims(verdicts))
  path = cli.write_results(FLAGS, f"regularization_{FLAGS.mode}",
                           studies.per_seed_runs(results, base.seed), summary,
                           verdicts)
  print(f"Wrote {path} and {figure}")


if __name__ == "__main__":
  cli.run_main(main)
