r"""Sharpness of the minimum, real vs noise
(Krueger et al. 2017 workshop claim).

Claim tested: networks trained on real data converge to flatter minima than
networks that memorize noise: the largest eigenvalue of the Hessian of the
training loss is smaller for real data than for randX (Gaussian inputs) and
randY (random labels). Keskar et al.'s epsilon-sharpness (the largest relative
rise of the loss in a small box around the weights) is a second measure.

Command (embedded MNIST-5k as pixels / 255, Arpit et al.'s MNIST inputs: a
stratified 1,000-example training subset; MLP 1x512; SGD with momentum 0.9 at
the constant learning rate 0.01 of Arpit et al.'s MNIST MLPs; 3 seeds per
condition trained at once; each seed trains until its clean training loss
first falls to the common target 0.01, at most 1,500 epochs; Hessian of the
mean training loss over all 1,000 training examples in eval mode, top
eigenvalues by 20 Lanczos steps on forward-over-reverse Hessian-vector
products):

  python experiments/sharpness.py

Measurement points. Minima are compared at a MATCHED training loss: each
seed's state when its clean training loss first reaches --target_loss (the
same for every condition). At the first 100% training accuracy, the previous
measurement point, the conditions sit at very different losses (noise fits
later, at a higher loss), so a flatter real-data minimum there may only mean a
lower loss; those first-fit numbers are reported as exploratory readings.

Noise: randX replaces every input (training and test) by Gaussian noise with
the training pixels' mean and standard deviation; randY replaces every
training label by a uniform class.

Criteria (fixed before the run): for each noise condition and each measure, at
the matched loss, the noise condition's mean over seeds minus real's exceeds 2
standard errors (SE over seeds of each condition, added in quadrature), and
every seed of both conditions reached the target loss. A precondition claim
checks that every seed of every condition reached the target.

Result: the measured values, uncertainties and verdicts of the default command
are in the README's results table (generated from
runs/sharpness/results.json by `python experiments/report.py
--mode=readme`; `python experiments/report.py` writes the full report).
The randX claims are NOT REPRODUCED: at matched loss memorized Gaussian
inputs sit in a flatter minimum than real data, by both measures (randY is
sharper than real, as claimed). At the first 100% fit (exploratory) the
conditions sit at very different losses and both noise conditions look
sharper, so randX's sharper first-fit minimum goes with its higher loss.
Runtime: about 6 minutes on a 2-core CPU shared with other jobs (about 3
minutes of CPU time).

Setup differences from the paper: 1,000 training examples of MNIST-5k and an
MLP 1x512 (the workshop paper does not state its data size or network). With
all 4,000 examples (--train_size=4000) random labels need about 600 epochs to
reach the target loss and the run needs about three times the CPU time of
this default, far beyond the two minutes it aims at. The learning rate is
constant (--lr_decay=1): with the other experiments' decay of 0.95 per 50,000
examples the rate shrinks about 5x over the epochs random labels need and
their loss stalls above the target.

Outputs in --workdir: results.json (summary keyed by condition with
``sharpness`` = mean largest eigenvalue at matched loss, ``sharpness_se``,
per-seed values, the top-k spectrum, ``epsilon_sharpness``, and the same at
first fit with the suffix ``_first_fit``), sharpness.png (top-k eigenvalues
per condition at both points), per-condition checkpoints (with
metrics.jsonl, the per-epoch training curves), masks and measured sharpness.
Re-running the same command resumes.
"""

import dataclasses
import math
import os
import sys

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from memjax import checkpointing
from memjax import cli
from memjax import data as data_lib
from memjax import engine
from memjax import hooks
from memjax import keys
from memjax import reporting
from memjax import sharpness
from memjax import stats
from memjax import studies
from memjax import training

CONDITIONS = ("real", "randX", "randY")
POINTS = ("matched", "first_fit")  # where each seed's minimum is measured
MEASURES = (("sharpness", "largest Hessian eigenvalue"),
            ("epsilon_sharpness", "epsilon-sharpness"))

SMOKE_SHARPNESS = dict(num_iterations=4, top_k=2, ascent_steps=2)


