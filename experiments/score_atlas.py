r"""A score atlas: every per-example score of memjax on the same examples.

For one training set with a known fraction of corrupted labels, memjax
computes each of its per-example scores (``memjax.atlas``): EL2N and GraNd
early in training (Paul et al. 2021), forgetting per presentation (Toneva et
al. 2019) and per clean evaluation after each epoch (memjax's variant, named
apart), memorization (Feldman & Zhang 2020) and C-score (Jiang et al. 2021)
from subset runs, loss sensitivity (Arpit et al. 2017, Sec. 3.2), easy-example
difficulty (misclassification rate over seeds after one epoch, Arpit et al.
Sec. 3.1) and the critical-sample flag (LASS at the end of training, Arpit et
al. Sec. 4). Every score is oriented so that HIGH means keep: the example looks
easy, typical and cleanly labelled. Then: their pairwise Spearman rank
correlations, each score's seed-to-seed reliability (split-half: the score
from the even- and from the odd-numbered seeds or runs, Spearman between the
halves, Spearman-Brown corrected to the full number), and how well each finds
the corrupted labels (ROC AUC of a low keep score, 95% bootstrap interval over
examples).

Claims, with criteria fixed before any measurement. Seed noise enters twice:
the bootstrap intervals are over examples, and each effect must also hold on
each of the two disjoint halves of the seeds (runs) on its own.

1. EL2N and GraNd rank examples alike more than either ranks them like
   forgetting (both versions): the smallest of rho(EL2N, GraNd) - rho(s, f),
   over s in {EL2N, GraNd} and f in {forgetting_presentation,
   forgetting_clean_eval}, has a 95% bootstrap interval above 0, and is > 0 on
   each seed half.
2. Every score finds corrupted labels above chance (one claim per score): the
   lower end of the AUC's 95% bootstrap interval is > 0.5, and the AUC is
   > 0.5 on each seed (run) half.
3. EL2N is a property of the example, not of the seed: its split-half
   reliability (Spearman-Brown corrected) has a 95% bootstrap interval whose
   lower end is > 0.5.
4. The two forgetting versions agree: rho(forgetting_presentation,
   forgetting_clean_eval) has a 95% bootstrap interval above 0.5 and is > 0.5
   on each seed half.

Setup (printed as the "Setup:" header): the recipe of
``experiments/memorization_scores.py`` on 1,000 examples, the same for every
score: a stratified 1,000-example subset of the embedded MNIST-5k training
split and its 1,000 test digits, 14x14, per-image standardized; each training
label redrawn with probability 0.2 uniformly from all 10 classes (it may keep
its class; "corrupted": it changed; the mask is kept); MLP 1x256, SGD lr 0.1
(x 0.95 per 50,000 examples), momentum 0.9, batch 128, 30 epochs, no early
stop. Three runs: (a) 8 seeds at once (``atlas.seed_scores``): EL2N and GraNd
on a clean pass after epoch 3 (10% of training, as Paul et al.'s epoch 20 of
200), both forgetting counts over the 30 epochs, difficulty after epoch 1,
LASS from every training example on the final model (the paper's alpha 0.25,
beta 0.2, r 0.3 intensity levels in each image's own units, 100 iterations);
(b) the same 8 seeds through ``sensitivity.track`` (the same training; the
direct form: each example's own l1 input gradient at every step whose
minibatch holds it, averaged); (c) 64 subset runs on a random 70% each
(``memorization.estimate_runs``): memorization and C-score.

Differs from the papers: one small MLP on 1,000 small digits for every score
(the papers: ResNets on CIFAR / ImageNet, each its own recipe; Arpit et al.'s
easy examples: an MLP 2x4096); C-score at one subset ratio (Jiang et al.
average over ratios: ``--ratios=0.7,0.1,0.3,0.5,0.9``); 64 subset runs
instead of thousands, which leaves noise: each example is held out by about
19 runs, so its C-score is a proportion of ~19 trials (Jeffreys standard error
up to ~0.11; the mean is reported as ``mean_stderr``) and memorization adds
the in-subset proportion's error; the split-half reliabilities say how much
of each ranking survives that noise.

Command:

  python experiments/score_atlas.py

Result: the measured values, uncertainties and verdicts of the default command
are in the README's results table (generated from
runs/score_atlas/results.json by `python experiments/report.py
--mode=readme`; `python experiments/report.py` writes the full report).
Runtime: about 2 minutes on a 2-core CPU shared with other jobs (about 1
minute of CPU time); a re-run that loads everything takes about half a
minute.

Claim 2 is NOT REPRODUCED for the critical-sample flag. Read after measuring
(not claims): at the paper's LASS box (r = 0.3 intensity levels) a training
example the model has fit is almost never critical, so the flag ranks almost
nothing (nearly every example ties, and its reliability rests on the few
flagged ones). Memorization and C-score are the same ranking here, because
the subset runs fit their subsets (mem = 1 - C-score when
P(correct | in) = 1). EL2N and GraNd agree almost perfectly on this MLP early
in training.

Resume: the main run and the sensitivity run checkpoint under
``<workdir>/main/checkpoints`` and ``<workdir>/sensitivity/checkpoints``; their
per-example scores are saved to ``<workdir>/cases/main.npz`` and
``<workdir>/cases/sensitivity.npz`` (``checkpointing.cached_case``,
fingerprinted); every finished chunk of subset runs to
``<workdir>/subset_runs/``. A re-run loads them instead of training again.

Outputs in --workdir: results.json (summary keyed by score: AUC and
interval, reliability and interval, mean keep score of clean and corrupted
examples, ``mode_share`` (ties), ``rho_<other>`` rank correlations; claims),
scores.csv (per training example in dataset order: index, label used,
original label, corrupted, redrawn, each raw score and each
``keep_<score>``), scores.npz (the same and the per-replicate arrays),
score_atlas.png (correlation heatmap and AUC bars).
"""

