r"""Convergence time and test error vs label corruption (Zhang et al. Fig. 1b, 1c).

Claim tested: as the probability p that a training label is replaced by a
uniformly random class grows from 0 to 1, SGD still fits the training set, the
number of steps it needs grows (Fig. 1b), and the test error rises steadily
toward chance, 90% for 10 classes (Fig. 1c).

Command (embedded MNIST-5k, MLP 1x512, 3 seeds per level, levels 0, 0.2, ..., 1):

  python experiments/label_corruption.py

Expected (measured 2026-11-26): every level fits >= 99.9% of the training set
on every seed; the test error rises steadily from 5.6% at p=0 through 12.3%,
27.3%, 43.1%, 66.5% to 91.3% at p=1 (Fig. 1c reproduced). Convergence time
does NOT keep growing with p on our data: any noise at all more than doubles
the steps to fit (961 at p=0, 1,767-2,170 for every p >= 0.2: 1.8-2.3x), with
no further trend (Spearman rho 0.03); AlexNet on a GPU shows the same shape
(418 steps at p=0, 1,720-1,937 for p >= 0.2). The paper's CIFAR10 curve rises
steadily; on 4,000 digits memorizing 800 noisy labels against a strong pattern
takes about as long as memorizing 4,000 random ones. 82 s on an idle 2-core
CPU. Paper scale: add --dataset=cifar10 --model=alexnet --data_dir=DIR on a
GPU/TPU.

Outputs in --workdir: results.json (summary keyed corrupt_0.0 ... corrupt_1.0),
label_corruption.png (relative convergence time and test error vs p),
checkpoints and the corruption masks of every level. Re-running resumes.
"""

from absl import flags
import numpy as np
from scipy import stats

from memjax import cli
from memjax import reporting
from memjax import studies

cli.define_data_flags(standardize=True)
cli.define_train_flags(seeds=3, max_epochs=300)
cli.define_run_flags("runs/label_corruption")
cli.define_randomization_flags()
flags.DEFINE_list("levels", ["0", "0.2", "0.4", "0.6", "0.8", "1.0"],
                  "Label-corruption probabilities p in [0, 1].")
FLAGS = flags.FLAGS


def claims(levels, summary, num_classes) -> list[reporting.Claim]:
  error = np.array([1 - s["test_acc"] for s in summary.values()])
  steps = [s["steps_to_fit"] for s in summary.values()]
  chance_error = 1 - 1 / num_classes
  out = [reporting.Claim(
      "every corruption level is fit (>= 99% train accuracy on every seed)",
      all(s["train_acc_min"] >= 0.99 for s in summary.values()),
      ", ".join(f"p={p:g}: {s['train_acc_min']:.2%}"
                for p, s in zip(levels, summary.values())))]
  if len(levels) >= 3:
    rho = stats.spearmanr(levels, error).statistic
    out.append(reporting.Claim(
        "test error rises with p (Spearman rank correlation >= 0.9)",
        bool(rho >= 0.9), f"rho={rho:.2f}; errors " +
        ", ".join(f"{e:.1%}" for e in error)))
  if levels[-1] == 1.0:
    out.append(reporting.Claim(
        f"at p=1 the test error is at chance ({chance_error:.0%} +- 3%)",
        abs(error[-1] - chance_error) <= 0.03, f"{error[-1]:.2%}"))
  if len(levels) >= 3:
    fitted = [(p, t) for p, t in zip(levels, steps) if t is not None]
    rho = (stats.spearmanr(*zip(*fitted)).statistic if len(fitted) >= 3
           else float("nan"))
    out.append(reporting.Claim(
        "convergence time grows with p (Spearman rank correlation >= 0.8, "
        "every level fit)",
        len(fitted) == len(levels) and bool(rho >= 0.8),
        f"rho={rho:.2f}; steps " + ", ".join(str(t) for t in steps)))
  return out


def main(argv):
  del argv
  levels = cli.fractions("levels", FLAGS.levels)
  names = [f"corrupt_{p!r}" for p in levels]
  config = cli.study_config(FLAGS, names)
  cli.prepare(FLAGS)
  results = studies.run(config, FLAGS.workdir, progress=FLAGS.progress,
                        mesh=cli.mesh(FLAGS),
                        checkpoint_seconds=FLAGS.checkpoint_seconds)
  summary = studies.summarize(results, reference=names[0])
  for s in summary.values():
    s["test_error"] = 1 - s["test_acc"]
  rows = [{"p": p, **s} for p, s in zip(levels, summary.values())]
  print(reporting.format_table(rows, ["p", "train_acc_min", "test_acc",
                                      "test_error", "steps_to_fit", "slowdown",
                                      "corrupted_fraction", "seeds"]))
  num_classes = next(iter(results.values())).num_classes
  verdicts = claims(levels, summary, num_classes)
  print(reporting.format_claims(verdicts))
  noisy = [s["slowdown"] for p, s in zip(levels, summary.values()) if p > 0]
  if levels[0] == 0.0 and noisy and None not in noisy:
    print(f"Note: relative to p=0, every noisy level took {min(noisy):.2f}x to "
          f"{max(noisy):.2f}x the steps to fit; read the trend claim against "
          "this spread (the paper's CIFAR10 curve rises steadily with p).")
  test_error = {n: 1 - r.fit.history["test_acc"][-1] for n, r in results.items()}
  slowdown = [s["slowdown"] for s in summary.values()]
  figure = reporting.plot_panels(f"{FLAGS.workdir}/label_corruption.png", [
      {"title": "Fig. 1b: convergence slowdown", "xlabel": "label corruption p",
       "ylabel": "steps to fit / steps at lowest p",
       "lines": {config.train.model: (
           [p for p, v in zip(levels, slowdown) if v is not None],
           [v for v in slowdown if v is not None])}},
      {"title": "Fig. 1c: test error", "xlabel": "label corruption p",
       "ylabel": "test error",
       "lines": {config.train.model: (
           levels, [test_error[n].mean() for n in names],
           [test_error[n].std() for n in names])}},
  ])
  path = cli.write_results(FLAGS, "label_corruption",
                           studies.per_seed_runs(results, config.train.seed),
                           summary, verdicts)
  print(f"Wrote {path} and {figure}")


if __name__ == "__main__":
  cli.run_main(main)
