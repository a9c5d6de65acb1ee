r"""The reproduction report: every results.json under runs/ in one page.

Collects every ``results.json`` under ``--runs`` (default ``runs/``, where each
experiment writes by default) and writes, into ``--workdir`` (default
``runs/report``):

* ``REPORT.md``: per experiment its source in the papers, the command, the
  setup it ran, and for each claim the paper's number (where the claim has one;
  the table ``memjax.report_pages.PAPER_NUMBERS``, from the project's
  reference sheet PAPERS.md, names each number's source), memjax's value with
  its uncertainty, the threshold fixed before the run and the verdict, then the
  experiment's figures (the PNG files in its workdir, linked);
* ``report.html``: the same as one self-contained page, the figures embedded
  as base64 PNG (open it anywhere, mail it, archive it).

``--mode=readme`` instead (``--mode=all``: as well) rewrites the results table
of ``--readme`` (default ``README.md``) between the lines
``<!-- results:start -->`` and ``<!-- results:end -->``, from the same data, so
that each measured number lives in one generated place. Regenerating from the
same results gives the same bytes (no dates), so the table changes only when
a result does.

Commands:

  python experiments/report.py                    # runs/report/REPORT.md, .html
  python experiments/report.py --mode=readme      # README.md's results table

What it writes, and nothing else: REPORT.md and report.html in ``--workdir``,
which must be new, empty or a folder an earlier report made (a memjax folder
whose config.json is the report's); it refuses an experiment's workdir, a
folder inside one, and any folder memjax did not create, even with
``--overwrite`` (which empties only an earlier report's folder). The README is
rewritten only between its two markers, and only when the table changed.
Every results.json is read and the README's markers are checked before
anything is written: a damaged or foreign results.json, no results at all, a
README without the markers, or a bad flag each give one ``error:`` line,
exit status 2, and leave every file as it was. It never deletes anything
(the figures stay where the experiments wrote them). ``--smoke``,
``--progress`` and ``--checkpoint_seconds`` are the shared run flags; a
report trains nothing, so they change nothing.

Size and runtime: report.html embeds every figure, so its size grows with
them (a few hundred KB for the two smoke runs of tests/test_report.py, about
1.5 MB for the --smoke results of every experiment). Runtime: under half a
minute on a 2-core CPU, mostly importing JAX.
"""

import dataclasses
import importlib.util
import json
import os
import shutil
import sys

from absl import flags

from memjax import checkpointing
from memjax import cli
from memjax import report_pages

MODES = ("report", "readme", "all")
# The config.json of a report's folder: constant, so a re-run with other flags
# (another --runs, --mode) regenerates the same folder.
REPORT_CONFIG = {"memjax": "reproduction report"}
MARKDOWN_FILE, HTML_FILE = "REPORT.md", "report.html"


@dataclasses.dataclass(frozen=True)
class ReportConfig:
  runs: str = "runs"
  mode: str = "report"
  readme: str = "README.md"

  def __post_init__(self):
    if self.mode not in MODES:
      raise ValueError(f"--mode must be one of {', '.join(MODES)}, got "
                       f"{self.mode!r}.")
    if not os.path.isdir(self.runs):
      raise ValueError(f"--runs {self.runs!r} is not a folder; pass the folder "
                       "that holds the experiments' workdirs (default runs).")
    if self.mode != "report" and not os.path.isfile(self.readme):
      raise ValueError(f"--readme {self.readme!r} is not a file; pass the "
                       "README whose results table to rewrite.")


def define_flags() -> None:
  cli.define_run_flags("runs/report")
  flags.DEFINE_string("runs", "runs",
                      "Folder searched (recursively) for results.json.")
  flags.DEFINE_enum("mode", "report", list(MODES),
                    "report: write REPORT.md and report.html into --workdir; "
                    "readme: rewrite --readme's results table between its "
                    "markers; all: both.")
  flags.DEFINE_string("readme", "README.md",
                      "The README whose results table --mode=readme/all "
                      "rewrites.")


def config_from_flags(values) -> ReportConfig:
  return ReportConfig(values.runs, values.mode, values.readme)


