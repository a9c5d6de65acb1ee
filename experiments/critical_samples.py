r"""Critical sample ratio during training (Arpit et al. 2017, Sec. 4, Figs. 7-9).

Claim tested: a network that memorizes noise computes a more complex function
than one trained on real data, as measured by the critical sample ratio (CSR):
the fraction of examples with a differently classified point within an l-inf
box of radius r, found by Langevin adversarial sample search (LASS). The
validation CSR is higher for noise (randX: Gaussian training inputs; randY:
random training labels) than for real data, rises during training and then
plateaus; with partial label noise the validation accuracy peaks before the CSR
jumps (memorization starts after the real patterns are learned).

Command (embedded MNIST-5k, a stratified 1,000-example training subset and 500
validation examples; MLP 2x128; conditions real, randX, randY_0.2, randY_0.6
and randY with 2 seeds each, all 10 lanes trained as ONE vmapped run for 40
epochs; CSR of 200 validation and 200 training examples every 5 epochs):

  python experiments/critical_samples.py

LASS uses the paper's alpha = 0.25, beta = 0.2, r = 0.3 and 100 iterations,
in units of one intensity level of 0-255 images mapped onto the range of our
per-image standardized inputs (see ``memjax.complexity``); --lass_radius etc.
change them in those units.

Expected (measured with the default command): final validation CSR about 5%
for real data, 15-30% for partial randY and 35-40% for randX and randY, with
training accuracy near 100% for every condition; with partial randY the
validation accuracy peaks (epoch ~10) well before the CSR jump (epoch 20-35).
Unlike the paper's curves, the CSR at initialization is already ~25% (an
untrained net's near-uniform outputs flip class under tiny perturbations); for
real data it falls during training. 84 s on an idle 2-core CPU
(measured 2026-11-26). The paper used the
full datasets and a larger MLP / CNN; add --train_size=4000 --model=mlp2x512
(slower) to get closer.

Outputs in --workdir: results.json (summary keyed by condition with ``csr``,
``csr_train``, accuracies and the CSR curve), critical_samples.png (validation
CSR, training CSR and accuracies vs epoch). Each run recomputes from scratch.
"""

import dataclasses

from absl import flags
import jax
import numpy as np

from memjax import cli
from memjax import complexity
from memjax import data as data_lib
from memjax import reporting
from memjax import studies
from memjax import training

CONDITIONS = ("real", "randX", "randY_0.2", "randY_0.6", "randY")

cli.define_data_flags(standardize=False)
cli.define_train_flags(model="mlp2x128", seeds=2, max_epochs=40,
                       shard_seeds=False)
cli.define_run_flags("runs/critical_samples")
flags.FLAGS.set_default("train_size", 1000)
flags.FLAGS.set_default("test_size", 500)
flags.DEFINE_list("conditions", list(CONDITIONS),
                  "real, randX, randY or randX_<p> / randY_<p> (partial noise).")
flags.DEFINE_integer("randomization_seed", 0, "Seeds the noise.")
flags.DEFINE_integer("csr_every", 5, "Measure the CSR every this many epochs.")
flags.DEFINE_integer("csr_examples", 200,
                     "Validation and training examples whose CSR is measured.")
flags.DEFINE_float("lass_radius", complexity.PAPER_RADIUS,
                   "Box radius r in 0-255 intensity levels.")
flags.DEFINE_float("lass_alpha", complexity.PAPER_ALPHA,
                   "Sign-gradient step in 0-255 intensity levels.")
flags.DEFINE_float("lass_beta", complexity.PAPER_BETA,
                   "Langevin noise scale in 0-255 intensity levels.")
flags.DEFINE_integer("lass_iterations", complexity.PAPER_MAX_ITERATIONS,
                     "LASS steps per example before giving up.")
FLAGS = flags.FLAGS

SMOKE = dict(max_epochs=2, num_seeds=1)
SMOKE_CSR = dict(csr_every=1, csr_examples=16, lass_iterations=5)


