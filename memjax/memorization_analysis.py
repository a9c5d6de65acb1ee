"""The memorization experiment's analyses, files and figures.

What ``experiments/memorization_scores.py`` computes from its subset runs
(``memjax.memorization``) beyond the estimates themselves, as pure functions
of the runs and the data, and the files it writes per label-noise condition:

* ``make_condition``: one condition's training labels (``Condition``).
* Analyses behind the claims: ``top_versus_rest`` (the top examples by a score
  against the rest, with the standard error of the difference),
  ``split_half`` (scores on the even runs, held-out accuracy on the odd ones),
  ``influential_pairs`` (the significant top-1 train-test pairs: shared
  labels, input-space distance) and ``summarize`` (one condition's numbers).
* Geometry, independent of any network: ``knn_label_agreement`` (the share of
  an example's nearest training inputs that share its label: a k-NN estimate
  of Jiang et al.'s relative local density of its class) and
  ``distance_percentile`` (how near a training example is to a test example
  compared with the other training examples of the test example's label).
* Files (``write_files``): per-example arrays in dataset order (``.npy``,
  ``scores.csv``, ``influence_top_k.npz``), the same scores in the dataset's
  original order in the published schemas (``memjax.published``:
  ``c_score_orig_order.npz`` like Jiang et al.'s C-score release,
  ``infl_matrix_orig_order.npz`` like Feldman & Zhang's
  ``cifar100_infl_matrix.npz``; labels are the true labels, as in the
  releases), and the figures.
"""

from __future__ import annotations

import os
import typing

import numpy as np
import pandas as pd

from memjax import checkpointing
from memjax import data as data_lib
from memjax import keys
from memjax import memorization
from memjax import published
from memjax import randomization
from memjax import reporting
from memjax import stats

NATURAL_LABELS = "natural_labels"  # the condition name without corruption
# Defaults of the analyses (the experiment's claims are stated with them).
TOP_FRACTION = 0.05
NEIGHBOURS = 10
PAIR_FAMILY_ALPHA = 0.05
# Per-condition files in the published schemas, in original order.
C_SCORE_FILE = "c_score_orig_order.npz"
INFL_MATRIX_FILE = "infl_matrix_orig_order.npz"


class Condition(typing.NamedTuple):
  """One label-noise condition's training set."""

  name: str
  dataset: data_lib.Dataset  # with the corrupted training labels
  original: np.ndarray  # the true training labels
  corrupted: np.ndarray  # bool: the label differs from the true one
  redrawn: np.ndarray  # bool: the label was drawn anew (may equal the true one)


def make_condition(dataset, name, corruption, randomization_seed) -> Condition:
  original = dataset.y_train
  if name == NATURAL_LABELS:
    none = np.zeros(len(original), bool)
    return Condition(name, dataset, original, none, none)
  noise = randomization.Randomization("corrupt_labels", corruption, name)
  randomized = randomization.apply(dataset, noise,
                                   keys.seed_key(randomization_seed))
  return Condition(name, randomized.dataset, original,
                   randomized.dataset.y_train != original,
                   randomized.train_mask)



# --- Geometry: the input space, no network -----------------------------------

def _squared_distances(a, b):
  """(len(a), len(b)) squared Euclidean distances of flattened inputs."""
  a = np.asarray(a, np.float64).reshape(len(a), -1)
  b = np.asarray(b, np.float64).reshape(len(b), -1)
  d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
  return np.maximum(d2, 0.0)


def knn_label_agreement(x, labels, k: int = 10,
                        block_size: int = 1024) -> np.ndarray:
  """Per example, the share of its ``k`` nearest other examples (Euclidean
  distance of the inputs) that carry its label.

  A k-NN estimate of an example's relative local density of its own class (the
  input-space proxy of Jiang et al.'s C-score): low for atypical or ambiguous
  examples, which lie among other classes. Memory stays at (block_size, n).
  """
  labels = np.asarray(labels)
  n = len(labels)
  if not 1 <= k < n:
    raise ValueError(f"k={k} must be in [1, {n - 1}] (the other examples).")
  agreement = np.empty(n)
  for start in range(0, n, block_size):
    rows = np.arange(start, min(start + block_size, n))
    d2 = _squared_distances(np.asarray(x)[rows], x)
    d2[np.arange(len(rows)), rows] = np.inf  # not its own neighbour
    nearest = np.argpartition(d2, k - 1, axis=1)[:, :k]
    agreement[rows] = (labels[nearest] == labels[rows, None]).mean(1)
  return agreement


