"""Many-seed training: vmapped seeds equal separate runs, resume, no retracing,
per-epoch hooks (their carry, metrics.jsonl and kept states survive a
resume)."""

import os
import shutil
import struct
import tempfile

from absl.testing import absltest
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from tensorboardX import record_writer
from tensorboardX.proto import event_pb2

from memjax import cost
from memjax import data
from memjax import engine
from memjax import hooks
from memjax import keys
from memjax import sharding
from memjax import training


def digits(train_size=200, test_size=60) -> training.TrainData:
  ds = data.load(data.DataConfig(name="digits", train_size=train_size,
                                 test_size=test_size))
  return training.TrainData(ds.x_train, ds.y_train, ds.x_test, ds.y_test,
                            ds.num_classes)


def config(**kwargs) -> training.TrainConfig:
  defaults = dict(model="mlp1x32", batch_size=32, max_epochs=3, num_seeds=3,
                  learning_rate=0.05, stop_when_fit=False)
  return training.TrainConfig(**{**defaults, **kwargs})


def lane(tree, i):
  return jax.tree.map(lambda a: a[i], tree)


class ManySeedTest(absltest.TestCase):

  def assert_lanes_equal_separate_runs(self, cfg, train_data):
    together = engine.fit(cfg, train_data)
    for i in range(cfg.num_seeds):
      alone = engine.fit(
          training.TrainConfig(**{**cfg.__dict__, "num_seeds": 1,
                                  "seed": cfg.seed + i}), train_data)
      for key in engine.HISTORY_KEYS:
        np.testing.assert_allclose(together.history[key][:, i],
                                   alone.history[key][:, 0], rtol=1e-4,
                                   atol=1e-5, err_msg=key)
      chex.assert_trees_all_close(lane(together.state.params, i),
                                  lane(alone.state.params, 0),
                                  rtol=1e-4, atol=1e-5)
      chex.assert_trees_all_close(lane(together.state.batch_stats, i),
                                  lane(alone.state.batch_stats, 0),
                                  rtol=1e-4, atol=1e-5)

  def test_vmapped_seeds_equal_separate_runs(self):
    # seed_chunk=3: all three seeds in one vmap (on a CPU memjax would run
    # this small MLP's seeds one after another).
    self.assert_lanes_equal_separate_runs(config(dropout=0.2, seed_chunk=3),
                                          digits())

  def test_vmapped_seeds_equal_separate_runs_with_batchnorm(self):
    cfg = config(model="arpit_cnn", num_seeds=2, max_epochs=1,
                 learning_rate=0.01)
    self.assert_lanes_equal_separate_runs(cfg, digits(64, 32))

  def test_seed_chunks_equal_one_vmap(self):
    train_data = digits()
    together = engine.fit(config(num_seeds=5, seed_chunk=5), train_data)
    # None: memjax's choice, one seed after another for this MLP on a CPU.
    for chunk in (2, None):
      chunked = engine.fit(config(num_seeds=5, seed_chunk=chunk), train_data)
      for key in engine.HISTORY_KEYS:
        np.testing.assert_allclose(chunked.history[key],
                                   together.history[key], rtol=1e-4,
                                   atol=1e-5, err_msg=f"{chunk}: {key}")
      chex.assert_trees_all_close(chunked.state.params,
                                  together.state.params, rtol=1e-4,
                                  atol=1e-5)

  def test_seed_execution_is_chosen_from_the_arithmetic_per_input_value(self):
    mnist, cifar = (28, 28, 1), (28, 28, 3)
    chosen = lambda model, shape, backend="cpu": training.choose_seed_chunk(
        training.Trainer(config(model=model), shape, 10), backend)
    self.assertEqual(chosen("mlp2x16", mnist), 1)  # 16.5 per input value
    self.assertEqual(chosen("mlp1x64", cifar), 1)  # 64.3
    self.assertIsNone(chosen("mlp1x128", cifar))  # 128.5
    self.assertIsNone(chosen("mlp1x512", mnist))
    self.assertIsNone(chosen("alexnet", cifar))
    self.assertIsNone(chosen("mlp2x16", mnist, backend="gpu"))
    # cached_trainer applies the choice only where the config leaves it open.
    def trainer(seed_chunk=None, sharded=False):
      return training.cached_trainer(
          config(model="mlp2x16", seed_chunk=seed_chunk), mnist, 10,
          sharded=sharded)
    expected = 1 if jax.default_backend() == "cpu" else None
    self.assertEqual(trainer().config.seed_chunk, expected)
    self.assertEqual(trainer(seed_chunk=4).config.seed_chunk, 4)
    self.assertIsNone(trainer(sharded=True).config.seed_chunk)

  def test_layer_multiply_adds_are_counted_from_the_layer_shapes(self):
    trainer = training.Trainer(config(model="mlp2x16"), (28, 28, 1), 10)
    self.assertEqual(cost.layer_multiply_adds(trainer),
                     [784 * 16, 16 * 16, 16 * 10])
    self.assertEqual(cost.layer_multiply_adds(trainer, batch_size=4),
                     [4 * 784 * 16, 4 * 16 * 16, 4 * 16 * 10])
    # conv: 5x5x3->64 "SAME" on 28x28, then 5x5x64->64 on 14x14, 3 dense.
    alexnet = training.Trainer(config(model="alexnet"), (28, 28, 3), 10)
    self.assertEqual(cost.layer_multiply_adds(alexnet),
                     [28 * 28 * 64 * 75, 14 * 14 * 64 * 1600,
                      7 * 7 * 64 * 384, 384 * 192, 192 * 10])
    self.assertEqual(cost.training_flops(trainer, 8),
                     2 * (3 * (784 * 16 + 16 * 16 + 16 * 10) - 784 * 16))

  def test_seed_chunk_with_a_mesh_is_refused(self):
    with self.assertRaisesRegex(ValueError, "seed_chunk=2"):
      engine.fit(config(seed_chunk=2), digits(), mesh=sharding.make_mesh())

  def test_seeds_differ(self):
    result = engine.fit(config(num_seeds=2, max_epochs=1), digits())
    a, b = (lane(result.state.params, i) for i in range(2))
    self.assertFalse(jnp.allclose(a["head"]["kernel"][...],
                                  b["head"]["kernel"][...]))

  def test_epoch_is_traced_once(self):
    cfg, train_data = config(), digits()
    trainer = training.Trainer(cfg, train_data.input_shape, 10)
    epoch_fn = jax.jit(chex.assert_max_traces(trainer._train_epoch_vmapped,
                                              n=1))
    seed_keys = keys.seed_keys(cfg.seed, cfg.num_seeds)
    state = trainer.init(seed_keys)
    index = training.default_train_index(train_data, cfg.num_seeds)
    for epoch in range(3):
      state, losses = epoch_fn(state, seed_keys, epoch, train_data.x_train,
                               train_data.y_train, index)
    # 200 examples in batches of 32: six full batches and a partial one.
    chex.assert_shape(losses, (3, 7))
    self.assertEqual(int(state.step[0]), 3 * 7)


