"""The reproduction report (experiments/report.py) on real smoke runs.

Two experiments run in-process with --smoke into a temporary runs/ folder
once; every test then reads their results.json and figures as a user's
``python experiments/report.py`` would.
"""

import base64
import contextlib
import html
import io
import json
import os
import re
import shutil
import tempfile

from absl.testing import absltest

from experiments import label_corruption
from experiments import random_labels
from experiments import report
from memjax import cli
from memjax import report_pages

EXPERIMENTS = {"random_labels": random_labels,
               "label_corruption": label_corruption}
README = """# project

Intro text that must survive.

<!-- results:start -->
| stale | table |
<!-- results:end -->

Text after the table.
"""


def execute(args) -> tuple[int, str, str]:
  return cli.execute_captured(report, args)


def snapshot(folder: str) -> dict:
  """Every file under ``folder`` with its bytes."""
  files = {}
  for root, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        files[os.path.relpath(path, folder)] = f.read()
  return files


class ReportTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    cls.runs = os.path.join(cls.tmp, "runs")
    cls.results = {}
    for name, module in EXPERIMENTS.items():
      workdir = os.path.join(cls.runs, name)
      with contextlib.redirect_stdout(io.StringIO()):
        code = cli.execute(module, ["--smoke", "--noprogress",
                                    f"--workdir={workdir}"])
      assert code == 0, f"{name} smoke run failed ({code})"
      with open(os.path.join(workdir, "results.json")) as f:
        cls.results[name] = json.load(f)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.tmp)
    super().tearDownClass()

  def output(self, name: str) -> str:
    return os.path.join(self.tmp, name)

  def claims(self):
    for name, results in self.results.items():
      self.assertNotEmpty(results["claims"])
      for claim in results["claims"]:
        yield name, claim

  def test_every_claim_appears_with_its_verdict_value_and_paper_number(self):
    out = self.output("report_md")
    code, stdout, err = execute([f"--runs={self.runs}", f"--workdir={out}"])
    self.assertEqual(code, 0, err)
    self.assertIn("2 results.json", stdout)
    with open(os.path.join(out, "REPORT.md"), encoding="utf-8") as f:
      rows = f.read().splitlines()
    with open(os.path.join(out, "report.html"), encoding="utf-8") as f:
      page = f.read()
    html_rows = page.split("<tr>")
    for name, claim in self.claims():
      with self.subTest(f"{name}: {claim['claim'][:40]}"):
        text = report_pages.markdown_cell(claim["claim"])
        [row] = [r for r in rows if f"| {text}<br>" in r]
        [html_row] = [r for r in html_rows if html.escape(claim["claim"]) in r]
        for r, verdict in ((row, f"**{claim['verdict']}**"),
                           (html_row, f">{claim['verdict']}<")):
          self.assertIn(verdict, r)
          if claim["value"] is not None:
            self.assertIn(f"{claim['value']:.4g}", r)
          if claim["value"] is not None and claim["uncertainty"] is not None:
            self.assertIn(f"± {claim['uncertainty']:.2g}", r)
    # The paper's number beside the claim that states one, with its source.
    [chance] = [r for r in rows if "| random_labels: test accuracy at chance"
                in r]
    self.assertIn("9.78-10.61% test accuracy (chance 10%) (Zhang et al. "
                  "2017, Table 1, random labels [P])", chance)
    # The setup each experiment ran.
    self.assertIn("- data: mnist5k, 128 train / 64 test; per-image "
                  "standardized", rows)
    self.assertIn("- levels: 0, 0.2, 0.4, 0.6, 0.8, 1", rows)
    self.assertIn("- conditions: true_labels, random_labels, shuffled_pixels, "
                  "random_pixels, gaussian", rows)

  def test_html_embeds_every_figure_and_nothing_external(self):
    out = self.output("report_html")
    code, stdout, err = execute([f"--runs={self.runs}", f"--workdir={out}"])
    self.assertEqual(code, 0, err)
    with open(os.path.join(out, "report.html"), encoding="utf-8") as f:
      page = f.read()
    figures = [os.path.join(root, n) for root, _, names in os.walk(self.runs)
               for n in names if n.endswith(".png")]
    self.assertGreaterEqual(len(figures), 2)  # one per experiment at least
    for path in figures:
      with open(path, "rb") as f:
        self.assertIn(base64.b64encode(f.read()).decode("ascii"), page)
    sources = re.findall(r'src="([^"]*)"', page)
    self.assertLen(sources, len(figures))
    self.assertTrue(all(s.startswith("data:image/png;base64,")
                        for s in sources))
    self.assertNotRegex(page, r'href="(?!#)')  # only links within the page
    size = os.path.getsize(os.path.join(out, "report.html"))
    self.assertIn(f"{size / 1e6:.2f} MB", stdout)
    print(f"report.html of {len(figures)} figures: {size:,} bytes")
    # REPORT.md links the same figures where they lie.
    with open(os.path.join(out, "REPORT.md"), encoding="utf-8") as f:
      markdown = f.read()
    for path in figures:
      self.assertIn(f"]({os.path.relpath(path, out)})", markdown)

  def test_config_changes(self):
    default = {"data": {"train_size": 4000, "name": "mnist5k"},
               "train": {"seeds": 5, "eval_every": 1}}
    self.assertEqual(report_pages.config_changes(default, default), ())
    run = {"data": {"train_size": 256, "name": "mnist5k"},
           "train": {"seeds": 5, "removed_flag": 1}}  # predates eval_every
    self.assertEqual(report_pages.config_changes(run, default),
                     ("data.train_size", "train.removed_flag"))
    self.assertEqual(report_pages.config_changes({"a": [1, 2]}, {"a": [1]}),
                     ("a",))

  def test_default_config_is_the_default_commands(self):
    default = report.default_config("random_labels")
    config, _, _ = cli.from_args(random_labels, [])
    self.assertEqual(default, json.loads(json.dumps(cli.config_dict(config))))
    self.assertIsNotNone(report.default_config("regularization_table1"))
    self.assertIsNone(report.default_config("compare_scores"))  # needs files
    self.assertIsNone(report.default_config("no_such_experiment"))

  def test_run_time_without_a_usable_timing_is_a_dash(self):
    entry = report_pages.Entry("a", {"timing": {"wall_seconds": 75.0,
                                                "cpu_seconds": 130.0}}, ())
    self.assertEqual(report_pages.run_time(entry), "75 s (2.2 min CPU)")
    for timing in (None, "fast", {}, {"wall_seconds": "abc"},
                   {"wall_seconds": float("nan")}):
      entry = report_pages.Entry("a", {"timing": timing}, ())
      self.assertEqual(report_pages.run_time(entry), "-", timing)

  def test_readme_table_is_regenerated_idempotently(self):
    readme = self.output("README.md")
    with open(readme, "w", encoding="utf-8") as f:
      f.write(README)
    args = [f"--runs={self.runs}", "--mode=readme", f"--readme={readme}",
            f"--workdir={self.output('unused')}"]
    code, stdout, err = execute(args)
    self.assertEqual(code, 0, err)
    self.assertFalse(os.path.exists(self.output("unused")))  # readme only
    with open(readme, encoding="utf-8") as f:
      first = f.read()
    head, rest = first.split(report_pages.START_MARKER)
    block, tail = rest.split(report_pages.END_MARKER)
    self.assertEqual(head, README.split(report_pages.START_MARKER)[0])
    self.assertEqual(tail, README.split(report_pages.END_MARKER)[1])
    self.assertNotIn("stale", block)
    self.assertIn("`python experiments/random_labels.py`", block)
    self.assertIn("`python experiments/label_corruption.py`", block)
    for _, claim in self.claims():
      value = report_pages.memjax_value(claim)
      self.assertIn(report_pages.markdown_cell(value), block)
    rows = [r for r in block.splitlines() if r.startswith("| `python")]
    self.assertLen(rows, 2)
    for row, name in zip(rows, ("random_labels", "label_corruption")):
      n = len(self.results[name]["claims"])
      self.assertEqual(row.count("<br>"), n - 1)
      self.assertIn("reproduced", row)
      # A --smoke run is never shown as the default command's result.
      self.assertIn("**NOT the default command's run: other ", row)
      # The last cell: the wall and CPU time the run recorded.
      timing = self.results[name]["timing"]
      self.assertGreater(timing["wall_seconds"], 0)
      self.assertTrue(row.endswith(
          f"| {report_pages.duration(timing['wall_seconds'])} "
          f"({report_pages.duration(timing['cpu_seconds'])} CPU) |"), row)
    mtime = os.stat(readme).st_mtime_ns
    code, stdout, err = execute(args)
    self.assertEqual(code, 0, err)
    self.assertIn("already up to date", stdout)
    self.assertEqual(os.stat(readme).st_mtime_ns, mtime)  # not rewritten
    # Regenerating from a stale table gives the same bytes.
    with open(readme, "w", encoding="utf-8") as f:
      f.write(README)
    code, _, err = execute(args)
    self.assertEqual(code, 0, err)
    with open(readme, encoding="utf-8") as f:
      self.assertEqual(f.read(), first)

  def assert_refused(self, args, message, untouched=()):
    before = {path: snapshot(path) if os.path.isdir(path) else None
              for path in untouched}
    code, stdout, err = execute(args)
    self.assertEqual(code, 2, stdout + err)
    self.assertLen(err.strip().splitlines(), 1, err)
    self.assertRegex(err, "^error: .*" + message)
    for path, files in before.items():
      if files is None:
        self.assertFalse(os.path.exists(path), path)
      else:
        self.assertEqual(snapshot(path), files, path)

  def test_bad_input_is_one_error_line_and_writes_nothing(self):
    out = self.output("refused")
    workdir = os.path.join(self.runs, "random_labels")
    self.assert_refused([f"--runs={self.output('nowhere')}",
                         f"--workdir={out}"], "--runs .* is not a folder",
                        [out])
    empty = self.output("empty_runs")
    os.makedirs(empty)
    self.assert_refused([f"--runs={empty}", f"--workdir={out}"],
                        "no results.json", [out])
    self.assert_refused([f"--runs={self.runs}", "--mode=sometimes"],
                        "--mode", [out])
    self.assert_refused([f"--runs={self.runs}", "--colour"], "colour", [out])
    # A damaged results.json is named; nothing is written.
    damaged = self.output("damaged_runs")
    shutil.copytree(workdir, os.path.join(damaged, "a"))
    os.makedirs(os.path.join(damaged, "b"))
    with open(os.path.join(damaged, "b", "results.json"), "w") as f:
      f.write('{"experiment": "x"')
    self.assert_refused([f"--runs={damaged}", f"--workdir={out}"],
                        "b/results.json cannot be read as JSON", [out])
    with open(os.path.join(damaged, "b", "results.json"), "w") as f:
      json.dump({"experiment": "x", "config": {}}, f)
    self.assert_refused([f"--runs={damaged}", f"--workdir={out}"],
                        "not a memjax results file .*claims", [out])
    # A README without markers: neither it nor the report is written.
    readme = self.output("plain_README.md")
    with open(readme, "w") as f:
      f.write("# no markers\n")
    self.assert_refused([f"--runs={self.runs}", "--mode=all",
                         f"--readme={readme}", f"--workdir={out}"],
                        "results:start", [out])
    with open(readme) as f:
      self.assertEqual(f.read(), "# no markers\n")
    self.assert_refused([f"--runs={self.runs}", "--mode=readme",
                         f"--readme={self.output('no_README.md')}"],
                        "--readme .* is not a file")
    # Never into an experiment's workdir (even with --overwrite), a folder
    # inside one, or a folder memjax did not make.
    for extra in ([], ["--overwrite"]):
      self.assert_refused([f"--runs={self.runs}", f"--workdir={workdir}",
                           *extra], "another memjax run's workdir", [workdir])
    inside = os.path.join(workdir, "report")
    self.assert_refused([f"--runs={self.runs}", f"--workdir={inside}"],
                        "lies inside the memjax workdir", [inside])
    users = self.output("users_folder")
    os.makedirs(users)
    with open(os.path.join(users, "thesis.tex"), "w") as f:
      f.write("mine")
    self.assert_refused([f"--runs={self.runs}", f"--workdir={users}"],
                        "memjax did not create", [users])

  def test_rerun_regenerates_its_own_folder(self):
    out = self.output("report_again")
    for extra in ([], [], ["--overwrite"]):
      code, _, err = execute([f"--runs={self.runs}", f"--workdir={out}",
                              *extra])
      self.assertEqual(code, 0, err)
    self.assertContainsSubset({"REPORT.md", "report.html"}, os.listdir(out))


