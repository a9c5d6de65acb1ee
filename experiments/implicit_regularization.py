r"""Implicit regularization: minimum-norm solutions (Zhang et al. 2017, Sec. 5).

Claims tested:
1. SGD from w = 0 on a linear model stays in the span of the data,
   w = X^T alpha, and converges to the minimum-l2-norm interpolating solution
   (K alpha = y, K = X X^T). Checked on random labels of Gaussian data, on
   MNIST digits with a linear model, and on a kernel model (random Fourier
   features of the RBF kernel) by comparing SGD's weights with the
   minimum-norm solution. For contrast, SGD from a random init converges to a
   different interpolant.
2. Solving K alpha = y exactly (one dense solve, no regularization) with an RBF
   kernel fits true and random labels of MNIST (training error 0) and, on true
   labels, generalizes (paper: 1.2% test error on the full 60,000 MNIST; here
   4,000 training digits). The linear kernel cannot interpolate 4,000 points in
   784 dimensions; its minimum-norm least-squares solution is shown for
   comparison.
3. Norm does not predict generalization: a fixed Gabor filter bank lowers the
   test error while the solution's norm grows (paper: 1.2% -> 0.6%, norm ~220 ->
   ~390 on full MNIST).

Setup (printed as the run's header):
* Inputs: pixels / 255 in [0, 1], no other preprocessing (the default, as the
  paper's "no preprocessing" on MNIST; --standardize gives per-image
  standardization instead). The pixel scale (x versus x / 255) changes no
  result here except the printed norms: the RBF bandwidth is gamma =
  1 / (d var x) of the training inputs, and linear solutions and SGD's
  learning rate 1 / max_i |x_i|^2 are scale-equivariant. Gabor features are
  the filter-bank energies of those inputs, standardized per image.
* Labels and targets: true labels are MNIST's; random labels are uniform over
  the 10 classes (a fresh draw per seed). Every model fits one-hot targets with
  the squared loss and predicts the argmax of its 10 outputs.
* SGD cases: --sgd_train_size (200) training digits, a stratified subset drawn
  per seed, so that n <= d and an interpolant exists: raw pixels (d = 784),
  random Fourier features of the RBF kernel (D = --rff_features, 2,000), and
  N(0, 1) Gaussian inputs of the same shape with random labels. Minibatch SGD
  (batch 10, learning rate 1 / max_i |phi_i|^2, no momentum, float32), 2,000
  epochs; every epoch visits every example once.
* Minimum-norm solution: least squares on the features themselves (SVD of Phi,
  singular values below max(n, d) * eps * s_max dropped: kernels.lstsq_rcond).
  The Cholesky solve of Phi Phi^T alpha = y, which squares the condition
  number, is computed too and reported next to it.
* Differs from the paper: 4,000 training digits instead of 60,000 (the full
  MNIST runs with --dataset=mnist, below).

Criteria (memjax.kernel_study.claims, fixed before measuring; "SE" is the
standard error over --seeds (3) seeds, and with one seed the seed-dependent
claims are undecided, i.e. NOT REPRODUCED):
* span: SGD from zero keeps its component outside the data span below 1e-3 of
  its norm on every zero-init case (mean + 2 SE < 1e-3);
* convergence, one claim per zero-init case: relative distance to the
  minimum-norm (lstsq) solution below 0.1 (mean + 2 SE < 0.1);
* control: SGD from a random init ends farther than 0.1 (mean - 2 SE > 0.1);
* solver: the lstsq and Cholesky minimum-norm solutions differ by less than
  1e-6 (relative, worst case) on every SGD case, so the distances do not come
  from the solver (uncertainty: eps * cond(Phi)^2, the Cholesky error scale);
* RBF interpolation: training error 0 on true and random labels (exact count);
* generalization: RBF test error on true labels <= 5% (the upper end of its
  95% Jeffreys interval over the test examples);
* random labels: RBF test error at chance, 90% +- 3 points (mean +- 2 SE
  within the band);
* Gabor: lower test error than raw pixels by more than 2 SE of the paired
  difference over test examples; and a larger solution norm than raw pixels
  (ratio > 1 beyond the solves' relative residuals).

Command (embedded MNIST-5k: 4,000 train / 1,000 test; SGD on 200 digits):

  python experiments/implicit_regularization.py

Result: the measured values, uncertainties and verdicts of the default command
are in the README's results table (generated from
runs/implicit_regularization/results.json by `python experiments/report.py
--mode=readme`; `python experiments/report.py` writes the full report). Two
claims are NOT REPRODUCED on these data, for known reasons:
* convergence on raw pixels: after 2,000 epochs SGD from zero is still above
  the 0.1 distance and still getting closer. The Cholesky reference gives the
  same distances, so the solver is not what keeps it away. SGD's slowest
  direction contracts at a rate set by s_min^2 / max_i |x_i|^2 (the learning
  rate is 1 / max_i |x_i|^2), which is smaller on /255 pixels than on the
  same digits per-image standardized, so /255 pixels need more epochs. The
  random-init control passes, though on pixels partly because zero-init SGD
  has not converged either.
* RBF random labels: at chance in the mean, but with 3 seeds the 2-SE
  interval is wider than the +-3-point band (undecided).
Runtime: about 9 minutes on a 2-core CPU shared with other jobs (about 2
minutes of CPU time).

Full MNIST (60,000 x 60,000 kernel: 28.8 GB in float64, 14.4 GB in float32; the
default --max_dense_gib sends it to float32 conjugate gradients, hours on a
CPU; prepare it with `tfds build mnist --file_format=array_record`):

  python experiments/implicit_regularization.py --dataset=mnist \
      --data_dir=~/tensorflow_datasets

Resume: each finished case (and seed) is saved to --workdir/cases/<case>.npz
with the fingerprint of its configuration and data; a re-run of the same
command loads the finished cases and computes only the rest (each case takes
seconds, so --checkpoint_seconds does not apply).

Outputs in --workdir: results.json (summary keyed by case, means over seeds
with _se and _max fields: n, d, params, train_error, test_error,
solution_norm, sgd_vs_minnorm_distance, sgd_vs_minnorm_distance_cholesky,
minnorm_solver_gap, feature_condition_number, ...; per-seed rows and distance
curves in runs) and sgd_distance.png (relative distance of SGD's weights to
the minimum-norm solution vs epoch).
"""

