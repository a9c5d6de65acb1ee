"""The reproduction report: every results.json as Markdown, HTML, README table.

``collect(root)`` reads each ``results.json`` under a folder (one per
experiment workdir) with the PNG figures beside it; ``markdown``,
``html_page`` and ``readme_table`` render the same entries: for each
experiment its source in the papers, the setup it ran, and for each claim the
paper's number (where the claim has one, from ``PAPER_NUMBERS``), memjax's
value with its uncertainty, the threshold fixed before the run, and the
verdict. The HTML page is self-contained (figures embedded as base64 PNG), so
it can be mailed or archived as one file. ``replace_block`` puts a generated
table between the README's ``<!-- results:start -->`` and
``<!-- results:end -->`` markers, so each measured number lives in one
generated place. Rendering is a pure function of the files read: no dates, so
regenerating from the same results gives the same bytes.
"""

from __future__ import annotations

import base64
import dataclasses
import glob
import html
import json
import math
import os
import re

from memjax import checkpointing
from memjax import reporting

START_MARKER = "<!-- results:start -->"
END_MARKER = "<!-- results:end -->"
RESULTS_KEYS = ("experiment", "config", "runs", "summary", "claims")
CLAIM_KEYS = ("claim", "verdict", "value", "uncertainty", "threshold",
              "measured")

# Where each experiment comes from, in the order of the README's table.
SOURCES = {
    "random_labels": "Zhang et al. 2017, Fig. 1a",
    "label_corruption": "Zhang et al. 2017, Fig. 1b/c",
    "expressivity": "Zhang et al. 2017, Thm. 1",
    "implicit_regularization": "Zhang et al. 2017, Sec. 5",
    "easy_examples": "Arpit et al. 2017, Fig. 1",
    "loss_sensitivity": "Arpit et al. 2017, Figs. 3-4",
    "example_scores": "Paul et al. 2021 / Toneva et al. 2019",
    "critical_samples": "Arpit et al. 2017, Figs. 7-9",
    "sharpness": "Krueger et al. 2017",
    "capacity": "Arpit et al. 2017, Fig. 5",
    "convergence_time": "Arpit et al. 2017, Fig. 6",
    "regularization_table1": "Zhang et al. 2017, Table 1",
    "regularization_sweep": "Arpit et al. 2017, Fig. 10",
    "memorization_scores": "Feldman & Zhang 2020, Jiang et al. 2021",
    "data_pruning": "Paul et al. 2021, Fig. 1 / Toneva et al. 2019, Fig. 5",
    "score_atlas": "Paul et al. 2021, Toneva et al. 2019, Feldman & Zhang "
                   "2020, Jiang et al. 2021, Arpit et al. 2017",
    "compare_scores": "Jiang et al. 2021 / Feldman & Zhang 2020 (published "
                      "scores)",
}
# Experiments whose script takes a mode: experiment -> command line.
COMMANDS = {
    "regularization_table1": "python experiments/regularization.py "
                             "--mode=table1",
    "regularization_sweep": "python experiments/regularization.py --mode=sweep",
}


@dataclasses.dataclass(frozen=True)
class PaperNumber:
  """The paper's number for the claims of ``experiment`` whose text matches
  ``pattern`` (``re.search``), and where it is stated."""

  experiment: str
  pattern: str
  value: str
  source: str