class PagesTest(absltest.TestCase):

  def test_replace_block_needs_each_marker_once_in_order(self):
    start, end = report_pages.START_MARKER, report_pages.END_MARKER
    self.assertEqual(report_pages.replace_block(f"a\n{start}\nold\n{end}\nz",
                                                "new"),
                     f"a\n{start}\nnew\n{end}\nz")
    for text in ("none", f"{start}{start}{end}", f"{end}x{start}",
                 f"{start} only"):
      with self.assertRaisesRegex(ValueError, "once each, in that order"):
        report_pages.replace_block(text, "new")

  def test_paper_numbers_match_their_claims_only(self):
    number = report_pages.paper_number(
        "regularization_table1",
        "mlp3x512 without regularizers fits random labels: training accuracy "
        ">= 99% on every seed")
    self.assertEqual(number.value, "100.0% training accuracy")
    self.assertIsNone(report_pages.paper_number(
        "regularization_table1", "mlp3x512 with weight decay fits random "
        "labels: training accuracy >= 99% on every seed"))
    self.assertIsNone(report_pages.paper_number(
        "sharpness", "every condition is fit"))  # another experiment's
    for entry in report_pages.PAPER_NUMBERS:
      self.assertIn(entry.experiment, report_pages.SOURCES)
      self.assertRegex(entry.source, r"\[[PSD]\]$")

  def test_numbers_and_short_claims(self):
    claim = dict(value=0.123456, uncertainty=0.0123, interval=[0.1, 0.15])
    self.assertEqual(report_pages.memjax_value(claim),
                     "0.1235 ± 0.012 (95% interval [0.1, 0.15])")
    self.assertEqual(report_pages.memjax_value(
        dict(value=None, uncertainty=None, interval=None)), "-")
    self.assertEqual(report_pages.format_number("(1, 3.5)"), "(1, 3.5)")
    self.assertEqual(report_pages.short_claim(
        "random_labels: test accuracy at chance (10%): chance lies inside"),
        "random_labels: test accuracy at chance (10%)")
    self.assertLessEqual(len(report_pages.short_claim("word " * 40)), 73)
    self.assertEqual(report_pages.markdown_cell("a | b <c>"), "a \\| b &lt;c>")


if __name__ == "__main__":
  absltest.main()