def define_flags() -> None:
  """This experiment's flags, defined when it runs (not on import)."""
  cli.define_data_flags(standardize=False)
  cli.define_train_flags(model="mlp1x512", seeds=3, max_epochs=1500,
                         shard_seeds=False)
  cli.define_run_flags("runs/sharpness")
  cli.define_randomization_flags()
  flags.FLAGS.set_default("train_size", 1000)
  flags.FLAGS.set_default("test_size", 500)
  flags.FLAGS.set_default("lr_decay", 1.0)
  flags.DEFINE_list("conditions", list(CONDITIONS),
                    "real, randX, randY or randX_<p> / randY_<p>.")
  cli.define_float("target_loss", 0.01,
                   "Each seed is measured when its clean training loss first "
                   "falls to this value (the same for every condition).",
                   low=0, low_open=True)
  cli.define_int("lanczos_iterations", 20,
                 "Krylov dimension of Lanczos (at most the parameter count).",
                 low=1)
  cli.define_int("top_k", 3,
                 "Hessian eigenvalues reported per seed (at most "
                 "--lanczos_iterations).", low=1)
  cli.define_float("epsilon", 1e-3, "Keskar's box half-width (relative).",
                   low=0, low_open=True)
  cli.define_int("ascent_steps", 10, "Sign-ascent steps of epsilon-sharpness.",
                 low=1)


def sharpness_config(values) -> sharpness.SharpnessConfig:
  """The SharpnessConfig of the flags (--smoke shrinks it); every cross-flag
  condition is reported with the flags' names."""
  settings = {"num_iterations": values.lanczos_iterations,
              "top_k": values.top_k, "epsilon": values.epsilon,
              "ascent_steps": values.ascent_steps}
  if values.smoke:
    settings.update(SMOKE_SHARPNESS)
  if settings["top_k"] > settings["num_iterations"]:
    raise ValueError(f"--top_k={values.top_k} must be at most "
                     f"--lanczos_iterations={values.lanczos_iterations}.")
  return sharpness.SharpnessConfig(**settings)


def check_lanczos(config: sharpness.SharpnessConfig, train, dataset) -> None:
  """Refuses, before any training, a Lanczos basis longer than the parameter
  vector or larger than the device's memory."""
  params = training.num_params(train, dataset.input_shape, dataset.num_classes)
  if config.num_iterations > params:
    raise ValueError(f"--lanczos_iterations={config.num_iterations} exceeds "
                     f"the {params:,} parameters of {train.model}; use at "
                     f"most {params:,}.")
  need = sharpness.lanczos_bytes(config, params) * train.num_seeds
  have = training.memory_limit_bytes()
  if need > 0.8 * have:
    raise ValueError(
        f"--lanczos_iterations={config.num_iterations} needs about "
        f"{need / 2**30:,.1f} GiB for the Lanczos basis of {train.num_seeds} "
        f"seeds x {params:,} parameters; this device has {have / 2**30:,.1f} "
        "GiB. Use fewer --lanczos_iterations or --seeds.")


def _select(mask, new, old):
  """Per seed lane: ``new`` where ``mask``, else ``old`` (seed-stacked
  trees)."""
  def pick(n, o):
    return jnp.where(jnp.reshape(mask, (-1,) + (1,) * (n.ndim - 1)), n, o)
  return jax.tree.map(pick, new, old)


class TargetPoints(hooks.Hook):
  """An ``engine.fit`` hook that keeps each seed's state at two points: its
  first 100% clean training accuracy ("first_fit") and its first clean
  training loss <= ``target_loss`` ("matched"), with the epochs (-1: not yet);
  both are checkpointed with the run. Asks the run to stop once every seed
  has reached both."""

  def __init__(self, state_shapes, target_loss: float):
    """``state_shapes``: the S-seed TrainState's shapes (``jax.eval_shape``)."""
    self.target_loss = target_loss
    self.fingerprint = None  # the run's, once started
    seeds = jax.tree.leaves(state_shapes)[0].shape[0]
    zeros = lambda: jax.tree.map(lambda a: np.zeros(a.shape, a.dtype),
                                 state_shapes)
    self.carry = {"states": {p: zeros() for p in POINTS},
                  "epochs": {p: np.full((seeds,), -1, np.int32)
                             for p in POINTS}}

  def start(self, run: hooks.RunStart) -> None:
    self.fingerprint = run.fingerprint

  def end_epoch(self, event: hooks.EpochEnd) -> None:
    reached = {"first_fit": event.row["train_acc"] >= 1.0,
               "matched": event.row["train_loss"] <= self.target_loss}
    for point, now in reached.items():
      epochs = self.carry["epochs"][point]
      new = now & (epochs < 0)
      if new.any():
        epochs[new] = event.epoch
        # A host copy: the next epoch consumes the device state.
        self.carry["states"][point] = jax.device_get(
            _select(new, event.state, self.carry["states"][point]))

  def done(self) -> bool:
    return all((e >= 0).all() for e in self.carry["epochs"].values())


