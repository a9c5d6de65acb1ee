"""End-to-end runs of random_labels.py and label_corruption.py (--smoke), in
this process: outputs, resume, sharding, and bad flags that fail before
writing anything. Their claims are tested on hand-made summaries in
test_studies.py."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from experiments import label_corruption
from experiments import random_labels
from memjax import cli
from memjax import engine

CONDITIONS = ("true_labels", "random_labels", "shuffled_pixels",
              "random_pixels", "gaussian")


def smoke_args(workdir, *args) -> list[str]:
  return ["--smoke", "--noprogress", f"--workdir={workdir}", *args]


def execute(experiment, workdir, *args) -> tuple[int, str, str]:
  """(exit status, stdout, stderr) of ``python experiments/<experiment>.py
  --smoke ...``, run in this process."""
  return cli.execute_captured(experiment, smoke_args(workdir, *args))


class ExperimentTest(parameterized.TestCase):

  def workdir(self) -> str:
    path = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path

  def results(self, workdir) -> dict:
    with open(os.path.join(workdir, "results.json")) as f:
      return json.load(f)

  def test_random_labels_writes_every_condition_and_resumes(self):
    workdir = self.workdir()
    code, stdout, stderr = execute(random_labels, workdir)
    self.assertEqual(code, 0, stderr)
    first = self.results(workdir)
    self.assertEqual(first["experiment"], "random_labels")
    self.assertEqual(first["config"]["train"]["model"], "mlp1x512")
    self.assertEqual(sorted(first["summary"]), sorted(CONDITIONS))
    for name, summary in first["summary"].items():
      for key in ("train_acc", "test_acc", "test_acc_se", "steps_to_fit",
                  "steps_to_fit_per_seed", "slowdown", "seeds"):
        self.assertIn(key, summary, name)
      self.assertBetween(summary["train_acc"], 0.0, 1.0)
      self.assertLen(first["runs"][name], summary["seeds"])
    masks = np.load(os.path.join(workdir, "random_labels", "masks.npz"))
    self.assertGreater(masks["train_mask"].mean(), 0.5)  # ~90% labels change
    self.assertFalse(masks["test_mask"].any())  # test labels stay clean
    self.assertTrue(os.path.exists(os.path.join(workdir, "training_loss.png")))
    self.assertIn("Setup:", stdout)
    self.assertIn("per-image standardized", stdout)
    self.assertIn("may equal the true one", stdout)
    self.assertLen(first["claims"], 8)
    for claim in first["claims"]:
      self.assertIn(f"[{claim['verdict']}] {claim['claim']}", stdout)
      self.assertIsNotNone(claim["threshold"], claim)
    for name in ("random_labels", "gaussian"):
      [chance] = [c for c in first["claims"]
                  if c["claim"].startswith(f"{name}: test accuracy at chance")]
      self.assertBetween(chance["uncertainty"], 0.0, 0.1)
      self.assertLen(chance["interval"], 2)

    # The same command again resumes from the finished checkpoints.
    code, _, stderr = execute(random_labels, workdir)
    self.assertEqual(code, 0, stderr)
    self.assertEqual(self.results(workdir)["summary"], first["summary"])

    # Other flags in a used workdir are refused unless --overwrite.
    code, _, stderr = execute(random_labels, workdir, "--seeds=1")
    self.assertEqual(code, 2)
    self.assertIn("--overwrite", stderr)
    code, _, stderr = execute(random_labels, workdir, "--seeds=1",
                              "--overwrite", "--conditions=true_labels")
    self.assertEqual(code, 0, stderr)

  def test_shard_seeds_gives_the_same_results(self):
    # conftest gives the test process 4 fake CPU devices; --smoke's 2 seeds
    # are padded to 4 lanes on the mesh and the padding is dropped.
    args = ("--conditions=true_labels,gaussian",)
    one, sharded = self.workdir(), self.workdir()
    self.assertEqual(execute(random_labels, one, *args)[0], 0)
    config, _, control = cli.from_args(
        random_labels, smoke_args(sharded, *args, "--shard_seeds"))
    self.assertTrue(control.shard_seeds)
    with mock.patch.object(engine, "fit", wraps=engine.fit) as fit, \
        contextlib.redirect_stdout(io.StringIO()):
      random_labels.run(config, sharded, control)
    meshes = [call.kwargs["mesh"] for call in fit.call_args_list]
    self.assertLen(meshes, 2)  # one fit per condition, each on the mesh
    for mesh in meshes:
      self.assertEqual(mesh.devices.size, 4)
    a, b = self.results(one), self.results(sharded)
    for name in a["summary"]:
      for key in ("train_acc", "test_acc"):
        self.assertAlmostEqual(a["summary"][name][key],
                               b["summary"][name][key], places=4)
      self.assertEqual(a["summary"][name]["seeds"], 2)
      self.assertEqual(b["summary"][name]["seeds"], 2)
      self.assertLen(b["runs"][name], 2)

  @parameterized.parameters("alexnet", "inception")
  def test_conv_models_run_the_same_experiment(self, model):
    # 8x8 digits: XLA:CPU needs minutes for one inception step on 28x28 MNIST.
    workdir = self.workdir()
    config, _, control = cli.from_args(random_labels, smoke_args(
        workdir, f"--model={model}", "--seeds=1", "--max_epochs=1",
        "--conditions=true_labels,random_labels", "--dataset=digits"))
    with contextlib.redirect_stdout(io.StringIO()):
      results = random_labels.run(config, workdir, control)
    self.assertEqual(results["config"]["train"]["model"], model)
    self.assertEqual(sorted(results["summary"]),
                     ["random_labels", "true_labels"])
    self.assertEqual(self.results(workdir)["config"], results["config"])

  def test_label_corruption_writes_every_model_and_level_and_resumes(self):
    workdir = self.workdir()
    code, stdout, stderr = execute(label_corruption, workdir,
                                   "--levels=0,0.5,1")
    self.assertEqual(code, 0, stderr)
    self.assertIn("Setup:", stdout)
    self.assertIn("per-image standardized", stdout)
    self.assertIn("may be the true one", stdout)
    results = self.results(workdir)
    summary = results["summary"]
    # Both default models, each level its own entry and checkpoint folder.
    self.assertEqual(sorted(summary), sorted(
        f"{model}/corrupt_{p}" for model in ("mlp1x512", "mlp1x64")
        for p in ("0.0", "0.5", "1.0")))
    for key, level in summary.items():
      self.assertBetween(level["test_acc"], 0.0, 1.0)
      self.assertEqual(key, f"{level['model']}/corrupt_{level['p']!r}")
      self.assertLen(level["test_acc_per_seed"], 2)
      self.assertTrue(os.path.isdir(os.path.join(workdir, key, "checkpoints")))
    changed = np.load(os.path.join(workdir, "mlp1x64", "corrupt_0.5",
                                   "masks.npz"))
    self.assertBetween(changed["train_mask"].mean(), 0.2, 0.7)
    self.assertTrue(
        os.path.exists(os.path.join(workdir, "label_corruption.png")))
    for claim in results["claims"]:
      self.assertIn(claim["verdict"], ("REPRODUCED", "NOT REPRODUCED"))
      self.assertIsNotNone(claim["threshold"], claim)
    models = [c["claim"].split(":")[0] for c in results["claims"]]
    self.assertEqual(sorted(set(models)), ["mlp1x512", "mlp1x64"])

    # The same command again resumes from the finished checkpoints.
    code, _, stderr = execute(label_corruption, workdir, "--levels=0,0.5,1")
    self.assertEqual(code, 0, stderr)
    self.assertEqual(self.results(workdir)["summary"], summary)

  @parameterized.parameters(
      (random_labels, "--model=resnet50", "resnet50"),
      (random_labels, "--dataset=imagenet", "imagenet"),
      (random_labels, "--seeds=0", "--seeds"),
      (random_labels, "--conditions=true_labels,upside_down",
       "--conditions: Unknown condition 'upside_down'"),
      (random_labels, "--conditions=", "--conditions is empty"),
      (label_corruption, "--levels=0,1.5", "1.5"),
      (label_corruption, "--levels=0,-0.2", "-0.2"),
      (label_corruption, "--levels=", "--levels"),
      (label_corruption, "--model=", "--model is empty"),
      (label_corruption, "--model=mlp1x512,resnet50",
       "--model: Unknown model 'resnet50'"),
      (label_corruption, "--image_size=5", "image_size"))
  def test_bad_flags_are_clear_errors_that_write_nothing(self, experiment,
                                                         flag, named):
    workdir = os.path.join(self.workdir(), "run")
    code, _, stderr = execute(experiment, workdir, flag)
    self.assertEqual(code, 2, stderr)
    self.assertIn(named, stderr)
    self.assertNotIn("Traceback", stderr)
    self.assertFalse(os.path.exists(workdir))

  def test_tiny_levels_get_valid_condition_names(self):
    # --levels=0,1e-5 once failed with "Unknown condition 'corrupt_1e-05'".
    workdir = self.workdir()
    config, _, control = cli.from_args(label_corruption, smoke_args(
        workdir, "--levels=0,1e-5", "--model=mlp1x16", "--seeds=1",
        "--max_epochs=1"))
    with contextlib.redirect_stdout(io.StringIO()):
      results = label_corruption.run(config, workdir, control)
    self.assertEqual(sorted(results["summary"]),
                     ["mlp1x16/corrupt_0.0", "mlp1x16/corrupt_0.00001"])

  def test_label_corruption_config_is_validated_when_built(self):
    config, _, _ = cli.from_args(label_corruption, ["--smoke"])
    self.assertEqual(config.models, ("mlp1x512", "mlp1x64"))
    self.assertEqual(config.study("mlp1x64").train.model, "mlp1x64")
    for changes, named in (({"levels": (0.5, 0.0)}, "--levels"),
                           ({"models": ()}, "model"),
                           ({"models": ("resnet50",)}, "resnet50")):
      with self.assertRaisesRegex(ValueError, named):
        dataclasses.replace(config, **changes)


if __name__ == "__main__":
  absltest.main()