from __future__ import annotations

import dataclasses
import sys
import time

import jax
import numpy as np
from absl import flags

from memjax import checkpointing
from memjax import cli
from memjax import data as data_lib
from memjax import expressivity
from memjax import kernel_study
from memjax import kernels
from memjax import keys
from memjax import reporting
from memjax import stats


def define_flags() -> None:
  """This experiment's flags, defined when it runs (not on import, so that
  several experiments can run in one process)."""
  cli.define_data_flags(standardize=False)
  cli.define_run_flags("runs/implicit_regularization")
  cli.define_int("sgd_train_size", 200,
                 "Training points of the SGD cases (n <= d to interpolate).",
                 low=1)
  cli.define_int("sgd_epochs", 2000, "SGD epochs.", low=1)
  cli.define_int("sgd_batch_size", 10,
                 "SGD minibatch size (at most --sgd_train_size).", low=1)
  cli.define_float("init_scale", 0.01,
                   "Std of the random init of the contrasting SGD run.", low=0,
                   low_open=True)
  cli.define_int("rff_features", 2000,
                 "Random Fourier features of the kernel model (at least "
                 "--sgd_train_size to interpolate).", low=1)
  flags.DEFINE_enum("solver", "auto", list(kernels.SOLVERS),
                    "Kernel solve: cholesky (float64), cg (float32), pinv, or "
                    "auto (cholesky if it fits in --max_dense_gib, else cg).")
  cli.define_float("max_dense_gib", 4.0,
                   "Largest float64 kernel matrix for the dense solve (GiB).",
                   low=0, low_open=True)
  flags.DEFINE_bool("gabor", True, "Also solve on Gabor filter-bank features.")
  cli.define_int("seeds", 3,
                 "Seeds of the seed-dependent cases (SGD subsets, batch "
                 "orders, Gaussian data, random features, random labels).",
                 low=1)
  cli.define_int("seed", 0, "First seed; seeds are seed..seed+S-1.", low=0,
                 high=cli.MAX_SEED)


