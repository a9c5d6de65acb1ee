r"""Compares memjax's per-example scores with a published score file.

Reads two score files in either published schema (``memjax.published``):
Jiang et al.'s C-score release (``labels``, ``scores``, e.g.
``cifar10-cscores-orig-order.npz``) or Feldman & Zhang's memorization release
(``tr_labels``, ``tr_mem``, e.g. ``cifar100_infl_matrix.npz``), and memjax's
file written by ``published.save_scores`` / ``published.save_infl_matrix`` in
the dataset's original order. Before anything else it checks, example by
example, that the two files' labels agree; if any disagree it refuses with
the count (the files are then in different orders or of different data, and
a correlation would mean nothing). Examples that either file leaves out
(label -1 or a non-finite score, e.g. those outside a memjax run's
``--train_size`` subset) are left out of the comparison and counted.

Reported (no claim is tested unless --min_spearman is given, since how
closely two estimates should agree depends on their models and numbers of
runs):

* Spearman's rank correlation over the shared examples, with a 95%
  percentile bootstrap interval over examples (--resamples, --seed);
* the overlap of the top and bottom k examples, k = 1%, 5% and 10% of them
  (--fractions): the share of the k examples both files pick, next to k / n,
  the overlap expected of unrelated scores; where scores tie at the cut, the
  number of tied examples left out is shown (ties go to the lower original
  index).

With --min_spearman=r, one claim fixed before the comparison: "memjax ranks
the examples like the published file: the lower end of the 95% bootstrap
interval of Spearman's correlation exceeds r".

Command (the files of the published releases, and memjax's in the same
schema):

  python experiments/compare_scores.py \
      --published=cifar100_infl_matrix.npz \
      --memjax=runs/cifar100_memorization.npz

Orientation: both files' scores are compared as they are; memorization and
C-scores point in opposite directions (a highly memorized example has a low
C-score), so comparing one with the other gives a negative correlation, and
its "highest" overlap is the other's "lowest".

Outputs in --workdir: results.json (``summary``: one row per statistic,
``value`` and its details; ``runs``: each file's path, schema, score array,
size and fingerprint). --smoke: 100 bootstrap resamples. Runs in seconds
(CIFAR's 50,000 examples: about 10 s, mostly the bootstrap).
"""

import dataclasses
import os
import sys

from absl import flags

from memjax import checkpointing
from memjax import cli
from memjax import published
from memjax import reporting

FRACTIONS = ("0.01", "0.05", "0.1")
SMOKE_RESAMPLES = 100


@dataclasses.dataclass(frozen=True)
class CompareConfig:
  """Which files to compare and how."""

  published: str  # absolute path of the published score file
  memjax: str  # absolute path of memjax's score file
  published_key: str | None = None  # score array (default: the schema's)
  memjax_key: str | None = None
  fractions: tuple[float, ...] = (0.01, 0.05, 0.1)
  resamples: int = 1000  # bootstrap resamples of the Spearman interval
  seed: int = 0  # seeds the bootstrap
  min_spearman: float | None = None  # the claim's threshold; None: no claim


def define_flags() -> None:
  """This command's flags, defined when it runs."""
  flags.DEFINE_string("published", None,
                      "The published score file (.npz: 'labels'/'scores' or "
                      "'tr_labels'/'tr_mem').")
  flags.DEFINE_string("memjax", None,
                      "memjax's score file in the same schemas "
                      "(memjax.published.save_scores / save_infl_matrix).")
  flags.DEFINE_string("published_key", None,
                      "Score array of --published (default: 'scores' or "
                      "'tr_mem').")
  flags.DEFINE_string("memjax_key", None,
                      "Score array of --memjax (default: 'scores' or "
                      "'tr_mem').")
  flags.DEFINE_list("fractions", list(FRACTIONS),
                    "Top/bottom shares of the examples whose overlap is "
                    "reported, each in (0, 1].")
  cli.define_int("resamples", 1000,
                 "Bootstrap resamples of the Spearman interval.", low=10)
  cli.define_int("seed", 0, "Seeds the bootstrap.", low=0, high=cli.MAX_SEED)
  cli.define_float("min_spearman", None,
                   "If set, claim that the lower end of the 95% interval of "
                   "Spearman's correlation exceeds this.", low=-1, high=1)
  cli.define_run_flags("runs/compare_scores")