from __future__ import annotations

import dataclasses
import os
import sys

from absl import flags
import numpy as np

from memjax import atlas
from memjax import checkpointing
from memjax import cli
from memjax import complexity
from memjax import data as data_lib
from memjax import engine
from memjax import memorization
from memjax import randomization as rand_lib
from memjax import reporting
from memjax import sensitivity
from memjax import studies
from memjax import training

# Criteria, fixed before measuring (module docstring).
CHANCE_AUC = atlas.CHANCE_AUC
EL2N_RELIABILITY = 0.5
FORGETTING_AGREEMENT = 0.5
FORGETTING = ("forgetting_presentation", "forgetting_clean_eval")
# A score whose most common value holds more than this share of the examples
# gets a printed note (not a criterion).
TIED = 0.5

SMOKE_DATA = dict(train_size=128, test_size=64)
SMOKE_TRAIN = dict(num_seeds=2, max_epochs=3)
SMOKE = dict(score_epoch=1, runs=4, run_chunk=4, lass_iterations=5)
RESAMPLES, SMOKE_RESAMPLES = 1000, 200


def define_flags() -> None:
  """This experiment's flags, defined when it runs (not on import)."""
  cli.define_data_flags(standardize=True)
  flags.FLAGS.set_default("train_size", 1000)
  flags.FLAGS.set_default("image_size", 14)
  cli.define_train_flags(model="mlp1x256", seeds=8, max_epochs=30,
                         batch_size=128, shard_seeds=False)
  flags.FLAGS.set_default("learning_rate", 0.1)
  cli.define_run_flags("runs/score_atlas")
  cli.define_float("corruption", 0.2,
                   "Probability that a training label is redrawn.", low=0,
                   high=1, low_open=True, high_open=True)
  flags.DEFINE_enum("label_noise", "uniform", list(rand_lib.LABEL_NOISE),
                    "How a redrawn label is drawn (memjax.randomization).")
  cli.define_int("randomization_seed", 0, "Seeds the label corruption.",
                 low=0, high=cli.MAX_SEED)
  cli.define_int("score_epoch", 3,
                 "EL2N and GraNd after this many epochs; at most "
                 "--max_epochs.", low=1)
  cli.define_int("microbatch", 64, "Examples per GraNd microbatch.", low=1)
  cli.define_int("runs", 64, "Subset runs per ratio (memorization, C-score); "
                 "at least 2 (split halves).", low=2)
  cli.define_int("run_chunk", 16, "Subset runs trained at once (vmapped).",
                 low=1)
  flags.DEFINE_list("ratios", ["0.7"],
                    "Subset ratios in (0, 1); memorization uses the first, "
                    "the C-score averages over all.")
  cli.define_float("lass_radius", complexity.PAPER_RADIUS,
                   "LASS box radius r in intensity levels of 0-255 images.",
                   low=0, low_open=True)
  cli.define_float("lass_alpha", complexity.PAPER_ALPHA,
                   "LASS sign-gradient step in intensity levels.", low=0)
  cli.define_float("lass_beta", complexity.PAPER_BETA,
                   "LASS noise scale in intensity levels.", low=0)
  cli.define_int("lass_iterations", complexity.PAPER_MAX_ITERATIONS,
                 "LASS steps per example before giving up.", low=1)


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that determines a run's results."""

  data: data_lib.DataConfig
  train: training.TrainConfig  # the main run; every run trains like it
  corruption: float = 0.2
  label_noise: str = "uniform"
  randomization_seed: int = 0
  score_epoch: int = 3
  microbatch: int = 64
  runs: int = 64
  run_chunk: int = 16
  ratios: tuple[float, ...] = (0.7,)
  lass_radius: float = complexity.PAPER_RADIUS
  lass_alpha: float = complexity.PAPER_ALPHA
  lass_beta: float = complexity.PAPER_BETA
  lass_iterations: int = complexity.PAPER_MAX_ITERATIONS
  resamples: int = RESAMPLES  # bootstrap resamples of every interval

  def __post_init__(self):
    if self.train.num_seeds < 2:
      raise ValueError(f"--seeds={self.train.num_seeds} must be >= 2: the "
                       "split-half reliability needs two halves of seeds.")
    if not 0 < self.corruption < 1:
      raise ValueError(f"--corruption={self.corruption} must be in (0, 1): "
                       "the AUCs need corrupted and clean labels.")
    if not 1 <= self.score_epoch <= self.train.max_epochs:
      raise ValueError(f"--score_epoch must be in [1, --max_epochs="
                       f"{self.train.max_epochs}], got {self.score_epoch}.")
    if self.runs < 2:
      raise ValueError(f"--runs={self.runs} must be >= 2: the split-half "
                       "reliability needs two halves of runs.")
    if min(self.microbatch, self.run_chunk, self.resamples) < 1:
      raise ValueError(f"--microbatch={self.microbatch}, --run_chunk="
                       f"{self.run_chunk} and resamples={self.resamples} must "
                       "be >= 1.")
    if self.train.stop_when_fit:
      raise ValueError("The atlas trains every run for --max_epochs "
                       "(stop_when_fit=False).")
    self.estimate  # pylint: disable=pointless-statement  (validates runs)
    self.lass  # pylint: disable=pointless-statement  (validates LASS)
    self.study  # pylint: disable=pointless-statement  (validates the noise)

  @property
  def noise(self) -> str:
    return studies.corruption_name(self.corruption)

  @property
  def study(self) -> studies.StudyConfig:
    return studies.StudyConfig(self.data, self.train, (self.noise,),
                               label_noise=self.label_noise,
                               randomization_seed=self.randomization_seed)

  @property
  def estimate(self) -> memorization.EstimateConfig:
    return memorization.EstimateConfig(
        train=dataclasses.replace(self.train, num_seeds=1),
        num_runs=self.runs, ratios=self.ratios, chunk_size=self.run_chunk)

  @property
  def lass(self) -> complexity.LassConfig:
    return complexity.LassConfig.from_levels(
        self.lass_radius, self.lass_alpha, self.lass_beta,
        max_iterations=self.lass_iterations)