def train_with_csr(config, data, lass_config, csr_every, csr_examples,
                   lass_seed, progress):
  """Trains every lane as one vmapped run, measuring CSR every few epochs.

  Returns per-epoch accuracies (epochs, lanes) and, at the measured epochs
  (0 = initialization), validation and training CSR (measures, lanes).
  """
  lanes = config.num_seeds
  trainer = training.cached_trainer(config, data.input_shape,
                                    data.num_classes)
  keys = training.seed_keys(config)
  state = trainer.init(keys)
  train_index = training.default_train_index(data, lanes)
  axes = dict(per_seed_inputs=True, per_seed_labels=True)
  # The same examples for every lane: evenly spaced over the (class-sorted)
  # split, so each class is represented.
  val_ids = np.linspace(0, data.x_test.shape[1] - 1,
                        min(csr_examples, data.x_test.shape[1])).astype(int)
  train_ids = np.linspace(0, data.num_train - 1,
                          min(csr_examples, data.num_train)).astype(int)
  val_x, train_x = data.x_test[:, val_ids], data.x_train[:, train_ids]

  def measure(epoch):
    lass_keys = jax.random.split(
        jax.random.fold_in(jax.random.key(lass_seed), epoch), lanes)
    return [complexity.seed_csr(trainer, state, x, lass_config, lass_keys,
                                per_seed_inputs=True) for x in (val_x, train_x)]

  curves = {k: [] for k in ("train_acc", "val_acc")}
  csr = {"epoch": [0], "val": [], "train": []}
  val_csr, train_csr = measure(0)
  csr["val"].append(val_csr)
  csr["train"].append(train_csr)
  for epoch in range(config.max_epochs):
    state, losses = trainer.train_epoch(state, keys, epoch, data.x_train,
                                        data.y_train, train_index, **axes)
    training.check_finite(losses, config,
                          first_step=epoch * losses.shape[1])
    _, train_correct = trainer.evaluate(state, data.x_train, data.y_train,
                                        **axes)
    _, val_correct = trainer.evaluate(state, data.x_test, data.y_test, **axes)
    curves["train_acc"].append(np.asarray(train_correct).mean(1))
    curves["val_acc"].append(np.asarray(val_correct).mean(1))
    done = epoch + 1
    if done % csr_every == 0 or done == config.max_epochs:
      val_csr, train_csr = measure(done)
      csr["epoch"].append(done)
      csr["val"].append(val_csr)
      csr["train"].append(train_csr)
    if progress:
      print(f"epoch {done}: train acc {np.round(curves['train_acc'][-1], 3)}, "
            f"val CSR {np.round(csr['val'][-1], 3)}", flush=True)
  return ({k: np.stack(v) for k, v in curves.items()},
          {"epoch": np.array(csr["epoch"]), "val": np.stack(csr["val"]),
           "train": np.stack(csr["train"])})


def summarize(names, seeds, curves, csr):
  """Per condition: final and best numbers (means over its seeds) and curves."""
  summary = {}
  for c, name in enumerate(names):
    lanes = slice(c * seeds, (c + 1) * seeds)
    val_acc = curves["val_acc"][:, lanes].mean(1)
    val_csr = csr["val"][:, lanes].mean(1)
    rise = np.diff(val_csr)
    summary[name] = {
        "csr": float(val_csr[-1]),
        "csr_train": float(csr["train"][-1, lanes].mean()),
        "csr_initial": float(val_csr[0]),
        "csr_max": float(val_csr.max()),
        "train_acc": float(curves["train_acc"][-1, lanes].mean()),
        "val_acc": float(val_acc[-1]),
        "best_val_acc": float(val_acc.max()),
        "best_val_epoch": int(val_acc.argmax()) + 1,
        "csr_jump_epoch": int(csr["epoch"][1 + int(rise.argmax())]),
        "csr_curve": val_csr,
        "csr_train_curve": csr["train"][:, lanes].mean(1),
    }
  return summary


def claims(summary) -> list[reporting.Claim]:
  out = []
  real = summary.get("real")
  noise = [n for n in summary if n.startswith("rand")]
  if real and noise:
    out.append(reporting.Claim(
        "validation CSR at the end of training is higher for every noise "
        "condition than for real data",
        all(summary[n]["csr"] > real["csr"] for n in noise),
        ", ".join(f"{n} {s['csr']:.3f}" for n, s in summary.items())))
  out.append(reporting.Claim(
      "validation CSR rises during training (final > at initialization) for "
      "every condition",
      all(s["csr"] > s["csr_initial"] for s in summary.values()),
      ", ".join(f"{n} {s['csr_initial']:.3f} -> {s['csr']:.3f}"
                for n, s in summary.items())))
  partial = [n for n in summary if n.startswith("randY_")]
  if partial:
    out.append(reporting.Claim(
        "with partial label noise, validation accuracy peaks no later than the "
        "largest jump in validation CSR",
        all(summary[n]["best_val_epoch"] <= summary[n]["csr_jump_epoch"]
            for n in partial),
        ", ".join(f"{n}: val acc peak epoch {summary[n]['best_val_epoch']}, "
                  f"CSR jump by epoch {summary[n]['csr_jump_epoch']}"
                  for n in partial)))
  return out