def _input_file(name: str, path: str | None) -> str:
  if not path:
    raise ValueError(f"--{name} is required: the path of a score file.")
  if not os.path.isfile(path):
    raise ValueError(f"--{name} {path!r}: no such file.")
  return os.path.abspath(path)


def config_from_flags(values) -> CompareConfig:
  """The command's frozen config (--smoke: fewer resamples); raises
  ValueError on bad input."""
  fractions = cli.fractions("fractions", values.fractions)
  if fractions[0] <= 0:
    raise ValueError(f"--fractions must be in (0, 1], got {values.fractions}.")
  return CompareConfig(
      published=_input_file("published", values.published),
      memjax=_input_file("memjax", values.memjax),
      published_key=values.published_key, memjax_key=values.memjax_key,
      fractions=tuple(fractions),
      resamples=(min(values.resamples, SMOKE_RESAMPLES) if values.smoke
                 else values.resamples),
      seed=values.seed, min_spearman=values.min_spearman)


def file_run(scores: published.ScoreFile) -> dict:
  """What results.json records of one input file."""
  return {"path": scores.path, "schema": scores.schema, "key": scores.key,
          "examples": len(scores.scores),
          "fingerprint": checkpointing.fingerprint(scores.labels,
                                                   scores.scores)}


def claims(summary: dict, min_spearman: float | None) -> list[reporting.Claim]:
  """The --min_spearman claim, if one was set before the comparison."""
  if min_spearman is None:
    return []
  rho = summary["spearman"]
  return [reporting.Claim(
      f"memjax ranks the examples like the published file: the lower end of "
      f"the 95% bootstrap interval of Spearman's correlation exceeds "
      f"{min_spearman:g}",
      rho["low"] > min_spearman,
      f"Spearman {rho['value']:.3f} [{rho['low']:.3f}, {rho['high']:.3f}] "
      f"over {rho['examples']:,} examples",
      value=rho["value"], uncertainty=(rho["high"] - rho["low"]) / 2,
      threshold=min_spearman, interval=(rho["low"], rho["high"]))]


def run(config: CompareConfig, workdir: str,
        control: cli.RunControl = cli.RunControl()) -> dict:
  """Checks the labels, compares the scores, prints and writes results.json
  into ``workdir``; returns its contents. Bad files write nothing."""
  reference = published.load_scores(config.published, config.published_key)
  candidate = published.load_scores(config.memjax, config.memjax_key)
  published.matched(reference, candidate)  # refuses disagreeing labels
  cli.claim_workdir(workdir, config, control)
  summary = published.compare(reference, candidate, config.fractions,
                              config.resamples, config.seed)
  rho = summary["spearman"]
  print("Setup:\n"
        f"  published: {reference.path} ({reference.schema}, "
        f"'{reference.key}')\n"
        f"  memjax: {candidate.path} ({candidate.schema}, '{candidate.key}')\n"
        f"  compared: {rho['examples']:,} examples whose labels agree; "
        f"{rho['left_out']:,} left out (missing in either file)")
  print(f"Spearman {rho['value']:.4f}, 95% bootstrap interval "
        f"[{rho['low']:.4f}, {rho['high']:.4f}] ({config.resamples} "
        "resamples)")
  rows = [{"overlap": name, **row} for name, row in summary.items()
          if name != "spearman"]
  print(reporting.format_table(rows, ["overlap", "k", "value", "chance",
                                      "ties_reference", "ties_candidate"]))
  verdicts = claims(summary, config.min_spearman)
  if verdicts:
    print(reporting.format_claims(verdicts))
  saved = cli.save_results(
      workdir, "compare_scores", config,
      {"published": file_run(reference), "memjax": file_run(candidate)},
      summary, verdicts)
  print(f"Wrote {workdir}/results.json")
  return saved


if __name__ == "__main__":
  cli.main(sys.modules[__name__])
