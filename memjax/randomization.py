"""Randomization tests of Zhang et al. (Sec. 2.1) and Arpit et al.'s noise.

A condition is a frozen ``Randomization`` (a kind and a fraction), usually made
from its name with ``from_name``:

=====================  ======================================================
name                   meaning
=====================  ======================================================
``true_labels``        the data unchanged (Arpit's ``real``)
``random_labels``      every training label replaced by a uniform class
                       (``randY``)
``corrupt_0.2``        each label replaced with probability 0.2 (``randY_0.2``)
``shuffled_pixels``    ONE pixel permutation for every image, train and test
``random_pixels``      a different permutation for each image, train and test
``gaussian``           every input i.i.d. Gaussian with the data's mean and
                       variance, train and test (``randX``)
``randX_0.4``          a fraction 0.4 of inputs replaced by that noise, train
                       and test (validation inputs are fresh noise too)
=====================  ======================================================

Label noise (``label_noise``) says where a corrupted label goes; each label is
selected for corruption independently with probability p:

===================  ========================================================
``uniform``          a class drawn uniformly from all K (may be the true one),
                     as in Zhang et al.; the mask marks every selected label
``different_class``  a class drawn uniformly from the K - 1 others
``pair``             class c always becomes (c + 1) mod K: the "pair flips"
                     of Han et al. (2018, Co-teaching)
``patrini_mnist``    Patrini et al.'s asymmetric MNIST noise: 2 -> 7, 3 -> 8,
                     5 <-> 6, 7 -> 1; other digits kept
``patrini_cifar10``  Patrini et al.'s CIFAR-10 noise: truck -> automobile,
                     bird -> airplane, deer -> horse, cat <-> dog (9 -> 1,
                     2 -> 0, 4 -> 7, 3 <-> 5); other classes kept
===================  ========================================================

Patrini et al., "Making deep neural networks robust to label noise: a loss
correction approach" (CVPR 2017), define class-conditional noise by a
transition matrix T, T[i, j] = P(noisy label j | true class i); in their
experiments each listed class flips with probability p to the class it is
mistaken for (T[c, c] = 1 - p, T[c, target] = p; the maps above as in their
code, giorgiop/loss-correction, noise.py). Both maps are defined for 10
classes only. Their CIFAR-100 noise (each class to the next within its
super-class, circularly) is not offered: it needs the super-class grouping.
For these flips the mask marks the labels that changed (a selected example of
a class without a target keeps its label). Every result carries T
(``Randomized.transition``, the identity when labels are untouched) so that
it can be saved beside the masks; ``transition_matrix`` computes it and
``flip_labels`` draws labels from any row-stochastic T. Test labels stay
clean unless ``corrupt_test``.

Input transformations of the whole input distribution (pixel permutations,
Gaussian) apply to train and test alike, so the test set measures
generalization on the same kind of input. Arpit's randX replaces inputs in
the test set as in the training set (the same fraction, fresh draws of the
same noise), so its validation accuracy and validation CSR are measured on
noise, not on real images.

Everything is a pure function of a typed JAX key, and the corruption masks
(which examples changed) are returned so that they can be saved beside the
results.
"""

from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np

from memjax import data as data_lib
from memjax import keys

KINDS = ("true_labels", "corrupt_labels", "shuffled_pixels", "random_pixels",
         "gaussian", "noisy_inputs")
LABEL_NOISE = ("uniform", "different_class", "pair", "patrini_mnist",
               "patrini_cifar10")
# Patrini et al. (2017)'s asymmetric noise (as in their code,
# giorgiop/loss-correction noise.py): each class -> the class it is taken for.
PATRINI_FLIPS = {
    "patrini_mnist": {2: 7, 3: 8, 5: 6, 6: 5, 7: 1},
    "patrini_cifar10": {9: 1, 2: 0, 4: 7, 3: 5, 5: 3},
}
PATRINI_CLASSES = 10
_ALIASES = {
    "true_labels": ("true_labels", 0.0),
    "real": ("true_labels", 0.0),
    "random_labels": ("corrupt_labels", 1.0),
    "randY": ("corrupt_labels", 1.0),
    "shuffled_pixels": ("shuffled_pixels", 1.0),
    "random_pixels": ("random_pixels", 1.0),
    "gaussian": ("gaussian", 1.0),
    "randX": ("noisy_inputs", 1.0),
}
_FRACTION_PREFIXES = {"corrupt": "corrupt_labels", "randY": "corrupt_labels",
                      "randX": "noisy_inputs"}
NAMES = tuple(_ALIASES) + tuple(f"{p}_<fraction>" for p in _FRACTION_PREFIXES)