def plot(path, names, seeds, curves, csr, title):
  epochs = np.arange(1, curves["val_acc"].shape[0] + 1)
  panels = []
  for key, label in (("val", "validation CSR"), ("train", "training CSR")):
    panels.append({"title": label, "xlabel": "epoch", "ylabel": "CSR",
                   "lines": {n: (csr["epoch"],
                                 csr[key][:, c * seeds:(c + 1) * seeds].mean(1))
                             for c, n in enumerate(names)}})
  for key, label in (("val_acc", "validation accuracy"),
                     ("train_acc", "training accuracy")):
    panels.append({"title": f"{label} ({title})", "xlabel": "epoch",
                   "ylabel": "accuracy",
                   "lines": {n: (epochs,
                                 curves[key][:, c * seeds:(c + 1) * seeds].mean(1))
                             for c, n in enumerate(names)}})
  return reporting.plot_panels(path, panels)


def main(argv):
  del argv
  settings = {k: getattr(FLAGS, k) for k in ("csr_every", "csr_examples",
                                             "lass_iterations")}
  if FLAGS.smoke:
    settings.update(SMOKE_CSR)
  for name, value in settings.items():
    if value < 1:
      raise ValueError(f"--{name} must be >= 1, got {value}.")
  names = list(dict.fromkeys(FLAGS.conditions))
  data_config, per_condition = cli.configs(FLAGS, smoke_train=SMOKE,
                                           stop_when_fit=False)
  seeds = per_condition.num_seeds
  # Every (condition, seed) is one lane of a single vmapped run.
  config = dataclasses.replace(per_condition, num_seeds=seeds * len(names))
  studies.StudyConfig(data_config, config, conditions=tuple(names))
  cli.prepare(FLAGS)
  dataset = data_lib.load(data_config)
  data, _ = studies.condition_lanes(dataset, names, seeds,
                                    randomization_seed=FLAGS.randomization_seed)
  lass_config = complexity.LassConfig.for_inputs(
      dataset.x_train, radius_levels=FLAGS.lass_radius,
      alpha_levels=FLAGS.lass_alpha, beta_levels=FLAGS.lass_beta,
      max_iterations=settings["lass_iterations"])
  curves, csr = train_with_csr(config, data, lass_config, settings["csr_every"],
                               settings["csr_examples"], FLAGS.seed,
                               FLAGS.progress)
  summary = summarize(names, seeds, curves, csr)
  rows = [{"condition": n, **s} for n, s in summary.items()]
  print(reporting.format_table(rows, ["condition", "csr", "csr_train",
                                      "csr_initial", "train_acc", "val_acc",
                                      "best_val_acc", "best_val_epoch",
                                      "csr_jump_epoch"]))
  print(f"LASS box radius {lass_config.radius:.4g} (r = {FLAGS.lass_radius} "
        f"levels of {(lass_config.input_max - lass_config.input_min):.3g}/255)")
  verdicts = claims(summary)
  print(reporting.format_claims(verdicts))
  figure = plot(f"{FLAGS.workdir}/critical_samples.png", names, seeds, curves,
                csr, f"{data_config.name}, {config.model}")
  runs = {n: [{"seed": config.seed + c * seeds + i,
               "val_csr": csr["val"][:, c * seeds + i],
               "train_csr": csr["train"][:, c * seeds + i],
               "val_acc": curves["val_acc"][:, c * seeds + i],
               "train_acc": curves["train_acc"][:, c * seeds + i]}
              for i in range(seeds)] for c, n in enumerate(names)}
  summary_json = {n: {**s, "csr_epochs": csr["epoch"]}
                  for n, s in summary.items()}
  path = cli.write_results(FLAGS, "critical_samples", runs, summary_json,
                           verdicts)
  print(f"Wrote {path} and {figure}")


if __name__ == "__main__":
  cli.run_main(main)
