"""Which examples are memorized: estimates from many vmapped subset runs.

Feldman & Zhang (2020) train many models, each on a random subset of the
training set, and estimate for every training example ``i``

  mem(i) = P(correct on i | i in the subset) - P(correct on i | i held out),

and for every pair of a training example ``i`` and a test example ``j`` the
influence ``infl(i, j) = P(correct on j | i in) - P(correct on j | i out)``.
Jiang et al. (2021)'s C-score of an example is its expected held-out accuracy
over subset ratios (and over subsets and seeds).

Runs. Run ``r`` at subset ratio ``ratios[k]`` trains on a uniformly random
subset of exactly ``round(ratio * n)`` training examples. Its key is
``keys.run_keys(seed, k, runs)``; the subset and every random choice of its
training (init, batch order, dropout) derive from that key, so a run is a pure
function of (seed, ratio index, run index): independent of the chunk size and
of interruptions. Every run trains for exactly ``train.max_epochs`` epochs
(there is no early stop, so all lanes of a chunk do the same work);
``train.num_seeds`` is not used.

Chunks. ``chunk_size`` runs are trained at once by one jitted function: the
Trainer's vmapped epoch with ``train_index`` of shape (chunk, m) gives each lane
its own subset of the same arrays, and a ``lax.scan`` runs the epochs. An epoch
visits every example of the run's subset once (the last batch is partial, its
filler weighted 0: ``Trainer.epoch_batches`` / ``epoch_weights``). Each
finished chunk's subset masks and clean eval-mode correctness on the whole
training and test sets are written to ``<directory>/<chunk>.npz`` with
``checkpointing.save_npz`` (atomic, registered in the workdir, stamped with the
fingerprint of the estimate's config and data), so an interrupted estimate
resumes without losing finished chunks and equals the uninterrupted one; a
chunk file from another configuration, or a damaged one, is refused with one
line naming the file.

Uncertainty. A conditional accuracy measured as ``h`` hits in ``k`` runs is a
binomial proportion; its uncertainty is the Jeffreys interval's half-width in
standard-error units (``stats.jeffreys_se``), which stays positive where every
run agreed (``h`` = 0 or ``k``), unlike the plug-in ``sqrt(p (1 - p) / k)``.
A difference of two independent proportions (memorization, influence) adds
the two squared errors. The ``k`` are the numbers of runs that held an example
in and out (``num_in``, ``num_out``). Whether a pair's influence is there at
all is tested exactly (``influence_p_values``: Fisher's exact test), since a
selection among millions of pairs lives far in the tail, where a normal
approximation fails. A run whose training loss, or whose final model's clean
evaluation loss, is not finite stops the estimate with a FloatingPointError
naming the run.

The input-space geometry that the memorization experiment relates the scores
to is in ``memjax.memorization_analysis``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats as scipy_stats
import tqdm

from memjax import checkpointing
from memjax import engine
from memjax import keys
from memjax import stats
from memjax import training

# Streams derived from each run's key.


@dataclasses.dataclass(frozen=True)
class EstimateConfig:
  """Which subset runs to train; ``train`` says how each run is trained."""

  train: training.TrainConfig
  num_runs: int = 1000  # per subset ratio
  ratios: tuple[float, ...] = (0.7,)
  chunk_size: int = 50  # runs trained at once (vmapped)

  def __post_init__(self):
    if self.num_runs < 1 or self.chunk_size < 1:
      raise ValueError(f"num_runs={self.num_runs} and chunk_size="
                       f"{self.chunk_size} must both be >= 1.")
    if not self.ratios or len(set(self.ratios)) != len(self.ratios):
      raise ValueError(f"ratios={self.ratios!r} must be a non-empty tuple of "
                       "distinct subset ratios in (0, 1).")
    for ratio in self.ratios:
      if not 0.0 < ratio < 1.0:
        raise ValueError(f"Subset ratio {ratio} is not in (0, 1); every run "
                         "must train on some examples and hold some out.")

  def check_data(self, dataset) -> None:
    """Raises ValueError, before any training, unless every ratio gives a
    subset that holds some of the training examples in and some out.
    ``dataset``: the loaded ``data.Dataset`` (``cli.claim_workdir`` calls
    this on every config part that has it) or the number of training
    examples."""
    num_train = (int(dataset) if isinstance(dataset, (int, np.integer))
                 else len(dataset.y_train))
    for ratio in self.ratios:
      subset_size(ratio, num_train)


def subset_size(ratio: float, num_train: int, flag: str = "ratios") -> int:
  """Examples in a subset of ``ratio`` of ``num_train``: round(ratio * n);
  ValueError naming --``flag`` unless at least 1 and at most n - 1."""
  size = int(round(ratio * num_train))
  if not 1 <= size < num_train:
    raise ValueError(f"--{flag}: {ratio:g} of {num_train} training examples "
                     f"gives {size} per subset; it must be in [1, "
                     f"{num_train - 1}] so that some examples are held out.")
  return size


def subset_indices(run_keys: jax.Array, num_train: int, size: int) -> jax.Array:
  """(R, size) sorted training indices of each run's random subset."""
  def one(key):
    perm = jax.random.permutation(keys.derive(key, keys.RUN_SUBSET), num_train)
    return jnp.sort(perm[:size]).astype(jnp.int32)
  return jax.vmap(one)(run_keys)


