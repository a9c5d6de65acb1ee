"""Seeds sharded over devices: same results on 1 and 4 (fake CPU) devices."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest
from absl.testing import absltest

from memjax import engine
from memjax import keys
from memjax import reporting
from memjax import sharding
from memjax import training

# Test and train sets of one size share the compiled evaluation function.
NUM_TRAIN = NUM_TEST = 64
CLASSES, SEEDS, EPOCHS = 10, 6, 3


def tiny_data(per_seed_labels: bool = False) -> training.TrainData:
  rng = np.random.default_rng(0)
  x_train = rng.normal(size=(NUM_TRAIN, 6, 6, 1)).astype(np.float32)
  x_test = rng.normal(size=(NUM_TEST, 6, 6, 1)).astype(np.float32)
  label_shape = (SEEDS,) if per_seed_labels else ()
  y_train = rng.integers(0, CLASSES, label_shape + (NUM_TRAIN,), np.int32)
  y_test = rng.integers(0, CLASSES, label_shape + (NUM_TEST,), np.int32)
  return training.TrainData(x_train, y_train, x_test, y_test, CLASSES,
                            per_seed_labels=per_seed_labels)


CONFIG = training.TrainConfig(model="mlp1x16", num_seeds=SEEDS, batch_size=32,
                              max_epochs=EPOCHS, learning_rate=0.05,
                              stop_when_fit=False)


@functools.lru_cache(maxsize=None)
def unsharded_run(per_seed_labels: bool = False) -> engine.FitResult:
  return engine.fit(CONFIG, tiny_data(per_seed_labels), record_examples=True)


def mesh_of(num_devices: int | None, data_parallel: int = 1):
  if num_devices is None:
    return None
  return sharding.make_mesh(jax.devices()[:num_devices], data_parallel)


def assert_same_run(a: engine.FitResult, b: engine.FitResult):
  assert a.epochs == b.epochs
  np.testing.assert_array_equal(a.fit_step, b.fit_step)
  for key in b.history:
    np.testing.assert_allclose(a.history[key], b.history[key], rtol=1e-5,
                               atol=1e-6, err_msg=key)
  chex.assert_trees_all_close(jax.device_get(a.state),
                              jax.device_get(b.state), rtol=1e-5, atol=1e-6)


class ShardedFitTest(absltest.TestCase):

  def test_four_fake_devices(self):
    self.assertLen(jax.devices(), 4)

  def test_one_and_four_devices_agree_with_uneven_seed_count(self):
    one = engine.fit(CONFIG, tiny_data(), record_examples=True,
                       mesh=mesh_of(1))
    four = engine.fit(CONFIG, tiny_data(), record_examples=True,
                        mesh=mesh_of(4))  # 6 seeds padded to 8
    chex.assert_shape(four.history["train_acc"], (EPOCHS, SEEDS))
    chex.assert_shape(four.history["train_correct"],
                      (EPOCHS, SEEDS, NUM_TRAIN))
    chex.assert_tree_shape_prefix(four.state, (SEEDS,))
    assert_same_run(unsharded_run(), one)
    assert_same_run(one, four)

  def test_even_seed_count_stays_sharded(self):
    result = engine.fit(CONFIG, tiny_data(), mesh=mesh_of(3))
    for leaf in jax.tree.leaves(result.state):
      self.assertEqual(leaf.sharding.spec, jax.sharding.PartitionSpec("seeds"))
      self.assertLen({s.device for s in leaf.addressable_shards}, 3)
    assert_same_run(unsharded_run(), result)

  def test_seeds_and_data_axes_with_per_seed_labels(self):
    mesh = mesh_of(4, data_parallel=2)
    self.assertEqual(dict(mesh.shape), {"seeds": 2, "data": 2})
    assert_same_run(unsharded_run(per_seed_labels=True),
                    engine.fit(CONFIG, tiny_data(per_seed_labels=True),
                                 mesh=mesh))

  def test_padded_lane_is_the_next_seed(self):
    placement = sharding.SeedPlacement(mesh_of(4), num_seeds=5)
    self.assertEqual(placement.num_padded, 8)
    placed = placement.keys(CONFIG)
    expected = keys.seed_keys(CONFIG.seed, 8)
    np.testing.assert_array_equal(jax.random.key_data(placed),
                                  jax.random.key_data(expected))
    self.assertEqual(placement.local_seeds(), list(range(5)))


class _Interrupted(Exception):
  pass


# 6 seeds: saved padded from 4 devices, or sharded from 3; restored sharded
# on 3 devices, or onto the default device without a mesh.
@pytest.mark.parametrize("first_devices,resume_devices", [(4, 3), (3, None)])
def test_resume_on_a_different_device_count(tmp_path, monkeypatch,
                                            first_devices, resume_devices):
  steps = training.steps_per_epoch(CONFIG, NUM_TRAIN)
  check_finite = engine.check_finite

  def stop_after_two_epochs(losses, config, first_step):
    if first_step == 2 * steps:
      raise _Interrupted
    check_finite(losses, config, first_step)

  monkeypatch.setattr(engine, "check_finite", stop_after_two_epochs)
  with pytest.raises(_Interrupted):
    engine.fit(CONFIG, tiny_data(), checkpoint_dir=tmp_path,
                 checkpoint_seconds=0, mesh=mesh_of(first_devices))
  monkeypatch.setattr(engine, "check_finite", check_finite)
  resumed = engine.fit(CONFIG, tiny_data(), checkpoint_dir=tmp_path,
                         mesh=mesh_of(resume_devices))
  assert_same_run(unsharded_run(), resumed)


class HelpersTest(absltest.TestCase):

  def test_padding(self):
    mesh = sharding.make_mesh(jax.devices())
    self.assertEqual([sharding.padded_num_seeds(s, mesh) for s in (1, 4, 5)],
                     [4, 4, 8])
    padded = sharding.pad_seeds(np.arange(6).reshape(3, 2), 4)
    np.testing.assert_array_equal(padded, [[0, 1], [2, 3], [4, 5], [4, 5]])
    with self.assertRaisesRegex(ValueError, "data_parallel=3"):
      sharding.make_mesh(jax.devices(), data_parallel=3)
    with self.assertRaisesRegex(ValueError, "must be"):
      sharding.SeedPlacement(jax.make_mesh((4,), ("batch",)), num_seeds=4)


def test_process_results_are_merged_on_process_zero(tmp_path):
  directory = str(tmp_path)
  reporting.write_process_results(directory, "runs", {"0": 1.0, "1": 2.0},
                                 process_index=0)
  reporting.write_process_results(directory, "runs", {"1": 2.0, "2": 3.0},
                                 process_index=1)
  merged = reporting.merge_process_results(directory, "runs", num_processes=2)
  assert merged == {"0": 1.0, "1": 2.0, "2": 3.0}
  with open(os.path.join(directory, "runs.json")) as f:
    assert json.load(f) == merged
  with pytest.raises(FileNotFoundError, match="Process 2 of 3"):
    reporting.merge_process_results(directory, "runs", num_processes=3)
  reporting.write_process_results(directory, "runs", {"2": 4.0},
                                 process_index=2)
  with pytest.raises(ValueError, match="disagree on '2'"):
    reporting.merge_process_results(directory, "runs", num_processes=3)


def test_benchmark_report_smoke(tmp_path):
  out = tmp_path / "report.json"
  proc = subprocess.run(
      [sys.executable, "benchmarks/report.py", "--smoke", "--output", str(out)],
      capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  printed = json.loads(proc.stdout)
  with open(out) as f:
    assert json.load(f) == printed
  assert printed["matmul_peak_gflops"] > 0
  for section in ("training", "seed_vmap", "per_example", "device_scaling"):
    assert printed[section], section
  for row in printed["seed_vmap"]:
    assert row["vmapped_speedup"] > 0
