"""Per-example score files and figures of the score experiments.

``experiments/example_scores.py`` (EL2N, GraNd, and forgetting in its two
versions) writes what it measures through these functions:

* ``forgetting_columns``: per example, the forgetting statistics of one
  version (``forgetting_events_<version>``, ``never_learned_<version>``,
  ``first_learned_<version>``), averaged over seeds. The versions are
  ``presentation`` (Toneva et al.: counted between an example's presentations
  in training minibatches, ``memjax.presentations``) and ``clean_eval``
  (between clean eval-mode passes over the training set after every epoch,
  ``per_example.forgetting``).
* ``separation``: how well each score finds the corrupted labels (ROC AUC
  with a bootstrap interval, means over clean and corrupted examples).
* ``write_scores``: ``scores.csv`` and ``scores.npz`` in dataset order (one
  row per training example: index, labels, corrupted flag, every score
  averaged over seeds; the npz adds each score per seed), and
  ``ORIGINAL_ORDER_FILE``, the same scores in the dataset's original order
  (``data.Dataset.in_original_order``: for CIFAR the order of the original
  files, for the embedded datasets their own order) with ``labels`` (the
  dataset's labels, as in the published score files) and ``trained_labels``
  (the labels the runs were trained on) beside them: load it with
  ``np.load`` and compare any score with a published one
  (``experiments/compare_scores.py --memjax_key=el2n``).
* ``write_kept_scores``: EL2N and GraNd computed later from a state that
  training kept (``engine.fit(..., keep_epochs=...)``), the same two files.
* ``plot_histograms``: each score's histogram, clean against corrupted.

Examples a run did not load (a ``train_size`` subset of CIFAR) keep their
original positions with score NaN and label -1 (``published.MISSING_LABEL``).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from memjax import checkpointing
from memjax import data as data_lib
from memjax import per_example
from memjax import published
from memjax import reporting
from memjax import stats

ORIGINAL_ORDER_FILE = "scores_orig_order.npz"
KEPT_FOLDER = "kept_scores"


def forgetting_columns(forgetting: per_example.Forgetting,
                       version: str) -> dict[str, np.ndarray]:
  """(n,) per-example statistics of a (S, n) ``Forgetting``, named by
  ``version``: mean events and never-learned share over seeds, and the mean
  first-learned epoch (0-based) over the seeds that learned the example (NaN
  where none did)."""
  learned = ~forgetting.never_learned
  first_learned = (np.where(learned, forgetting.first_learned, 0).sum(0)
                   / np.maximum(learned.sum(0), 1))
  return {f"forgetting_events_{version}": forgetting.events.mean(0),
          f"never_learned_{version}": forgetting.never_learned.mean(0),
          f"first_learned_{version}": np.where(learned.any(0), first_learned,
                                               np.nan)}


def separation(scores: dict, corrupted, names) -> dict[str, float]:
  """How well each of ``names`` (a key of ``scores``: (n,) values) finds the
  ``corrupted`` examples: ``<name>_auc`` (ROC AUC, ``stats.auc``) with its 95%
  bootstrap interval (``_auc_low``, ``_auc_high``), and the score's mean over
  the clean (``_clean``) and, where there are any, the corrupted
  (``_corrupted``) examples."""
  corrupted = np.asarray(corrupted, bool)
  out = {}
  for name in names:
    values = scores[name]
    auc = stats.auc(values, corrupted)
    out.update({f"{name}_auc": auc["auc"], f"{name}_auc_low": auc["low"],
                f"{name}_auc_high": auc["high"],
                f"{name}_clean": float(values[~corrupted].mean())})
    if corrupted.any():
      out[f"{name}_corrupted"] = float(values[corrupted].mean())
  return out


def original_order_arrays(dataset: data_lib.Dataset, trained_labels,
                          scores: dict, per_seed: dict | None = None
                          ) -> dict[str, np.ndarray]:
  """``labels`` (the dataset's), ``trained_labels``, each of ``scores``
  ((n,), float32) and of ``per_seed`` ((S, n), as ``<name>_per_seed``) in
  the dataset's original order."""
  out = {"labels": published.labels_in_original_order(dataset, "train"),
         "trained_labels": published.labels_in_original_order(
             dataset, "train", trained_labels)}
  for name, values in scores.items():
    out[name] = dataset.in_original_order(
        np.asarray(values, np.float32), "train")
  for name, values in (per_seed or {}).items():
    out[f"{name}_per_seed"] = dataset.in_original_order(
        np.asarray(values, np.float32), "train", axis=1)
  return out


def write_scores(workdir: str, dataset: data_lib.Dataset, trained_labels,
                 corrupted, scores: dict, per_seed: dict, extra: dict,
                 selected_for_noise) -> str:
  """``scores.csv``, ``scores.npz`` (dataset order) and
  ``ORIGINAL_ORDER_FILE`` into ``workdir``; returns the CSV's path.
  ``scores`` and ``extra`` hold (n,) seed means, ``per_seed`` (S, n) arrays
  of the scores; ``corrupted``: the label was changed."""
  columns = {"index": np.arange(len(corrupted)), "label": trained_labels,
             "original_label": dataset.y_train, "corrupted": corrupted,
             **scores, **extra}
  csv_path = os.path.join(workdir, "scores.csv")
  checkpointing.register(csv_path)
  pd.DataFrame(columns).to_csv(csv_path, index=False)
  checkpointing.save_npz(os.path.join(workdir, "scores.npz"), **columns,
                         **{f"{n}_per_seed": v for n, v in per_seed.items()},
                         selected_for_noise=selected_for_noise)
  checkpointing.save_npz(
      os.path.join(workdir, ORIGINAL_ORDER_FILE),
      **original_order_arrays(dataset, trained_labels, scores, per_seed))
  return csv_path


def kept_paths(workdir: str, epoch: int) -> tuple[str, str]:
  """The files of the scores of the state kept after ``epoch`` epochs: in
  dataset order and in original order."""
  stem = os.path.join(workdir, KEPT_FOLDER, f"epoch_{epoch:05d}")
  return f"{stem}.npz", f"{stem}_orig_order.npz"


def write_kept_scores(workdir: str, epoch: int, dataset: data_lib.Dataset,
                      trained_labels, per_seed: dict[str, np.ndarray],
                      fingerprint: str) -> tuple[str, str]:
  """Scores of a kept state (``per_seed``: name -> (S, n)) into
  ``kept_paths``: per seed and their seed means in dataset order (tied to
  the run by ``fingerprint``), and in original order with the labels."""
  path, original_path = kept_paths(workdir, epoch)
  checkpointing.register(os.path.dirname(path))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  means = {name: values.mean(0) for name, values in per_seed.items()}
  checkpointing.save_npz(
      path, fingerprint, epoch=np.int32(epoch), **means,
      **{f"{n}_per_seed": v for n, v in per_seed.items()})
  checkpointing.save_npz(original_path, **original_order_arrays(
      dataset, trained_labels, means, per_seed))
  return path, original_path


def plot_histograms(path: str, scores: dict, corrupted, aucs: dict) -> str:
  """One histogram per score of ``aucs`` (density, clean vs corrupted), the
  AUC in the title."""
  plt = reporting.pyplot()
  names = list(aucs)
  fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 3.8))
  for ax, name in zip(np.atleast_1d(axes), names):
    values = scores[name]
    edges = np.linspace(values.min(), values.max() + 1e-9, 31)
    ax.hist(values[~corrupted], bins=edges, alpha=0.6, density=True,
            label="clean")
    ax.hist(values[corrupted], bins=edges, alpha=0.6, density=True,
            label="corrupted")
    auc = aucs[name]
    ax.set_title(f"{name} (AUC {auc:.3f})" if np.isfinite(auc) else name)
    ax.set_xlabel(f"{name}, mean over seeds")
    ax.legend()
  return reporting.save_figure(fig, path)