def masks_from_indices(indices, num_train: int) -> np.ndarray:
  """(R, n) boolean masks: True where the run trained on the example."""
  indices = np.asarray(indices)
  masks = np.zeros((indices.shape[0], num_train), bool)
  np.put_along_axis(masks, indices, True, axis=1)
  return masks


@dataclasses.dataclass
class SubsetRuns:
  """Every run's subset mask and clean eval-mode correctness, in run order."""

  ratio: np.ndarray  # (R,) the run's subset ratio
  run: np.ndarray  # (R,) the run's index at its ratio
  masks: np.ndarray  # (R, n) bool: the run trained on the training example
  train_correct: np.ndarray  # (R, n) bool, every training example
  test_correct: np.ndarray  # (R, n_test) bool
  seconds: float  # wall time of training and evaluation, summed over chunks
  cpu_seconds: float  # process CPU time of the same (all threads)

  @property
  def num_runs(self) -> int:
    return int(self.run.shape[0])

  def at_ratio(self, ratio: float) -> "SubsetRuns":
    keep = self.ratio == np.float32(ratio)
    if not keep.any():
      raise ValueError(f"No runs at subset ratio {ratio}; ratios present: "
                       f"{sorted(set(self.ratio.tolist()))}.")
    # Times are shared out in proportion to the runs kept.
    return SubsetRuns(self.ratio[keep], self.run[keep], self.masks[keep],
                      self.train_correct[keep], self.test_correct[keep],
                      self.seconds * keep.mean(),
                      self.cpu_seconds * keep.mean())


def chunk_function(train: training.TrainConfig, input_shape, num_classes: int):
  """Jitted (keys, train_index, x_train, y_train, x_test, y_test) -> (train
  correct (R, n), test correct (R, n_test), losses (R, steps), eval_finite
  (R,)) of R runs; ``eval_finite``: every clean evaluation loss of the run's
  final model is finite (a divergence on the last update shows only there).

  Cached per Trainer (``training.cached_trainer``) and epoch count, so every
  estimate (and every chunk of one) with the same shapes reuses one compiled
  function, whatever its seed.
  """
  return _chunk_function(
      training.cached_trainer(train, tuple(input_shape), num_classes),
      train.max_epochs)


@functools.lru_cache(maxsize=8)
def _chunk_function(trainer: training.Trainer, num_epochs: int):

  def train_chunk(run_keys, train_index, x_train, y_train, x_test, y_test):
    train_keys = jax.vmap(lambda k: keys.derive(k, keys.RUN_TRAINING))(run_keys)

    def epoch(state, epoch_index):
      return trainer.train_epoch(state, train_keys, epoch_index, x_train,
                                 y_train, train_index)

    state, losses = jax.lax.scan(epoch, trainer.init(train_keys),
                                 jnp.arange(num_epochs))
    train_losses, train_correct = trainer.evaluate(state, x_train, y_train)
    test_losses, test_correct = trainer.evaluate(state, x_test, y_test)
    eval_finite = (jnp.isfinite(train_losses).all(axis=1)
                   & jnp.isfinite(test_losses).all(axis=1))
    # losses: (epochs, R, steps) -> (R, epochs * steps) in step order.
    losses = jnp.moveaxis(losses, 1, 0).reshape(run_keys.shape[0], -1)
    return train_correct, test_correct, losses, eval_finite

  return jax.jit(train_chunk)


