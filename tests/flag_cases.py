"""Runs one experiment's ``main`` on many argument lists in one process.

Used by tests/test_hostile.py: importing JAX and an experiment costs seconds,
so the bad-input cases of one experiment share a process. Usage:

  python tests/flag_cases.py experiments/X.py '[["--flag=1"], ...]'

prints a JSON list of {"args", "code", "stdout", "stderr"}; ``code`` is the
exit status (0 when ``main`` returned).
"""

import contextlib
import io
import json
import runpy
import sys

from absl import flags


def main():
  script, cases = sys.argv[1], json.loads(sys.argv[2])
  sys.argv = [script]
  module = runpy.run_path(script, run_name="flag_cases")
  if "define_flags" in module:  # scripts that define flags only when run
    module["define_flags"]()
  results = []
  for args in cases:
    flags.FLAGS.unparse_flags()
    sys.argv = [script, *args]
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      try:
        module["cli"].run_main(module["main"])
      except SystemExit as e:
        code = e.code or 0
    results.append({"args": args, "code": code, "stdout": out.getvalue(),
                    "stderr": err.getvalue()})
  print(json.dumps(results))


if __name__ == "__main__":
  main()