_ZHANG = "Zhang et al. 2017"
# From /work/shared/PAPERS.md, the project's reference sheet of the papers;
# its tags: [P] the paper's own text, [S] a secondary reading of a figure,
# [D] derived from the paper's numbers. Claims without an entry are
# qualitative in the paper (no number to compare with).
PAPER_NUMBERS = (
    PaperNumber("random_labels", r"^every condition is fit",
                "100% training accuracy (random labels 99.34-100%)",
                f"{_ZHANG}, Sec. 2.1, Table 1 [P]"),
    PaperNumber("random_labels", r"^random_labels: test accuracy at chance",
                "9.78-10.61% test accuracy (chance 10%)",
                f"{_ZHANG}, Table 1, random labels [P]"),
    PaperNumber("random_labels", r"small constant factor",
                "about 1.5-3.5x the steps of true labels",
                f"{_ZHANG}, Fig. 1b [S]"),
    PaperNumber("random_labels", r"^true labels generalize",
                "50.51% test accuracy, 40 points above chance (MLP 1x512, "
                "the weakest model)", f"{_ZHANG}, Table 1 [P]"),
    PaperNumber("label_corruption", r"every level is fit",
                "100% training accuracy at every p", f"{_ZHANG}, Sec. 2.1 [P]"),
    PaperNumber("label_corruption", r"test error rises with p",
                "rises towards chance (90%) as p -> 1",
                f"{_ZHANG}, Fig. 1c [P]"),
    PaperNumber("label_corruption", r"at p=1: test error at chance",
                "89.39-90.22% test error (chance 90%)",
                f"{_ZHANG}, Table 1, random labels [P]"),
    PaperNumber("label_corruption", r"label noise slows fitting",
                "about 1.5-3.5x the steps at p=0", f"{_ZHANG}, Fig. 1b [S]"),
    PaperNumber("expressivity", r"2n\+d weights",
                "2n+d weights", f"{_ZHANG}, Thm. 1 [P]"),
    PaperNumber("expressivity", r"fits every labeling",
                "training error 0 on any labeling", f"{_ZHANG}, Thm. 1 [P]"),
    PaperNumber("implicit_regularization", r"generalizes on true labels",
                "1.2% test error (MNIST, 60,000 digits, raw pixels)",
                f"{_ZHANG}, Sec. 5 [P]"),
    PaperNumber("implicit_regularization", r"Gabor preprocessing lowers",
                "1.2% -> 0.6% test error", f"{_ZHANG}, Sec. 5 [P]"),
    PaperNumber("implicit_regularization", r"norm does not predict",
                "norm ~220 raw vs ~390 Gabor (ratio ~1.8)",
                f"{_ZHANG}, Sec. 5 [P]"),
    PaperNumber("regularization_table1",
                r"^mlp1x512 without regularizers fits random labels",
                "99.34% training accuracy", f"{_ZHANG}, Table 1 [P]"),
    PaperNumber("regularization_table1",
                r"^mlp3x512 without regularizers fits random labels",
                "100.0% training accuracy", f"{_ZHANG}, Table 1 [P]"),
    PaperNumber("regularization_table1",
                r"^alexnet without regularizers fits random labels",
                "99.82% training accuracy", f"{_ZHANG}, Table 1 [P]"),
    PaperNumber("regularization_table1",
                r"^inception without regularizers fits random labels",
                "100.0% training accuracy", f"{_ZHANG}, Table 1 [P]"),
    PaperNumber("regularization_table1", r"^alexnet: the crop improves",
                "+3.59 points (79.66% vs 76.07%)", f"{_ZHANG}, Table 1 [D]"),
    PaperNumber("regularization_table1", r"^inception: the crop improves",
                "+3.56 points (89.31% vs 85.75%)", f"{_ZHANG}, Table 1 [D]"),
    PaperNumber("regularization_table1", r"regularizers are not necessary",
                "largest gain of any regularizer 5.15 points (AlexNet 81.22% "
                "vs 76.07%)", f"{_ZHANG}, Table 1 [D]"),
)


def paper_number(experiment: str, claim: str) -> PaperNumber | None:
  """The first ``PAPER_NUMBERS`` entry for this claim, or None."""
  for entry in PAPER_NUMBERS:
    if entry.experiment == experiment and re.search(entry.pattern, claim):
      return entry
  return None


@dataclasses.dataclass(frozen=True)
class Entry:
  """One results.json: its folder relative to the scanned root, its
  contents, and the PNG figures beside it (absolute paths, sorted)."""

  folder: str
  results: dict
  figures: tuple[str, ...]
  # Config settings (dotted paths) that differ from the experiment's default
  # command, so that a --smoke or otherwise changed run is never shown as the
  # default's result; None where no default was compared.
  changed: tuple[str, ...] | None = None

  @property
  def experiment(self) -> str:
    return self.results["experiment"]