class SubsetTrainer:
  """Trains chunks of subset runs of one estimate."""

  def __init__(self, config: EstimateConfig, data: training.TrainData):
    if data.per_seed_inputs or data.per_seed_labels:
      raise ValueError("Subset runs share one training set; per-seed inputs "
                       "or labels are not supported.")
    self.config = config
    self.data = data
    self._train_chunk = chunk_function(config.train, data.input_shape,
                                       data.num_classes)

  def run_chunk(self, ratio_index: int, runs) -> tuple[np.ndarray, ...]:
    """(masks, train_correct, test_correct) of ``runs`` at one ratio."""
    runs = np.asarray(runs)
    n = self.data.num_train
    run_keys = keys.run_keys(self.config.train.seed, ratio_index, runs)
    index = subset_indices(run_keys, n,
                           subset_size(self.config.ratios[ratio_index], n))
    d = self.data
    train_correct, test_correct, losses, eval_finite = self._train_chunk(
        run_keys, index, d.x_train, d.y_train, d.x_test, d.y_test)
    run_text = lambda lane: (
        f"subset run {int(runs[lane])} at ratio "
        f"{self.config.ratios[ratio_index]} (seed {self.config.train.seed}, "
        f"model {self.config.train.model}, learning rate "
        f"{self.config.train.lr})")
    bad = engine.first_nonfinite(losses)
    if bad is not None:
      lane, step = bad
      raise FloatingPointError(
          f"Non-finite training loss in {run_text(lane)} at step {step}. "
          "Lower --learning_rate.")
    eval_finite = np.asarray(eval_finite)
    if not eval_finite.all():
      raise FloatingPointError(
          f"Non-finite evaluation loss of the final model of "
          f"{run_text(int(np.argmin(eval_finite)))}: training diverged. Lower "
          "--learning_rate.")
    return (masks_from_indices(index, n), np.asarray(train_correct),
            np.asarray(test_correct))


def chunks(config: EstimateConfig):
  """(name, ratio index, run indices) of every chunk, in run order."""
  out = []
  for k in range(len(config.ratios)):
    for start in range(0, config.num_runs, config.chunk_size):
      stop = min(start + config.chunk_size, config.num_runs)
      out.append((f"ratio{k}_runs{start:06d}-{stop:06d}", k,
                  np.arange(start, stop)))
  return out


def fingerprint(config: EstimateConfig, data: training.TrainData) -> str:
  """Identifies the config and the data a chunk file was computed from."""
  # seed_chunk changes how runs execute, not their results (cli's
  # EXECUTION_FIELDS): a directory resumes under any value.
  config = dataclasses.replace(
      config, train=dataclasses.replace(config.train, seed_chunk=None))
  return checkpointing.fingerprint(config, data.x_train, data.y_train,
                                   data.x_test, data.y_test, data.num_classes)


_CHUNK_SHAPES = {"masks": "train", "train_correct": "train",
                 "test_correct": "test", "runs": None, "ratio": None,
                 "seconds": (), "cpu_seconds": ()}


def _load_chunk(path: str, stamp: str, num_runs: int,
                data: training.TrainData) -> dict:
  """A finished chunk's arrays; ValueError naming the file when it is damaged,
  incomplete or from another configuration."""
  arrays = checkpointing.load_npz(path, stamp)
  columns = {"train": (num_runs, data.num_train),
             "test": (num_runs, data.y_test.shape[0]), None: (num_runs,)}
  for key, shape in _CHUNK_SHAPES.items():
    expected = shape if shape == () else columns[shape]
    if key not in arrays or arrays[key].shape != expected:
      raise ValueError(f"{path} is damaged (its {key!r} array is missing or "
                       f"not of shape {expected}); delete {path} to recompute "
                       "it, or re-run with --overwrite.")
  return arrays


