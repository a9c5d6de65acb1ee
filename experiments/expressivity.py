r"""Finite-sample expressivity: Theorem 1 of Zhang et al. 2017 (Sec. 4), built.

Claim tested: a two-layer ReLU network with 2n+d weights fits ANY labeling of n
points in d dimensions. We build the paper's network (random projection a,
sorted projections, interleaved biases b, lower-triangular system solved for w
in float64) for random labels on Gaussian data of growing n and on the embedded
MNIST (true and random labels), check that it has exactly 2n+d weights (d+n+kn
with k one-hot outputs) and training error 0, and report the fit error, the
Lemma's smallest eigenvalue min_i(z_i - b_i), the triangular system's condition
number, and what the same network does in float32 and on the test split.

Setup (printed as the run's header):
* Gaussian points: x_i ~ N(0, I_d), d = --gaussian_dim (784), n in --sizes.
* MNIST inputs: pixels / 255 in [0, 1], no other preprocessing (the default,
  as in Zhang et al.'s only MNIST experiment, Sec. 5: "no preprocessing";
  --standardize gives their CIFAR10 per-image standardization instead). The
  paper has no experiment for Theorem 1, which holds for any n distinct points;
  the 2n+d count and the exact fit do not depend on the preprocessing, and the
  condition number does not change under a global rescaling of the inputs.
* Labels: random labels are uniform over the 10 classes (a fresh draw per
  case, from --seed); true labels are MNIST's. The scalar-output network fits
  the class index as a real number, y_i in {0, ..., 9}, and is scored by
  rounding its output to the nearest integer; the k-output network fits
  one-hot targets and is scored by argmax.

Criteria (memjax.expressivity.claims, fixed before measuring; the
construction is deterministic given --seed, so the uncertainty of a count is 0
and the numerical margin is reported instead): the scalar construction has
exactly 2n+d weights; its training error is 0 on every case in float64; the
one-hot network has d+n+kn weights and training error 0.

How the condition number affects exactness: the system is lower triangular and
solved by substitution, which is backward stable, so the residual max|Aw - y|
stays small even at condition numbers near 1 / eps. What limits exactness is
evaluating the network: each hidden unit carries a rounding error of about
eps * max|<a, x>|, and the output sums them weighted by w, whose l1 norm grows
with the condition number. The column rounding_scale = eps * max|<a, x>| *
|w|_1 predicts the output error (output_error); the rounded outputs are exact
while it stays well below 0.5.

Command (Gaussian n = 500..4,000 in d = 784; MNIST-5k: 4,000 train / 1,000
test):

  python experiments/expressivity.py

Result: the measured values, uncertainties and verdicts of the default command
are in the README's results table (generated from
runs/expressivity/results.json by `python experiments/report.py
--mode=readme`; `python experiments/report.py` writes the full report). In
float64 the output error stays far below the 0.5 that rounding tolerates, so
the fit is exact; the same weights evaluated in float32 (eps 1.2e-7)
misclassify a growing share of the points as n grows.
The test error is at or above chance (the network memorizes, it does not
generalize; the scalar output extrapolates far outside the label range). The
one-hot test accuracy on random labels is not a claim and is not tested
against other labelings: the prediction depends on <a, x> alone, so one
draw's test accuracy need not be binomial around chance. Runtime: under a
minute on a 2-core CPU. The dense triangular system takes 8 n^2 bytes, so n
is limited to 32,768 (on full MNIST pass e.g. --train_size=20000).

Resume: each finished case is saved to --workdir/cases/<case>.npz with the
fingerprint of its data, labels and projection; a re-run of the same command
loads the finished cases and computes only the rest (cases take seconds, so
--checkpoint_seconds does not apply).

Outputs in --workdir: results.json (summary keyed by case: n, d, params,
train_error, train_error_float32, test_error, fit_error, output_error,
output_error_float32, rounding_scale, min_eigenvalue, condition_number,
weight_norm, seconds; the Gaussian sweep in runs), conditioning.png (condition
number and 1 / smallest eigenvalue vs n) and train_error.png (float64 vs
float32 training error vs n).
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
from memjax import keys
from memjax import reporting


def define_flags() -> None:
  """This experiment's flags, defined when it runs (not on import, so that
  several experiments can run in one process)."""
  cli.define_data_flags(standardize=False)
  cli.define_run_flags("runs/expressivity")
  flags.DEFINE_list("sizes", ["500", "1000", "2000", "4000"],
                    "Numbers of Gaussian points n for the sweep (integers "
                    ">= 2).")
  cli.define_int("gaussian_dim", 784, "Dimension d of the Gaussian points.",
                 low=1)
  cli.define_int("seed", 0, "Seeds the data, the labels and the projection.",
                 low=0, high=cli.MAX_SEED)


SMOKE_SIZES = (50, 100)
GAUSSIAN_CLASSES = 10


def run_case(x, labels, targets, key, x_test=None, y_test=None) -> dict:
  """Builds the network for (x, targets) and measures it on labels."""
  start = time.time()
  built = expressivity.construct(x, targets, key)
  seconds = time.time() - start
  outputs = {dtype: expressivity.predict(built.model, x, dtype)
             for dtype in (np.float64, np.float32)}
  n, d = len(x), int(np.prod(x.shape[1:]))
  targets = np.asarray(targets, np.float64).reshape(outputs[np.float64].shape)
  row = {"n": n, "d": d,
         "outputs": 1 if targets.ndim == 1 else targets.shape[1],
         "params": built.params,
         "train_error": expressivity.classification_error(outputs[np.float64],
                                                          labels),
         "train_error_float32": expressivity.classification_error(
             outputs[np.float32], labels),
         "test_error": None, "fit_error": built.fit_error,
         "output_error": float(np.max(np.abs(outputs[np.float64] - targets))),
         "output_error_float32": float(np.max(np.abs(outputs[np.float32]
                                                     - targets))),
         "rounding_scale": expressivity.rounding_scale(built.model, x),
         "min_eigenvalue": built.min_eigenvalue,
         "condition_number": built.condition_number,
         "weight_norm": built.weight_norm, "seconds": seconds}
  if x_test is not None:
    test_out = expressivity.predict(built.model, x_test)
    row["test_error"] = expressivity.classification_error(test_out, y_test)
  return row


def seed_keys(seed: int):
  """(data, label, projection) keys: Gaussian inputs, random MNIST labels and
  the direction a."""
  return keys.split(keys.seed_key(seed), 3)


def gaussian_data(n: int, d: int, seed: int):
  """(x, labels, projection key) of the Gaussian case with n points, a
  function of (seed, n) alone, so that any case can be computed on its own."""
  data_key, _, projection_key = seed_keys(seed)
  x = np.asarray(jax.random.normal(keys.derive(data_key, n), (n, d)))
  labels = keys.numpy_rng(seed, n).integers(0, GAUSSIAN_CLASSES, n)
  return x, labels, keys.derive(projection_key, n)


def case_prefix(dataset_name: str) -> str:
  """Cases on the embedded MNIST-5k and on full MNIST are both "mnist_*"."""
  return "mnist" if dataset_name in ("mnist", "mnist5k") else dataset_name


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that decides this experiment's results."""

  data: data_lib.DataConfig
  sizes: tuple[int, ...]  # numbers of Gaussian points n of the sweep
  gaussian_dim: int  # dimension d of the Gaussian points
  seed: int  # seeds the data, the labels and the projection


