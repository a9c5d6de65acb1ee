r"""Critical sample ratio during training
(Arpit et al. 2017, Sec. 4, Figs. 7-9).

Claim tested: a network that memorizes noise computes a more complex function
than one trained on real data, as measured by the critical sample ratio (CSR):
the fraction of examples with a differently classified point within an l-inf
box of radius r, found by Langevin adversarial sample search (LASS). The
validation CSR is higher for noise (randX: Gaussian inputs; randY: random
training labels) than for real data, rises during training and then plateaus;
with partial label noise the validation accuracy peaks before the CSR jumps
(memorization starts after the real patterns are learned).

Command (embedded MNIST-5k as pixels / 255, Arpit et al.'s MNIST inputs; a
stratified 1,000-example training subset and 500 validation examples; MLP
2x128; conditions real, randX, randY_0.2, randY_0.6 and randY with 3 seeds
each, all 15 lanes trained as ONE vmapped run for 150 epochs, long enough for
random labels to be fit on these inputs; CSR of 200 validation and 200
training examples at initialization and every 10 epochs):

  python experiments/critical_samples.py

Noise: randX replaces every input, training and validation, by Gaussian noise
with the training pixels' mean and standard deviation; randY_<p> replaces each
training label with probability p by a uniform class (validation labels stay
clean). LASS uses the paper's alpha = 0.25, beta = 0.2, r = 0.3 intensity
levels and 100 iterations, in each input's own units: the box of image i has
radius r / 255 * scale_i, where scale_i is the factor by which preprocessing
multiplied its pixels / 255 (1 here, so r / 255 = 0.00118; 1 / std_i with
--standardize; noise inputs take the real images' mean scale). The search is
clipped to each input's valid range: [0, 1] for real images on /255 inputs
(with --standardize the range of the real standardized inputs), and the noise
inputs' own minimum..maximum for randX. --lass_radius etc. change r, alpha and
beta in intensity levels.

Criteria (fixed before the run). The CSR of a condition at a measurement is
the mean over its seeds; its standard error is the larger of the standard error
over seeds and the Jeffreys standard error of the pooled binomial proportion
(critical examples out of examples x seeds). A difference exceeds noise when it
is larger than 2 standard errors (the two SEs added in quadrature):
  * for each noise condition, final validation CSR minus real's > 2 SE;
  * for each condition, final validation CSR minus the CSR at initialization
    > 2 SE ("rises during training");
  * for each partial randY condition, a CSR jump exists (the largest rise
    between consecutive measurements that exceeds 2 SE of that rise) and the
    validation accuracy (mean over seeds) peaks no later than the epoch that
    ends the jump.

Result: the measured values, uncertainties and verdicts of the default command
are in the README's results table (generated from
runs/critical_samples/results.json by `python experiments/report.py
--mode=readme`; `python experiments/report.py` writes the full report).
What does not reproduce on these data, and why:
* "rises during training" holds only for some conditions: the validation CSR
  rises from initialization for randY and randY_0.6, but is flat for randX
  and falls for real and randY_0.2.
* With partial label noise there is no CSR jump: after a fall in the first
  epochs the CSR climbs gradually while the noisy labels are memorized, and
  no rise between consecutive measurements exceeds 2 SE.
On these /255 inputs the box of r = 0.3 levels is small, so every CSR is low;
the training CSR is near 0 once the training set is fit. Runtime: about 7
minutes on a 2-core CPU shared with other jobs (about 4.5 minutes of CPU
time).

Setup differences from the paper: 1,000 training examples of MNIST-5k (paper:
full MNIST and CIFAR10) and an MLP 2x128 for 150 epochs (paper: larger
MLPs and a CNN). Add --train_size=4000 --model=mlp2x512 (slower) to get closer.

Outputs in --workdir: results.json (summary keyed by condition with ``csr``
and ``csr_se``, the initial and training CSR, accuracies and the CSR curves),
critical_samples.png (validation CSR with its standard error, training CSR and
accuracies vs epoch), csr/epoch_<e>.npz (which measured examples were critical,
per lane), training checkpoints (with checkpoints/metrics.jsonl, the per-epoch
accuracies and losses of every lane). Re-running the same command resumes:
training from its latest checkpoint, and every CSR measurement already saved
is reused.
"""

