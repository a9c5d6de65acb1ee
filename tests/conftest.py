"""Test setup: four fake CPU devices (for the sharding tests) and quiet logs."""

import os

# Must be set before jax is imported anywhere in the test session.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

from absl import logging  # pylint: disable=g-import-not-at-top,wrong-import-position

logging.set_verbosity(logging.WARNING)