class BatchOrderTest(absltest.TestCase):

  def test_batches_are_a_function_of_seed_and_epoch(self):
    cfg = config()
    trainer = training.Trainer(cfg, (8, 8, 1), 10)
    key = jax.random.key(7)
    index = jnp.arange(100)
    a = trainer.epoch_batches(key, 3, index)
    chex.assert_trees_all_equal(a, trainer.epoch_batches(key, 3, index))
    self.assertFalse(jnp.array_equal(a, trainer.epoch_batches(key, 4, index)))
    chex.assert_shape(a, (4, 32))

  def test_an_epoch_visits_every_example_once(self):
    trainer = training.Trainer(config(batch_size=32), (8, 8, 1), 10)
    index = jnp.arange(100)
    batches = np.asarray(trainer.epoch_batches(jax.random.key(3), 0, index))
    weights = np.asarray(trainer.epoch_weights(100))
    chex.assert_shape(weights, batches.shape)
    visited = batches[weights > 0]
    np.testing.assert_array_equal(np.sort(visited), np.arange(100))
    self.assertEqual(training.steps_per_epoch(config(batch_size=32), 100), 4)

  def test_partial_batch_loss_is_the_mean_over_real_examples(self):
    cfg = config(batch_size=4)
    trainer = training.Trainer(cfg, (8, 8, 1), 10)
    state = trainer.init(keys.seed_keys(cfg.seed, cfg.num_seeds))
    params = lane(state.params, 0)
    batch_stats = lane(state.batch_stats, 0)
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1))
    y = jnp.array([1, 2, 3, 4])
    weights = jnp.array([1.0, 1.0, 0.0, 0.0])
    key = jax.random.key(0)
    weighted, _ = trainer.loss_fn(params, batch_stats, x, y, key, weights)
    real, _ = trainer.loss_fn(params, batch_stats, x[:2], y[:2], key)
    np.testing.assert_allclose(weighted, real, rtol=1e-6)

  def test_subset_training_only_draws_from_the_subset(self):
    trainer = training.Trainer(config(), (8, 8, 1), 10)
    subset = jnp.array([5, 9, 17, 33, 40, 41, 60, 99] * 8)
    batches = trainer.epoch_batches(jax.random.key(0), 0, subset)
    self.assertTrue(np.isin(np.asarray(batches), np.asarray(subset)).all())

  def test_learning_rate_decays_per_50k_examples(self):
    cfg = config(learning_rate=0.01, batch_size=100)
    trainer = training.Trainer(cfg, (8, 8, 1), 10)
    self.assertAlmostEqual(float(trainer.schedule(0)), 0.01, places=7)
    # 500 steps of 100 examples = 50,000 examples: one decay of 0.95.
    self.assertAlmostEqual(float(trainer.schedule(500)), 0.01 * 0.95, places=7)


