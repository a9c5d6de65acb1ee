"""Per-presentation forgetting (Toneva et al.): what each step saw, counted."""

import chex
import jax
import numpy as np
from absl.testing import absltest

from memjax import engine
from memjax import keys
from memjax import per_example
from memjax import presentations
from memjax import training

N, BATCH, CLASSES = 40, 16, 3  # 40 / 16: two full batches and a partial one


def setup(num_seeds=2):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(N, 4, 4, 1)).astype(np.float32)
  y = rng.integers(0, CLASSES, N).astype(np.int32)
  config = training.TrainConfig(model="mlp1x8", num_seeds=num_seeds,
                                batch_size=BATCH, learning_rate=0.1,
                                max_epochs=3, stop_when_fit=False)
  trainer = training.cached_trainer(config, x.shape[1:], CLASSES)
  return config, trainer, x, y


class PresentationEpochTest(absltest.TestCase):

  def test_trains_exactly_as_the_plain_epoch(self):
    config, trainer, x, y = setup()
    seed_keys = keys.seed_keys(config.seed, config.num_seeds)
    index = np.broadcast_to(np.arange(N, dtype=np.int32), (2, N))
    plain, plain_losses = trainer.train_epoch(trainer.init(seed_keys),
                                              seed_keys, 0, x, y, index)
    recorded, losses, presented = presentations.presentation_epoch(
        trainer, trainer.init(seed_keys), seed_keys, 0, x, y, index)
    chex.assert_trees_all_close(plain.params, recorded.params)
    np.testing.assert_array_equal(plain_losses, losses)
    chex.assert_shape(presented, (2, N))
    # Every example is presented once: none is left NOT_PRESENTED.
    self.assertTrue(np.isin(np.asarray(presented), (0, 1)).all())

  def test_records_each_steps_prediction_before_its_update(self):
    config, trainer, x, y = setup(num_seeds=1)
    seed_keys = keys.seed_keys(config.seed, 1)
    index = np.arange(N, dtype=np.int32)[None]
    _, _, presented = presentations.presentation_epoch(
        trainer, trainer.init(seed_keys), seed_keys, 0, x, y, index)
    # The same epoch as a plain loop of steps, predicting before each update.
    state = jax.tree.map(lambda a: a[0], trainer.init(seed_keys))
    batches = np.asarray(trainer.epoch_batches(seed_keys[0], 0, index[0]))
    weights = np.asarray(trainer.epoch_weights(N))
    expected = np.full(N, -1)
    for rows, w in zip(batches, weights):
      state, _, logits = trainer.update(state, seed_keys[0], x[rows], y[rows],
                                        w)
      real = w > 0
      expected[rows[real]] = (np.asarray(logits).argmax(-1) == y[rows])[real]
    np.testing.assert_array_equal(np.asarray(presented)[0], expected)

  def test_examples_outside_a_subset_are_not_presented(self):
    config, trainer, x, y = setup()
    seed_keys = keys.seed_keys(config.seed, config.num_seeds)
    index = np.stack([np.arange(0, N, 2), np.arange(1, N, 2)]).astype(np.int32)
    _, _, presented = presentations.presentation_epoch(
        trainer, trainer.init(seed_keys), seed_keys, 0, x, y, index)
    presented = np.asarray(presented)
    for lane in range(2):
      inside = np.zeros(N, bool)
      inside[index[lane]] = True
      self.assertTrue(np.isin(presented[lane, inside], (0, 1)).all())
      self.assertTrue((presented[lane, ~inside]
                       == presentations.NOT_PRESENTED).all())


class ForgettingTest(absltest.TestCase):

  def test_equals_the_clean_eval_count_when_every_epoch_presents_all(self):
    history = np.random.default_rng(1).integers(0, 2, (9, 3, 50))
    expected = per_example.forgetting(history)
    got = presentations.forgetting(history.astype(np.int8))
    np.testing.assert_array_equal(got.events, expected.events)
    np.testing.assert_array_equal(got.never_learned, expected.never_learned)
    np.testing.assert_array_equal(got.first_learned, expected.first_learned)

  def test_counts_transitions_between_presentations_only(self):
    skip = presentations.NOT_PRESENTED
    history = np.array([[1], [skip], [0], [skip], [1], [0]], np.int8)
    got = presentations.forgetting(history)
    self.assertEqual(int(got.events[0]), 2)  # 1 -> (skip) -> 0, 1 -> 0
    self.assertEqual(int(got.first_learned[0]), 0)

  def test_fit_hook_keeps_every_epochs_presentations(self):
    config, _, x, y = setup()
    data = training.TrainData(x, y, x[:8], y[:8], num_classes=CLASSES)
    recorder = presentations.PresentationRecorder(config.max_epochs, 2, N)
    result = engine.fit(config, data, hooks=[recorder],
                          epoch_fn=presentations.presentation_epoch)
    history = recorder.history(result.epochs)
    chex.assert_shape(history, (3, 2, N))
    self.assertTrue(np.isin(history, (0, 1)).all())
    # The same training as a fit without the recorder.
    plain = engine.fit(config, data)
    chex.assert_trees_all_close(plain.state.params, result.state.params)


if __name__ == "__main__":
  absltest.main()
