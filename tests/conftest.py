"""Test setup: four fake CPU devices (for the sharding tests) and quiet logs."""

import os

# Must be set before jax is imported anywhere in the test session.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

# pylint: disable-next=g-import-not-at-top,wrong-import-position
from absl import logging

logging.set_verbosity(logging.WARNING)
