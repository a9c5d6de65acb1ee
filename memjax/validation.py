"""Validation of the frozen configs: one rule for what a bad field reports.

Every config checks its fields in ``__post_init__`` with ``check_fields``, so
a bad value always raises one ValueError that names the field, the value and
what it must be (the experiments turn it into one ``error:`` line).
"""

import math


def finite(value) -> bool:
  """True for a finite number (NaN, inf and None are not)."""
  return value is not None and math.isfinite(value)


def check_fields(config, checks: dict[str, tuple[bool, str]],
                 what: str | None = None) -> None:
  """Raises ValueError for the first field of ``checks`` ({field: (ok, what it
  must be)}) that is not ok. ``what`` names the config in the message; None:
  the fields are the experiment's flags of the same names (``--name=``)."""
  for name, (ok, valid) in checks.items():
    if not ok:
      value = getattr(config, name)
      field = f"--{name}={value!r}" if what is None else (
          f"{what} {name}={value!r}")
      raise ValueError(f"Invalid {field}: it must be {valid}.")
