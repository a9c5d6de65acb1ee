"""Tests of memjax.data: embedded splits, preprocessing, the tfds path and
the original order of tfds records."""

import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow_datasets as tfds

from memjax import data

TFDS_SHAPES = {"mnist": (28, 28, 1), "fashion_mnist": (28, 28, 1),
               "cifar10": (32, 32, 3), "cifar100": (32, 32, 3)}
TFDS_CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10,
                "cifar100": 100}


class RecordSource(list):
  """A stand-in for tfds's ArrayRecordDataSource: records and dataset_info."""

  def __init__(self, records, dataset_info):
    super().__init__(records)
    self.dataset_info = dataset_info


def mock_records(name: str, original_labels: dict, order: dict, ids=True):
  """``tfds.testing.mock_data`` serving ``name`` with records we control: for
  each split, original example ``i`` (label ``original_labels[split][i]``,
  every pixel ``i % 256``) sits at record position ``order[split]`` ==
  ``i``'s place, with the id ``<split>_<i>`` (CIFAR's format) if ``ids``."""
  shape = TFDS_SHAPES[name]
  records = {}
  for split, labels in original_labels.items():
    records[split] = []
    for i in order[split]:
      record = {"image": np.full(shape, i % 256, np.uint8),
                "label": int(labels[i])}
      if ids:
        record["id"] = f"{split}_{i:05d}".encode()
      records[split].append(record)
  def as_data_source(builder, split, **unused_kwargs):
    return RecordSource(records[split], builder.info)
  return tfds.testing.mock_data(as_data_source_fn=as_data_source)


def shuffled_splits(name: str, train: int, test: int, seed: int = 0):
  """(original labels, TFDS record order) per split: labels cycle through
  the classes, the record order is a seeded permutation (as TFDS's is)."""
  rng = np.random.default_rng(seed)
  sizes = {"train": train, "test": test}
  labels = {s: np.arange(n) % TFDS_CLASSES[name] for s, n in sizes.items()}
  order = {s: rng.permutation(n) for s, n in sizes.items()}
  return labels, order


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
                            ("fashion_mnist", (28, 28, 1), 10))
  def test_loads_through_data_source(self, name, shape, num_classes):
    with tfds.testing.mock_data(num_examples=12):
      ds = data.load(data.DataConfig(name=name, data_dir="/nonexistent"))
    self.assertEqual(ds.x_train.shape, (12,) + shape)
    self.assertEqual(ds.x_test.shape, (12,) + shape)
    self.assertEqual(ds.num_classes, num_classes)
    self.assertTrue(((ds.y_train >= 0) & (ds.y_train < num_classes)).all())
    np.testing.assert_allclose(ds.x_train.mean(axis=(1, 2, 3)), 0, atol=1e-5)
    # Without record ids, TFDS's order is the only one known.
    self.assertIsNone(ds.train_original_index)
    self.assertIsNone(ds.original_sizes)

  @parameterized.parameters("cifar10", "cifar100")
  def test_cifar_keeps_each_records_original_index(self, name):
    labels, order = shuffled_splits(name, train=12, test=8)
    with mock_records(name, labels, order):
      ds = data.load(data.DataConfig(name=name, data_dir="/nonexistent",
                                     standardize=False))
    self.assertEqual(ds.x_train.shape, (12, 28, 28, 3))
    self.assertEqual(ds.num_classes, TFDS_CLASSES[name])
    for split, y in (("train", ds.y_train), ("test", ds.y_test)):
      np.testing.assert_array_equal(ds.original_index(split), order[split])
      # Every loaded example is the record whose id names that index.
      x = ds.x_train if split == "train" else ds.x_test
      np.testing.assert_allclose(x[:, 0, 0, 0] * 255,
                                 order[split] % 256, atol=1e-3)
      np.testing.assert_array_equal(ds.in_original_order(y, split),
                                    labels[split])
    self.assertEqual(ds.original_sizes, (12, 8))

  def test_subset_keeps_the_original_indices_and_sizes(self):
    labels, order = shuffled_splits("cifar10", train=40, test=20)
    with mock_records("cifar10", labels, order):
      ds = data.load(data.DataConfig(name="cifar10", data_dir="/nonexistent",
                                     train_size=10, standardize=False))
    self.assertLen(ds.train_original_index, 10)
    np.testing.assert_array_equal(ds.y_train,
                                  labels["train"][ds.train_original_index])
    self.assertEqual(ds.original_size("train"), 40)
    full = ds.in_original_order(ds.y_train)
    self.assertLen(full, 40)
    kept = ds.train_original_index
    np.testing.assert_array_equal(full[kept], labels["train"][kept])
    self.assertEqual((full == -1).sum(), 30)

  def test_malformed_record_ids_are_refused(self):
    labels, order = shuffled_splits("cifar10", train=6, test=4)
    with tfds.testing.mock_data(num_examples=6):  # random text ids
      with self.assertRaisesRegex(ValueError, "train_<index>"):
        data.load(data.DataConfig(name="cifar10", data_dir="/nonexistent"))
    order["train"][1] = order["train"][0]  # two records claim one index
    with mock_records("cifar10", labels, order):
      with self.assertRaisesRegex(ValueError, "occurs 2 times"):
        data.load(data.DataConfig(name="cifar10", data_dir="/nonexistent"))

  def test_unprepared_data_says_how_to_prepare_it(self):
    with tempfile.TemporaryDirectory() as tmp:
      with self.assertRaisesRegex(FileNotFoundError,
                                  "tfds build mnist .*array_record"):
        data.load(data.DataConfig(name="mnist", data_dir=tmp))


