"""Per-example scores in the file formats of the published releases, and
the comparison of two score files.

memjax writes memorization, influence and C-scores in the schemas of the two
releases that downstream code loads, in the dataset's original order
(``data.Dataset.in_original_order``), so that code written for the released
files loads memjax's files unchanged:

* C-scores (Jiang et al. 2021; ``cifar10-cscores-orig-order.npz``,
  ``cifar100-cscores-orig-order.npz`` from
  https://pluskid.github.io/structural-regularity/): arrays ``labels`` and
  ``scores``, one entry per training example, "in the order of training
  examples as defined by the original datasets", the labels there "for easy
  sanity check of the data ordering" (the project page). ``save_scores``
  writes any per-example score (memorization, C-score, EL2N, ...) this way.
* Memorization and influence (Feldman & Zhang 2020;
  ``cifar100_infl_matrix.npz`` from
  https://pluskid.github.io/influence-memorization/): ``tr_mem`` (memorization
  per training example), ``tr_labels``, ``tt_labels``, and for every class c
  ``tr_classidx_{c}`` / ``tt_classidx_{c}`` (original indices of the training
  / test examples of class c) and ``infl_matrix_class{c}`` (influence of each
  of those training examples on each of those test examples, shape
  (len(tr_classidx_c), len(tt_classidx_c)): 500 x 100 on CIFAR-100).
  ``save_infl_matrix`` writes it. The key names are taken from public code
  that loads the released file (found through the code search of the tool
  library: ``data['tr_classidx_1']``, ``data['tt_classidx_1']``,
  ``infl_matrix[f'infl_matrix_class{class_id}']``, ``data['tr_mem']``,
  ``data['tr_labels']``, ``data['tt_labels']``, and a README that lists
  "infl_matrix_classX: influence matrices for each class (500x100 each)"); the
  project page's own description of the file was not available to check.
  Not confirmed: the dtypes of the release (memjax writes float32 scores,
  int64 labels and indices) and that ``tr_classidx_{c}`` is ascending (memjax
  writes it ascending: the examples of class c in original order).

Only the training examples have C-scores in the release; memjax's
``save_scores`` takes ``split="test"`` for test-set scores in the same schema.

Examples a run did not load (a ``train_size`` subset) are written with score
NaN and label -1, so every array keeps the length and positions of the
original split; ``compare`` leaves them out.

``compare`` ranks two score files against each other: it first checks that
their labels agree example by example (refusing, with the count, when they do
not: the files are then in different orders or of different data), then
reports Spearman's rank correlation with a percentile bootstrap interval and
the overlap of the top (and bottom) k% examples.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile

import numpy as np

from memjax import checkpointing
from memjax import data as data_lib
from memjax import memorization
from memjax import stats

CSCORE_FILES = {"cifar10": "cifar10-cscores-orig-order.npz",
                "cifar100": "cifar100-cscores-orig-order.npz"}
INFL_MATRIX_FILES = {"cifar100": "cifar100_infl_matrix.npz"}
# Score files that compare() reads: schema -> (labels key, default scores key).
SCHEMAS = {"cscores": ("labels", "scores"),
           "infl_matrix": ("tr_labels", "tr_mem")}
MISSING_LABEL = -1


def class_keys(label: int) -> tuple[str, str, str]:
  """The release's keys of class ``label``: training indices, test indices,
  influence matrix."""
  return (f"tr_classidx_{label}", f"tt_classidx_{label}",
          f"infl_matrix_class{label}")


def _write(path: str, arrays: dict, overwrite: bool) -> str:
  """Writes ``arrays`` to ``path`` (.npz, atomic); refuses an existing file
  unless ``overwrite``, so a user's file is never replaced by accident."""
  if os.path.exists(path) and not overwrite:
    raise ValueError(f"{path} exists; choose another path or pass "
                     "overwrite=True.")
  return checkpointing.save_npz(path, **arrays)


def _split_labels(dataset: data_lib.Dataset, split: str) -> np.ndarray:
  if split not in ("train", "test"):
    raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
  return dataset.y_train if split == "train" else dataset.y_test


def _per_example(name: str, values, count: int, split: str) -> np.ndarray:
  values = np.asarray(values)
  if values.shape[:1] != (count,):
    raise ValueError(f"{name} has shape {values.shape}; need one entry per "
                     f"{split} example ({count},).")
  return values


def labels_in_original_order(dataset: data_lib.Dataset, split: str,
                             labels=None) -> np.ndarray:
  """``labels`` of ``split`` (default: the dataset's) in original order, as
  int64, MISSING_LABEL where an example was not loaded."""
  count = len(_split_labels(dataset, split))
  labels = _split_labels(dataset, split) if labels is None else labels
  labels = _per_example("labels", labels, count, split).astype(np.int64)
  return dataset.in_original_order(labels, split, fill=MISSING_LABEL)