def distance_percentile(x_train, train_labels, x_test, test_labels,
                        train_index, test_index) -> np.ndarray:
  """For each pair (train_index[p], test_index[p]), the share of the other
  training examples labelled like the test example that lie nearer to it
  (ties count half): 0.5 on average for a random same-label training example,
  near 0 for a near duplicate; NaN where no other training example has the
  label."""
  train_labels = np.asarray(train_labels)
  test_index = np.asarray(test_index, int)
  train_index = np.asarray(train_index, int)
  out = np.full(len(test_index), np.nan)
  if not len(test_index):
    return out
  d2 = _squared_distances(np.asarray(x_test)[test_index], x_train)
  for p, (i, j) in enumerate(zip(train_index, test_index)):
    others = train_labels == np.asarray(test_labels)[j]
    others[i] = False
    if others.any():
      d = d2[p, others]
      out[p] = ((d < d2[p, i]).sum() + 0.5 * (d == d2[p, i]).sum()) / len(d)
  return out


# --- Analyses: pure functions of the runs and the data ------------------------

def top_versus_rest(values, scores, eligible,
                    fraction: float = TOP_FRACTION) -> dict:
  """Mean of ``values`` over the ``fraction`` of ``eligible`` examples with the
  highest ``scores`` (every example tied at the cut included) against the
  other eligible ones; ``difference`` = rest - top, with its standard error."""
  values, scores = np.asarray(values, float), np.asarray(scores, float)
  keep = np.asarray(eligible) & np.isfinite(values) & np.isfinite(scores)
  out = {"num_top": 0, "num_rest": int(keep.sum()), "score_cut": None,
         "top": None, "rest": None, "difference": float("nan"),
         "se": float("nan")}
  if keep.sum() < 2:
    return out
  cut = float(np.quantile(scores[keep], 1 - fraction))
  top = keep & (scores >= cut)
  rest = keep & ~top
  out.update(num_top=int(top.sum()), num_rest=int(rest.sum()), score_cut=cut)
  if top.sum() and rest.sum():
    out.update(top=float(values[top].mean()), rest=float(values[rest].mean()))
    out["difference"], out["se"] = stats.difference(values[rest], values[top])
  return out


def split_half(masks, train_correct, run, clean) -> dict:
  """Claim 2: top clean examples by memorization on the even-numbered runs,
  their held-out accuracy on the odd-numbered runs."""
  even = np.asarray(run) % 2 == 0
  scores = memorization.memorization(masks[even], train_correct[even]).value
  heldout = memorization.heldout_accuracy(masks[~even],
                                          train_correct[~even]).value
  return top_versus_rest(heldout, scores, clean)


def influential_pairs(top: memorization.TopInfluence, masks, test_correct,
                      x_train, y_train, x_test, y_test) -> dict:
  """Claims 4 and 5 from each test example's most influential training
  example: which pairs are significant, whether they share a label and how
  near they are."""
  n, n_test = len(y_train), len(y_test)
  alpha = PAIR_FAMILY_ALPHA / (n * n_test)  # Bonferroni over every pair
  p_values = memorization.influence_p_values(masks, test_correct,
                                             top.index[:, 0], np.arange(n_test))
  test_index = np.flatnonzero(p_values < alpha)
  train_index = top.index[test_index, 0]
  same = y_train[train_index] == y_test[test_index]
  low, high = stats.jeffreys_interval(same.sum(), len(same))
  classes = np.arange(max(y_train.max(), y_test.max()) + 1)
  chance = float(sum(np.mean(y_train == c) * np.mean(y_test == c)
                     for c in classes))
  percentile = distance_percentile(
      x_train, y_train, x_test, y_test, train_index[same], test_index[same])
  percentile = percentile[np.isfinite(percentile)]
  mean, mean_se = (stats.mean_se(percentile) if percentile.size
                   else (float("nan"), float("nan")))
  value = top.value[test_index, 0]
  order = np.argsort(-value, kind="stable")
  return {
      "test_examples": n_test, "alpha_per_pair": alpha,
      "significant": int(len(test_index)),
      "same_label": int(same.sum()),
      "same_label_share": float(same.mean()) if len(same) else float("nan"),
      "same_label_low": float(low), "same_label_high": float(high),
      "same_label_se": float(stats.jeffreys_se(same.sum(), len(same)))
                       if len(same) else float("nan"),
      "chance_same_label": chance,
      "distance_percentile": mean, "distance_percentile_se": mean_se,
      "distance_pairs": int(percentile.size),
      # The significant pairs, most influential first: (train, test, infl).
      "pairs": [(int(train_index[p]), int(test_index[p]), float(value[p]))
                for p in order],
  }