@dataclasses.dataclass(frozen=True)
class Randomization:
  """One randomization-test condition."""

  kind: str = "true_labels"
  fraction: float = 0.0  # label-corruption probability or noisy-input fraction
  label_noise: str = "uniform"
  corrupt_test: bool = False

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"Unknown randomization {self.kind!r}; valid: {KINDS}.")
    if not 0.0 <= self.fraction <= 1.0:
      raise ValueError(f"Corruption fraction must be in [0, 1], got "
                       f"{self.fraction}.")
    if self.label_noise not in LABEL_NOISE:
      raise ValueError(f"Unknown label_noise {self.label_noise!r}; valid: "
                       f"{LABEL_NOISE}.")


@dataclasses.dataclass(frozen=True)
class Randomized:
  """A randomized dataset and which examples the randomization changed."""

  dataset: data_lib.Dataset
  train_mask: np.ndarray  # bool (n_train,): label or input replaced
  test_mask: np.ndarray
  # (K, K) P(label j | true class i) of the training labels (and of the test
  # labels under corrupt_test): the identity when labels are untouched.
  transition: np.ndarray | None = None


def from_name(name: str, label_noise: str = "uniform",
              corrupt_test: bool = False) -> Randomization:
  """``'random_labels'``, ``'corrupt_0.4'``, ``'randX_0.2'``... ->
  Randomization."""
  if name in _ALIASES:
    kind, fraction = _ALIASES[name]
  else:
    match = re.fullmatch(r"(corrupt|randY|randX)_([0-9.]+)", name)
    if not match:
      raise ValueError(f"Unknown condition {name!r}; valid: "
                       f"{', '.join(NAMES)}.")
    kind = _FRACTION_PREFIXES[match.group(1)]
    try:
      fraction = float(match.group(2))
    except ValueError:
      raise ValueError(f"Bad fraction in condition {name!r}.") from None
  return Randomization(kind, fraction, label_noise, corrupt_test)


def apply(dataset: data_lib.Dataset, randomization: Randomization,
          key: jax.Array) -> Randomized:
  """Applies ``randomization`` to ``dataset``; deterministic in ``key``."""
  kind, p = randomization.kind, randomization.fraction
  num_classes = dataset.num_classes
  transition = np.eye(num_classes)
  x_train, y_train = dataset.x_train, dataset.y_train
  x_test, y_test = dataset.x_test, dataset.y_test
  train_mask = np.zeros(len(y_train), bool)
  test_mask = np.zeros(len(y_test), bool)
  k_train, k_test, k_perm = keys.split(key, 3)
  if kind == "corrupt_labels":
    noise = randomization.label_noise
    transition = transition_matrix(noise, p, num_classes)
    y_train, train_mask = corrupt_labels(k_train, y_train, p, num_classes,
                                         noise)
    if randomization.corrupt_test:
      y_test, test_mask = corrupt_labels(k_test, y_test, p, num_classes, noise)
  elif kind == "shuffled_pixels":
    perm = jax.random.permutation(k_perm, _num_pixels(x_train))
    x_train, x_test = (permute_pixels(x, perm) for x in (x_train, x_test))
    train_mask[:], test_mask[:] = True, True
  elif kind == "random_pixels":
    x_train = random_pixels(k_train, x_train)
    x_test = random_pixels(k_test, x_test)
    train_mask[:], test_mask[:] = True, True
  elif kind == "gaussian":
    mean, std = float(x_train.mean()), float(x_train.std())
    x_train = gaussian_like(k_train, x_train.shape, mean, std)
    x_test = gaussian_like(k_test, x_test.shape, mean, std)
    train_mask[:], test_mask[:] = True, True
  elif kind == "noisy_inputs":
    mean, std = float(x_train.mean()), float(x_train.std())
    x_train, train_mask = noisy_inputs(k_train, x_train, p, mean, std)
    x_test, test_mask = noisy_inputs(k_test, x_test, p, mean, std)
  dataset = dataset.replace(x_train=np.asarray(x_train, np.float32),
                            y_train=np.asarray(y_train, np.int32),
                            x_test=np.asarray(x_test, np.float32),
                            y_test=np.asarray(y_test, np.int32))
  return Randomized(dataset, np.asarray(train_mask), np.asarray(test_mask),
                    transition)


def corrupt_labels(key, labels, p, num_classes, label_noise="uniform"):
  """Each label independently selected with probability p and replaced as
  ``label_noise`` says (module doc); returns (labels, mask)."""
  _check_probability(p)
  targets = flip_targets(label_noise, num_classes)
  k_select, k_label = keys.split(key, 2)
  labels = jnp.asarray(labels)
  selected = jax.random.bernoulli(k_select, p, labels.shape)
  if label_noise == "uniform":
    new = jax.random.randint(k_label, labels.shape, 0, num_classes)
  elif label_noise == "different_class":
    # Adding 1..k-1 modulo k gives every other class with equal probability.
    shift = jax.random.randint(k_label, labels.shape, 1, num_classes)
    new = (labels + shift) % num_classes
  else:
    new = jnp.asarray(targets)[labels]
    selected = selected & (new != labels)
  labels = jnp.where(selected, new, labels)
  return np.asarray(labels, np.int32), np.asarray(selected)