import dataclasses
import os
import re
import sys

from absl import flags
import numpy as np

from memjax import cli
from memjax import complexity
from memjax import data as data_lib
from memjax import engine
from memjax import keys
from memjax import randomization as rand_lib
from memjax import reporting
from memjax import stats
from memjax import training

CONDITIONS = ("real", "randX", "randY_0.2", "randY_0.6", "randY")
CONDITION_NAMES = "real, randX, randY, randX_<p> or randY_<p> (p in [0, 1])"

SMOKE = dict(max_epochs=2, num_seeds=1)
SMOKE_CSR = dict(csr_every=1, csr_examples=16, lass_iterations=5)
SPLITS = ("val", "train")


def define_flags() -> None:
  """This experiment's flags, defined when it runs (not on import)."""
  cli.define_data_flags(standardize=False)
  cli.define_train_flags(model="mlp2x128", seeds=3, max_epochs=150,
                         shard_seeds=False)
  cli.define_run_flags("runs/critical_samples")
  flags.FLAGS.set_default("train_size", 1000)
  flags.FLAGS.set_default("test_size", 500)
  flags.DEFINE_list("conditions", list(CONDITIONS),
                    f"Any of {CONDITION_NAMES}.")
  cli.define_int("randomization_seed", 0, "Seeds the noise.", low=0,
                 high=cli.MAX_SEED)
  cli.define_int("csr_every", 10, "Measure the CSR every this many epochs.",
                 low=1)
  cli.define_int("csr_examples", 200,
                 "Validation and training examples whose CSR is measured.",
                 low=1)
  cli.define_float("lass_radius", complexity.PAPER_RADIUS,
                   "Box radius r in intensity levels of 0-255 images.", low=0,
                   low_open=True)
  cli.define_float("lass_alpha", complexity.PAPER_ALPHA,
                   "Sign-gradient step in intensity levels of 0-255 images.",
                   low=0)
  cli.define_float("lass_beta", complexity.PAPER_BETA,
                   "Langevin noise scale in intensity levels of 0-255 images.",
                   low=0)
  cli.define_int("lass_iterations", complexity.PAPER_MAX_ITERATIONS,
                 "LASS steps per example before giving up.", low=1)


def condition_names(values) -> list[str]:
  """The distinct conditions of --conditions, or an error naming the flag."""
  names = list(dict.fromkeys(values))
  if not names:
    raise ValueError(f"--conditions must name at least one of "
                     f"{CONDITION_NAMES}; got an empty list.")
  for name in names:
    if not (name in ("real", "randX", "randY")
            or re.fullmatch(r"rand[XY]_[0-9.]+", name)):
      raise ValueError(f"--conditions: unknown condition {name!r}; valid: "
                       f"{CONDITION_NAMES}.")
    rand_lib.from_name(name)  # checks the fraction
  return names


def input_box(dataset: data_lib.Dataset, randomized: rand_lib.Randomized,
              replaces_inputs: bool, standardize: bool) -> dict:
  """Per split ("train", "test"): (scale, low, high) per example.

  A real image keeps its preprocessing scale (``Dataset.train_scale``) and the
  valid range of its preprocessing: [0, 1] for pixels / 255, the range of the
  real inputs when standardized. A noise input (``replaces_inputs`` and its
  mask set) takes the real training images' mean scale and the range of the
  condition's noise inputs, so the search is never pinned to a box edge that
  lies inside the noise's own range.
  """
  if standardize:
    real_range = (float(min(dataset.x_train.min(), dataset.x_test.min())),
                  float(max(dataset.x_train.max(), dataset.x_test.max())))
  else:
    real_range = (0.0, 1.0)
  noisy = randomized.dataset
  masks = {"train": randomized.train_mask, "test": randomized.test_mask}
  if not replaces_inputs:
    masks = {split: np.zeros_like(mask) for split, mask in masks.items()}
  noise = np.concatenate([noisy.x_train[masks["train"]].ravel(),
                          noisy.x_test[masks["test"]].ravel()])
  noise_range = (float(noise.min()), float(noise.max())) if noise.size else (
      real_range)
  scales = {"train": dataset.train_scale, "test": dataset.test_scale}
  noise_scale = float(np.mean(scales["train"]))
  box = {}
  for split, mask in masks.items():
    box[split] = (np.where(mask, noise_scale, scales[split]),
                  np.where(mask, noise_range[0], real_range[0]),
                  np.where(mask, noise_range[1], real_range[1]))
  return box