def summarize(condition: Condition, runs, first, mem, cscore, test_cscore,
              top, knn) -> dict:
  """One condition's numbers. ``runs``: every run; ``first``: the runs at the
  first ratio (memorization and influence)."""
  corrupted, clean = condition.corrupted, ~condition.corrupted
  mean = lambda v: float(np.nanmean(v)) if np.isfinite(v).any() else None
  finite = np.isfinite(mem.value)
  kept = condition.redrawn & ~corrupted
  d = condition.dataset
  return {
      "runs": runs.num_runs,
      "train_examples": len(corrupted),
      "corrupted_examples": int(corrupted.sum()),
      "redrawn_kept_true_label": int(kept.sum()),
      "mean_score_corrupted": mean(mem.value[corrupted]),
      "mean_score_clean": mean(mem.value[clean]),
      "mean_score_redrawn_kept": mean(mem.value[kept]),
      "auc_corrupted": (stats.auc(mem.value[finite], corrupted[finite])
                        if corrupted.any() and clean.any() else None),
      "mean_stderr": mean(mem.stderr),
      "mean_held_in": mean(mem.num_in),
      "mean_held_out": mean(mem.num_out),
      "subset_train_acc": float((first.masks & first.train_correct).sum()
                                / first.masks.sum()),
      "test_acc": float(first.test_correct.mean()),
      "mean_c_score": mean(cscore.value),
      "mean_c_score_stderr": mean(cscore.stderr),
      "mean_test_c_score": mean(test_cscore.value),
      "mean_top1_influence": mean(top.value[:, 0]),
      "split_half": split_half(first.masks, first.train_correct, first.run,
                               clean),
      "atypical": top_versus_rest(knn, mem.value, clean),
      "influential_pairs": influential_pairs(
          top, first.masks, first.test_correct, d.x_train, d.y_train,
          d.x_test, d.y_test),
      "seconds": runs.seconds,
      "cpu_seconds": runs.cpu_seconds,
      "runs_per_second": runs.num_runs / runs.seconds,
  }


# --- Outputs -----------------------------------------------------------------

def write_csv(path, condition, mem, cscore, knn):
  checkpointing.register(path)
  pd.DataFrame({"index": np.arange(len(condition.original)),
                "label": condition.dataset.y_train,
                "original_label": condition.original,
                "corrupted": condition.corrupted,
                "score": mem.value, "stderr": mem.stderr,
                "c_score": cscore.value, "c_score_stderr": cscore.stderr,
                "knn_label_agreement": knn,
                "num_in": mem.num_in, "num_out": mem.num_out}
               ).to_csv(path, index=False, float_format="%.5g")
  return path


def ranked(scores, classes, descending):
  """Example indices by score; ties go round the classes in turn.

  Many examples tie (e.g. at a score of 1), and the training split is sorted
  by class, so breaking ties by index would show one class only.
  """
  rank_in_class = np.zeros(len(classes), int)
  for c in np.unique(classes):
    rank_in_class[classes == c] = np.arange((classes == c).sum())
  key = np.nan_to_num(scores, nan=-np.inf if descending else np.inf)
  return np.lexsort((classes, rank_in_class, -key if descending else key))


def _image_grid(rows: dict, show: int):
  plt = reporting.pyplot()
  fig, axes = plt.subplots(len(rows), show,
                           figsize=(1.3 * show, 0.6 + 1.8 * len(rows)),
                           squeeze=False)
  for row, (title, images) in zip(axes, rows.items()):
    for ax in row:
      ax.set_xticks([])
      ax.set_yticks([])
    for ax, (image, caption) in zip(row, images):
      ax.imshow(image[:, :, 0], cmap="gray")
      ax.set_title(caption, fontsize=7)
    row[0].set_ylabel(title, fontsize=8)
  return fig