def train_to_target(config: training.TrainConfig, data: training.TrainData,
                    target_loss: float, checkpoint_dir: str,
                    checkpoint_seconds: float, progress: str | None) -> dict:
  """Trains every seed (``engine.fit``) until it has both fit its training
  set (first 100% clean training accuracy) and reached ``target_loss`` (first
  clean training loss <= target), or until ``config.max_epochs``
  (``config.stop_when_fit`` must be False: ``TargetPoints`` stops the run).

  Keeps each seed's state at both points: ``states["first_fit"]`` and
  ``states["matched"]`` (a seed that never got there keeps its final state,
  and its epoch is -1). Checkpoints under ``checkpoint_dir`` at most every
  ``checkpoint_seconds`` and at the end; a re-run resumes (training replays
  exactly). The test set is not evaluated.
  """
  if config.stop_when_fit:
    raise ValueError("train_to_target stops at the target points, not at the "
                     "first fit: use stop_when_fit=False.")
  trainer = training.cached_trainer(config, data.input_shape,
                                    data.num_classes)
  points = TargetPoints(
      jax.eval_shape(trainer.init, keys.seed_keys(config.seed,
                                                  config.num_seeds)),
      target_loss)
  fit = engine.fit(
      config, dataclasses.replace(data, x_test=None, y_test=None),
      hooks=[points], checkpoint_dir=checkpoint_dir,
      checkpoint_seconds=checkpoint_seconds, progress=progress,
      fingerprint_parts=(target_loss,))
  epochs = points.carry["epochs"]
  states = {p: _select(epochs[p] >= 0, points.carry["states"][p], fit.state)
            for p in POINTS}
  return {"states": states, "epochs": epochs, "epoch": fit.epochs,
          "history": {k: fit.history[k] for k in ("train_loss", "train_acc")},
          "stamp": points.fingerprint}


def measure(trainer, trained: dict, data: training.TrainData,
            config: sharpness.SharpnessConfig, key, path: str) -> dict:
  """Per point: eigenvalues (S, k), epsilon_sharpness (S,) and loss (S,),
  saved to ``path`` (reused by a re-run of the same configuration)."""
  stamp = checkpointing.fingerprint(trained["stamp"], config)
  if os.path.exists(path):
    saved = checkpointing.load_npz(path, stamp)
    return {p: {k.split("/")[1]: v for k, v in saved.items()
                if k.startswith(p + "/")} for p in POINTS}
  search_keys = keys.split(key, len(trained["epochs"]["matched"]))
  out = {p: sharpness.seed_sharpness(
      trainer, trained["states"][p], data.x_train, data.y_train, config,
      search_keys,
      per_seed_inputs=data.per_seed_inputs,
      per_seed_labels=data.per_seed_labels) for p in POINTS}
  checkpointing.save_npz(path, stamp, **{f"{p}/{k}": v for p, m in out.items()
                                         for k, v in m.items()})
  return out


