"""Results files, tables, claim verdicts and figures shared by the experiments.

Every experiment writes ``<workdir>/results.json`` with the keys ``experiment``,
``config`` (every flag), ``runs`` (per condition and seed), ``summary`` (per
condition) and ``claims``. A claim is data: the criterion (written in the
experiment before any number is seen), the measured value, its uncertainty
(a standard error over seeds, or the half-width of an interval), the threshold
it is compared with, and the verdict. Exploratory readings, added after a
measurement or without a pre-registered threshold, are marked as such and carry
no verdict. ``summary_frame`` loads the summary into pandas.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

import jax
import matplotlib
import numpy as np
import pandas as pd
from jax.experimental import multihost_utils

from memjax import checkpointing

# Figures are written to files only: no display is needed.
matplotlib.use("Agg")
# pylint: disable-next=g-import-not-at-top,wrong-import-position
import matplotlib.pyplot as plt

RESULTS_FILE = "results.json"


@dataclasses.dataclass(frozen=True)
class Claim:
  """One paper claim, tested on our data by a criterion fixed in advance.

  ``claim`` states the criterion; ``value`` is the measured quantity the
  criterion is about, ``uncertainty`` its standard error (or an interval's
  half-width; ``interval`` holds (low, high) where one is computed), and
  ``threshold`` what ``value`` is compared with. ``exploratory`` claims are
  reported without a verdict.
  """

  claim: str
  reproduced: bool
  measured: str
  value: float | None = None
  uncertainty: float | None = None
  threshold: float | str | None = None
  interval: tuple[float, float] | None = None
  exploratory: bool = False

  @property
  def verdict(self) -> str:
    if self.exploratory:
      return "EXPLORATORY"
    return "REPRODUCED" if self.reproduced else "NOT REPRODUCED"


def to_jsonable(value: Any) -> Any:
  """numpy scalars/arrays and NaN -> plain JSON (NaN and inf become null)."""
  if isinstance(value, dict):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return to_jsonable(value.tolist())
  if isinstance(value, (np.bool_, bool)):
    return bool(value)
  if isinstance(value, (np.integer,)):
    return int(value)
  if isinstance(value, (float, np.floating)):
    return float(value) if np.isfinite(value) else None
  if isinstance(value, Claim):
    return to_jsonable({**dataclasses.asdict(value), "verdict": value.verdict})
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return to_jsonable(dataclasses.asdict(value))
  return value


def write_json(path: str, obj: Any) -> str:
  """Writes ``obj`` (made JSON-able) to ``path`` atomically: a reader never
  sees a half-written file."""
  checkpointing.register(path)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(to_jsonable(obj), f, indent=1)
  os.replace(tmp, path)
  return path


def write_results(workdir: str, experiment: str, config: dict, runs: Any,
                  summary: dict, claims: Sequence[Claim] = (),
                  timing: dict | None = None) -> str:
  """results.json; ``timing`` (wall and CPU seconds of the process that wrote
  it) is left out when not measured."""
  os.makedirs(workdir, exist_ok=True)
  results = {"experiment": experiment, "config": config, "runs": runs,
             "summary": summary, "claims": list(claims)}
  if timing is not None:
    results["timing"] = timing
  return write_json(os.path.join(workdir, RESULTS_FILE), results)


def summary_frame(path: str):
  """results.json's summary as a pandas DataFrame, one row per condition."""
  with open(path) as f:
    return pd.DataFrame.from_dict(json.load(f)["summary"], orient="index")


def steps_to_fit_text(eval_every: int) -> str:
  """How steps to fit are measured, for a setup header."""
  text = ("steps to fit: end of the first epoch with 100% clean training "
          "accuracy")
  if eval_every != 1:
    text += (f" among the evaluated epochs (every {eval_every}th and the last; "
             f"--eval_every={eval_every}: rounded up to a multiple of "
             f"{eval_every} epochs)")
  return text


def format_setup(data_config, dataset, **details) -> str:
  """The printed header of an experiment: data, preprocessing and input scale,
  then ``details`` (model, noise definition, measurement point, and where the
  setup differs from the paper's)."""
  if data_config.standardize:
    scale = ("per-image standardized: zero mean, unit variance per image "
             "(Zhang et al.'s CIFAR10 preprocessing)")
  else:
    scale = "pixels / 255, in [0, 1] (no further preprocessing)"
  lines = ["Setup:",
           f"  data: {dataset.name}, {len(dataset.y_train)} train / "
           f"{len(dataset.y_test)} test, inputs {dataset.input_shape}",
           f"  preprocessing: {scale}"]
  lines += [f"  {k.replace('_', ' ')}: {v}" for k, v in details.items()]
  return "\n".join(lines)