def find_results(root: str) -> list[str]:
  """Every results.json under ``root`` (linked folders not followed), sorted."""
  found = []
  for folder, folders, files in os.walk(root):
    folders.sort()
    if reporting.RESULTS_FILE in files:
      found.append(os.path.join(folder, reporting.RESULTS_FILE))
  return sorted(found)


def read_json(path: str):
  """The JSON in ``path``, or None when it cannot be read as JSON."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def load_entry(path: str, root: str) -> Entry:
  """The Entry of one results.json; ValueError naming the file when it is
  not JSON or lacks a key the report needs."""
  results = read_json(path)
  if results is None:
    raise ValueError(f"{path} cannot be read as JSON; re-run its experiment "
                     "to rewrite it.")
  missing = ([k for k in RESULTS_KEYS if k not in results]
             if isinstance(results, dict) else list(RESULTS_KEYS))
  if not missing and not isinstance(results["claims"], list):
    missing = ["claims (a list)"]
  if not missing and not isinstance(results["config"], dict):
    missing = ["config (an object)"]
  if not missing:
    for claim in results["claims"]:
      missing += [f"claims[].{k}" for k in CLAIM_KEYS
                  if not isinstance(claim, dict) or k not in claim]
  if missing:
    raise ValueError(f"{path} is not a memjax results file (missing "
                     f"{', '.join(sorted(set(missing)))}).")
  folder = os.path.dirname(path)
  return Entry(os.path.relpath(folder, root), results,
               tuple(sorted(glob.glob(os.path.join(folder, "*.png")))))


def config_changes(config: dict, default: dict) -> tuple[str, ...]:
  """The dotted paths at which a run's JSON ``config`` differs from
  ``default``. A setting the run's config lacks is not a difference: the run
  predates it, so it could not have been set."""
  return tuple(path for path, value, _ in
               checkpointing.config_changes(config, default)
               if value is not checkpointing.ABSENT)


def collect(root: str) -> list[Entry]:
  """The Entries of every results.json under ``root``, in the README's order
  of experiments (others after, by name), then by folder."""
  entries = [load_entry(p, root) for p in find_results(root)]
  order = {name: i for i, name in enumerate(SOURCES)}
  return sorted(entries, key=lambda e: (order.get(e.experiment, len(order)),
                                        e.experiment, e.folder))


def mark_changed(entries: list[Entry], defaults: dict) -> list[Entry]:
  """``entries`` with the settings in which each run differs from its
  experiment's default command marked; ``defaults``: experiment -> the
  config.json of that command (experiments without one are left as they
  are)."""
  return [dataclasses.replace(e, changed=config_changes(
      e.results["config"], defaults[e.experiment]))
          if e.experiment in defaults else e for e in entries]


# --- Numbers and text ---------------------------------------------------------

def format_number(value) -> str:
  """A claim's value, uncertainty or threshold as the report prints it."""
  if value is None:
    return "-"
  if isinstance(value, bool):
    return str(value)
  if isinstance(value, (int, float)):
    return f"{value:.4g}"
  if isinstance(value, (list, tuple)):
    return "[" + ", ".join(format_number(v) for v in value) + "]"
  return str(value)


def memjax_value(claim: dict) -> str:
  """value +- uncertainty, and the 95% interval where one was computed."""
  text = format_number(claim["value"])
  if claim["value"] is not None and claim["uncertainty"] is not None:
    text += f" ± {claim['uncertainty']:.2g}"
  if claim.get("interval"):
    text += f" (95% interval {format_number(claim['interval'])})"
  return text


def short_claim(text: str, width: int = 70) -> str:
  """A claim's text up to its first ': ' after 25 characters, cut at a word
  boundary within ``width`` (the README's table cells)."""
  cut = text.find(": ", 25)
  if cut > 0:
    text = text[:cut]
  if len(text) > width:
    text = text[:width].rsplit(" ", 1)[0] + "..."
  return text


def command(entry: Entry) -> str:
  """The default command of the entry's experiment."""
  name = entry.experiment
  return COMMANDS.get(name, f"python experiments/{name}.py")


def changed_note(entry: Entry) -> str:
  """'' for a run of the default command (or one not compared), else which
  settings differ from it."""
  if not entry.changed:
    return ""
  shown = ", ".join(entry.changed[:3])
  more = len(entry.changed) - 3
  return ("NOT the default command's run: other " + shown
          + (f" and {more} more settings" if more > 0 else ""))


