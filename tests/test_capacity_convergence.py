"""capacity.py (Arpit et al. Fig. 5) and convergence_time.py (Fig. 6).

The claims are fed hand-made summaries (no training): every claim must fail
where the effect is absent or within noise and pass where it is present, and
cells that did not fit may only count where they cannot favour a claim. The
experiments then run end to end with --smoke, in this process: the results,
bad list flags named in one line before anything is written, and resuming per
cell after an interrupt with --checkpoint_seconds honoured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from experiments import capacity
from experiments import convergence_time
from memjax import cli
from memjax import engine
from memjax import randomization as rand_lib


def verdicts(claims, start: str) -> list[str]:
  """The verdicts of the claims whose text starts with ``start``; each must
  carry a value and a threshold."""
  matches = [c for c in claims if c.claim.startswith(start)]
  assert matches, (start, [c.claim for c in claims])
  for c in matches:
    assert c.value is not None and c.threshold is not None, c
    assert c.uncertainty is not None, c
  return [c.verdict for c in matches]


# --- capacity claims ----------------------------------------------------------

CHANCE = 0.1
WIDTHS = [32, 1024]


def cell(large, gain_share):
  """A capacity summary entry whose seeds reach ``large`` at the largest width
  and lack the share ``gain_share`` of it above chance at the smallest."""
  large = np.asarray(large, float)
  small = large - np.asarray(gain_share, float) * (large - CHANCE)
  return {"hidden_sizes": WIDTHS,
          "best_val_acc_seeds": [small.tolist(), large.tolist()]}


def capacity_summary(real, noisy, levels=(0.4, 0.8), noise="randY"):
  """{condition: cell}: ``real`` and one cell per level from ``noisy``."""
  out = {"real": cell(*real)}
  for p, args in zip(levels, noisy):
    out[capacity.condition_name(noise, p)] = cell(*args)
  return out


REAL = ([0.87, 0.875, 0.872], [0.02, 0.025, 0.015])


class CapacityClaimsTest(parameterized.TestCase):

  def claims(self, summary, levels=(0.0, 0.4, 0.8)):
    return capacity.claims(summary, ["randY"], list(levels), num_classes=10)

  def test_noise_that_needs_more_capacity_reproduces(self):
    summary = capacity_summary(REAL, [([0.75, 0.76, 0.74], [0.1, 0.12, 0.11]),
                                      ([0.6, 0.61, 0.62], [0.3, 0.28, 0.31])])
    claims = self.claims(summary)
    self.assertEqual(verdicts(claims, "randY: noise needs more capacity"),
                     ["REPRODUCED"])
    self.assertEqual(verdicts(claims, "randY: the capacity needed grows"),
                     ["REPRODUCED"])
    self.assertEqual(verdicts(claims, "randY: noise lowers"), ["REPRODUCED"])

  def test_equal_capacity_gains_do_not_reproduce(self):
    # The same share of the accuracy is gained at every level, and the
    # accuracy itself does not fall.
    summary = capacity_summary(REAL, [REAL, REAL])
    claims = self.claims(summary)
    self.assertEqual(verdicts(claims, "randY: noise needs more capacity"),
                     ["NOT REPRODUCED"])
    self.assertEqual(verdicts(claims, "randY: the capacity needed grows"),
                     ["NOT REPRODUCED"])
    self.assertEqual(verdicts(claims, "randY: noise lowers"),
                     ["NOT REPRODUCED"])

  def test_a_larger_gain_within_seed_noise_does_not_reproduce(self):
    summary = capacity_summary(REAL, [([0.75, 0.6, 0.7], [0.0, 0.3, 0.05]),
                                      ([0.6, 0.85, 0.4], [0.0, 0.4, -0.1])])
    claims = self.claims(summary)
    self.assertEqual(verdicts(claims, "randY: noise needs more capacity"),
                     ["NOT REPRODUCED"])
    self.assertEqual(verdicts(claims, "randY: the capacity needed grows"),
                     ["NOT REPRODUCED"])
    self.assertEqual(verdicts(claims, "randY: noise lowers"),
                     ["NOT REPRODUCED"])

  def test_gain_is_relative_to_the_accuracy_above_chance(self):
    # randX_0.8 replaces 80% of the validation inputs by noise: its accuracy
    # is 0.2 a + 0.8 chance, and its absolute gain shrinks by 0.2 although the
    # share G is the same as on real data.
    clean_large = np.array([0.87, 0.875, 0.872])
    clean_small = clean_large - 0.02
    scaled = lambda a: 0.2 * a + 0.8 * CHANCE
    summary = {"real": {"hidden_sizes": WIDTHS, "best_val_acc_seeds": [
        clean_small.tolist(), clean_large.tolist()]},
               "randX_0.8": {"hidden_sizes": WIDTHS, "best_val_acc_seeds": [
                   scaled(clean_small).tolist(), scaled(clean_large).tolist()]}}
    np.testing.assert_allclose(
        capacity.capacity_gain(summary["randX_0.8"], CHANCE),
        capacity.capacity_gain(summary["real"], CHANCE))
    claims = capacity.claims(summary, ["randX"], [0.0, 0.8], num_classes=10)
    self.assertEqual(verdicts(claims, "randX: noise needs more capacity"),
                     ["NOT REPRODUCED"])

  def test_one_seed_cannot_decide(self):
    summary = {"real": cell([0.87], [0.02]), "randY_0.8": cell([0.6], [0.3])}
    claims = capacity.claims(summary, ["randY"], [0.0, 0.8], num_classes=10)
    self.assertNotEmpty(claims)
    self.assertTrue(all(c.verdict == "NOT REPRODUCED" for c in claims))

  def test_trend_is_the_least_squares_slope(self):
    slope, se = capacity.trend([0.0, 0.4, 0.8], [0.1, 0.3, 0.5],
                               [0.01, 0.01, 0.01])
    self.assertAlmostEqual(slope, 0.5)
    self.assertAlmostEqual(se, 0.01 * np.sqrt(2) / 0.8)

  @parameterized.parameters((0.0, "real"), (1.0, "randX"),
                            (0.4, "randX_0.4"), (1e-5, "randX_0.00001"))
  def test_condition_names_parse_back_to_the_level(self, level, name):
    self.assertEqual(capacity.condition_name("randX", level), name)
    self.assertEqual(rand_lib.from_name(name).fraction, level)

  def test_no_claims_without_real_data_or_noise(self):
    self.assertEmpty(capacity.claims({"real": cell(*REAL)}, ["randY"], [0.0],
                                     num_classes=10))
    self.assertEmpty(capacity.claims({"randY_0.8": cell(*REAL)}, ["randY"],
                                     [0.8], num_classes=10))


# --- convergence_time claims --------------------------------------------------

SIZES = [250, 500, 1000, 2000, 4000]
HIDDEN = [32, 64, 128, 256, 512]
BUDGET = 400
JITTER = np.array([0.95, 1.0, 1.05])


def convergence_summary(by_size: dict, by_width: dict) -> dict:
  """``convergence_time.summarize`` of per-condition epochs: ``by_size[name]``
  lists the typical epochs per size (None: no seed fit), seed j's scaled by
  JITTER[(i + j) % 3] at point i (so that seeds' slopes differ); ``by_width``
  likewise per width. Round-tripped through JSON, as the claims may read it
  back from results.json."""
  names = list(by_size)

  def sweep(table, points):
    return {x: np.array([[np.nan if table[n][i] is None else
                          table[n][i] * JITTER[(i + j) % len(JITTER)]
                          for j in range(len(JITTER))] for n in names])
            for i, x in enumerate(points)}

  summary = convergence_time.summarize(
      names, HIDDEN, 1000, SIZES, 256, BUDGET, sweep(by_width, HIDDEN),
      sweep(by_size, SIZES))
  return json.loads(json.dumps(summary))


REAL_BY_SIZE = [40, 36, 32, 30, 28]
REAL_BY_WIDTH = [30, 30, 31, 30, 30]
GROWING = [40, 60, 90, 140, 220]
SHRINKING = [300, 200, 130, 80, 50]


class ConvergenceClaimsTest(parameterized.TestCase):

  def test_noise_growing_with_n_and_shrinking_with_width_reproduces(self):
    summary = convergence_summary(
        {"real": REAL_BY_SIZE, "randY": GROWING},
        {"real": REAL_BY_WIDTH, "randY": SHRINKING})
    claims = convergence_time.claims(summary)
    self.assertEqual(verdicts(claims, "randY: epochs to fit"), ["REPRODUCED"])
    self.assertEqual(verdicts(claims, "randY: more capacity"), ["REPRODUCED"])
    self.assertEqual(verdicts(claims, "randY takes more epochs"),
                     ["REPRODUCED"])

  def test_noise_growing_like_real_data_does_not_reproduce(self):
    # Noise is slower everywhere by the same factor (same log-log slope), flat
    # in width, and as fast as real data at the largest n.
    slower = [2 * e for e in REAL_BY_SIZE[:-1]] + [REAL_BY_SIZE[-1]]
    summary = convergence_summary(
        {"real": REAL_BY_SIZE, "randX": [1.5 * e for e in REAL_BY_SIZE],
         "randY": slower},
        {"real": REAL_BY_WIDTH, "randX": REAL_BY_WIDTH,
         "randY": REAL_BY_WIDTH})
    claims = convergence_time.claims(summary)
    self.assertEqual(verdicts(claims, "randX: epochs to fit"),
                     ["NOT REPRODUCED"])
    self.assertEqual(verdicts(claims, "randX: more capacity"),
                     ["NOT REPRODUCED"])
    self.assertEqual(verdicts(claims, "randY takes more epochs"),
                     ["NOT REPRODUCED"])

  def test_effect_within_seed_noise_does_not_reproduce(self):
    summary = convergence_summary({"real": REAL_BY_SIZE, "randY": GROWING},
                                  {"real": REAL_BY_WIDTH, "randY": SHRINKING})
    # Seeds that disagree: one grows, one shrinks, one is flat.
    summary["randY"]["epochs_to_fit_by_size_seeds"] = [
        [40, 200, 40], [60, 120, 40], [90, 80, 40], [140, 50, 40],
        [220, 30, 40]]
    summary["randY"]["epochs_to_fit_seeds"] = [
        [300, 30, 30], [200, 50, 30], [130, 80, 30], [80, 130, 30],
        [50, 200, 30]]
    claims = convergence_time.claims(summary)
    self.assertEqual(verdicts(claims, "randY: epochs to fit"),
                     ["NOT REPRODUCED"])
    self.assertEqual(verdicts(claims, "randY: more capacity"),
                     ["NOT REPRODUCED"])
    self.assertEqual(verdicts(claims, "randY takes more epochs"),
                     ["NOT REPRODUCED"])

  def test_noise_not_fit_where_it_only_weakens_a_claim_counts_as_the_budget(
      self):
    summary = convergence_summary(
        {"real": REAL_BY_SIZE, "randY": GROWING[:-1] + [None]},
        {"real": REAL_BY_WIDTH, "randY": [None] + SHRINKING[1:]})
    self.assertIsNone(summary["randY"]["epochs_to_fit_by_size"][-1])
    claims = convergence_time.claims(summary)
    self.assertEqual(verdicts(claims, "randY: epochs to fit"), ["REPRODUCED"])
    self.assertEqual(verdicts(claims, "randY: more capacity"), ["REPRODUCED"])
    self.assertEqual(verdicts(claims, "randY takes more epochs"),
                     ["REPRODUCED"])

  @parameterized.named_parameters(
      # Real data not fit at the largest n: its true slope may be larger.
      ("real_not_fit_at_largest_n", {"real": REAL_BY_SIZE[:-1] + [None]}, {},
       ("randY: epochs to fit", "randY takes more epochs")),
      # Noise not fit at the smallest n: its true slope may be smaller.
      ("noise_not_fit_at_smallest_n", {"randY": [None] + GROWING[1:]}, {},
       ("randY: epochs to fit",)),
      # Noise not fit at the largest width: its true slope may be flatter.
      ("noise_not_fit_at_largest_width", {},
       {"randY": SHRINKING[:-1] + [None]}, ("randY: more capacity",)))
  def test_cells_not_fit_that_could_favour_a_claim_leave_it_undecided(
      self, by_size, by_width, undecided):
    sizes = {"real": REAL_BY_SIZE, "randY": GROWING, **by_size}
    widths = {"real": REAL_BY_WIDTH, "randY": SHRINKING, **by_width}
    claims = convergence_time.claims(convergence_summary(sizes, widths))
    for start in undecided:
      self.assertEqual(verdicts(claims, start), ["NOT REPRODUCED"])
      self.assertIn("UNDECIDED", [c for c in claims
                                  if c.claim.startswith(start)][0].measured)

  def test_slopes_are_per_seed_least_squares_in_log_log(self):
    epochs = [[10, 20], [20, 20], [40, 20]]  # seed 0 doubles per doubling
    slopes, censored = convergence_time.log_slopes([1, 2, 4], epochs, BUDGET)
    np.testing.assert_allclose(slopes, [1.0, 0.0], atol=1e-12)
    self.assertFalse(censored.any())

  def test_no_claims_without_real_data(self):
    summary = convergence_summary({"randY": GROWING}, {"randY": SHRINKING})
    self.assertEmpty(convergence_time.claims(summary))


# --- end to end ---------------------------------------------------------------

EXPERIMENTS = {"capacity": capacity, "convergence_time": convergence_time}
FIELDS = {"capacity": ("hidden_sizes", "best_val_acc", "best_val_acc_se",
                       "best_val_acc_seeds"),
          "convergence_time": ("epochs_to_fit", "epochs_to_fit_se",
                               "epochs_to_fit_seeds", "epochs_to_fit_by_size",
                               "epochs_to_fit_by_size_se",
                               "epochs_to_fit_by_size_seeds")}
CONDITIONS = {"capacity": ["real", "randX_0.8", "randY_0.8"],
              "convergence_time": ["real", "randX", "randY"]}


def execute(name, *args) -> tuple[int, str, str]:
  """(exit status, stdout, stderr) of ``python experiments/<name>.py *args``,
  run in this process."""
  return cli.execute_captured(EXPERIMENTS[name], list(args))


def smoke(name, workdir, *args) -> tuple[int, str, str]:
  return execute(name, "--smoke", "--noprogress", f"--workdir={workdir}",
                 *args)


@contextlib.contextmanager
def fit_calls(stop_at: int = 0):
  """Records (checkpoint_dir, checkpoint_seconds) of every ``engine.fit``
  call; the ``stop_at``-th call raises Ctrl-C's exception instead (0: none)."""
  calls = []
  original = engine.fit

  def fit(*args, **kwargs):
    calls.append((kwargs.get("checkpoint_dir"),
                  kwargs.get("checkpoint_seconds")))
    if len(calls) == stop_at:
      raise KeyboardInterrupt
    return original(*args, **kwargs)

  with mock.patch.object(engine, "fit", fit):
    yield calls


class EndToEndTest(parameterized.TestCase):

  def workdir(self) -> str:
    path = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return os.path.join(path, "run")

  def results(self, workdir) -> dict:
    with open(os.path.join(workdir, "results.json")) as f:
      return json.load(f)

  @parameterized.parameters("capacity", "convergence_time")
  def test_smoke_resumes_per_cell_with_checkpoint_seconds(self, name):
    interrupted, fresh = self.workdir(), self.workdir()
    # Ctrl-C as the second cell starts: one line, exit 130, first cell kept.
    with fit_calls(stop_at=2) as calls:
      code, _, stderr = smoke(name, interrupted, "--checkpoint_seconds=7")
    self.assertEqual(code, 130, stderr[-3000:])
    self.assertEqual(stderr.strip().splitlines(),
                     ["interrupted; re-run the same command to resume"])
    self.assertLen(calls, 2)
    self.assertTrue(os.path.isdir(calls[0][0]))

    with fit_calls() as calls:
      code, _, stderr = smoke(name, interrupted, "--checkpoint_seconds=7")
    self.assertEqual(code, 0, stderr[-3000:])
    self.assertGreaterEqual(len(calls), 2)
    self.assertEqual({seconds for _, seconds in calls}, {7.0})
    directories = [d for d, _ in calls]
    self.assertLen(set(directories), len(directories))  # one per cell
    for d in directories:
      self.assertEqual(os.path.dirname(d), os.path.abspath(interrupted))
    resumed = self.results(interrupted)

    code, stdout, stderr = smoke(name, fresh, "--checkpoint_seconds=7")
    self.assertEqual(code, 0, stderr[-3000:])
    self.assertIn("Setup:", stdout)
    self.assertIn("pixels / 255", stdout)
    uninterrupted = self.results(fresh)
    self.assertEqual(resumed["summary"], uninterrupted["summary"])

    self.assertEqual(uninterrupted["experiment"], name)
    self.assertEqual(list(uninterrupted["summary"]), CONDITIONS[name])
    for entry in uninterrupted["summary"].values():
      for field in FIELDS[name]:
        self.assertIn(field, entry)
    self.assertLen(uninterrupted["claims"], 6)
    for claim in uninterrupted["claims"]:
      for key in ("value", "uncertainty", "threshold", "verdict"):
        self.assertIn(key, claim)
      self.assertIn(claim["verdict"], ("REPRODUCED", "NOT REPRODUCED"))
    self.assertTrue(os.path.exists(os.path.join(fresh, f"{name}.png")))

  @parameterized.parameters(
      ("capacity", "--noise=", "--noise"),
      ("capacity", "--noise=randZ", "--noise"),
      ("capacity", "--levels=", "--levels"),
      ("capacity", "--levels=0,1.5", "--levels"),
      ("capacity", "--hidden_sizes=", "--hidden_sizes"),
      ("capacity", "--randomization_seed=-1", "--randomization_seed"),
      ("convergence_time", "--conditions=", "--conditions"),
      ("convergence_time", "--conditions=real,randZ", "--conditions"),
      ("convergence_time", "--train_sizes=0,250", "--train_sizes"),
      ("convergence_time", "--capacity_train_size=0", "--capacity_train_size"),
      ("convergence_time", "--size_sweep_hidden=nan", "--size_sweep_hidden"),
      ("convergence_time", "--train_size=100", "--train_size"),
      ("convergence_time", "--checkpoint_seconds=-1", "--checkpoint_seconds"))
  def test_bad_flag_is_one_line_naming_it_and_writes_nothing(self, name, flag,
                                                            named):
    workdir = self.workdir()
    code, _, stderr = smoke(name, workdir, flag)
    self.assertEqual(code, 2, stderr[-3000:])
    lines = stderr.strip().splitlines()
    self.assertLen(lines, 1, stderr)
    self.assertStartsWith(lines[0], "error: ")
    self.assertIn(named, lines[0])
    self.assertFalse(os.path.exists(workdir))

  def test_training_set_larger_than_the_data_writes_nothing(self):
    workdir = self.workdir()
    code, _, stderr = execute("convergence_time", "--noprogress",
                              f"--workdir={workdir}", "--train_sizes=250,99999")
    self.assertEqual(code, 2, stderr[-3000:])
    self.assertIn("99999", stderr)
    self.assertFalse(os.path.exists(workdir))

  @parameterized.parameters(
      ("capacity", {"levels": (0.8, 0.0)}, "--levels"),
      ("capacity", {"hidden_sizes": (16, 8)}, "--hidden_sizes"),
      ("capacity", {"noise_types": ("randZ",)}, "--noise"),
      ("convergence_time", {"train_sizes": ()}, "--train_sizes"),
      ("convergence_time", {"conditions": ("real", "randZ")}, "--conditions"),
      ("convergence_time", {"size_sweep_hidden": 0}, "--size_sweep_hidden"))
  def test_config_built_in_code_is_validated_too(self, name, changes, named):
    config, _, _ = cli.from_args(EXPERIMENTS[name], ["--smoke"])
    with self.assertRaisesRegex(ValueError, named):
      dataclasses.replace(config, **changes)


if __name__ == "__main__":
  absltest.main()
