"""Hostile but realistic input (issue 14): a user's files and hours are safe.

Every bad flag of every experiment gets one ``error:`` line naming the bad
value and the valid ones, exit status 2, no traceback, and writes nothing;
``--overwrite`` never deletes a file memjax did not write; checkpoints are tied
to the flags that wrote them; a second run on a workdir is refused; damaged
state gives one line naming the file; divergence on the last update fails the
run; Ctrl-C prints one line, exits 130, and the same command resumes.

Command lines run in this process (``cli.execute``: the same parsing, checks
and exit statuses as ``python experiments/<name>.py``), except where a second
process is the point: a run refused because another process holds the
workdir, and a real SIGINT.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from experiments import random_labels
from memjax import checkpointing
from memjax import cli
from memjax import hooks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# experiment -> [(arguments, text the one error line must contain)].
BAD_INPUT = {
    "random_labels": [
        (["--momentum=2"], "--momentum must be in [0, 1)"),
        (["--momentum=-1"], "--momentum must be in [0, 1)"),
        (["--momentum=nan"], "--momentum must be in [0, 1)"),
        (["--lr_decay=0"], "--lr_decay must be in (0, 1]"),
        (["--lr_decay=-1"], "--lr_decay must be in (0, 1]"),
        (["--lr_decay=nan"], "--lr_decay must be in (0, 1]"),
        (["--learning_rate=inf"], "--learning_rate must be > 0"),
        (["--learning_rate=0"], "--learning_rate must be > 0"),
        (["--seed=99999999999"], "--seed must be in [0, 2147483647]"),
        (["--seeds=nan"], "--seeds=nan"),
        (["--seeds=0"], "--seeds must be >= 1"),
        (["--eval_every=0"], "--eval_every must be >= 1"),
        (["--eval_every=x"], "--eval_every=x"),
        (["--no_such_flag=1"], "no_such_flag"),
        (["--smoke", "leftover"], "unexpected arguments ['leftover']"),
        (["--conditions=true_labels,shuffled"], "shuffled"),
        (["--dataset=imagenet"], "imagenet"),
        (["--dataset=mnist", "--data_dir=/no/such/tfds_dir"],
         "/no/such/tfds_dir"),
        (["--train_size=999999"], "999999"),
        (["--image_size=5"], "image_size 5"),
        (["--checkpoint_seconds=-1"], "--checkpoint_seconds must be >= 0"),
        (["--seeds=1000000"], "GiB"),
    ],
    "label_corruption": [
        (["--levels="], "--levels"),
        (["--levels=0,1.5"], "1.5"),
        (["--batch_size=0"], "--batch_size must be >= 1"),
    ],
    "memorization_scores": [
        (["--corruption=-0.1"], "--corruption"),
        (["--corruption=nan"], "--corruption"),
        (["--show=0"], "--show"),
        (["--show=-2"], "--show"),
        (["--top_k=0"], "--top_k"),
    ],
    "implicit_regularization": [
        (["--sgd_train_size=-3"], "--sgd_train_size"),
        (["--rff_features=-10"], "--rff_features"),
        (["--rff_features=0"], "--rff_features"),
        (["--max_dense_gib=0"], "--max_dense_gib"),
    ],
    "expressivity": [
        (["--gaussian_dim=-5"], "--gaussian_dim"),
        (["--sizes="], "--sizes"),
    ],
    "regularization": [
        (["--crop_shift=1000"], "--crop_shift"),
        (["--weight_decay=inf"], "--weight_decay"),
        (["--mode=sweep", "--strengths="], "--strengths"),
        (["--lass_iterations=0"], "--lass_iterations"),
    ],
    "sharpness": [
        (["--lanczos_iterations=100000"], "--lanczos_iterations"),
        (["--epsilon=inf"], "--epsilon"),
        (["--conditions="], "--conditions"),
    ],
    "critical_samples": [
        (["--conditions="], "--conditions"),
        (["--lass_radius=-1"], "--lass_radius"),
        (["--lass_radius=inf"], "--lass_radius"),
    ],
    "capacity": [
        (["--noise="], "--noise"),
        (["--hidden_sizes=0"], "--hidden_sizes"),
        (["--model=alexnet"], "'model'"),  # widths set the models
    ],
    "convergence_time": [
        (["--train_sizes="], "--train_sizes"),
        (["--model=alexnet"], "'model'"),
    ],
    "loss_sensitivity": [
        (["--conditions="], "--conditions"),
    ],
    "easy_examples": [
        (["--conditions=real,randZ"], "randZ"),
    ],
    "example_scores": [
        (["--score_epoch=0"], "--score_epoch"),
    ],
}


@dataclasses.dataclass
class Completed:
  """What a command line printed and its exit status."""

  returncode: int
  stdout: str
  stderr: str


def _execute(experiment, args) -> Completed:
  """``python experiments/<experiment>.py *args``, in this process."""
  return Completed(*cli.execute_captured(experiment, args))


SMOKE = ["--smoke", "--noprogress", "--conditions=true_labels"]


def _smoke(workdir, *extra):
  """A seconds-long random_labels run (true labels only) in ``workdir``."""
  return _execute(random_labels, [*SMOKE, f"--workdir={workdir}", *extra])


class HostileTest(parameterized.TestCase):

  def tmp(self) -> str:
    path = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path

  def assert_one_error_line(self, proc, *expected):
    self.assertEqual(proc.returncode, 2, proc.stdout[-2000:] + proc.stderr)
    self.assertNotIn("Traceback", proc.stderr)
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    self.assertLen(errors, 1, proc.stderr)
    for text in expected:
      self.assertIn(text, errors[0])

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.finished = tempfile.mkdtemp()
    cls.run_dir = os.path.join(cls.finished, "run")
    proc = _smoke(cls.run_dir)
    assert proc.returncode == 0, proc.stderr
    checkpointing.release(cls.run_dir)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.finished, ignore_errors=True)
    super().tearDownClass()

  def finished_run(self) -> str:
    """A copy of a finished smoke run's workdir."""
    path = os.path.join(self.tmp(), "run")
    shutil.copytree(self.run_dir, path)
    return path

  @parameterized.parameters(*BAD_INPUT)
  def test_bad_input_is_one_line_exit_2_and_writes_nothing(self, experiment):
    module = importlib.import_module(f"experiments.{experiment}")
    base = self.tmp()
    start = time.monotonic()
    for i, (args, expected) in enumerate(BAD_INPUT[experiment]):
      workdir = os.path.join(base, f"w{i}")
      with self.subTest(args=args):
        result = _execute(module, [*args, f"--workdir={workdir}",
                                   "--noprogress"])
        self.assert_one_error_line(result, expected)
        self.assertFalse(os.path.exists(workdir), f"{args} wrote {workdir}")
    # Refused before any training: seconds per case, not minutes.
    self.assertLess(time.monotonic() - start,
                    60 + 10 * len(BAD_INPUT[experiment]))

  def test_overwrite_never_deletes_a_users_folder(self):
    workdir = self.tmp()
    with open(os.path.join(workdir, "thesis.tex"), "w") as f:
      f.write("x")
    proc = _smoke(workdir, "--overwrite")
    self.assert_one_error_line(proc, "thesis.tex")
    self.assertEqual(os.listdir(workdir), ["thesis.tex"])

  def test_overwrite_refuses_a_workdir_holding_a_users_file(self):
    workdir = self.finished_run()
    with open(os.path.join(workdir, "notes.txt"), "w") as f:
      f.write("mine")
    proc = _smoke(workdir, "--overwrite")
    self.assert_one_error_line(proc, "notes.txt", "not written by memjax")
    self.assertTrue(os.path.exists(os.path.join(workdir, "notes.txt")))
    self.assertTrue(os.path.exists(os.path.join(workdir, "results.json")))

  def test_overwrite_with_a_bad_flag_keeps_the_finished_run(self):
    workdir = self.finished_run()
    proc = _smoke(workdir, "--overwrite", "--image_size=5")
    self.assert_one_error_line(proc, "image_size 5")
    self.assertTrue(os.path.exists(os.path.join(workdir, "results.json")))

  def test_overwrite_starts_a_memjax_workdir_again(self):
    workdir = self.finished_run()
    before = os.path.getmtime(os.path.join(workdir, "results.json"))
    proc = _smoke(workdir, "--overwrite")
    self.assertEqual(proc.returncode, 0, proc.stderr)
    self.assertGreater(os.path.getmtime(os.path.join(workdir, "results.json")),
                       before)

  def test_checkpoints_are_tied_to_their_flags(self):
    workdir = self.finished_run()
    for name in ("config.json", "results.json"):
      os.remove(os.path.join(workdir, name))
    proc = _smoke(workdir, "--learning_rate=0.05")
    self.assert_one_error_line(proc, "different configuration",
                               "true_labels/checkpoints")
    self.assertFalse(os.path.exists(os.path.join(workdir, "results.json")))

  def test_a_workdir_older_than_a_setting_is_refused_naming_it(self):
    workdir = os.path.join(self.tmp(), "old_run")
    checkpointing.prepare_workdir(workdir, {"train": {"seeds": 5}})
    checkpointing.release(workdir)
    with self.assertRaisesRegex(
        ValueError, r"train\.eval_every: \(absent\) -> 1\). A setting "
        "absent from that run was added"):
      checkpointing.prepare_workdir(
          workdir, {"train": {"seeds": 5, "eval_every": 1}})
    with self.assertRaisesRegex(ValueError, r"train\.seeds: 5 -> 6\)\. "
                                "Re-run with the original flags"):
      checkpointing.prepare_workdir(workdir, {"train": {"seeds": 6}})

  def test_a_second_run_on_a_workdir_is_refused(self):
    workdir = os.path.join(self.tmp(), "run")
    checkpointing.prepare_workdir(workdir, {"held": "by this test"})
    self.addCleanup(checkpointing.release, workdir)
    # Another process: this one already holds the lock.
    proc = subprocess.run(
        [sys.executable, "experiments/random_labels.py", *SMOKE,
         f"--workdir={workdir}"], capture_output=True, text=True, check=False,
        cwd=ROOT, timeout=600)
    self.assert_one_error_line(proc, "in use by another run",
                               f"pid {os.getpid()}")

  def test_a_damaged_checkpoint_is_one_line_naming_it(self):
    workdir = self.finished_run()
    os.remove(os.path.join(workdir, "results.json"))
    for path in glob.glob(os.path.join(workdir, "true_labels", "checkpoints",
                                       "*", "default", "**", "d", "*"),
                          recursive=True):
      with open(path, "r+b") as f:
        f.truncate(10)
    proc = _smoke(workdir)
    self.assert_one_error_line(proc, "is damaged", "--overwrite",
                               os.path.join("true_labels", "checkpoints"))

  def test_an_empty_config_is_one_line_naming_it(self):
    workdir = self.finished_run()
    open(os.path.join(workdir, "config.json"), "w").close()
    proc = _smoke(workdir)
    self.assert_one_error_line(proc, "config.json is damaged", "--overwrite")

  def test_damaged_result_files_name_the_file(self):
    workdir = self.tmp()
    path = os.path.join(workdir, "chunk.npz")
    checkpointing.save_npz(path, "abc", values=np.arange(10))
    np.testing.assert_array_equal(checkpointing.load_npz(path, "abc")["values"],
                                  np.arange(10))
    with self.assertRaisesRegex(ValueError, "different configuration"):
      checkpointing.load_npz(path, "xyz")
    with open(path, "r+b") as f:
      f.truncate(20)
    with self.assertRaisesRegex(ValueError, "chunk.npz is damaged"):
      checkpointing.load_npz(path, "abc")
    with open(path, "wb") as f:
      f.write(b"garbage" * 10)
    with self.assertRaisesRegex(ValueError, "chunk.npz is damaged") as caught:
      checkpointing.load_npz(path, "abc")
    self.assertNotIn("allow_pickle", str(caught.exception))

  def test_divergence_on_the_last_update_fails_the_run(self):
    workdir = os.path.join(self.tmp(), "run")
    proc = _smoke(workdir, "--learning_rate=1e6")
    self.assert_one_error_line(proc, "seed", "step", "learning rate")
    self.assertFalse(os.path.exists(os.path.join(workdir, "results.json")))

  def test_workdir_that_is_a_file_or_under_a_file(self):
    path = os.path.join(self.tmp(), "file")
    open(path, "w").close()
    self.assert_one_error_line(_smoke(path), "is a file")
    self.assert_one_error_line(_smoke(os.path.join(path, "run")),
                               "lies under the file")

  def test_ctrl_c_is_one_line_exit_130_and_the_run_resumes(self):
    workdir = os.path.join(self.tmp(), "run")
    # Random labels on 1,024 examples: tens of epochs, a checkpoint each.
    command = [sys.executable, "experiments/random_labels.py", "--noprogress",
               "--conditions=random_labels", "--train_size=1024",
               "--test_size=128", "--seeds=2", "--max_epochs=200",
               "--checkpoint_seconds=0", f"--workdir={workdir}"]
    # A suite started in the background (`cmd &`) ignores SIGINT, and its
    # children would inherit that; a handler (reset to the default at exec)
    # gives the child the Ctrl-C of a terminal.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    self.addCleanup(signal.signal, signal.SIGINT, previous)
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    # Interrupt once the first epoch is logged (synchronously, unlike the
    # asynchronous checkpoints, which may only show up near the end of the
    # run on a loaded machine): tens of epochs are then still to go.
    deadline = time.monotonic() + 300
    log = os.path.join(workdir, "random_labels", "checkpoints",
                       hooks.METRICS_FILE)
    while time.monotonic() < deadline and logged_lines(log) < 2:
      time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    self.assertEqual(proc.returncode, 130, err)
    self.assertEqual(err.strip().splitlines()[-1],
                     "interrupted; re-run the same command to resume")
    self.assertNotIn("Traceback", err)
    self.assertFalse(os.path.exists(os.path.join(workdir, "results.json")))
    resumed = subprocess.run(command, capture_output=True, text=True,
                             check=False, cwd=ROOT, timeout=600)
    self.assertEqual(resumed.returncode, 0, resumed.stderr[-3000:])
    self.assertTrue(os.path.exists(os.path.join(workdir, "results.json")))


def logged_lines(path: str) -> int:
  """Lines in the metrics log at ``path`` (0 while it does not exist)."""
  try:
    with open(path) as f:
      return len(f.readlines())
  except OSError:
    return 0


if __name__ == "__main__":
  absltest.main()