def _find(config, key: str):
  """The first value of ``key`` anywhere in the nested ``config``."""
  if isinstance(config, dict):
    if key in config:
      return config[key]
    values = config.values()
  elif isinstance(config, list):
    values = config
  else:
    return None
  for value in values:
    found = _find(value, key)
    if found is not None:
      return found
  return None


def setup_lines(results: dict) -> list[str]:
  """The setup a run used: its printed Setup header where results.json keeps
  one (key ``setup``), else a summary of its config."""
  if isinstance(results.get("setup"), str):
    return [line.strip() for line in results["setup"].splitlines()
            if line.strip() and line.strip() != "Setup:"]
  config, lines = results["config"], []
  get = lambda key: _find(config, key)
  if get("name") or get("dataset"):
    sizes = (f"{get('train_size') or 'all'} train / "
             f"{get('test_size') or 'all'} test")
    image = f", images {get('image_size')}px" if get("image_size") else ""
    scale = {True: "per-image standardized", False: "pixels / 255"}.get(
        get("standardize"), "")
    lines.append(f"data: {get('name') or get('dataset')}, {sizes}{image}"
                 + (f"; {scale}" if scale else ""))
  if get("model"):
    lr = get("learning_rate")
    lines.append(
        f"model: {get('model')}, {get('num_seeds') or get('seeds')} seed(s) "
        f"from seed {get('seed')}; SGD lr {lr if lr else 'paper default'}, "
        f"momentum {get('momentum')}, batch {get('batch_size')}, at most "
        f"{get('max_epochs')} epochs")
  for key, value in config.items():  # the experiment's own settings
    if not isinstance(value, dict):
      shown = (", ".join(map(format_number, value))
               if isinstance(value, list) else format_number(value))
      lines.append(f"{key.replace('_', ' ')}: {shown}")
  return lines


def counts(entry: Entry) -> dict[str, int]:
  verdicts = [c["verdict"] for c in entry.results["claims"]]
  return {v: verdicts.count(v)
          for v in ("REPRODUCED", "NOT REPRODUCED", "EXPLORATORY")}


def verdict_summary(entry: Entry) -> str:
  n = counts(entry)
  tested = n["REPRODUCED"] + n["NOT REPRODUCED"]
  text = f"{n['REPRODUCED']}/{tested} reproduced"
  if n["EXPLORATORY"]:
    text += f", {n['EXPLORATORY']} exploratory"
  return text


def duration(seconds: float) -> str:
  """A wall or CPU time, in seconds below two minutes, else minutes."""
  return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def run_time(entry: Entry) -> str:
  """Wall (and CPU) time of the process that wrote the results, '-' when
  not recorded."""
  timing = entry.results.get("timing")
  seconds = lambda key: (timing[key] if isinstance(timing, dict) and isinstance(
      timing.get(key), (int, float)) and math.isfinite(timing[key]) else None)
  if seconds("wall_seconds") is None:
    return "-"
  text = duration(seconds("wall_seconds"))
  if seconds("cpu_seconds") is not None:
    text += f" ({duration(seconds('cpu_seconds'))} CPU)"
  return text


def markdown_cell(text: str) -> str:
  """``text`` safe inside a Markdown table cell."""
  return (str(text).replace("\\", "\\\\").replace("|", "\\|")
          .replace("<", "&lt;").replace("\n", " "))


def _paper_cell(entry: Entry, claim: dict) -> tuple[str, str]:
  number = paper_number(entry.experiment, claim["claim"])
  return (number.value, number.source) if number else ("-", "")


# --- Markdown -----------------------------------------------------------------