def format_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
  """A plain-text table; floats in [0, 1] as percentages."""
  def fmt(v):
    if v is None:
      return "-"
    if isinstance(v, (float, np.floating)):
      return f"{v:.4g}"
    return str(v)
  cells = [[fmt(r.get(c)) for c in columns] for r in rows]
  widths = [max(len(c), *(len(row[i]) for row in cells))
            for i, c in enumerate(columns)]
  line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))
  return "\n".join([line(columns), line(["-" * w for w in widths])]
                   + [line(row) for row in cells])


def format_claims(claims: Sequence[Claim]) -> str:
  """Each claim with its verdict, value +- uncertainty and threshold."""
  lines = ["Claims:"]
  for c in claims:
    lines.append(f"  [{c.verdict}] {c.claim}")
    numbers = []
    if c.value is not None:
      value = f"value {c.value:.4g}"
      if c.uncertainty is not None and np.isfinite(c.uncertainty):
        value += f" +- {c.uncertainty:.2g}"
      numbers.append(value)
    if c.interval is not None:
      numbers.append(f"95% interval [{c.interval[0]:.4g}, {c.interval[1]:.4g}]")
    if c.threshold is not None:
      threshold = (f"{c.threshold:.4g}" if isinstance(c.threshold, (int, float))
                   else str(c.threshold))
      numbers.append(f"threshold {threshold}")
    if numbers:
      lines.append(f"      {'; '.join(numbers)}")
    lines.append(f"      measured: {c.measured}")
  return "\n".join(lines)


def plot_curves(path: str, curves: dict, xlabel: str, ylabel: str,
                title: str = "", logy: bool = False) -> str:
  """One line per name (mean over seeds) with a min-max band.

  ``curves`` maps a name to (x of shape (T,), y of shape (T, S)).
  """
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  for name, (x, y) in curves.items():
    y = np.asarray(y, float).reshape(len(x), -1)
    line, = ax.plot(x, np.nanmean(y, 1), label=name)
    ax.fill_between(x, np.nanmin(y, 1), np.nanmax(y, 1), alpha=0.2,
                    color=line.get_color())
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if logy:
    ax.set_yscale("log")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  return save_figure(fig, path)


def plot_panels(path: str, panels: Sequence[dict]) -> str:
  """Side-by-side line plots; each panel is a dict with ``title``, ``xlabel``,
  ``ylabel`` and ``lines``: {label: (x, y)} or {label: (x, y, yerr)}."""
  plt = pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2),
                           squeeze=False)
  for ax, panel in zip(axes[0], panels):
    for label, series in panel["lines"].items():
      x, y = series[0], series[1]
      yerr = series[2] if len(series) > 2 else None
      ax.errorbar(x, y, yerr=yerr, marker="o", capsize=3, label=label)
    ax.set_title(panel.get("title", ""))
    ax.set_xlabel(panel.get("xlabel", ""))
    ax.set_ylabel(panel.get("ylabel", ""))
    ax.grid(alpha=0.3)
    if len(panel["lines"]) > 1:
      ax.legend()
  return save_figure(fig, path)


def pyplot():
  """matplotlib.pyplot on the file-only Agg backend (no display needed)."""
  return plt


def save_figure(fig, path: str) -> str:
  """Writes a matplotlib figure to ``path`` (PNG, 120 dpi), closes it."""
  checkpointing.register(path)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  pyplot().close(fig)
  return path


# --- Many processes: each writes its part, process 0 merges ------------------

def process_results_path(directory: str, name: str, process_index: int) -> str:
  return os.path.join(directory, f"{name}.process-{process_index:05d}.json")


def write_process_results(directory: str, name: str, part: dict,
                          process_index: int | None = None) -> str:
  """Writes this process's ``part`` ({key: JSON-able value}) of the results."""
  index = jax.process_index() if process_index is None else process_index
  os.makedirs(directory, exist_ok=True)
  return write_json(process_results_path(directory, name, index),
                              part)


def merge_process_results(directory: str, name: str,
                          num_processes: int | None = None) -> dict[str, Any]:
  """Process 0's merge of every process's part into ``<name>.json``.

  Waits for all processes first (a no-op with one process). A key written by
  several processes (seeds replicated over hosts) must carry the same value.
  Returns the merged dict on process 0 and an empty dict elsewhere.
  """
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"memjax merge {name}")
  if jax.process_index() != 0:
    return {}
  count = jax.process_count() if num_processes is None else num_processes
  merged: dict[str, Any] = {}
  for index in range(count):
    path = process_results_path(directory, name, index)
    if not os.path.exists(path):
      raise FileNotFoundError(f"Process {index} of {count} wrote no results at "
                              f"{path}.")
    with open(path) as f:
      for key, value in json.load(f).items():
        if key in merged and merged[key] != value:
          raise ValueError(f"Processes disagree on {key!r} in {path}: "
                           f"{merged[key]!r} vs {value!r}.")
        merged[key] = value
  write_json(os.path.join(directory, f"{name}.json"), merged)
  return merged