def config_from_flags(values) -> Config:
  """The run's frozen config (--smoke shrinks it); raises ValueError on bad
  input."""
  settings = {k: getattr(values, k) for k in SMOKE}
  if values.smoke:
    settings.update(SMOKE)
  data, train = cli.configs(values, SMOKE_DATA, SMOKE_TRAIN,
                            stop_when_fit=False)
  return Config(data=data, train=train, corruption=values.corruption,
                label_noise=values.label_noise,
                randomization_seed=values.randomization_seed,
                microbatch=values.microbatch,
                ratios=cli.subset_ratios("ratios", values.ratios),
                lass_radius=values.lass_radius, lass_alpha=values.lass_alpha,
                lass_beta=values.lass_beta,
                resamples=SMOKE_RESAMPLES if values.smoke else RESAMPLES,
                **settings)


# --- Measuring: three runs, each cached in the workdir ------------------------

def main_run(config: Config, data: training.TrainData, box: dict,
             workdir: str, control: cli.RunControl) -> dict:
  """Per-seed (S, n) scores of the main run (``atlas.seed_scores``) and its
  accuracies; loaded from ``<workdir>/cases/main.npz`` once computed."""
  train = config.train
  stamp = checkpointing.fingerprint(
      engine.run_fingerprint(train, data, training.default_train_index(
          data, train.num_seeds)),
      config.score_epoch, config.microbatch, config.lass, box)
  return checkpointing.cached_case(workdir, "main", stamp, lambda: ({}, (
      atlas.seed_scores(
          train, data, score_epoch=config.score_epoch,
          microbatch=config.microbatch, lass=config.lass, box=box,
          checkpoint_dir=os.path.join(workdir, "main", "checkpoints"),
          checkpoint_seconds=control.checkpoint_seconds,
          progress=control.bar("main run")))))[1]