def summarize(trained: dict, measured: dict, target_loss: float) -> dict:
  """Per condition, at each point: means over seeds with SEs, per-seed
  values and the epochs at which the seeds got there."""
  summary = {}
  for name, m in measured.items():
    t = trained[name]
    s = {"seeds": int(t["epochs"]["matched"].shape[0]),
         "target_loss": target_loss, "epochs": t["epoch"]}
    for point in POINTS:
      suffix = "" if point == "matched" else "_first_fit"
      values = {"sharpness": m[point]["eigenvalues"][:, 0],
                "epsilon_sharpness": m[point]["epsilon_sharpness"],
                "train_loss": m[point]["loss"]}
      for key, per_seed in values.items():
        mean, se = stats.mean_se(per_seed)
        s[key + suffix] = mean
        s[f"{key}{suffix}_se"] = se
        s[f"{key}{suffix}_per_seed"] = per_seed
      s["top_eigenvalues" + suffix] = m[point]["eigenvalues"].mean(0)
      s[f"{point}_epoch_per_seed"] = t["epochs"][point]
      s[f"seeds_{point}"] = int((t["epochs"][point] >= 0).sum())
    summary[name] = s
  return summary


def claims(summary) -> list[reporting.Claim]:
  """The criteria of the module docstring, on the summary of ``summarize``;
  the first-fit comparisons are exploratory."""
  out = []
  sigmas = stats.SIGMAS
  reached = {n: s["seeds_matched"] / s["seeds"] for n, s in summary.items()}
  target = next(iter(summary.values()))["target_loss"]
  out.append(reporting.Claim(
      f"every seed of every condition reaches the common target training "
      f"loss {target:g} (the minima are compared at matched loss)",
      all(r == 1.0 for r in reached.values()),
      ", ".join(f"{n} {s['seeds_matched']}/{s['seeds']} seeds (epochs "
                f"{[int(e) for e in s['matched_epoch_per_seed']]}, loss "
                f"{s['train_loss']:.4g})" for n, s in summary.items()),
      value=min(reached.values()), uncertainty=0.0, threshold=1.0))
  real = summary.get("real")
  if not real:
    return out
  for name in (n for n in summary if n != "real"):
    noise = summary[name]
    for point in POINTS:
      suffix = "" if point == "matched" else "_first_fit"
      # Every seed of both conditions got to the point (else it was measured
      # at its final state, not at the point).
      complete = all(s[f"seeds_{point}"] == s["seeds"] for s in (real, noise))
      where = (f"at matched training loss {target:g}" if point == "matched"
               else "at each seed's first 100% training accuracy")
      for key, label in MEASURES:
        diff, se = stats.difference(noise[f"{key}{suffix}_per_seed"],
                                    real[f"{key}{suffix}_per_seed"])
        out.append(reporting.Claim(
            f"{where}, real data sits in a flatter minimum than {name} "
            f"({label}: {name} minus real > {sigmas:g} SE)",
            complete and stats.exceeds(diff, se),
            f"{name} {noise[key + suffix]:.4g} +- "
            f"{noise[f'{key}{suffix}_se']:.2g} vs real "
            f"{real[key + suffix]:.4g} +- {real[f'{key}{suffix}_se']:.2g} "
            f"(training loss {noise['train_loss' + suffix]:.3g} vs "
            f"{real['train_loss' + suffix]:.3g})"
            + ("" if complete else "; not every seed got there"),
            value=diff, uncertainty=se, threshold=sigmas * se,
            exploratory=point != "matched"))
  return out


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that determines a run's results."""

  study: studies.StudyConfig  # data, training, conditions, randomization
  measure: sharpness.SharpnessConfig
  target_loss: float = 0.01  # each seed is measured when it first gets here

  def __post_init__(self):
    if not (math.isfinite(self.target_loss) and self.target_loss > 0):
      raise ValueError(f"--target_loss={self.target_loss} must be a finite "
                       "number > 0.")


def config_from_flags(values) -> Config:
  """The run's frozen config (--smoke shrinks it); raises ValueError on bad
  input."""
  names = list(dict.fromkeys(values.conditions))
  if not names:
    raise ValueError("--conditions must name at least one condition (real, "
                     "randX, randY, randX_<p>, randY_<p>); got an empty list.")
  study = cli.study_config(values, names)
  # TargetPoints, not the first fit, ends training.
  study = dataclasses.replace(study, train=dataclasses.replace(
      study.train, stop_when_fit=False))
  return Config(study=study,
                measure=sharpness_config(values),
                target_loss=values.target_loss)


