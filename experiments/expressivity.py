r"""Finite-sample expressivity: Theorem 1 of Zhang et al. 2017 (Sec. 4), built.

Claim tested: a two-layer ReLU network with 2n+d weights fits ANY labeling of n
points in d dimensions. We build the paper's network (random projection a,
sorted projections, interleaved biases b, lower-triangular system solved for w
in float64) for random labels on Gaussian data of growing n and on the embedded
MNIST (true and random labels), check that it has exactly 2n+d weights (d+n+kn
with k one-hot outputs) and training error 0, and report the fit error, the
Lemma's smallest eigenvalue min_i(z_i - b_i), the triangular system's condition
number, and what the same network does in float32 and on the test split.

Command (Gaussian n = 500..4,000 in d = 784; MNIST-5k: 4,000 train / 1,000 test):

  python experiments/expressivity.py

Expected: training error 0 in float64 for every case, with 2n+d = 8,784 weights
at n = 4,000 (44,784 for 10 one-hot outputs); condition numbers from ~1e11
(n = 500) to ~1e15 (n = 4,000), so the same weights evaluated in float32
misclassify ~90% of the points (neighbouring projections collide in float32);
test error at or above chance (the network memorizes, it does not generalize:
~88% with one-hot outputs, 100% with the scalar output, which extrapolates
far outside the label range).
13 s on an idle 2-core CPU (measured 2026-11-26). The dense triangular system takes 8 n^2
bytes, so n is limited to 32,768 (on full MNIST pass e.g. --train_size=20000).

Outputs in --workdir: results.json (summary keyed by case: n, d, params,
train_error, train_error_float32, test_error, fit_error, min_eigenvalue,
condition_number, weight_norm, seconds; the Gaussian sweep in runs),
conditioning.png (condition number and 1 / smallest eigenvalue vs n) and
train_error.png (float64 vs float32 training error vs n).
"""

from __future__ import annotations

import time

import jax
import numpy as np
from absl import flags

from memjax import cli
from memjax import data as data_lib
from memjax import expressivity
from memjax import reporting

cli.define_data_flags(standardize=True)
cli.define_run_flags("runs/expressivity")
flags.DEFINE_list("sizes", ["500", "1000", "2000", "4000"],
                  "Numbers of Gaussian points n for the sweep.")
flags.DEFINE_integer("gaussian_dim", 784, "Dimension d of the Gaussian points.")
flags.DEFINE_integer("seed", 0, "Seeds the data, the labels and the projection.")
FLAGS = flags.FLAGS

SMOKE_SIZES = (50, 100)


def run_case(x, labels, targets, key, x_test=None, y_test=None) -> dict:
  """Builds the network for (x, targets) and measures it on labels."""
  start = time.time()
  built = expressivity.construct(x, targets, key)
  seconds = time.time() - start
  train_out = expressivity.predict(built.model, x)
  train_out32 = expressivity.predict(built.model, x, np.float32)
  n, d = len(x), int(np.prod(x.shape[1:]))
  row = {"n": n, "d": d, "outputs": 1 if targets.ndim == 1 else targets.shape[1],
         "params": built.params,
         "train_error": expressivity.classification_error(train_out, labels),
         "train_error_float32": expressivity.classification_error(train_out32,
                                                                  labels),
         "test_error": None, "fit_error": built.fit_error,
         "min_eigenvalue": built.min_eigenvalue,
         "condition_number": built.condition_number,
         "weight_norm": built.weight_norm, "seconds": seconds}
  if x_test is not None:
    test_out = expressivity.predict(built.model, x_test)
    row["test_error"] = expressivity.classification_error(test_out, y_test)
  return row


def case_prefix(dataset_name: str) -> str:
  """Cases on the embedded MNIST-5k and on full MNIST are both "mnist_*"."""
  return "mnist" if dataset_name in ("mnist", "mnist5k") else dataset_name