def flip_targets(label_noise: str, num_classes: int) -> np.ndarray | None:
  """(K,) the class each class flips to under a fixed-target ``label_noise``
  (itself where it has none); None for the drawn kinds (uniform,
  different_class). ValueError for an unknown name or a class count the
  name is not defined for."""
  if label_noise not in LABEL_NOISE:
    raise ValueError(f"Unknown label_noise {label_noise!r}; valid: "
                     f"{', '.join(LABEL_NOISE)}.")
  if label_noise in PATRINI_FLIPS and num_classes != PATRINI_CLASSES:
    raise ValueError(
        f"label_noise {label_noise!r} flips the 10 classes of Patrini et al.; "
        f"the data has {num_classes} classes (valid for it: uniform, "
        "different_class, pair).")
  if num_classes < 2:
    raise ValueError(f"Label noise needs at least 2 classes, got "
                     f"{num_classes}.")
  if label_noise == "pair":
    return (np.arange(num_classes) + 1) % num_classes
  if label_noise in PATRINI_FLIPS:
    targets = np.arange(num_classes)
    for source, target in PATRINI_FLIPS[label_noise].items():
      targets[source] = target
    return targets
  return None


def transition_matrix(label_noise: str, p: float,
                      num_classes: int) -> np.ndarray:
  """(K, K) T[i, j] = P(label j after corruption | true class i) of
  ``corrupt_labels``: (1 - p) I + p F, where row i of F is where a selected
  label of class i goes."""
  _check_probability(p)
  targets = flip_targets(label_noise, num_classes)
  if label_noise == "uniform":
    flips = np.full((num_classes, num_classes), 1.0 / num_classes)
  elif label_noise == "different_class":
    flips = (1.0 - np.eye(num_classes)) / (num_classes - 1)
  else:
    flips = np.eye(num_classes)[targets]
  return (1.0 - p) * np.eye(num_classes) + p * flips


def flip_labels(key, labels, transition):
  """Each label of class i redrawn from row i of the row-stochastic (K, K)
  ``transition`` (any class-conditional noise, Patrini et al.'s T); returns
  (labels, mask of the labels that changed)."""
  transition = np.asarray(transition, np.float64)
  k = transition.shape[0] if transition.ndim == 2 else 0
  if (transition.shape != (k, k) or k < 2 or not np.isfinite(transition).all()
      or (transition < 0).any()
      or not np.allclose(transition.sum(1), 1.0, atol=1e-6)):
    raise ValueError(f"A transition matrix must be K x K (K >= 2) with "
                     f"non-negative rows that sum to 1, got shape "
                     f"{transition.shape} and row sums "
                     f"{np.round(transition.sum(-1), 6).tolist()}.")
  labels = np.asarray(labels)
  if labels.size and (labels.min() < 0 or labels.max() >= k):
    raise ValueError(f"Labels must be classes 0..{k - 1}, got "
                     f"{labels.min()}..{labels.max()}.")
  with np.errstate(divide="ignore"):
    logits = jnp.asarray(np.log(transition), jnp.float32)
  new = np.asarray(jax.random.categorical(key, logits[labels]), np.int32)
  return new, new != labels


def _check_probability(p) -> None:
  if not 0.0 <= p <= 1.0:
    raise ValueError(f"Corruption probability must be in [0, 1], got {p}.")


def permute_pixels(x, permutation):
  """Moves pixel i of every image to ``permutation[i]``; channels move
  together."""
  n, h, w, c = x.shape
  return np.asarray(jnp.asarray(x).reshape(n, h * w, c)[:, permutation]
                    ).reshape(n, h, w, c)


def random_pixels(key, x):
  """An independent pixel permutation for each image."""
  n = x.shape[0]
  perms = jax.vmap(lambda k: jax.random.permutation(k, _num_pixels(x)))(
      keys.split(key, n))
  flat = jnp.asarray(x).reshape(n, -1, x.shape[-1])
  return np.asarray(jnp.take_along_axis(flat, perms[:, :, None], axis=1)
                    ).reshape(x.shape)


def gaussian_like(key, shape, mean, std):
  return np.asarray(mean + std * jax.random.normal(key, shape), np.float32)


def noisy_inputs(key, x, fraction, mean=None, std=None):
  """Replaces a ``fraction`` of inputs by Gaussian noise with the given mean and
  std (default: those of ``x``; Arpit's randX)."""
  k_select, k_noise = keys.split(key, 2)
  selected = np.asarray(jax.random.bernoulli(k_select, fraction, (x.shape[0],)))
  mean = float(x.mean()) if mean is None else mean
  std = float(x.std()) if std is None else std
  noise = gaussian_like(k_noise, x.shape, mean, std)
  return np.where(selected[:, None, None, None], noise, x), selected


def _num_pixels(x) -> int:
  return x.shape[1] * x.shape[2]