def markdown(entries: list[Entry], root: str, output_dir: str) -> str:
  """REPORT.md: figures linked relative to ``output_dir``."""
  lines = [
      "# memjax reproduction report", "",
      f"Generated by `python experiments/report.py` from {len(entries)} "
      f"results.json under `{root}`. Every criterion was fixed before its run "
      "and accounts for seed-to-seed noise; *memjax* is the measured value "
      "± its uncertainty (a standard error over seeds, or an interval). The "
      "paper's numbers are taken from the project's reference sheet "
      "(PAPERS.md; [P] the paper's text, [S] a secondary reading of a "
      "figure, [D] derived from the paper's numbers); '-' where the paper "
      "states the claim without a number.", "",
      "| experiment | source | verdicts |", "|---|---|---|"]
  for e in entries:
    lines.append(f"| [{e.folder}](#{_anchor(e)}) | "
                 f"{SOURCES.get(e.experiment, '-')} | {verdict_summary(e)} |")
  for e in entries:
    lines += ["", f'<a id="{_anchor(e)}"></a>', "",
              f"## {e.experiment} (`{e.folder}`)", "",
              f"{SOURCES.get(e.experiment, 'memjax')}; command: "
              f"`{command(e)}`"
              + (f" (**{changed_note(e)}**)" if changed_note(e) else "")
              + f"; {verdict_summary(e)}.", "", "Setup:", ""]
    lines += [f"- {markdown_cell(line)}" for line in setup_lines(e.results)]
    lines += ["", "<details><summary>config (every setting)</summary>", "",
              "```json", json.dumps(e.results["config"], indent=1), "```", "",
              "</details>", "",
              "| # | claim | paper | memjax | threshold | verdict |",
              "|---|---|---|---|---|---|"]
    for i, claim in enumerate(e.results["claims"], 1):
      value, source = _paper_cell(e, claim)
      paper = f"{value} ({source})" if source else value
      lines.append(
          f"| {i} | {markdown_cell(claim['claim'])}<br>*measured:* "
          f"{markdown_cell(claim['measured'])} | {markdown_cell(paper)} | "
          f"{markdown_cell(memjax_value(claim))} | "
          f"{markdown_cell(format_number(claim['threshold']))} | "
          f"**{claim['verdict']}** |")
    for figure in e.figures:
      relative = os.path.relpath(figure, output_dir).replace(os.sep, "/")
      lines += ["", f"![{os.path.basename(figure)}]({relative})"]
  return "\n".join(lines) + "\n"


def _anchor(entry: Entry) -> str:
  return "run-" + re.sub(r"[^a-z0-9]+", "-", entry.folder.lower()).strip("-")