SMOKE = dict(sgd_train_size=32, sgd_epochs=20, rff_features=100, seeds=2)

ZERO_INIT_SGD = kernel_study.ZERO_INIT_SGD
RANDOM_INIT_SGD = kernel_study.RANDOM_INIT_SGD
# Summary fields that carry a standard error and a maximum over seeds.
SEED_FIELDS = ("train_error", "test_error", "solution_norm",
               "sgd_vs_minnorm_distance", "sgd_vs_minnorm_distance_cholesky",
               "minnorm_solver_gap", "out_of_span", "cholesky_error_scale")


def relative_distance(a, b) -> float:
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def sgd_case(features, labels, test_features, test_labels, k,
             config: kernels.SGDConfig):
  """SGD vs the minimum-norm solution: (summary row, {"distances": curve})."""
  targets = np.eye(k)[labels]
  flat = features.reshape(len(features), -1).astype(np.float64)
  min_norm = kernels.min_norm_weights(flat, targets)
  min_norm_cholesky = kernels.min_norm_weights(flat, targets, "cholesky")
  run = kernels.sgd_least_squares(flat, targets, config, reference=min_norm)
  w = run.weights.astype(np.float64)
  in_span = kernels.min_norm_weights(flat, flat @ w)
  singular = kernels.singular_values(flat)
  condition = float(singular[0] / singular[-1])
  row = {"n": len(flat), "d": flat.shape[1], "params": w.size,
         "train_error": expressivity.classification_error(flat @ w, labels),
         "test_error": (expressivity.classification_error(
             test_features.reshape(len(test_features), -1) @ w, test_labels)
                        if test_features is not None else None),
         "solution_norm": float(np.linalg.norm(w)),
         "min_norm": float(np.linalg.norm(min_norm)),
         "sgd_vs_minnorm_distance": relative_distance(w, min_norm),
         "sgd_vs_minnorm_distance_cholesky": relative_distance(
             w, min_norm_cholesky),
         "minnorm_solver_gap": relative_distance(min_norm_cholesky, min_norm),
         "residual_lstsq": relative_distance(flat @ min_norm, targets),
         "residual_cholesky": relative_distance(flat @ min_norm_cholesky,
                                                targets),
         "feature_condition_number": condition,
         "cholesky_error_scale": float(np.finfo(np.float64).eps
                                       * condition ** 2),
         "out_of_span": float(np.linalg.norm(w - in_span)
                              / np.linalg.norm(w))}
  return row, {"distances": run.distances}


def kernel_case(config: kernels.KernelConfig, x_train, labels, x_test, y_test,
                k):
  """Kernel interpolation: (summary row, {"test_wrong": per-test-example})."""
  start = time.time()
  model = kernels.fit(config, x_train, np.eye(k)[labels])
  n = len(x_train)
  test_outputs = kernels.predict(model, x_test)
  row = {"n": n, "d": int(np.prod(x_train.shape[1:])), "params": n * k,
         "test_n": len(y_test),
         "train_error": expressivity.classification_error(
             model.train_outputs, labels),
         "test_error": expressivity.classification_error(test_outputs, y_test),
         "solution_norm": model.norm,
         "relative_residual": model.relative_residual, "solver": model.solver,
         "cg_iterations": model.iterations,
         "memory_gib": model.matrix_bytes / 2**30,
         "seconds": time.time() - start}
  return row, {"test_wrong": np.argmax(test_outputs, -1) != y_test}


def aggregate(rows: list[dict]) -> dict:
  """One summary row from per-seed rows: the mean of every number (the value
  itself for strings), and for SEED_FIELDS the SE and the maximum over seeds."""
  out = {"seeds": len(rows)}
  for field, first in rows[0].items():
    values = [r[field] for r in rows]
    if not isinstance(first, (int, float)) or isinstance(first, bool) or any(
        v is None for v in values):
      out[field] = first
      continue
    # Sizes agree across seeds: keep them as the integers they are.
    out[field] = first if len(set(values)) == 1 else float(np.mean(values))
    if field in SEED_FIELDS:
      out[f"{field}_se"] = stats.mean_se(values)[1]
      out[f"{field}_max"] = float(np.max(values))
  return out