def sensitivity_run(config: Config, data: training.TrainData, workdir: str,
                    control: cli.RunControl) -> dict:
  """Per-seed (S, n) loss sensitivity (the direct form, l1) over training."""
  form = sensitivity.SensitivityConfig(norm="l1", unroll=0,
                                       class_matrix=False)
  stamp = checkpointing.fingerprint(
      engine.run_fingerprint(config.train, data, training.default_train_index(
          data, config.train.num_seeds)), form)

  def compute():
    result = sensitivity.track(
        config.train, form, data.x_train, data.y_train, data.num_classes,
        config.train.max_epochs, progress=control.bar("loss sensitivity"),
        checkpoint_dir=os.path.join(workdir, "sensitivity", "checkpoints"),
        checkpoint_seconds=control.checkpoint_seconds)
    return {"loss_sensitivity": result.direct[-1]}
  return checkpointing.cached_case(workdir, "sensitivity", stamp,
                                  lambda: ({}, compute()))[1]


def measure(config: Config, dataset: data_lib.Dataset,
            data: training.TrainData, workdir: str,
            control: cli.RunControl) -> tuple[dict, dict]:
  """(replicates per score, the runs' training outcomes)."""
  main = main_run(config, data,
                  atlas.lass_box(dataset, config.data.standardize), workdir,
                  control)
  sens = sensitivity_run(config, data, workdir, control)
  subsets = memorization.estimate_runs(
      config.estimate, data, directory=os.path.join(workdir, "subset_runs"),
      progress=control.bar("subset runs"))
  replicates = {name: atlas.SeedMean(main[name]) for name in (
      "el2n", "grand", *FORGETTING)}
  for kind in ("memorization", "c_score"):
    replicates[kind] = atlas.SubsetEstimate(
        kind, subsets.masks, subsets.train_correct, subsets.ratio,
        config.ratios[0])
  replicates["loss_sensitivity"] = atlas.SeedMean(sens["loss_sensitivity"])
  for name in ("difficulty", "critical"):
    replicates[name] = atlas.SeedMean(main[name])
  in_subset = subsets.masks.sum()
  outcomes = {
      "main_run": {"seeds": config.train.seed + np.arange(
                       config.train.num_seeds),
                   "train_acc": main["train_acc"][-1],
                   "test_acc": main["test_acc"][-1],
                   "train_acc_curve": main["train_acc"].mean(1),
                   "test_acc_curve": main["test_acc"].mean(1)},
      "subset_runs": {
          "runs": subsets.num_runs, "ratios": list(config.ratios),
          "subset_train_acc": float((subsets.masks & subsets.train_correct)
                                    .sum() / in_subset),
          "test_acc": float(subsets.test_correct.mean()),
          "held_out_per_example": float((~subsets.masks).sum(0).mean())}}
  return replicates, outcomes


# --- Analysis: pure functions of the replicates -------------------------------

def min_agreement_margin(el2n, grand, *forgettings) -> float:
  """Claim 1's statistic: rho(EL2N, GraNd) minus the largest correlation of
  EL2N or GraNd with a forgetting score."""
  both = atlas.rank_correlation(el2n, grand)
  return both - max(atlas.rank_correlation(s, f) for s in (el2n, grand)
                    for f in forgettings)


