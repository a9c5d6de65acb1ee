"""End-to-end --smoke runs of experiments/regularization.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = os.path.join("experiments", "regularization.py")
SUMMARY_KEYS = {"train_acc", "test_acc", "best_test_acc", "seeds"}


def run(workdir, *flags):
  return subprocess.run(
      [sys.executable, SCRIPT, "--smoke", "--noprogress", "--seeds=1",
       "--workdir", str(workdir), *flags],
      capture_output=True, text=True, timeout=600, check=False)


def results(workdir):
  with open(os.path.join(workdir, "results.json")) as f:
    return json.load(f)


def test_table1_has_every_row_of_the_layout(tmp_path):
  workdir = str(tmp_path)
  out = run(workdir, "--mode=table1", "--models=mlp1x16",
            "--color_jitter=0.3")
  assert out.returncode == 0, out.stderr
  assert "Claims:" in out.stdout
  payload = results(workdir)
  assert payload["experiment"] == "regularization_table1"
  rows = payload["summary"]
  assert len(rows) == 8  # {crop} x {weight decay} x {true, random}
  settings = {(r["crop"], r["weight_decay"] > 0, r["labels"])
              for r in rows.values()}
  assert len(settings) == 8
  for row in rows.values():
    assert SUMMARY_KEYS <= set(row)
    assert row["best_test_acc"] >= row["test_acc"]
    assert row["seeds"] == 1
  assert "paper_test_acc" not in next(iter(rows.values()))
  assert len(payload["claims"]) == 3
  assert os.path.exists(os.path.join(workdir, "table1.png"))


def test_adversarial_sweep_has_one_point_per_strength_and_a_figure(tmp_path):
  workdir = str(tmp_path)
  out = run(workdir, "--mode=sweep", "--model=mlp1x16",
            "--regularizers=hidden_noise", "--strengths=0.2",
            "--adversarial", "--lass_iterations=2")
  assert out.returncode == 0, out.stderr
  assert "LASS adversarial training" in out.stdout
  payload = results(workdir)
  points = payload["summary"]
  assert set(points) == {"hidden_noise=0", "hidden_noise=0.2"}
  for point in points.values():
    assert SUMMARY_KEYS <= set(point)
  assert "hidden_noise=0.2/random_labels" in payload["runs"]
  assert os.path.exists(os.path.join(workdir, "sweep.png"))


def test_out_of_range_strengths_are_clear_errors(tmp_path):
  workdir = str(tmp_path)
  for flags, message in (
      (["--mode=sweep", "--regularizers=dropout", "--strengths=1.0"],
       "dropout=1.0"),
      (["--mode=table1", "--weight_decay=-0.1"], "weight_decay=-0.1"),
      (["--mode=sweep", "--model=inception",
        "--regularizers=dropout"], "inception")):
    out = run(workdir, "--overwrite", *flags)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert not os.path.exists(os.path.join(workdir, "results.json"))