def gabor_comparison(raw: dict, gabor: dict, raw_wrong, gabor_wrong) -> dict:
  """The paired test-error difference and the norm ratio of raw vs Gabor."""
  gain, se = stats.mean_se(np.asarray(raw_wrong, float)
                           - np.asarray(gabor_wrong, float))
  ratio = gabor["solution_norm"] / raw["solution_norm"]
  return {"raw_test_error": raw["test_error"],
          "gabor_test_error": gabor["test_error"],
          "test_error_gain": gain, "test_error_gain_se": se,
          "raw_norm": raw["solution_norm"],
          "gabor_norm": gabor["solution_norm"],
          "norm_ratio": ratio,
          "norm_ratio_tolerance": ratio * (raw["relative_residual"]
                                           + gabor["relative_residual"])}


def input_scale_note(standardize: bool) -> str:
  """How the inputs relate to the paper's ("no preprocessing" on MNIST)."""
  if standardize:
    return ("per-image standardized (--standardize), unlike the paper's MNIST "
            "inputs (no preprocessing)")
  return ("pixels / 255, the paper's \"no preprocessing\" on MNIST up to a "
          "global scale, which the RBF bandwidth and SGD's rate absorb")


def seed_data(dataset, seed: int, sgd_train_size: int, rff_features: int):
  """Everything seed-dependent: (random labels of the training set, SGD
  cases {name: (x, y, x_test, y_test)})."""
  k, n = dataset.num_classes, len(dataset.y_train)
  label_key, gaussian_key, rff_key = keys.split(keys.seed_key(seed), 3)
  random_labels = np.asarray(jax.random.randint(label_key, (n,), 0, k))
  subset = data_lib.stratified_subset(dataset.y_train, sgd_train_size, seed)
  x_sgd, y_sgd = dataset.x_train[subset], dataset.y_train[subset]
  gaussian = np.asarray(jax.random.normal(gaussian_key, x_sgd.shape))
  gamma = kernels.default_gamma(x_sgd)
  rff = lambda x: kernels.random_fourier_features(x, rff_features, gamma,
                                                  rff_key)
  pixels = (x_sgd, y_sgd, dataset.x_test, dataset.y_test)
  return random_labels, {
      "gaussian_linear_sgd": (gaussian, random_labels[subset], None, None),
      "linear_sgd": pixels,
      "rff_sgd": (rff(x_sgd), y_sgd, rff(dataset.x_test), dataset.y_test),
      RANDOM_INIT_SGD: pixels}


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that decides this experiment's results."""

  data: data_lib.DataConfig
  kernel: kernels.KernelConfig  # the RBF kernel's solve
  sgd_train_size: int  # training points of the SGD cases
  sgd_epochs: int
  sgd_batch_size: int
  init_scale: float  # std of the random init of RANDOM_INIT_SGD
  rff_features: int  # random Fourier features of the kernel model
  gabor: bool  # also solve on Gabor filter-bank features
  seed: int  # the first seed of the seed-dependent cases
  num_seeds: int

  @property
  def seeds(self) -> range:
    return range(self.seed, self.seed + self.num_seeds)

  def sgd(self, name: str, seed: int) -> kernels.SGDConfig:
    """The SGD of case ``name`` on ``seed``."""
    return kernels.SGDConfig(
        epochs=self.sgd_epochs, batch_size=self.sgd_batch_size,
        init_scale=self.init_scale if name == RANDOM_INIT_SGD else 0.0,
        seed=seed)