# --- HTML ---------------------------------------------------------------------

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;
padding:0 1rem;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:1rem 0;font-size:.92rem}
th,td{border:1px solid #ccc;padding:.3rem .5rem;vertical-align:top;
text-align:left}
th{background:#f3f3f3}.measured{color:#555;font-size:.85rem}
.v{font-weight:600;white-space:nowrap}.REPRODUCED{color:#1a7f37}
.NOT-REPRODUCED{color:#c0392b}.EXPLORATORY{color:#7a6a00}
img{max-width:100%;border:1px solid #ddd;margin:.5rem 0}
pre{background:#f7f7f7;padding:.5rem;overflow:auto;font-size:.8rem}
"""


def _png_data_uri(path: str) -> str:
  with open(path, "rb") as f:
    return "data:image/png;base64," + base64.b64encode(f.read()).decode("ascii")


def html_page(entries: list[Entry], root: str) -> str:
  """report.html: one self-contained page, figures embedded as base64 PNG."""
  esc = html.escape
  parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>memjax reproduction report</title>",
           f"<style>{_STYLE}</style></head><body>",
           "<h1>memjax reproduction report</h1>",
           f"<p>{len(entries)} results.json under <code>{esc(root)}</code>. "
           "Every criterion was fixed before its run and accounts for "
           "seed-to-seed noise; <em>memjax</em> is the measured value &plusmn; "
           "its uncertainty (a standard error over seeds, or an interval). "
           "The paper's numbers come from the project's reference sheet "
           "(PAPERS.md; [P] the paper's text, [S] a secondary reading of a "
           "figure, [D] derived); '-' where the paper states the claim "
           "without a number.</p>",
           "<table><tr><th>experiment</th><th>source</th><th>verdicts</th>"
           "</tr>"]
  for e in entries:
    parts.append(f'<tr><td><a href="#{_anchor(e)}">{esc(e.folder)}</a></td>'
                 f"<td>{esc(SOURCES.get(e.experiment, '-'))}</td>"
                 f"<td>{esc(verdict_summary(e))}</td></tr>")
  parts.append("</table>")
  for e in entries:
    parts += [f'<h2 id="{_anchor(e)}">{esc(e.experiment)} '
              f"(<code>{esc(e.folder)}</code>)</h2>",
              f"<p>{esc(SOURCES.get(e.experiment, 'memjax'))}; command: "
              f"<code>{esc(command(e))}</code>"
              + (f" (<strong>{esc(changed_note(e))}</strong>)"
                 if changed_note(e) else "")
              + f"; {esc(verdict_summary(e))}.</p>", "<p>Setup:</p><ul>"]
    parts += [f"<li>{esc(line)}</li>" for line in setup_lines(e.results)]
    parts += ["</ul>", "<details><summary>config (every setting)</summary>"
              f"<pre>{esc(json.dumps(e.results['config'], indent=1))}</pre>"
              "</details>",
              "<table><tr><th>#</th><th>claim</th><th>paper</th>"
              "<th>memjax</th><th>threshold</th><th>verdict</th></tr>"]
    for i, claim in enumerate(e.results["claims"], 1):
      value, source = _paper_cell(e, claim)
      verdict = claim["verdict"]
      parts.append(
          f"<tr><td>{i}</td><td>{esc(claim['claim'])}<div class=\"measured\">"
          f"measured: {esc(claim['measured'])}</div></td>"
          f"<td>{esc(value)}<div class=\"measured\">{esc(source)}</div></td>"
          f"<td>{esc(memjax_value(claim))}</td>"
          f"<td>{esc(format_number(claim['threshold']))}</td>"
          f'<td class="v {verdict.replace(" ", "-")}">{esc(verdict)}</td></tr>')
    parts.append("</table>")
    for figure in e.figures:
      parts.append(f'<figure><img alt="{esc(os.path.basename(figure))}" '
                   f'src="{_png_data_uri(figure)}"><figcaption>'
                   f"{esc(os.path.basename(figure))}</figcaption></figure>")
  parts.append("</body></html>")
  return "\n".join(parts) + "\n"


# --- README -------------------------------------------------------------------

def readme_table(entries: list[Entry], root: str) -> str:
  """The README's results table: one row per results.json, each claim as
  'short text: value ± uncertainty (threshold): verdict'."""
  lines = [f"<!-- generated by `python experiments/report.py --mode=readme` "
           f"from {root}; edit the experiments, not this table -->",
           "| command | paper claim | verdicts | measured (value ± "
           "uncertainty; threshold fixed before the run) | time |",
           "|---|---|---|---|---|"]
  for e in entries:
    cmd = f"`{command(e)}`"
    if os.path.basename(e.folder) != e.experiment:
      cmd += f" (`{e.folder}`)"
    if changed_note(e):
      cmd += f" (**{markdown_cell(changed_note(e))}**)"
    claims = []
    for claim in e.results["claims"]:
      verdict = claim["verdict"].lower()
      if claim["verdict"] == "NOT REPRODUCED":
        verdict = f"**{verdict}**"
      claims.append(markdown_cell(
          f"{short_claim(claim['claim'])}: {memjax_value(claim)}; "
          f"threshold {format_number(claim['threshold'])}: ") + verdict)
    lines.append(f"| {cmd} | {SOURCES.get(e.experiment, '-')} | "
                 f"{verdict_summary(e)} | {'<br>'.join(claims)} | "
                 f"{run_time(e)} |")
  return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
  """``text`` with everything between the results markers replaced by
  ``block``; ValueError unless each marker occurs once, start before end."""
  starts, ends = text.count(START_MARKER), text.count(END_MARKER)
  if starts != 1 or ends != 1 or text.index(START_MARKER) > text.index(
      END_MARKER):
    raise ValueError(
        f"needs the lines {START_MARKER} and {END_MARKER} once each, in that "
        f"order (found {starts} and {ends})")
  head, rest = text.split(START_MARKER)
  _, tail = rest.split(END_MARKER)
  return f"{head}{START_MARKER}\n{block}\n{END_MARKER}{tail}"