def condition_lanes(dataset: data_lib.Dataset, names, seeds: int,
                    randomization_seed: int, standardize: bool,
                    csr_examples: int):
  """Every (condition, seed) pair as one lane of a single vmapped run.

  Lane ``c * seeds + s`` trains condition ``names[c]``, randomized once per
  condition (``keys.condition_key``) and shared by its seeds. Returns the
  per-lane TrainData, the CSR probes {"val", "train"} and, per condition, the
  clip ranges of its measured examples.
  """
  per_condition = {"x_train": [], "y_train": [], "x_test": [], "y_test": []}
  boxes = []
  for name in names:
    randomization = rand_lib.from_name(name)
    randomized = rand_lib.apply(
        dataset, randomization,
        keys.condition_key(randomization_seed, name))
    for field, values in per_condition.items():
      values.append(getattr(randomized.dataset, field))
    boxes.append(input_box(dataset, randomized,
                           randomization.kind == "noisy_inputs", standardize))
  lanes = lambda arrays: np.repeat(np.stack(arrays), seeds, axis=0)
  data = training.TrainData(
      **{field: lanes(values) for field, values in per_condition.items()},
      num_classes=dataset.num_classes, per_seed_inputs=True,
      per_seed_labels=True)
  # The same examples for every lane, evenly spaced over the split (which is
  # in class order), so each class is represented.
  probes = {}
  for split, x, n in (("val", data.x_test, data.x_test.shape[1]),
                      ("train", data.x_train, data.num_train)):
    ids = np.linspace(0, n - 1, min(csr_examples, n)).astype(int)
    box = [lanes([b["test" if split == "val" else "train"][i][ids]
                  for b in boxes]) for i in range(3)]
    probes[split] = complexity.CsrProbe(ids, x[:, ids], *box)
  ranges = {name: (float(probes["val"].low[c * seeds].min()),
                   float(probes["val"].high[c * seeds].max()))
            for c, name in enumerate(names)}
  return data, probes, ranges


def measurement_epochs(max_epochs: int, csr_every: int) -> list[int]:
  """Initialization (0), every ``csr_every`` epochs, and the last epoch."""
  return [0] + [e for e in range(1, max_epochs + 1)
                if e % csr_every == 0 or e == max_epochs]


def train_with_csr(config, data, probes, lass_config, csr_every: int,
                   lass_seed: int, workdir: str, checkpoint_seconds: float,
                   progress: bool):
  """Trains every lane as one vmapped run (``engine.fit``), measuring CSR
  along the way (``MeasureCsr``, at ``measurement_epochs``).

  The training state is checkpointed under ``workdir/checkpoints`` (at most
  every ``checkpoint_seconds`` and at the end) and each CSR measurement is
  saved to ``workdir/csr/epoch_<e>.npz``, both tied to the configuration by a
  fingerprint; a re-run restores the latest checkpoint and reuses every saved
  measurement (training replays exactly).

  Returns per-epoch accuracies {"train_acc", "val_acc"} (epochs, lanes) and
  {"epoch": (M,), "val"/"train": (M, lanes, m) bool}: which probe examples
  were critical at each measured epoch (0 = initialization).
  """
  csr = complexity.MeasureCsr(
      probes, lass_config, lass_seed,
      measurement_epochs(config.max_epochs, csr_every),
      os.path.join(workdir, "csr"))
  fit = engine.fit(
      config, data, hooks=[csr],
      checkpoint_dir=os.path.join(workdir, "checkpoints"),
      checkpoint_seconds=checkpoint_seconds,
      progress="training" if progress else None,
      fingerprint_parts=(lass_config, lass_seed,
                         [(p.ids, p.scale, p.low, p.high)
                          for p in probes.values()]))
  return ({"train_acc": fit.history["train_acc"],
           "val_acc": fit.history["test_acc"]}, csr.stacked())