def check_output(workdir: str) -> None:
  """Refuses a --workdir that is or lies inside another run's workdir."""
  path = os.path.abspath(workdir)
  saved = os.path.join(path, checkpointing.CONFIG_FILE)
  if os.path.isfile(saved) and report_pages.read_json(saved) != REPORT_CONFIG:
    raise ValueError(f"--workdir {workdir!r} is another memjax run's workdir "
                     f"(its {checkpointing.CONFIG_FILE} is not a report's); "
                     "the report writes only into a folder of its own, e.g. "
                     "runs/report.")
  parent = os.path.dirname(path)
  while parent != os.path.dirname(parent):
    if os.path.isfile(os.path.join(parent, checkpointing.MARKER_FILE)):
      raise ValueError(f"--workdir {workdir!r} lies inside the memjax workdir "
                       f"{parent!r}; choose a folder outside it, e.g. "
                       "runs/report.")
    parent = os.path.dirname(parent)


def write_text(path: str, text: str) -> str:
  """Writes ``text`` to ``path`` atomically, registered in its workdir."""
  checkpointing.register(path)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)
  return path


def default_config(experiment: str) -> dict | None:
  """The config.json that ``experiment``'s default command writes (as
  results.json records it), or None when that command needs flags (e.g.
  compare_scores' files) or is not one of memjax's experiments."""
  script, *args = report_pages.COMMANDS.get(
      experiment, f"python experiments/{experiment}.py").split()[1:]
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      os.path.basename(script))
  if not os.path.isfile(path):
    return None
  try:
    config = cli.from_args(experiment_module(path), args)[0]
  except ValueError:
    return None
  return json.loads(json.dumps(cli.config_dict(config)))


def experiment_module(path: str):
  """The experiment module in ``path`` (a file beside this one), loaded once
  per process: the experiments are a package, but ``python
  experiments/report.py`` does not make it importable."""
  name = "experiments." + os.path.splitext(os.path.basename(path))[0]
  if name not in sys.modules:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
  return sys.modules[name]


def run(config: ReportConfig, workdir: str,
        control: cli.RunControl = cli.RunControl()) -> dict:
  """Writes what ``config.mode`` asks for; returns the paths written and the
  page's size in bytes."""
  entries = report_pages.collect(config.runs)
  defaults = {e.experiment: default_config(e.experiment) for e in entries}
  entries = report_pages.mark_changed(
      entries, {k: v for k, v in defaults.items() if v is not None})
  if not entries:
    raise ValueError(f"no results.json under --runs {config.runs!r}; run an "
                     "experiment first, e.g. python experiments/"
                     "random_labels.py.")
  new_readme = old_readme = None
  if config.mode != "report":
    with open(config.readme, encoding="utf-8") as f:
      old_readme = f.read()
    try:
      new_readme = report_pages.replace_block(
          old_readme, report_pages.readme_table(entries, config.runs))
    except ValueError as e:
      raise ValueError(f"--readme {config.readme!r} {e}.") from None
  written = {}
  if config.mode != "readme":
    check_output(workdir)
    checkpointing.prepare_workdir(workdir, REPORT_CONFIG,
                                  overwrite=control.overwrite)
    try:
      written["markdown"] = write_text(
          os.path.join(workdir, MARKDOWN_FILE),
          report_pages.markdown(entries, config.runs, workdir))
      page = report_pages.html_page(entries, config.runs)
      written["html"] = write_text(os.path.join(workdir, HTML_FILE), page)
      written["html_bytes"] = len(page.encode("utf-8"))
    finally:
      checkpointing.release(workdir)
  if new_readme is not None and new_readme != old_readme:
    tmp = config.readme + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(new_readme)
    shutil.copymode(config.readme, tmp)
    os.replace(tmp, config.readme)
    written["readme"] = config.readme
  claims = sum(len(e.results["claims"]) for e in entries)
  print(f"{len(entries)} results.json, {claims} claims under {config.runs}.")
  for key, path in written.items():
    if key != "html_bytes":
      print(f"Wrote {path}")
  if "html_bytes" in written:
    print(f"{HTML_FILE}: {written['html_bytes'] / 1e6:.2f} MB, self-contained")
  if config.mode != "report" and "readme" not in written:
    print(f"{config.readme}: results table already up to date")
  return written


if __name__ == "__main__":
  cli.main(sys.modules[__name__])