def run(config: Config, workdir: str,
        control: cli.RunControl = cli.RunControl()) -> dict:
  """Trains every condition to the target loss, measures the sharpness of
  its minima, prints the claims and writes results.json and the figure into
  ``workdir``; returns results.json's contents."""
  study, measure_config, target_loss = (config.study, config.measure,
                                        config.target_loss)
  train = study.train
  dataset = data_lib.load(study.data)
  check_lanczos(measure_config, train, dataset)
  cli.claim_workdir(workdir, config, control, dataset, [train],
                    per_seed_data=study.per_seed_randomization)
  print(reporting.format_setup(
      study.data, dataset,
      model=f"{train.model}, {train.num_seeds} seeds per "
            f"condition, at most {train.max_epochs} epochs, SGD "
            f"learning rate {train.lr:g} x {train.lr_decay:g} "
            "per 50,000 examples seen",
      noise="randX: every input (training and test) replaced by Gaussian "
            "noise with the training pixels' mean and std; randY: every "
            "training label uniformly random",
      measured_at=f"each seed when its clean training loss first reaches "
                  f"{target_loss:g} (matched loss), and at its first 100% "
                  f"training accuracy (exploratory); Hessian of the mean "
                  f"training loss over all {len(dataset.y_train)} training "
                  f"examples, {measure_config.num_iterations} Lanczos steps",
      differs_from_paper="a subset of MNIST-5k and an MLP 1x512 (the "
                         "workshop paper does not state its data size or "
                         "network)"))
  trainer = training.cached_trainer(train, dataset.input_shape,
                                    dataset.num_classes)
  trained, measured = {}, {}
  for name in study.conditions:
    data, train_mask, test_mask = studies.randomize(dataset, study, name)
    folder = os.path.join(workdir, name)
    checkpointing.register(folder)
    os.makedirs(folder, exist_ok=True)
    checkpointing.save_npz(os.path.join(folder, "masks.npz"),
                           train_mask=train_mask, test_mask=test_mask)
    trained[name] = train_to_target(
        train, data, target_loss, os.path.join(folder, "checkpoints"),
        control.checkpoint_seconds, control.bar(name))
    measured[name] = measure(
        trainer, trained[name], data, measure_config,
        keys.condition_key(train.seed, name),
        os.path.join(folder, "sharpness.npz"))
  summary = summarize(trained, measured, target_loss)
  rows = [{"condition": n, **s} for n, s in summary.items()]
  print(reporting.format_table(rows, [
      "condition", "sharpness", "sharpness_se", "epsilon_sharpness",
      "train_loss", "seeds_matched", "sharpness_first_fit",
      "epsilon_sharpness_first_fit", "train_loss_first_fit", "seeds_first_fit",
      "epochs"]))
  verdicts = claims(summary)
  print(reporting.format_claims(verdicts))
  k = measure_config.top_k
  figure = reporting.plot_panels(f"{workdir}/sharpness.png", [{
      "title": f"Hessian spectrum, {where} ({study.data.name}, "
               f"{train.model})",
      "xlabel": "eigenvalue rank", "ylabel": "eigenvalue",
      "lines": {n: (np.arange(1, k + 1), m[point]["eigenvalues"].mean(0),
                    m[point]["eigenvalues"].std(0))
                for n, m in measured.items()}}
      for point, where in (("matched", f"loss {target_loss:g}"),
                           ("first_fit", "first fit"))])
  runs = {name: [{"seed": train.seed + i,
                  "curves": {k: v[:, i] for k, v in t["history"].items()},
                  **{f"{p}_epoch": int(t["epochs"][p][i]) for p in POINTS},
                  **{f"{p}_eigenvalues": measured[name][p]["eigenvalues"][i]
                     for p in POINTS},
                  **{f"{p}_epsilon_sharpness":
                     measured[name][p]["epsilon_sharpness"][i] for p in POINTS}}
                 for i in range(train.num_seeds)]
          for name, t in trained.items()}
  saved = cli.save_results(workdir, "sharpness", config, runs, summary,
                           verdicts)
  print(f"Wrote {workdir}/results.json and {figure}")
  return saved


if __name__ == "__main__":
  cli.main(sys.modules[__name__])