def score_arrays(scores, dataset: data_lib.Dataset, split: str = "train",
                 labels=None, **extra) -> dict[str, np.ndarray]:
  """The C-score release's arrays for per-example ``scores`` of ``split`` (in
  memjax's order): ``labels`` and ``scores`` in original order, plus any
  ``extra`` per-example arrays (e.g. ``stderr``) in the same order.

  ``labels`` default to the dataset's labels of the split (the published
  files hold the clean labels, whatever labels a run trained on)."""
  count = len(_split_labels(dataset, split))
  out = {"labels": labels_in_original_order(dataset, split, labels)}
  for name, values in {"scores": scores, **extra}.items():
    values = _per_example(name, values, count, split).astype(np.float32)
    out[name] = dataset.in_original_order(values, split)
  return out


def save_scores(path: str, scores, dataset: data_lib.Dataset,
                split: str = "train", labels=None, overwrite: bool = False,
                **extra) -> str:
  """Writes ``score_arrays`` to ``path`` (e.g. ``CSCORE_FILES[name]``)."""
  return _write(path, score_arrays(scores, dataset, split, labels, **extra),
                overwrite)


def infl_matrix_arrays(dataset: data_lib.Dataset, tr_mem, masks=None,
                       test_correct=None, train_labels=None,
                       test_labels=None) -> dict[str, np.ndarray]:
  """Feldman & Zhang's release's arrays (module docstring), in original order.

  ``tr_mem`` (n_train,) is memorization in memjax's order
  (``memorization.memorization(...).value``). With the subset runs' ``masks``
  (R, n_train) and ``test_correct`` (R, n_test) of one subset ratio, each
  class's influence matrix is computed (``memorization.influence`` on the
  class's training and test examples only, so memory stays at one class's
  block); without them the file holds ``tr_mem``, ``tr_labels`` and
  ``tt_labels`` only. Classes are those of ``train_labels`` /
  ``test_labels`` (default: the dataset's clean labels, as in the release).
  """
  train_labels = dataset.y_train if train_labels is None else train_labels
  test_labels = dataset.y_test if test_labels is None else test_labels
  arrays = score_arrays(tr_mem, dataset, "train", train_labels)
  out = {"tr_mem": arrays["scores"], "tr_labels": arrays["labels"],
         "tt_labels": labels_in_original_order(dataset, "test", test_labels)}
  if (masks is None) != (test_correct is None):
    raise ValueError("pass both masks and test_correct (the influence "
                     "matrices), or neither.")
  if masks is None:
    return out
  masks, test_correct = np.asarray(masks), np.asarray(test_correct)
  if masks.shape[1:] != (len(dataset.y_train),) or test_correct.shape != (
      masks.shape[0], len(dataset.y_test)):
    raise ValueError(f"masks {masks.shape} and test_correct "
                     f"{test_correct.shape} must be (runs, "
                     f"{len(dataset.y_train)}) and (runs, "
                     f"{len(dataset.y_test)}).")
  train_index = _index_or_arange(dataset, "train")
  test_index = _index_or_arange(dataset, "test")
  train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
  for label in range(dataset.num_classes):
    # The class's examples in original order (ascending original index).
    train_rows = np.flatnonzero(train_labels == label)
    train_rows = train_rows[np.argsort(train_index[train_rows])]
    test_rows = np.flatnonzero(test_labels == label)
    test_rows = test_rows[np.argsort(test_index[test_rows])]
    train_key, test_key, matrix_key = class_keys(label)
    out[train_key] = train_index[train_rows]
    out[test_key] = test_index[test_rows]
    out[matrix_key] = memorization.influence(
        masks[:, train_rows], test_correct[:, test_rows]).value.astype(
            np.float32)
  return out


def _index_or_arange(dataset: data_lib.Dataset, split: str) -> np.ndarray:
  index = dataset.original_index(split)
  count = len(dataset.y_train if split == "train" else dataset.y_test)
  return np.arange(count) if index is None else np.asarray(index, np.int64)


def save_infl_matrix(path: str, dataset: data_lib.Dataset, tr_mem,
                     masks=None, test_correct=None, train_labels=None,
                     test_labels=None, overwrite: bool = False) -> str:
  """Writes ``infl_matrix_arrays`` to ``path`` (e.g.
  ``INFL_MATRIX_FILES[name]``)."""
  return _write(path, infl_matrix_arrays(dataset, tr_mem, masks, test_correct,
                                         train_labels, test_labels), overwrite)


# --- Reading and comparing ---------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ScoreFile:
  """The per-example labels and scores of one file, in its (original) order."""

  path: str
  schema: str  # a key of SCHEMAS
  key: str  # the array holding the scores
  labels: np.ndarray  # int64; MISSING_LABEL where the file has no example
  scores: np.ndarray  # float64; NaN where the file has no score