def summarize(names, seeds: int, curves, csr) -> dict:
  """Per condition: CSR (mean over seeds, SE), curves and accuracies."""
  summary = {}
  for c, name in enumerate(names):
    lanes = slice(c * seeds, (c + 1) * seeds)
    val_csr, val_se = complexity.csr_mean_se(csr["val"][:, lanes])
    train_csr, train_se = complexity.csr_mean_se(csr["train"][:, lanes])
    val_acc = curves["val_acc"][:, lanes].mean(1)
    jump = complexity.csr_jump(val_csr, val_se, csr["epoch"])
    summary[name] = {
        "csr": float(val_csr[-1]),
        "csr_se": float(val_se[-1]),
        "csr_initial": float(val_csr[0]),
        "csr_initial_se": float(val_se[0]),
        "csr_train": float(train_csr[-1]),
        "csr_train_se": float(train_se[-1]),
        "train_acc": float(curves["train_acc"][-1, lanes].mean()),
        "val_acc": float(val_acc[-1]),
        "best_val_acc": float(val_acc.max()),
        "best_val_epoch": int(val_acc.argmax()) + 1,
        "csr_jump_epoch": None if jump is None else jump["end"],
        "csr_epochs": csr["epoch"],
        "csr_curve": val_csr,
        "csr_curve_se": val_se,
        "csr_train_curve": train_csr,
        "csr_examples": int(csr["val"].shape[-1]),
        "seeds": seeds,
    }
  return summary


def _difference(a: dict, b: dict, key: str) -> tuple[float, float]:
  return a[key] - b[key], float(np.hypot(a[f"{key}_se"], b[f"{key}_se"]))


def claims(summary) -> list[reporting.Claim]:
  """The criteria of the module docstring, on the summary of ``summarize``."""
  out = []
  sigmas = stats.SIGMAS
  real = summary.get("real")
  if real:
    for name in (n for n in summary if n != "real"):
      diff, se = _difference(summary[name], real, "csr")
      out.append(reporting.Claim(
          f"validation CSR at the end of training is higher for {name} than "
          f"for real data (difference > {sigmas:g} SE)",
          stats.exceeds(diff, se),
          f"{name} {summary[name]['csr']:.3f} +- {summary[name]['csr_se']:.3f}"
          f" vs real {real['csr']:.3f} +- {real['csr_se']:.3f}",
          value=diff, uncertainty=se, threshold=sigmas * se))
  for name, s in summary.items():
    diff = s["csr"] - s["csr_initial"]
    se = float(np.hypot(s["csr_se"], s["csr_initial_se"]))
    out.append(reporting.Claim(
        f"{name}: validation CSR rises during training (final minus "
        f"initialization > {sigmas:g} SE)",
        stats.exceeds(diff, se),
        f"{s['csr_initial']:.3f} +- {s['csr_initial_se']:.3f} at "
        f"initialization -> {s['csr']:.3f} +- {s['csr_se']:.3f} after "
        f"{s['csr_epochs'][-1]} epochs",
        value=diff, uncertainty=se, threshold=sigmas * se))
  for name, s in summary.items():
    if not (name.startswith("randY_")
            and 0 < rand_lib.from_name(name).fraction < 1):
      continue
    jump = complexity.csr_jump(s["csr_curve"], s["csr_curve_se"],
                               s["csr_epochs"])
    if jump is None:
      rises = np.diff(s["csr_curve"])
      i = int(np.argmax(rises))
      se = float(np.hypot(s["csr_curve_se"][i], s["csr_curve_se"][i + 1]))
      value, measured = float(rises[i]), (
          f"no CSR jump: the largest rise, epochs {s['csr_epochs'][i]}-"
          f"{s['csr_epochs'][i + 1]}, is {rises[i]:.3f} +- {se:.3f}; "
          f"validation accuracy peaks at epoch {s['best_val_epoch']}")
    else:
      se, value = jump["se"], jump["rise"]
      measured = (f"CSR jump {jump['rise']:.3f} +- {jump['se']:.3f} over "
                  f"epochs {jump['start']}-{jump['end']}; validation accuracy "
                  f"peaks at epoch {s['best_val_epoch']}")
    out.append(reporting.Claim(
        f"{name}: validation accuracy peaks no later than the CSR jump (the "
        f"largest rise of validation CSR between consecutive measurements "
        f"that exceeds {sigmas:g} SE)",
        jump is not None and s["best_val_epoch"] <= jump["end"], measured,
        value=value, uncertainty=se, threshold=sigmas * se))
  return out