def config_from_flags(values) -> Config:
  """The run's frozen config (--smoke shrinks the data, the SGD cases and the
  seeds); raises ValueError on bad input."""
  sizes = {name: getattr(values, name) for name in SMOKE}
  if values.smoke:
    sizes.update({**SMOKE, "seeds": min(values.seeds, SMOKE["seeds"])})
  last_seed = values.seed + sizes["seeds"] - 1
  if last_seed > cli.MAX_SEED:
    raise ValueError(f"--seed + --seeds - 1 = {last_seed} exceeds the largest "
                     f"seed {cli.MAX_SEED}; lower --seed or --seeds.")
  if values.sgd_batch_size > sizes["sgd_train_size"]:
    raise ValueError(f"--sgd_batch_size {values.sgd_batch_size} exceeds "
                     f"--sgd_train_size {sizes['sgd_train_size']}; valid: "
                     f"1..{sizes['sgd_train_size']}.")
  if sizes["rff_features"] < sizes["sgd_train_size"]:
    raise ValueError(f"--rff_features {sizes['rff_features']} must be at "
                     f"least --sgd_train_size {sizes['sgd_train_size']}: "
                     "fewer features than points cannot interpolate.")
  return Config(
      data=cli.data_config(values, **(cli.SMOKE_DATA if values.smoke else {})),
      kernel=kernels.KernelConfig(solver=values.solver,
                                  max_dense_gib=values.max_dense_gib),
      sgd_train_size=sizes["sgd_train_size"], sgd_epochs=sizes["sgd_epochs"],
      sgd_batch_size=values.sgd_batch_size, init_scale=values.init_scale,
      rff_features=sizes["rff_features"], gabor=values.gabor,
      seed=values.seed, num_seeds=sizes["seeds"])


