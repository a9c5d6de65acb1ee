"""Tests of memjax.data: embedded splits, preprocessing and the tfds path."""

import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow_datasets as tfds

from memjax import data


class EmbeddedTest(absltest.TestCase):

  def test_mnist5k_split_is_stratified_and_seeded(self):
    ds = data.load(data.DataConfig())
    self.assertEqual(ds.x_train.shape, (4000, 28, 28, 1))
    self.assertEqual(ds.x_test.shape, (1000, 28, 28, 1))
    np.testing.assert_array_equal(np.bincount(ds.y_train), [400] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test), [100] * 10)
    again = data.load(data.DataConfig())
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    other = data.load(data.DataConfig(split_seed=1))
    self.assertFalse(np.array_equal(ds.x_test, other.x_test))

  def test_split_indices_are_disjoint_and_cover_everything(self):
    labels = np.repeat(np.arange(10), 500)
    train, test = data.stratified_split(labels, 0.2, seed=3)
    self.assertEmpty(np.intersect1d(train, test))
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])),
                                  np.arange(5000))

  def test_digits_and_subsets(self):
    full = data.load(data.DataConfig(name="digits"))
    ds = data.load(data.DataConfig(name="digits", train_size=500))
    self.assertEqual(ds.x_train.shape, (500, 8, 8, 1))
    expected = np.bincount(full.y_train) * 500 / len(full.y_train)
    np.testing.assert_allclose(np.bincount(ds.y_train), expected, atol=1)
    self.assertEqual(ds.num_classes, 10)

  def test_downscale_to_14_block_averages(self):
    config = data.DataConfig(image_size=14, standardize=False, train_size=50)
    small = data.load(config)
    full = data.load(data.DataConfig(standardize=False, train_size=50))
    expected = full.x_train.reshape(50, 14, 2, 14, 2, 1).mean(axis=(2, 4))
    np.testing.assert_allclose(small.x_train, expected, rtol=1e-6)

  def test_bad_inputs_name_the_valid_values(self):
    with self.assertRaisesRegex(ValueError, "imagenet.*mnist5k"):
      data.load(data.DataConfig(name="imagenet"))
    with self.assertRaisesRegex(ValueError, "image_size 5 .*valid"):
      data.load(data.DataConfig(image_size=5))
    with self.assertRaisesRegex(ValueError, "train_size"):
      data.load(data.DataConfig(train_size=0))


class PreprocessTest(absltest.TestCase):

  def test_per_image_standardization(self):
    x = np.random.default_rng(0).uniform(0, 255, (5, 32, 32, 3))
    out = data.preprocess(x, data.DataConfig())
    self.assertEqual(out.shape, (5, 28, 28, 3))
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3)), 1, atol=1e-4)

  def test_centre_crop_takes_the_middle(self):
    x = np.arange(32 * 32, dtype=np.float32).reshape(1, 32, 32, 1)
    out = data.preprocess(x * 255, data.DataConfig(standardize=False))
    np.testing.assert_array_equal(out[0, :, :, 0], x[0, 2:30, 2:30, 0])


class TfdsTest(parameterized.TestCase):

  @parameterized.parameters(("mnist", (28, 28, 1), 10),
                            ("fashion_mnist", (28, 28, 1), 10),
                            ("cifar10", (28, 28, 3), 10),
                            ("cifar100", (28, 28, 3), 100))
  def test_loads_through_data_source(self, name, shape, num_classes):
    with tfds.testing.mock_data(num_examples=12):
      ds = data.load(data.DataConfig(name=name, data_dir="/nonexistent"))
    self.assertEqual(ds.x_train.shape, (12,) + shape)
    self.assertEqual(ds.x_test.shape, (12,) + shape)
    self.assertEqual(ds.num_classes, num_classes)
    self.assertTrue(((ds.y_train >= 0) & (ds.y_train < num_classes)).all())
    np.testing.assert_allclose(ds.x_train.mean(axis=(1, 2, 3)), 0, atol=1e-5)

  def test_unprepared_data_says_how_to_prepare_it(self):
    with tempfile.TemporaryDirectory() as tmp:
      with self.assertRaisesRegex(FileNotFoundError,
                                  "tfds build mnist .*array_record"):
        data.load(data.DataConfig(name="mnist", data_dir=tmp))


if __name__ == "__main__":
  absltest.main()