def plot(path, names, seeds, curves, summary, title):
  epochs = np.arange(1, curves["val_acc"].shape[0] + 1)
  condition_mean = lambda v, c: v[:, c * seeds:(c + 1) * seeds].mean(1)
  panels = [
      {"title": "validation CSR (+- SE)", "xlabel": "epoch", "ylabel": "CSR",
       "lines": {n: (s["csr_epochs"], s["csr_curve"], s["csr_curve_se"])
                 for n, s in summary.items()}},
      {"title": "training CSR", "xlabel": "epoch", "ylabel": "CSR",
       "lines": {n: (s["csr_epochs"], s["csr_train_curve"])
                 for n, s in summary.items()}}]
  for key, label in (("val_acc", "validation accuracy"),
                     ("train_acc", "training accuracy")):
    panels.append({"title": f"{label} ({title})", "xlabel": "epoch",
                   "ylabel": "accuracy",
                   "lines": {n: (epochs, condition_mean(curves[key], c))
                             for c, n in enumerate(names)}})
  return reporting.plot_panels(path, panels)


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that determines a run's results."""

  data: data_lib.DataConfig
  train: training.TrainConfig  # one condition's seeds (num_seeds per condition)
  conditions: tuple[str, ...] = CONDITIONS
  randomization_seed: int = 0
  csr_every: int = 10  # epochs between CSR measurements
  csr_examples: int = 200  # validation and training examples measured
  # LASS in intensity levels of 0-255 images (complexity.LassConfig.from_levels)
  lass_radius: float = complexity.PAPER_RADIUS
  lass_alpha: float = complexity.PAPER_ALPHA
  lass_beta: float = complexity.PAPER_BETA
  lass_iterations: int = complexity.PAPER_MAX_ITERATIONS

  def __post_init__(self):
    condition_names(self.conditions)
    for name in ("csr_every", "csr_examples"):
      if getattr(self, name) < 1:
        raise ValueError(f"--{name}={getattr(self, name)} must be >= 1.")
    complexity.LassConfig.from_levels(  # raises on invalid settings
        self.lass_radius, self.lass_alpha, self.lass_beta,
        max_iterations=self.lass_iterations)

  @property
  def lass(self) -> complexity.LassConfig:
    return complexity.LassConfig.from_levels(
        self.lass_radius, self.lass_alpha, self.lass_beta,
        max_iterations=self.lass_iterations)

  @property
  def lanes(self) -> training.TrainConfig:
    """The one vmapped run: every (condition, seed) pair is a lane."""
    return dataclasses.replace(
        self.train, num_seeds=self.train.num_seeds * len(self.conditions))