class RobustnessTest(absltest.TestCase):

  def test_non_finite_loss_names_seed_and_step(self):
    with self.assertRaisesRegex(FloatingPointError, r"seed \d+ at step \d+"):
      engine.fit(config(learning_rate=1e12, max_epochs=5), digits())

  def test_resume_after_a_crash_equals_an_uninterrupted_run(self):
    cfg, train_data = config(max_epochs=5), digits()
    uninterrupted = engine.fit(cfg, train_data)
    calls = []
    original = engine.check_finite

    def crash_on_third_epoch(*args, **kwargs):
      calls.append(1)
      if len(calls) == 3:
        raise KeyboardInterrupt("simulated crash")
      return original(*args, **kwargs)

    with tempfile.TemporaryDirectory() as tmp:
      engine.check_finite = crash_on_third_epoch
      try:
        with self.assertRaises(KeyboardInterrupt):
          engine.fit(cfg, train_data, checkpoint_dir=tmp,
                       checkpoint_seconds=0)
      finally:
        engine.check_finite = original
      resumed = engine.fit(cfg, train_data, checkpoint_dir=tmp)
    self.assertEqual(resumed.epochs, 5)
    for key in engine.HISTORY_KEYS:
      np.testing.assert_allclose(resumed.history[key],
                                 uninterrupted.history[key], rtol=1e-6,
                                 err_msg=key)
    chex.assert_trees_all_close(resumed.state.params,
                                uninterrupted.state.params, rtol=1e-6)

  def test_non_finite_evaluation_loss_is_caught(self):
    # Divergence on the last update shows only in the clean evaluation.
    train_data = digits()
    x_test = np.array(train_data.x_test)
    x_test[3] = np.inf
    bad = training.TrainData(train_data.x_train, train_data.y_train, x_test,
                             train_data.y_test, 10)
    with self.assertRaisesRegex(FloatingPointError,
                                r"test-set loss for seed \d+ after step \d+"):
      engine.fit(config(max_epochs=1), bad)

  def test_invalid_configs(self):
    nan, inf = float("nan"), float("inf")
    for bad in (dict(num_seeds=0), dict(batch_size=0), dict(dropout=1.0),
                dict(weight_decay=-1.0), dict(weight_decay=inf),
                dict(model="vgg"), dict(momentum=2.0), dict(momentum=-1.0),
                dict(momentum=nan), dict(lr_decay=0.0), dict(lr_decay=nan),
                dict(lr_decay=-1.0), dict(learning_rate=inf),
                dict(learning_rate=nan), dict(seed=99999999999),
                dict(seed=-1), dict(eval_every=0)):
      with self.assertRaises(ValueError, msg=str(bad)):
        config(**bad)