def estimate_runs(config: EstimateConfig, data: training.TrainData,
                  directory: str | None = None,
                  progress: str | None = None) -> SubsetRuns:
  """Trains (or, with ``directory``, loads finished chunks of) every run."""

  subset_trainer = SubsetTrainer(config, data)
  stamp = fingerprint(config, data)
  if directory is not None:
    checkpointing.register(directory)
    os.makedirs(directory, exist_ok=True)
  parts = []
  bar = tqdm.tqdm(total=config.num_runs * len(config.ratios), desc=progress,
                  disable=progress is None, unit="run", leave=False)
  for name, ratio_index, runs in chunks(config):
    path = os.path.join(directory, name + ".npz") if directory else None
    if path and os.path.exists(path):
      arrays = _load_chunk(path, stamp, len(runs), data)
    else:
      start, cpu_start = time.perf_counter(), time.process_time()
      masks, train_correct, test_correct = subset_trainer.run_chunk(
          ratio_index, runs)
      arrays = {"masks": masks, "train_correct": train_correct,
                "test_correct": test_correct, "runs": runs,
                "ratio": np.full(len(runs), config.ratios[ratio_index],
                                 np.float32),
                "seconds": np.float64(time.perf_counter() - start),
                "cpu_seconds": np.float64(time.process_time() - cpu_start)}
      if path:
        checkpointing.save_npz(path, stamp, **arrays)
    parts.append(arrays)
    bar.update(len(runs))
  bar.close()
  cat = lambda key: np.concatenate([p[key] for p in parts])
  total = lambda key: float(sum(float(p[key]) for p in parts))
  return SubsetRuns(cat("ratio"), cat("runs"), cat("masks"),
                    cat("train_correct"), cat("test_correct"), total("seconds"),
                    total("cpu_seconds"))


@dataclasses.dataclass(frozen=True)
class Estimate:
  """A per-example (or per-pair) estimate with its standard error."""

  value: np.ndarray
  stderr: np.ndarray
  num_in: np.ndarray  # runs that trained on the (training) example
  num_out: np.ndarray  # runs that held it out


def _rate(hits, count):
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(count > 0, hits / np.maximum(count, 1), np.nan)


def _proportion_se(hits, count):
  """The Jeffreys standard error of hits / count (NaN where count is 0)."""
  count = np.broadcast_to(count, np.shape(hits))
  se = stats.jeffreys_se(hits, np.maximum(count, 1))
  return np.where(count > 0, se, np.nan)


def _in_out_hits(masks, correct):
  """Hits on each column of ``correct`` when example i is in / out.

  ``masks`` (R, n), ``correct`` (R, c) -> (hits_in, num_in, hits_out,
  num_out), hits of shape (n, c) and counts of shape (n, 1).
  """
  masks = np.asarray(masks, np.float64)
  correct = np.asarray(correct, np.float64)
  num_in = masks.sum(0)[:, None]
  num_out = masks.shape[0] - num_in
  hits_in = masks.T @ correct
  hits_out = correct.sum(0)[None, :] - hits_in
  return hits_in, num_in, hits_out, num_out


def _difference(hits_in, num_in, hits_out, num_out) -> Estimate:
  """hits_in / num_in - hits_out / num_out with the standard error of two
  independent binomial proportions (Jeffreys)."""
  stderr = np.sqrt(_proportion_se(hits_in, num_in) ** 2 +
                   _proportion_se(hits_out, num_out) ** 2)
  return Estimate(_rate(hits_in, num_in) - _rate(hits_out, num_out), stderr,
                  np.broadcast_to(num_in, np.shape(hits_in)),
                  np.broadcast_to(num_out, np.shape(hits_in)))


def memorization(masks, train_correct) -> Estimate:
  """mem(i) = P(correct on i | i in) - P(correct on i | i out), per example.

  ``masks`` and ``train_correct`` are (R, n); NaN where no run held i in (or
  out).
  """
  masks = np.asarray(masks, bool)
  correct = np.asarray(train_correct, bool)
  num_in = masks.sum(0)
  num_out = masks.shape[0] - num_in
  return _difference((masks & correct).sum(0), num_in,
                     (~masks & correct).sum(0), num_out)


def influence(masks, test_correct) -> Estimate:
  """Dense infl(i, j) = P(j right | i in) - P(j right | i out): (n, n_test).

  Its standard errors cost two Jeffreys intervals per pair; for large sets use
  ``influence_top_k``, which computes them for the kept pairs only."""
  return _difference(*_in_out_hits(masks, test_correct))