def load_scores(path: str, key: str | None = None) -> ScoreFile:
  """The labels and scores of a file in either published schema; ``key``
  picks another per-example array than the schema's scores (e.g. memjax's
  ``stderr``). ValueError naming the file and what is wrong with it."""
  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {name: f[name] for name in f.files}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise ValueError(f"{path} is not a readable .npz file ({e}).") from None
  schema = next((s for s, (labels_key, _) in SCHEMAS.items()
                 if labels_key in arrays), None)
  if schema is None:
    raise ValueError(
        f"{path} holds {sorted(arrays)}; a score file holds 'labels' and "
        "'scores' (C-score release) or 'tr_labels' and 'tr_mem' (Feldman & "
        "Zhang's release).")
  labels_key, default_key = SCHEMAS[schema]
  key = default_key if key is None else key
  labels = arrays[labels_key]
  if key not in arrays or key == labels_key:
    valid = [n for n, a in arrays.items()
             if n != labels_key and a.shape == labels.shape]
    raise ValueError(f"{path} has no score array {key!r}; valid: "
                     f"{', '.join(valid) or 'none'}.")
  scores = arrays[key]
  if labels.ndim != 1 or scores.shape != labels.shape:
    raise ValueError(f"{path}: {labels_key} {labels.shape} and {key} "
                     f"{scores.shape} must be one value per example.")
  if not (np.issubdtype(labels.dtype, np.integer) and
          np.issubdtype(scores.dtype, np.number)):
    raise ValueError(f"{path}: {labels_key} must hold integers and {key} "
                     f"numbers, got {labels.dtype} and {scores.dtype}.")
  return ScoreFile(path, schema, key, labels.astype(np.int64),
                   scores.astype(np.float64))


def matched(reference: ScoreFile, candidate: ScoreFile) -> np.ndarray:
  """The positions both files score (label >= 0, finite score), after
  checking that the files have the same length and their labels agree at every
  position both label; ValueError saying how many disagree otherwise."""
  if len(reference.labels) != len(candidate.labels):
    raise ValueError(
        f"{reference.path} has {len(reference.labels)} examples and "
        f"{candidate.path} {len(candidate.labels)}: not the same split (a "
        "memjax file in original order always has the original split's "
        "length).")
  labelled = (reference.labels >= 0) & (candidate.labels >= 0)
  disagree = np.flatnonzero(labelled & (reference.labels != candidate.labels))
  if len(disagree):
    first = disagree[0]
    raise ValueError(
        f"labels disagree on {len(disagree):,} of {labelled.sum():,} examples "
        f"(first at position {first}: {reference.labels[first]} in "
        f"{reference.path}, {candidate.labels[first]} in {candidate.path}); "
        "the files are in different orders or of different data, so their "
        "scores cannot be compared.")
  both = (labelled & np.isfinite(reference.scores)
          & np.isfinite(candidate.scores))
  if both.sum() < 3:
    raise ValueError(f"{reference.path} and {candidate.path} share "
                     f"{both.sum()} scored examples; at least 3 are needed.")
  return np.flatnonzero(both)


def top_k(scores: np.ndarray, k: int, highest: bool = True) -> np.ndarray:
  """Positions of the ``k`` highest (or lowest) scores; ties go to the lower
  position, so the set is a pure function of the scores."""
  order = np.lexsort((np.arange(len(scores)), -scores if highest else scores))
  return order[:k]


def ties_at_cut(scores: np.ndarray, k: int, highest: bool = True) -> int:
  """How many examples outside the top ``k`` tie with the k-th: where this is
  not 0, which of them made the cut was decided by position alone."""
  if k >= len(scores):
    return 0
  order = np.sort(scores)[::-1] if highest else np.sort(scores)
  return int((order[k:] == order[k - 1]).sum())


def overlap(reference, candidate, fraction: float, highest: bool) -> dict:
  """Overlap of the top (``highest``) or bottom ``fraction`` of two score
  vectors over the same examples: the share of the k examples that both pick,
  next to k / n, its expectation for unrelated scores."""
  n = len(reference)
  k = max(1, int(round(fraction * n)))
  shared = np.intersect1d(top_k(reference, k, highest),
                          top_k(candidate, k, highest))
  return {"value": len(shared) / k, "k": k, "chance": k / n,
          "ties_reference": ties_at_cut(reference, k, highest),
          "ties_candidate": ties_at_cut(candidate, k, highest)}


def compare(reference: ScoreFile, candidate: ScoreFile,
            fractions=(0.01, 0.05, 0.1), resamples: int = 1000,
            seed: int = 0) -> dict:
  """Spearman correlation (with a ``resamples`` percentile bootstrap
  interval over examples) and top/bottom-k overlaps of two score files, over
  the examples both score; rows as in results.json's summary."""
  rows = matched(reference, candidate)
  a, b = reference.scores[rows], candidate.scores[rows]
  low, high = stats.bootstrap_interval(stats.spearman, a, b,
                                       resamples=resamples, seed=seed)
  out = {"spearman": {"value": stats.spearman(a, b), "low": low, "high": high,
                      "examples": len(rows),
                      "left_out": len(reference.scores) - len(rows)}}
  for highest in (True, False):
    for fraction in fractions:
      name = f"{'highest' if highest else 'lowest'}_{fraction:g}"
      out[name] = overlap(a, b, fraction, highest)
  return out