def plot_examples(path, condition, scores, show):
  """Rows of the most memorized, most memorized clean and least memorized."""
  d, original = condition.dataset, condition.original
  show = min(show, len(scores) // 2)
  most = ranked(scores, original, True)
  picks = {"most memorized": most[:show]}
  clean = ~condition.corrupted
  if not clean.all():
    # Clean examples that are still memorized: atypical or ambiguous digits.
    picks["most memorized\nclean label"] = most[clean[most]][:show]
  picks["least memorized"] = ranked(scores, original, False)[:show]
  caption = lambda i: (f"#{i} y={d.y_train[i]}"
                       + (f" ({original[i]})" if d.y_train[i] != original[i]
                          else "") + f"\nmem {scores[i]:.2f}")
  fig = _image_grid({title: [(d.x_train[i], caption(i)) for i in indices]
                     for title, indices in picks.items()}, show)
  fig.suptitle("Most and least memorized training examples: #index, label "
               "(true label if corrupted), score", fontsize=9)
  return reporting.save_figure(fig, path)


def plot_pairs(path, condition, pairs, show):
  """The most influential significant pairs: test image above training image."""
  d = condition.dataset
  pairs = pairs[:show]
  fig = _image_grid({
      "test": [(d.x_test[j], f"test #{j} y={d.y_test[j]}")
               for _, j, _ in pairs],
      "training": [(d.x_train[i], f"train #{i} y={d.y_train[i]}\n"
                    f"infl {v:.2f}") for i, j, v in pairs]},
                    max(1, len(pairs)))
  fig.suptitle(f"{condition.name}: the {len(pairs)} most influential "
               "significant train-test pairs", fontsize=9)
  return reporting.save_figure(fig, path)


def plot_histogram(path, scores, corrupted, title):
  plt = reporting.pyplot()
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  bins = np.linspace(-0.2, 1.0, 49)
  for name, keep in (("clean", ~corrupted), ("corrupted", corrupted)):
    if keep.any():
      ax.hist(np.clip(scores[keep], bins[0], bins[-1]), bins=bins, alpha=0.6,
              label=f"{name} ({keep.sum()})")
  ax.set_xlabel("memorization score")
  ax.set_ylabel("training examples")
  ax.set_title(title)
  ax.legend()
  return reporting.save_figure(fig, path)


def write_published(folder: str, condition: Condition, first, mem,
                    cscore) -> tuple[str, str]:
  """The condition's C-scores and memorization / influence in the published
  schemas, in the dataset's original order (its own order where it has no
  original index): ``C_SCORE_FILE`` (``labels``, ``scores``, ``stderr``) and
  ``INFL_MATRIX_FILE`` (``tr_mem``, ``tr_labels``, ``tt_labels``, and per
  class its examples' original indices and influence matrix, from the runs
  at the first ratio, ``first``). Labels are the true ones (the releases
  hold the datasets' labels), whatever labels the runs trained on."""
  # The workdir's own files from an earlier run of the same config.
  c_score = published.save_scores(
      os.path.join(folder, C_SCORE_FILE), cscore.value, condition.dataset,
      labels=condition.original, overwrite=True, stderr=cscore.stderr)
  infl = published.save_infl_matrix(
      os.path.join(folder, INFL_MATRIX_FILE), condition.dataset, mem.value,
      masks=first.masks, test_correct=first.test_correct,
      train_labels=condition.original, overwrite=True)
  return c_score, infl


def write_files(folder: str, condition: Condition, first, mem, cscore,
                test_cscore, top, knn, pairs, show: int, title: str) -> None:
  """Every per-example file and figure of one condition into ``folder``
  (the experiment's docstring lists them); ``pairs``: the significant
  influential pairs, most influential first."""
  out = lambda name: os.path.join(folder, name)
  for name, value in (("memorization", mem.value),
                      ("memorization_stderr", mem.stderr),
                      ("c_score", cscore.value),
                      ("c_score_stderr", cscore.stderr),
                      ("test_c_score", test_cscore.value)):
    checkpointing.register(out(f"{name}.npy"))
    np.save(out(f"{name}.npy"), value.astype(np.float32))
  checkpointing.save_npz(out("influence_top_k.npz"), index=top.index,
                         value=top.value, stderr=top.stderr)
  write_csv(out("scores.csv"), condition, mem, cscore, knn)
  write_published(folder, condition, first, mem, cscore)
  plot_examples(out("memorized_examples.png"), condition, mem.value, show)
  plot_pairs(out("influential_pairs.png"), condition, pairs, show)
  plot_histogram(out("score_histogram.png"), mem.value, condition.corrupted,
                 title)