def run(config: Config, workdir: str,
        control: cli.RunControl = cli.RunControl()) -> dict:
  """Computes every case (or loads the finished ones), prints the claims and
  writes results.json and the figure into ``workdir``; returns results.json's
  contents."""
  dataset = data_lib.load(config.data)
  k, n = dataset.num_classes, len(dataset.y_train)
  d = int(np.prod(dataset.input_shape))
  if config.sgd_train_size > min(n, d):
    raise ValueError(f"--sgd_train_size {config.sgd_train_size} must be at "
                     f"most the training set ({n}) and the input dimension "
                     f"({d}) to interpolate.")
  kernel_config = config.kernel
  kernels.check_memory(n, kernel_config)
  kernels.require_memory(
      kernels.random_fourier_bytes(
          config.sgd_train_size + len(dataset.y_test), d,
          config.rff_features),
      f"--rff_features={config.rff_features}",
      "Use fewer --rff_features.")
  cli.claim_workdir(workdir, config, control, dataset)

  solver = kernels.choose_solver(n, kernel_config)
  print(reporting.format_setup(
      config.data, dataset,
      input_scale=input_scale_note(config.data.standardize),
      labels="true labels, or uniform random labels (per seed); one-hot "
             "targets, squared loss, argmax prediction",
      sgd=f"{config.sgd_train_size} digits per seed (stratified), batch "
          f"{config.sgd_batch_size}, lr 1 / max |phi_i|^2, "
          f"{config.sgd_epochs} epochs, {config.num_seeds} seeds; features: "
          f"pixels, {config.rff_features} random Fourier features, "
          "Gaussian N(0, 1) inputs with random labels",
      minimum_norm="lstsq (SVD of Phi, rcond = max(n, d) eps); Cholesky of "
                   "Phi Phi^T for comparison",
      kernel=f"RBF, gamma = 1 / (d var x); {n} x {n} matrix, "
             f"{kernels.memory_bytes(n, solver) / 2**30:.2f} GiB in "
             f"{np.dtype(kernels.solver_dtype(solver)).name} ({solver})",
      differs_from_paper=f"{n} training digits (paper: 60,000 MNIST)"
                         + ("; per-image standardization (paper: none)"
                            if config.data.standardize else "")))

  sgd_names = (*ZERO_INIT_SGD, RANDOM_INIT_SGD)
  per_seed = {name: [] for name in sgd_names}
  curves = {name: [] for name in sgd_names}
  kernel_rows = {"rbf_random_labels": [], "linear_random_labels": []}
  linear_config = kernels.KernelConfig(kernel="linear", solver="pinv")
  for seed in config.seeds:
    random_labels, cases = seed_data(dataset, seed, config.sgd_train_size,
                                     config.rff_features)
    for name, (x, y, x_test, y_test) in cases.items():
      sgd = config.sgd(name, seed)
      row, arrays = checkpointing.cached_case(
          workdir, f"{name}_seed{seed}",
          checkpointing.fingerprint(name, sgd, x, y, x_test, y_test),
          lambda: sgd_case(x, y, x_test, y_test, k, sgd))
      per_seed[name].append(row)
      curves[name].append(arrays["distances"])
      print(f"{name} seed {seed}: distance to the minimum-norm solution "
            f"{row['sgd_vs_minnorm_distance']:.2e} (Cholesky reference "
            f"{row['sgd_vs_minnorm_distance_cholesky']:.2e})")
    for kernel, solve in (("rbf", kernel_config), ("linear", linear_config)):
      name = f"{kernel}_random_labels"
      row, _ = checkpointing.cached_case(
          workdir, f"{name}_seed{seed}",
          checkpointing.fingerprint(name, solve, dataset.x_train,
                                    random_labels, dataset.x_test,
                                    dataset.y_test),
          lambda: kernel_case(solve, dataset.x_train, random_labels,
                              dataset.x_test, dataset.y_test, k))
      kernel_rows[name].append(row)
      print(f"{name} seed {seed}: {row['seconds']:.1f}s")

  summary = {name: aggregate(rows) for name, rows in per_seed.items()}
  summary.update({name: aggregate(rows) for name, rows in kernel_rows.items()})
  true_cases = {"rbf_true_labels": (kernel_config, lambda x: x),
                "linear_true_labels": (linear_config, lambda x: x)}
  if config.gabor:
    true_cases["gabor_rbf_true_labels"] = (kernel_config,
                                           kernel_study.gabor_features)
  test_wrong = {}
  for name, (solve, transform) in true_cases.items():
    row, arrays = checkpointing.cached_case(
        workdir, name,
        checkpointing.fingerprint(name, solve, dataset.x_train,
                                  dataset.y_train, dataset.x_test,
                                  dataset.y_test),
        lambda: kernel_case(solve, transform(dataset.x_train),
                            dataset.y_train, transform(dataset.x_test),
                            dataset.y_test, k))
    summary[name], test_wrong[name] = row, arrays["test_wrong"]
    print(f"{name}: {row['seconds']:.1f}s")
  if config.gabor:
    summary["gabor_vs_raw"] = gabor_comparison(
        summary["rbf_true_labels"], summary["gabor_rbf_true_labels"],
        test_wrong["rbf_true_labels"], test_wrong["gabor_rbf_true_labels"])

  rows = [{"case": name, **row} for name, row in summary.items()
          if name != "gabor_vs_raw"]
  print(reporting.format_table(rows, [
      "case", "seeds", "n", "d", "train_error", "test_error", "solution_norm",
      "sgd_vs_minnorm_distance", "sgd_vs_minnorm_distance_se",
      "sgd_vs_minnorm_distance_cholesky", "minnorm_solver_gap",
      "feature_condition_number", "out_of_span", "relative_residual", "solver",
      "seconds"]))
  verdicts = kernel_study.claims(summary, k)
  print(reporting.format_claims(verdicts))
  if summary["linear_true_labels"]["d"] < n:
    print(f"Note: the linear kernel has rank <= d = {d} < n = {n}, so it "
          "cannot interpolate; its rows are the minimum-norm least-squares "
          "solution.")
  print("Note: linear_sgd_random_init keeps its initial component outside the "
        "data span, so it converges to a different interpolant.")
  epochs = np.arange(config.sgd_epochs + 1)
  figure = reporting.plot_curves(
      f"{workdir}/sgd_distance.png",
      {name: (epochs, np.stack(c, 1)) for name, c in curves.items()},
      "SGD epochs", "|w_sgd - w_min_norm| / |w_min_norm|",
      f"SGD vs minimum-norm solution, n={config.sgd_train_size}, "
      f"{config.num_seeds} seeds", logy=True)
  runs = {"seeds": list(config.seeds), "sgd": per_seed, "kernel": kernel_rows,
          "sgd_distance_per_epoch": {name: np.stack(c)
                                     for name, c in curves.items()}}
  saved = cli.save_results(workdir, "implicit_regularization", config, runs,
                           summary, verdicts)
  print(f"Wrote {workdir}/results.json and {figure}")
  return saved


if __name__ == "__main__":
  cli.main(sys.modules[__name__])