def config_from_flags(values) -> Config:
  """The run's frozen config (--smoke shrinks it); raises ValueError on bad
  input."""
  settings = {k: getattr(values, k) for k in ("csr_every", "csr_examples",
                                              "lass_iterations")}
  if values.smoke:
    settings.update(SMOKE_CSR)
  data, train = cli.configs(values, smoke_train=SMOKE, stop_when_fit=False)
  return Config(data=data, train=train,
                conditions=tuple(condition_names(values.conditions)),
                randomization_seed=values.randomization_seed,
                lass_radius=values.lass_radius, lass_alpha=values.lass_alpha,
                lass_beta=values.lass_beta, **settings)


def run(config: Config, workdir: str,
        control: cli.RunControl = cli.RunControl()) -> dict:
  """Trains every condition's seeds as one vmapped run measuring the CSR,
  prints the claims and writes results.json and the figure into
  ``workdir``; returns results.json's contents."""
  names, seeds, lanes = config.conditions, config.train.num_seeds, config.lanes
  dataset = data_lib.load(config.data)
  cli.claim_workdir(workdir, config, control, dataset, [lanes],
                    per_seed_data=True)
  data, probes, ranges = condition_lanes(
      dataset, names, seeds, config.randomization_seed,
      config.data.standardize, config.csr_examples)
  radius = config.lass.radius * probes["val"].scale
  print(reporting.format_setup(
      config.data, dataset,
      model=f"{lanes.model}, {seeds} seeds per condition, "
            f"{lanes.max_epochs} epochs, all lanes in one vmapped run",
      noise="randX: every training and validation input replaced by Gaussian "
            "noise with the training pixels' mean and std; randY_<p>: each "
            "training label uniformly random with probability p",
      lass=f"alpha {config.lass_alpha:g}, beta {config.lass_beta:g}, r "
           f"{config.lass_radius:g} intensity levels, "
           f"{config.lass_iterations} iterations; box radius r / 255 x "
           f"each image's scale: {radius.min():.4g}..{radius.max():.4g}",
      clip_range=", ".join(f"{n} [{lo:.3g}, {hi:.3g}]"
                           for n, (lo, hi) in ranges.items()),
      measured_at=f"CSR of {len(probes['val'].ids)} validation and "
                  f"{len(probes['train'].ids)} training examples at "
                  f"initialization and every {config.csr_every} epochs",
      differs_from_paper="subset of MNIST-5k and a small MLP (paper: full "
                         "MNIST / CIFAR10, larger MLPs and a CNN)"))
  curves, csr = train_with_csr(lanes, data, probes, config.lass,
                               config.csr_every, lanes.seed, workdir,
                               control.checkpoint_seconds, control.progress)
  summary = summarize(names, seeds, curves, csr)
  rows = [{"condition": n, **s} for n, s in summary.items()]
  print(reporting.format_table(rows, ["condition", "csr", "csr_se",
                                      "csr_initial", "csr_train", "train_acc",
                                      "val_acc", "best_val_acc",
                                      "best_val_epoch", "csr_jump_epoch"]))
  verdicts = claims(summary)
  print(reporting.format_claims(verdicts))
  figure = plot(f"{workdir}/critical_samples.png", names, seeds, curves,
                summary, f"{config.data.name}, {lanes.model}")
  lane_csr = {split: csr[split].mean(-1) for split in SPLITS}
  runs = {n: [{"seed": lanes.seed + c * seeds + i,
               "val_csr": lane_csr["val"][:, c * seeds + i],
               "train_csr": lane_csr["train"][:, c * seeds + i],
               "val_acc": curves["val_acc"][:, c * seeds + i],
               "train_acc": curves["train_acc"][:, c * seeds + i]}
              for i in range(seeds)] for c, n in enumerate(names)}
  saved = cli.save_results(workdir, "critical_samples", config, runs, summary,
                           verdicts)
  print(f"Wrote {workdir}/results.json and {figure}")
  return saved


if __name__ == "__main__":
  cli.main(sys.modules[__name__])