class OriginalOrderTest(absltest.TestCase):

  def test_to_and_from_original_order_are_inverse(self):
    index = np.random.default_rng(0).permutation(7)
    values = np.arange(7 * 2).reshape(7, 2) * 1.5
    original = data.to_original_order(values, index)
    np.testing.assert_array_equal(original[index], values)
    np.testing.assert_array_equal(data.from_original_order(original, index),
                                  values)
    along_1 = data.to_original_order(values.T, index, axis=1)
    np.testing.assert_array_equal(along_1, original.T)
    # None: the order is already the original one.
    np.testing.assert_array_equal(data.to_original_order(values, None), values)

  def test_a_subset_is_filled_where_examples_are_missing(self):
    index = np.array([4, 0, 2])
    out = data.to_original_order(np.array([40.0, 0.0, 20.0]), index, size=6)
    np.testing.assert_array_equal(out, [0, np.nan, 20, np.nan, 40, np.nan])
    labels = data.to_original_order(np.array([4, 0, 2]), index, size=6)
    np.testing.assert_array_equal(labels, [0, -1, 2, -1, 4, -1])
    np.testing.assert_array_equal(data.from_original_order(out, index),
                                  [40, 0, 20])
    with self.assertRaisesRegex(ValueError, "pass fill"):
      data.to_original_order(np.array([True, False, True]), index, size=6)

  def test_bad_indices_are_refused(self):
    with self.assertRaisesRegex(ValueError, "outside the original split"):
      data.to_original_order(np.zeros(3), np.array([0, 1, 3]))
    with self.assertRaisesRegex(ValueError, "occurs 2 times"):
      data.to_original_order(np.zeros(3), np.array([0, 1, 1]))
    with self.assertRaisesRegex(ValueError, "one index per example"):
      data.to_original_order(np.zeros(3), np.array([0, 1]))
    with self.assertRaisesRegex(ValueError, "2 entries"):
      data.Dataset("x", np.zeros((3, 1)), np.zeros(3), np.zeros((1, 1)),
                   np.zeros(1), 2, train_original_index=np.array([0, 1]))

  def test_record_ids_parse_to_original_indices(self):
    np.testing.assert_array_equal(
        data.original_indices([b"train_16399", "train_00007"], "train"),
        [16399, 7])
    with self.assertRaisesRegex(ValueError, "'test_1'.*train_<index>"):
      data.original_indices(["train_1", "test_1"], "train", "cifar10")

  def test_embedded_datasets_keep_their_own_order(self):
    ds = data.load(data.DataConfig(name="digits"))
    self.assertIsNone(ds.train_original_index)
    np.testing.assert_array_equal(ds.in_original_order(ds.y_test, "test"),
                                  ds.y_test)


if __name__ == "__main__":
  absltest.main()