def analyze(replicates: dict, corrupted,
            resamples: int = RESAMPLES) -> tuple[dict, dict]:
  """(summary keyed by score, keep scores) of the replicates of every score
  (``atlas.summarize``), with the statistics of claims 1 and 4 (bootstrap
  intervals from ``resamples`` resamples of the examples)."""
  summary, keep, halves = atlas.summarize(replicates, corrupted, resamples)
  margin = atlas.comparison(min_agreement_margin,
                            ("el2n", "grand", *FORGETTING), keep, halves,
                            resamples)
  summary["el2n"].update({f"agreement_margin{k}": v for k, v in (
      ("", margin["value"]), ("_low", margin["low"]),
      ("_high", margin["high"]), ("_halves", margin["halves"]))})
  agreement = atlas.comparison(atlas.rank_correlation, FORGETTING, keep,
                               halves, resamples)
  summary[FORGETTING[0]].update(
      forgetting_agreement_low=agreement["low"],
      forgetting_agreement_high=agreement["high"],
      forgetting_agreement_halves=agreement["halves"])
  return summary, keep


def _interval_text(value, low, high) -> str:
  return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _halves_text(values) -> str:
  return ", ".join("nan" if v is None or not np.isfinite(v) else f"{v:.3f}"
                   for v in values)


def _above(value, low, halves, threshold) -> bool:
  """The criterion shared by the claims: the interval's lower end and every
  half's value above ``threshold``."""
  values = [value, low, *halves]
  return all(v is not None and np.isfinite(v) for v in values) and (
      low > threshold and min(halves) > threshold)


def claims(summary: dict) -> list[reporting.Claim]:
  """The verdicts of the module docstring's claims (a pure function of the
  summary)."""
  out = []
  e = summary["el2n"]
  value, low, high = (e["agreement_margin"], e["agreement_margin_low"],
                      e["agreement_margin_high"])
  out.append(reporting.Claim(
      "EL2N and GraNd agree with each other more than either agrees with "
      "forgetting (both versions): min over pairs of rho(EL2N, GraNd) - "
      "rho(EL2N or GraNd, forgetting) has a 95% interval above 0 and is > 0 "
      "on each seed half",
      _above(value, low, e["agreement_margin_halves"], 0.0),
      f"rho(EL2N, GraNd) {e['rho_grand']:.3f}; with forgetting: "
      + ", ".join(f"{s}/{f} {summary[s][f'rho_{f}']:.3f}"
                  for s in ("el2n", "grand") for f in FORGETTING)
      + f"; margin {_interval_text(value, low, high)}, halves "
      f"{_halves_text(e['agreement_margin_halves'])}",
      value=value, uncertainty=(high - low) / 2, threshold=0.0,
      interval=(low, high)))
  for name, row in summary.items():
    out.append(reporting.Claim(
        f"{name} finds corrupted labels above chance: AUC's 95% interval "
        f"above {CHANCE_AUC:g} and AUC > {CHANCE_AUC:g} on each half of the "
        "seeds (runs)",
        _above(row["auc"], row["auc_low"], row["auc_halves"], CHANCE_AUC),
        f"AUC {_interval_text(row['auc'], row['auc_low'], row['auc_high'])}"
        f", halves {_halves_text(row['auc_halves'])}",
        value=row["auc"], uncertainty=(row["auc_high"] - row["auc_low"]) / 2,
        threshold=CHANCE_AUC, interval=(row["auc_low"], row["auc_high"])))
  value, low, high = (e["reliability"], e["reliability_low"],
                      e["reliability_high"])
  out.append(reporting.Claim(
      f"EL2N is reliable across seeds: split-half reliability (Spearman-Brown)"
      f" has a 95% interval above {EL2N_RELIABILITY:g}",
      bool(np.isfinite(low) and low > EL2N_RELIABILITY),
      f"{_interval_text(value, low, high)} from halves of "
      f"{e['replicates'] // 2} seeds (half correlation "
      f"{e['half_correlation']:.3f})",
      value=value, uncertainty=(high - low) / 2, threshold=EL2N_RELIABILITY,
      interval=(low, high)))
  f = summary[FORGETTING[0]]
  value, low, high = (f[f"rho_{FORGETTING[1]}"], f["forgetting_agreement_low"],
                      f["forgetting_agreement_high"])
  out.append(reporting.Claim(
      f"the two forgetting versions agree: rho(per presentation, per clean "
      f"evaluation) has a 95% interval above {FORGETTING_AGREEMENT:g} and is "
      f"> {FORGETTING_AGREEMENT:g} on each seed half",
      _above(value, low, f["forgetting_agreement_halves"],
             FORGETTING_AGREEMENT),
      f"rho {_interval_text(value, low, high)}, halves "
      f"{_halves_text(f['forgetting_agreement_halves'])}",
      value=value, uncertainty=(high - low) / 2,
      threshold=FORGETTING_AGREEMENT, interval=(low, high)))
  return out