class EvalScheduleTest(absltest.TestCase):

  def test_eval_every_evaluates_on_schedule_and_trains_the_same(self):
    every = engine.fit(config(max_epochs=7), digits())
    sparse = engine.fit(config(max_epochs=7, eval_every=3), digits())
    chex.assert_trees_all_equal(sparse.state, every.state)
    np.testing.assert_array_equal(sparse.history["batch_loss"],
                                  every.history["batch_loss"])
    evaluated = np.array([2, 5, 6])  # after epochs 3, 6 and the last, 7
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
      np.testing.assert_array_equal(sparse.history[key][evaluated],
                                    every.history[key][evaluated])
      skipped = np.delete(sparse.history[key], evaluated, axis=0)
      self.assertTrue(np.isnan(skipped).all(), key)

  def test_fit_is_noticed_at_the_next_evaluation(self):
    cfg = config(max_epochs=40, stop_when_fit=True, num_seeds=2)
    every = engine.fit(cfg, digits(64, 32))
    self.assertTrue(every.all_fit())
    sparse = engine.fit(training.TrainConfig(**{**cfg.__dict__,
                                                "eval_every": 4}),
                        digits(64, 32))
    steps = every.steps_per_epoch
    want = np.ceil(every.fit_step / steps / 4) * 4 * steps
    np.testing.assert_array_equal(sparse.fit_step, want)
    self.assertEqual(sparse.epochs, int(want.max() // steps))

  def test_recording_examples_needs_every_epoch(self):
    with self.assertRaisesRegex(ValueError, "eval_every=2"):
      engine.fit(config(eval_every=2), digits(), record_examples=True)


class Recorder(hooks.Hook):
  """Records what fit shows it; its carry (per-seed sums of the training
  losses and the number of epochs seen) is checkpointed with the run."""

  def __init__(self, num_seeds):
    self.starts, self.epochs, self.states, self.rows = [], [], {}, []
    self.carry = {"loss_sum": np.zeros(num_seeds, np.float32),
                  "epochs_seen": np.zeros((), np.int32)}

  def start(self, run):
    self.starts.append(run.epoch)
    self.states[run.epoch] = jax.device_get(run.state)

  def end_epoch(self, event):
    self.epochs.append(event.epoch)
    self.states[event.epoch] = jax.device_get(event.state)
    self.rows.append(event.row)
    self.extras = event.extras
    self.carry["loss_sum"] += event.losses.sum(1)
    self.carry["epochs_seen"] += 1


def losses_as_extras(trainer, *args, **axes):
  state, losses, _ = engine.train_epoch(trainer, *args, **axes)
  return state, losses, {"losses": losses}


class HooksTest(absltest.TestCase):

  def test_hooks_see_each_epoch_once_with_its_state(self):
    cfg, train_data = config(num_seeds=2), digits()
    recorder = Recorder(2)
    result = engine.fit(cfg, train_data, hooks=[recorder],
                          epoch_fn=losses_as_extras)
    self.assertEqual(recorder.starts, [0])
    self.assertEqual(recorder.epochs, [1, 2, 3])
    trainer = training.cached_trainer(cfg, train_data.input_shape, 10)
    chex.assert_trees_all_equal(
        recorder.states[0], trainer.init(keys.seed_keys(cfg.seed, 2)))
    chex.assert_trees_all_equal(recorder.states[3], result.state)
    one_epoch = engine.fit(config(num_seeds=2, max_epochs=1), train_data)
    chex.assert_trees_all_equal(recorder.states[1], one_epoch.state)
    for epoch, row in enumerate(recorder.rows):
      for key in engine.HISTORY_KEYS:
        np.testing.assert_array_equal(row[key], result.history[key][epoch])
    # The epoch function's extras reach the hooks as numpy.
    np.testing.assert_array_equal(recorder.extras["losses"].mean(1),
                                  result.history["batch_loss"][-1])

  def test_resume_restores_carry_metrics_and_kept_states(self):
    cfg, train_data = config(max_epochs=4, num_seeds=2), digits()
    uninterrupted = Recorder(2)
    want = engine.fit(cfg, train_data, hooks=[uninterrupted])
    calls, original = [], engine.check_finite

    def crash_in_third_epoch(*args, **kwargs):
      calls.append(1)
      if len(calls) == 3:
        raise KeyboardInterrupt("simulated crash")
      return original(*args, **kwargs)

    with tempfile.TemporaryDirectory() as tmp:
      run = lambda hook: engine.fit(cfg, train_data, hooks=[hook],
                                      checkpoint_dir=tmp, checkpoint_seconds=0,
                                      keep_epochs=(0, 2, 4))
      engine.check_finite = crash_in_third_epoch
      try:
        with self.assertRaises(KeyboardInterrupt):
          run(Recorder(2))
      finally:
        engine.check_finite = original
      metrics = os.path.join(tmp, hooks.METRICS_FILE)
      self.assertLen(pd.read_json(metrics, lines=True), 2 * 2)
      resumed = Recorder(2)
      got = run(resumed)
      self.assertEqual(resumed.starts, [2])
      self.assertEqual(resumed.epochs, [3, 4])
      chex.assert_trees_all_close(resumed.carry, uninterrupted.carry)
      chex.assert_trees_all_close(got.history, want.history)
      chex.assert_trees_all_close(got.state, want.state)
      # metrics.jsonl: one line per epoch and seed, equal to the history.
      frame = pd.read_json(metrics, lines=True)
      self.assertLen(frame, 4 * 2)
      self.assertEqual(list(frame["epoch"]), [1, 1, 2, 2, 3, 3, 4, 4])
      self.assertEqual(list(frame["seed"]), [0, 1] * 4)
      for key in engine.HISTORY_KEYS:
        np.testing.assert_array_equal(
            frame[key].to_numpy().astype(np.float32),
            got.history[key].reshape(-1), err_msg=key)
      # TensorBoard: every value of the history once, at its lane's step.
      scalars = tensorboard_scalars(os.path.join(tmp, hooks.EVENTS_FILE))
      for key in engine.HISTORY_KEYS:
        if key == "step":
          continue
        for lane, seed in enumerate((0, 1)):
          got_curve = [scalars.pop((f"{key}/seed_{seed}", int(step)))
                       for step in got.history["step"][:, lane]]
          np.testing.assert_array_equal(
              np.float32(got_curve), got.history[key][:, lane], err_msg=key)
      self.assertEmpty(scalars)  # nothing written twice or left over
      for epoch in (0, 2, 4):
        chex.assert_trees_all_equal(
            engine.load_kept_state(cfg, train_data, tmp, epoch),
            uninterrupted.states[epoch])
      with self.assertRaisesRegex(ValueError, r"kept epochs: \[0, 2, 4\]"):
        engine.load_kept_state(cfg, train_data, tmp, 3)
      with self.assertRaisesRegex(ValueError, "different configuration"):
        engine.load_kept_state(config(max_epochs=4, num_seeds=2, seed=5),
                                 train_data, tmp, 2)

  def test_keep_epochs_are_validated(self):
    with self.assertRaisesRegex(ValueError, r"keep_epochs=\[9\]"):
      engine.fit(config(), digits(), keep_epochs=(9,),
                   checkpoint_dir="/nonexistent")
    with self.assertRaisesRegex(ValueError, "needs a checkpoint_dir"):
      engine.fit(config(), digits(), keep_epochs=(1,))

  def test_resuming_a_finished_run_leaves_its_logs_untouched(self):
    workdir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, workdir, True)
    checkpoints = os.path.join(workdir, "checkpoints")
    run = config(num_seeds=2, max_epochs=2, stop_when_fit=False)
    engine.fit(run, digits(), checkpoint_dir=checkpoints)
    logs = [os.path.join(checkpoints, name)
            for name in (hooks.METRICS_FILE, hooks.EVENTS_FILE)]
    written = {}
    for log in logs:
      with open(log, "rb") as f:
        written[log] = (f.read(), os.stat(log).st_mtime_ns)
    engine.fit(run, digits(), checkpoint_dir=checkpoints)
    for log in logs:
      with open(log, "rb") as f:
        self.assertEqual((f.read(), os.stat(log).st_mtime_ns), written[log])
    # A damaged events file is rewritten from the history.
    with open(logs[1], "r+b") as f:
      f.seek(-3, os.SEEK_END)
      f.write(b"xyz")
    self.assertIsNone(hooks.read_events(logs[1]))
    engine.fit(run, digits(), checkpoint_dir=checkpoints)
    self.assertLen(tensorboard_scalars(logs[1]), 2 * 2 * 5)


def tensorboard_scalars(path: str) -> dict:
  """{(tag, step): value} of a TensorBoard event file, each record's
  checksums verified; a (tag, step) written twice fails."""
  scalars = {}
  with open(path, "rb") as f:
    data = f.read()
  offset, first = 0, True
  while offset < len(data):
    header = data[offset:offset + 8]
    (length,) = struct.unpack("Q", header)
    (header_crc,) = struct.unpack("I", data[offset + 8:offset + 12])
    body = data[offset + 12:offset + 12 + length]
    (body_crc,) = struct.unpack("I", data[offset + 12 + length:
                                          offset + 16 + length])
    assert header_crc == record_writer.masked_crc32c(header)
    assert body_crc == record_writer.masked_crc32c(body)
    event = event_pb2.Event.FromString(body)
    if first:
      assert event.file_version == "brain.Event:2", event
      first = False
    for value in event.summary.value:
      assert (value.tag, event.step) not in scalars, (value.tag, event.step)
      scalars[value.tag, event.step] = value.simple_value
    offset += 16 + length
  return scalars


if __name__ == "__main__":
  absltest.main()