def config_from_flags(values) -> Config:
  """The run's frozen config (--smoke shrinks the data and the sweep); raises
  ValueError on bad input."""
  data_config = cli.data_config(values,
                                **(cli.SMOKE_DATA if values.smoke else {}))
  sizes = (SMOKE_SIZES if values.smoke
           else tuple(cli.positive_ints("sizes", values.sizes)))
  if min(sizes) < 2:
    raise ValueError(f"--sizes must be integers >= 2, got {values.sizes}.")
  for n in sizes:
    expressivity.check_size(n, values.gaussian_dim)
  return Config(data=data_config, sizes=sizes,
                gaussian_dim=values.gaussian_dim, seed=values.seed)


def cached_row(workdir: str, name: str, fingerprint: str, compute) -> dict:
  """``compute()``'s row, computed once per workdir (resume after a kill)."""
  row, _ = checkpointing.cached_case(workdir, name, fingerprint,
                                     lambda: (compute(), {}))
  return row


def run(config: Config, workdir: str,
        control: cli.RunControl = cli.RunControl()) -> dict:
  """Builds the network of every case (or loads the finished ones), prints
  the claims and writes results.json and the figures into ``workdir``;
  returns results.json's contents."""
  dataset = data_lib.load(config.data)
  expressivity.check_size(len(dataset.y_train),
                          int(np.prod(dataset.input_shape)))
  cli.claim_workdir(workdir, config, control, dataset)
  print(reporting.format_setup(
      config.data, dataset,
      gaussian_points=f"x ~ N(0, I_d), d={config.gaussian_dim}, n in "
                      f"{', '.join(map(str, config.sizes))}",
      labels="random: uniform over 10 classes; true: the dataset's; scalar "
             "output fits the class index (scored by rounding), k outputs fit "
             "one-hot targets (scored by argmax)",
      precision="float64 solve and evaluation; float32 evaluation shown",
      differs_from_paper="Theorem 1 is a construction; the paper runs no "
                         "experiment for it"))

  sweep = []
  for n in config.sizes:
    x, labels, key = gaussian_data(n, config.gaussian_dim, config.seed)
    name = f"gaussian_n{n}"
    sweep.append(cached_row(
        workdir, name,
        checkpointing.fingerprint(name, x, labels, jax.random.key_data(key)),
        lambda: run_case(x, labels, labels.astype(float), key)))
    print(f"gaussian n={n}: train error {sweep[-1]['train_error']:.2%}, "
          f"{sweep[-1]['seconds']:.1f}s")

  _, label_key, projection_key = seed_keys(config.seed)
  k = dataset.num_classes
  random_labels = np.asarray(jax.random.randint(
      label_key, (len(dataset.y_train),), 0, k))
  prefix = case_prefix(dataset.name)
  summary = {"gaussian_random_labels": sweep[-1]}
  cases = {f"{prefix}_true_labels": (dataset.y_train,
                                     dataset.y_train.astype(float)),
           f"{prefix}_random_labels": (random_labels,
                                       random_labels.astype(float)),
           f"{prefix}_random_labels_onehot": (random_labels,
                                              np.eye(k)[random_labels])}
  for name, (labels, targets) in cases.items():
    summary[name] = cached_row(
        workdir, name,
        checkpointing.fingerprint(name, config.data, dataset.x_train, targets,
                                  dataset.x_test, dataset.y_test,
                                  jax.random.key_data(projection_key)),
        lambda: run_case(dataset.x_train, labels, targets, projection_key,
                         dataset.x_test, dataset.y_test))

  rows = [{"case": name, **row} for name, row in summary.items()]
  print(reporting.format_table(rows, [
      "case", "n", "d", "outputs", "params", "train_error",
      "train_error_float32", "test_error", "fit_error", "output_error",
      "output_error_float32", "rounding_scale", "min_eigenvalue",
      "condition_number", "seconds"]))
  verdicts = expressivity.claims(summary, sweep, prefix)
  print(reporting.format_claims(verdicts))
  print("Note: the triangular system is solved and the network evaluated in "
        "float64; the float32 columns are the same weights evaluated in "
        "float32. rounding_scale = eps * max|<a, x>| * |w|_1 predicts the "
        "output error; rounded outputs are exact while it is well below 0.5.")

  ns = np.array(config.sizes, float)
  conditioning = reporting.plot_curves(
      f"{workdir}/conditioning.png",
      {"condition number of A (1-norm)":
           (ns, np.array([r["condition_number"] for r in sweep])),
       "1 / smallest eigenvalue min(z_i - b_i)":
           (ns, np.array([1 / r["min_eigenvalue"] for r in sweep]))},
      "n (Gaussian points)", "value", f"Theorem 1, d={config.gaussian_dim}",
      logy=True)
  errors = reporting.plot_curves(
      f"{workdir}/train_error.png",
      {"float64": (ns, np.array([r["train_error"] for r in sweep])),
       "float32": (ns, np.array([r["train_error_float32"] for r in sweep]))},
      "n (Gaussian points)", "training error (random labels)",
      "Theorem 1 network: the same weights in two precisions")
  saved = cli.save_results(workdir, "expressivity", config, sweep, summary,
                           verdicts)
  print(f"Wrote {workdir}/results.json, {conditioning} and {errors}")
  return saved


if __name__ == "__main__":
  cli.main(sys.modules[__name__])