# --- Outputs ------------------------------------------------------------------

def setup_text(config: Config, dataset: data_lib.Dataset) -> str:
  train = config.train
  return reporting.format_setup(
      config.data, dataset,
      model=f"{train.model}, SGD lr {train.lr} x {train.lr_decay} per 50,000 "
            f"examples, momentum {train.momentum}, batch {train.batch_size}, "
            f"{train.max_epochs} epochs; main and sensitivity runs "
            f"{train.num_seeds} seeds from seed {train.seed}; "
            f"{config.runs} subset runs per ratio {list(config.ratios)}",
      noise=f"each training label redrawn with probability "
            f"{config.corruption:g} ({config.label_noise}); 'corrupted': the "
            "label changed; test labels clean",
      measured_at=f"EL2N/GraNd after epoch {config.score_epoch}; forgetting "
                  "over every epoch (per presentation and per clean "
                  "evaluation); difficulty after epoch 1; LASS (alpha "
                  f"{config.lass_alpha:g}, beta {config.lass_beta:g}, r "
                  f"{config.lass_radius:g} levels, {config.lass_iterations} "
                  "iterations) and subset-run correctness at the end",
      differs_from_paper="one MLP recipe for every score on small digits "
                         "(papers: ResNets on CIFAR/ImageNet); few subset "
                         "runs; C-score at "
                         f"{len(config.ratios)} ratio(s)")


def run(config: Config, workdir: str,
        control: cli.RunControl = cli.RunControl()) -> dict:
  """Measures every score, prints the atlas and the claims and writes
  results.json, scores.csv, scores.npz and the figure into ``workdir``;
  returns results.json's contents."""
  dataset = data_lib.load(config.data)
  config.estimate.check_data(len(dataset.y_train))
  cli.claim_workdir(workdir, config, control, dataset, [
      config.train, dataclasses.replace(config.estimate.train,
                                        num_seeds=config.run_chunk)])
  print(setup_text(config, dataset))
  data, redrawn, _ = studies.randomize(dataset, config.study, config.noise)
  corrupted = np.asarray(data.y_train) != dataset.y_train
  replicates, outcomes = measure(config, dataset, data, workdir, control)
  summary, keep = analyze(replicates, corrupted, config.resamples)
  names = list(summary)
  print(reporting.format_table(
      [{"score": n, **summary[n]} for n in names],
      ["score", "auc", "auc_low", "auc_high", "reliability",
       "reliability_low", "keep_clean_mean", "keep_corrupted_mean"]))
  print("Spearman rank correlations of the keep scores:")
  print(reporting.format_table(
      [{"score": a, **{b: summary[a][f"rho_{b}"] for b in names}}
       for a in names], ["score", *names]))
  main = outcomes["main_run"]
  print(f"{corrupted.sum()} of {corrupted.size} labels changed; main run "
        f"train accuracy {main['train_acc'].mean():.2%}, test "
        f"{main['test_acc'].mean():.2%}; subset runs fit "
        f"{outcomes['subset_runs']['subset_train_acc']:.2%} of their subsets")
  for name, row in summary.items():
    if row["mode_share"] > TIED:
      print(f"Note: {row['mode_share']:.1%} of the examples share one "
            f"{name} score; its AUC, reliability and correlations rest on "
            "the few others.")
  verdicts = claims(summary)
  print(reporting.format_claims(verdicts))
  columns = {"index": np.arange(corrupted.size)}
  if dataset.train_original_index is not None:
    columns["original_index"] = dataset.train_original_index
  columns.update(label=np.asarray(data.y_train), original_label=dataset.y_train,
                 corrupted=corrupted, redrawn=np.asarray(redrawn))
  columns.update({name: reps.score() for name, reps in replicates.items()})
  columns.update({f"keep_{name}": values for name, values in keep.items()})
  csv_path = atlas.write_scores(workdir, columns, replicates)
  figure = atlas.plot(os.path.join(workdir, "score_atlas.png"), summary,
                      f"{config.data.name}, {config.noise}")
  saved = cli.save_results(workdir, "score_atlas", config, outcomes, summary,
                           verdicts)
  print(f"Wrote {workdir}/results.json, {csv_path} and {figure}")
  return saved


if __name__ == "__main__":
  cli.main(sys.modules[__name__])