@dataclasses.dataclass(frozen=True)
class TopInfluence:
  """For each test example, its ``k`` most influential training examples."""

  index: np.ndarray  # (n_test, k) training indices, most influential first
  value: np.ndarray  # (n_test, k) influence
  stderr: np.ndarray  # (n_test, k)


def influence_top_k(masks, test_correct, k: int,
                    block_size: int = 256) -> TopInfluence:
  """Top-k influence per test example without the dense (n, n_test) matrix.

  Test examples are processed ``block_size`` at a time, so memory stays at
  (n, block_size); standard errors are computed for the kept pairs only. Ties
  are broken by the lower training index.
  """
  masks = np.asarray(masks, np.float64)  # converted once, not per block
  test_correct = np.asarray(test_correct)
  n = masks.shape[1]
  if not 1 <= k <= n:
    raise ValueError(f"k={k} must be in [1, {n}] (the training set size).")
  index, value, stderr = [], [], []
  for start in range(0, test_correct.shape[1], block_size):
    hits_in, num_in, hits_out, num_out = _in_out_hits(
        masks, test_correct[:, start:start + block_size])
    values = (_rate(hits_in, num_in) - _rate(hits_out, num_out)).T  # (b, n)
    top = np.argsort(-np.nan_to_num(values, nan=-np.inf), axis=1,
                     kind="stable")[:, :k]
    kept = lambda a: np.take_along_axis(
        np.broadcast_to(a, hits_in.shape).T, top, axis=1)
    pairs = _difference(kept(hits_in), kept(num_in), kept(hits_out),
                        kept(num_out))
    index.append(top)
    value.append(pairs.value)
    stderr.append(pairs.stderr)
  return TopInfluence(np.concatenate(index), np.concatenate(value),
                      np.concatenate(stderr))


def influence_p_values(masks, test_correct, train_index,
                       test_index) -> np.ndarray:
  """One-sided p-value of Fisher's exact test for each pair (train_index[p],
  test_index[p]): that the test example is right more often in the runs that
  trained on the training example than in the runs that held it out (null:
  its correctness does not depend on the example). Exact at any number of
  runs, unlike a normal approximation far in the tail."""
  masks = np.asarray(masks, bool)[:, np.asarray(train_index, int)]
  correct = np.asarray(test_correct, bool)[:, np.asarray(test_index, int)]
  hits_in = (masks & correct).sum(0)
  # Of the runs, num_in train on i; hits of them got j right: P(X >= hits_in)
  # for X the hits among num_in runs drawn without replacement.
  return scipy_stats.hypergeom.sf(hits_in - 1, masks.shape[0], correct.sum(0),
                                  masks.sum(0))


def heldout_accuracy(masks, correct) -> Estimate:
  """P(correct on i | i held out) per example; ``masks=None``: never trained."""
  correct = np.asarray(correct, bool)
  masks = (np.zeros(correct.shape, bool) if masks is None
           else np.asarray(masks, bool))
  num_out = (~masks).sum(0)
  hits = (~masks & correct).sum(0)
  return Estimate(_rate(hits, num_out), _proportion_se(hits, num_out),
                  masks.sum(0), num_out)


def c_score(run_ratios, masks, correct) -> Estimate:
  """Jiang et al.'s C-score: held-out accuracy averaged over subset ratios.

  ``run_ratios`` (R,) gives each run's ratio; ``masks`` (R, n) or None for
  examples no run trained on (a test set); ``correct`` (R, n). Each ratio's
  held-out accuracy gets equal weight, whatever its number of runs; the
  standard error combines the per-ratio (Jeffreys) binomial errors.
  """
  run_ratios = np.asarray(run_ratios)
  parts = []
  for ratio in np.unique(run_ratios):
    keep = run_ratios == ratio
    parts.append(heldout_accuracy(None if masks is None else
                                  np.asarray(masks)[keep],
                                  np.asarray(correct)[keep]))
  k = len(parts)
  value = sum(p.value for p in parts) / k
  stderr = np.sqrt(sum(p.stderr ** 2 for p in parts)) / k
  return Estimate(value, stderr, sum(p.num_in for p in parts),
                  sum(p.num_out for p in parts))