def claims(summary: dict, sweep: list[dict],
           prefix: str) -> list[reporting.Claim]:
  scalar = {**{f"gaussian n={r['n']}": r for r in sweep},
            **{k: v for k, v in summary.items()
               if v["outputs"] == 1 and k.startswith(prefix)}}
  exact = {k: r["params"] == 2 * r["n"] + r["d"] for k, r in scalar.items()}
  out = [reporting.Claim(
      "the construction has exactly 2n+d weights (scalar output)",
      all(exact.values()),
      ", ".join(f"{k}: {r['params']} (2n+d={2 * r['n'] + r['d']})"
                for k, r in scalar.items()))]
  fits = {k: r["train_error"] for k, r in scalar.items()}
  out.append(reporting.Claim(
      "it fits every labeling: training error 0 on random labels of Gaussian "
      f"data and on {prefix} (float64)",
      all(e == 0 for e in fits.values()),
      ", ".join(f"{k}: {e:.2%} in {scalar[k]['seconds']:.1f}s"
                for k, e in fits.items())))
  onehot = summary.get(f"{prefix}_random_labels_onehot")
  if onehot:
    n, d, k = onehot["n"], onehot["d"], onehot["outputs"]
    out.append(reporting.Claim(
        "k one-hot outputs sharing a and b: d+n+kn weights, training error 0",
        onehot["params"] == d + n + k * n and onehot["train_error"] == 0,
        f"{onehot['params']} weights (d+n+kn={d + n + k * n}), training error "
        f"{onehot['train_error']:.2%}"))
  return out


def main(argv):
  del argv
  data_config = cli.data_config(FLAGS,
                                **(cli.SMOKE_DATA if FLAGS.smoke else {}))
  sizes = (SMOKE_SIZES if FLAGS.smoke
           else tuple(cli.positive_ints("sizes", FLAGS.sizes)))
  if min(sizes) < 2:
    raise ValueError(f"--sizes must be integers >= 2, got {FLAGS.sizes}.")
  cli.prepare(FLAGS)
  key = jax.random.key(FLAGS.seed)
  data_key, label_key, projection_key = jax.random.split(key, 3)
  rng = np.random.default_rng(FLAGS.seed)

  sweep = []
  for n in sizes:
    x = np.asarray(jax.random.normal(jax.random.fold_in(data_key, n),
                                     (n, FLAGS.gaussian_dim)))
    labels = rng.integers(0, 10, n)
    sweep.append(run_case(x, labels, labels.astype(float),
                          jax.random.fold_in(projection_key, n)))
    print(f"gaussian n={n}: train error {sweep[-1]['train_error']:.2%}, "
          f"{sweep[-1]['seconds']:.1f}s")

  dataset = data_lib.load(data_config)
  k = dataset.num_classes
  random_labels = np.asarray(jax.random.randint(
      label_key, (len(dataset.y_train),), 0, k))
  prefix = case_prefix(dataset.name)
  summary = {"gaussian_random_labels": sweep[-1]}
  for name, labels in (("true_labels", dataset.y_train),
                       ("random_labels", random_labels)):
    summary[f"{prefix}_{name}"] = run_case(
        dataset.x_train, labels, labels.astype(float), projection_key,
        dataset.x_test, dataset.y_test)
  summary[f"{prefix}_random_labels_onehot"] = run_case(
      dataset.x_train, random_labels, np.eye(k)[random_labels], projection_key,
      dataset.x_test, dataset.y_test)

  rows = [{"case": name, **row} for name, row in summary.items()]
  print(reporting.format_table(rows, [
      "case", "n", "d", "outputs", "params", "train_error",
      "train_error_float32", "test_error", "fit_error", "min_eigenvalue",
      "condition_number", "seconds"]))
  verdicts = claims(summary, sweep, prefix)
  print(reporting.format_claims(verdicts))
  print("Note: the triangular system is solved and the network evaluated in "
        "float64; train_error_float32 is the same network in float32, where "
        "neighbouring projections of a few thousand points collide.")

  ns = np.array(sizes, float)
  conditioning = reporting.plot_curves(
      f"{FLAGS.workdir}/conditioning.png",
      {"condition number of A (1-norm)":
           (ns, np.array([r["condition_number"] for r in sweep])),
       "1 / smallest eigenvalue min(z_i - b_i)":
           (ns, np.array([1 / r["min_eigenvalue"] for r in sweep]))},
      "n (Gaussian points)", "value", f"Theorem 1, d={FLAGS.gaussian_dim}",
      logy=True)
  errors = reporting.plot_curves(
      f"{FLAGS.workdir}/train_error.png",
      {"float64": (ns, np.array([r["train_error"] for r in sweep])),
       "float32": (ns, np.array([r["train_error_float32"] for r in sweep]))},
      "n (Gaussian points)", "training error (random labels)",
      "Theorem 1 network: the same weights in two precisions")
  path = cli.write_results(FLAGS, "expressivity", sweep, summary, verdicts)
  print(f"Wrote {path}, {conditioning} and {errors}")


if __name__ == "__main__":
  cli.run_main(main)
