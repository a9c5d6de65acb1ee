"""memjax.conv: the fast formulations equal the plain ones, values and
gradients, and the models' training steps are unchanged by them."""

import contextlib
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import chex
from flax import nnx
import jax
import jax.numpy as jnp
from jax import lax
from jax._src import xla_bridge
import jaxlib.version

from memjax import conv
from memjax import keys
from memjax import models
from memjax import training

TOLERANCE = dict(rtol=1e-5, atol=1e-5)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def plain_conv(lhs, rhs, window_strides, padding,
               dimension_numbers=conv.CANONICAL, **kwargs):
  """lax.conv_general_dilated as nnx.Conv calls it, autodiff's gradients."""
  kwargs.pop("out_sharding", None)
  return lax.conv_general_dilated(lhs, rhs, window_strides, padding,
                                  dimension_numbers=dimension_numbers, **kwargs)


def plain_max_pool(x, window=3, stride=2):
  return nnx.max_pool(x, (window, window), (stride, stride), padding="SAME")


def plain_local_response_norm(x, depth_radius=4, bias=1.0, alpha=0.001 / 9.0,
                              beta=0.75):
  """TF's LRN as a reduce_window over channels (the models' old form)."""
  window = 2 * depth_radius + 1
  sqr_sum = lax.reduce_window(x * x, 0.0, lax.add, (1, 1, 1, window),
                              (1, 1, 1, 1), "SAME")
  return x / (bias + alpha * sqr_sum) ** beta


@contextlib.contextmanager
def plain_layers():
  """Models built and traced inside use the plain formulations."""
  with mock.patch.object(conv, "conv_general_dilated", plain_conv), \
      mock.patch.object(conv, "max_pool", plain_max_pool), \
      mock.patch.object(conv, "local_response_norm",
                        plain_local_response_norm):
    yield


def random(key, shape):
  return jax.random.normal(jax.random.key(key), shape)


class ConvTest(parameterized.TestCase):

  @parameterized.parameters(
      ((8, 8), 5, 1, "SAME"), ((7, 7), 3, 2, "SAME"), ((14, 14), 3, 2, "SAME"),
      ((9, 6), 3, 2, "VALID"), ((6, 6), 1, 1, "SAME"), ((5, 5), 3, 1, "VALID"),
      ((8, 8), 3, 2, ((1, 2), (0, 1))), ((8, 9), 3, 3, "SAME"),
      ((8, 8), 1, 2, "SAME"), ((10, 7), 4, 3, ((2, 1), (1, 3))),
      ((8, 8), 3, 2, ((0, 4), (3, 0))))
  def test_values_and_gradients_equal_lax(self, spatial, kernel, stride,
                                          padding):
    x = random(0, (2,) + spatial + (3,))
    w = random(1, (kernel, kernel, 3, 4))
    cotangent = random(2, plain_conv(x, w, (stride,) * 2, padding,
                                     dimension_numbers=conv.CANONICAL).shape)

    def loss(fn):
      return lambda x, w: (fn(x, w, (stride,) * 2, padding,
                              dimension_numbers=conv.CANONICAL)
                           * cotangent).sum()

    chex.assert_trees_all_close(loss(conv.conv_general_dilated)(x, w),
                                loss(plain_conv)(x, w), **TOLERANCE)
    chex.assert_trees_all_close(
        jax.grad(loss(conv.conv_general_dilated), (0, 1))(x, w),
        jax.grad(loss(plain_conv), (0, 1))(x, w), **TOLERANCE)

  def test_gradients_equal_under_vmap_over_seeds_and_examples(self):
    # Seeds: kernels and inputs both batched (grouped convolutions); examples:
    # per-example gradients with a shared kernel (memjax.per_example).
    x = random(0, (3, 2, 6, 6, 2))
    w = random(1, (3, 3, 3, 2, 4))

    def grads(fn):
      loss = lambda x, w: jnp.tanh(fn(x, w, (1, 1), "SAME")).sum()
      return jax.vmap(jax.grad(loss, (0, 1)))

    chex.assert_trees_all_close(grads(conv.conv_general_dilated)(x, w),
                                grads(plain_conv)(x, w), **TOLERANCE)
    shared = w[0]
    per_example = lambda fn: jax.vmap(jax.grad(
        lambda xi: jnp.tanh(fn(xi[None], shared, (2, 2), "SAME")).sum()))
    chex.assert_trees_all_close(per_example(conv.conv_general_dilated)(x[0]),
                                per_example(plain_conv)(x[0]), **TOLERANCE)

  def test_hessian_vector_products_equal_lax(self):
    # memjax.sharpness: forward-over-reverse through the custom gradient.
    x = random(0, (2, 5, 5, 2))
    w, v = random(1, (3, 3, 2, 3)), random(2, (3, 3, 2, 3))

    def hvp(fn):
      loss = lambda w: jnp.tanh(fn(x, w, (2, 2), "SAME")).sum()
      return jax.jvp(jax.grad(loss), (w,), (v,))[1]

    chex.assert_trees_all_close(hvp(conv.conv_general_dilated),
                                hvp(plain_conv), **TOLERANCE)

  def test_unsupported_convolutions_are_refused(self):
    x, w = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2))
    for kwargs in (dict(rhs_dilation=(2, 2)), dict(feature_group_count=2),
                   dict(dimension_numbers=("NCHW", "OIHW", "NCHW"))):
      with self.assertRaisesRegex(ValueError, "NHWC/HWIO"):
        conv.conv_general_dilated(x, w, (1, 1), "SAME", **kwargs)

  @parameterized.parameters(((7, 9), 3, 2), ((8, 8), 3, 2), ((6, 5), 2, 1),
                            ((5, 5), 3, 3))
  def test_max_pool_equals_nnx_max_pool(self, spatial, window, stride):
    # Gaussian inputs: every window has one maximum.
    x = random(0, (2,) + spatial + (3,))
    cotangent = random(1, plain_max_pool(x, window, stride).shape)
    loss = lambda fn: lambda x: (fn(x, window, stride) * cotangent).sum()
    chex.assert_trees_all_close(conv.max_pool(x, window, stride),
                                plain_max_pool(x, window, stride))
    chex.assert_trees_all_close(jax.grad(loss(conv.max_pool))(x),
                                jax.grad(loss(plain_max_pool))(x))

  def test_max_pool_after_relu_has_the_same_gradient_despite_zero_ties(self):
    x = random(0, (2, 8, 8, 3))
    cotangent = random(1, (2, 4, 4, 3))
    loss = lambda fn: lambda x: (fn(jax.nn.relu(x)) * cotangent).sum()
    chex.assert_trees_all_close(jax.grad(loss(conv.max_pool))(x),
                                jax.grad(loss(plain_max_pool))(x))

  def test_local_response_norm_equals_reduce_window_form(self):
    x = random(0, (2, 4, 4, 16)) * 3.0
    cotangent = random(1, x.shape)
    loss = lambda fn: lambda x: (fn(x) * cotangent).sum()
    chex.assert_trees_all_close(conv.local_response_norm(x),
                                plain_local_response_norm(x), **TOLERANCE)
    chex.assert_trees_all_close(jax.grad(loss(conv.local_response_norm))(x),
                                jax.grad(loss(plain_local_response_norm))(x),
                                **TOLERANCE)


class XlaFlagTest(absltest.TestCase):
  """memjax.conv's one XLA flag: set before JAX starts, never over the user's
  own setting of it, and said out loud when added to the user's XLA_FLAGS."""

  def set_flag(self, xla_flags, backends_exist=False):
    env = {} if xla_flags is None else {"XLA_FLAGS": xla_flags}
    with mock.patch.dict(os.environ, env, clear=True), \
        mock.patch.object(xla_bridge, "backends_are_initialized",
                          return_value=backends_exist), \
        mock.patch.object(jaxlib.version, "__version__",
                          conv.TESTED_JAXLIB + "2"), \
        mock.patch.object(conv.logging, "warning") as warning:
      status = conv._set_xla_flag()  # pylint: disable=protected-access
      return status, os.environ.get("XLA_FLAGS"), warning

  def test_set_quietly_when_the_user_set_no_flags(self):
    status, flags, warning = self.set_flag(None)
    self.assertEqual(status, "set")
    self.assertEqual(flags, conv.XLA_FLAG)
    warning.assert_not_called()

  def test_appended_to_the_users_flags_with_a_warning(self):
    status, flags, warning = self.set_flag("--xla_dump_to=/tmp/x")
    self.assertEqual(status, "set")
    self.assertEqual(flags, f"--xla_dump_to=/tmp/x {conv.XLA_FLAG}")
    warning.assert_called_once()

  def test_the_users_own_setting_wins(self):
    mine = f"--{conv.YNN_FUSION_FLAG}=individual_dot"
    status, flags, warning = self.set_flag(mine)
    self.assertEqual(flags, mine)
    self.assertIn("user", status)
    warning.assert_not_called()

  def test_per_channel_sums_stay_off_the_slow_reduce_window_path(self):
    # Without YNNPACK's reductions XLA:CPU rewrites this sum over 128x28x28
    # values per channel (BatchNorm's statistics) into a reduce-window.
    if conv.XLA_FLAG_STATUS != "set" or jax.default_backend() != "cpu":
      self.skipTest(f"memjax's flag is not in effect: {conv.XLA_FLAG_STATUS}")
    x = jnp.zeros((128, 28, 28, 8))
    hlo = jax.jit(lambda x: x.sum((0, 1, 2))).lower(x).compile().as_text()
    self.assertNotIn("reduce-window", hlo)

  def test_not_set_once_the_backends_exist(self):
    status, flags, warning = self.set_flag("", backends_exist=True)
    self.assertEqual(flags, "")
    self.assertIn("already existed", status)
    warning.assert_called_once()


class ModelTrainingTest(parameterized.TestCase):
  """A few SGD steps of each conv model: the same with the plain layers."""

  @parameterized.parameters("alexnet", "inception", "inception_nobn",
                            "arpit_cnn")
  def test_training_steps_are_unchanged(self, model):
    shape, n = (8, 8, 3), 12  # three steps of 4, digits-sized images
    config = training.TrainConfig(model=model, batch_size=4,
                                  learning_rate=0.01)
    x = random(0, (n,) + shape)
    y = jnp.arange(n) % 10
    index = jnp.arange(n)[None]

    def run():
      trainer = training.Trainer(config, shape, 10)  # traced afresh
      seed_keys = keys.seed_keys(config.seed, config.num_seeds)
      state, losses = trainer.train_epoch(trainer.init(seed_keys), seed_keys,
                                          0, x, y, index)
      return state.params, state.batch_stats, losses

    fast = run()
    with plain_layers():
      plain = run()
    chex.assert_trees_all_close(fast[2], plain[2], rtol=1e-4)  # step losses
    # After three steps BatchNorm over a few values per channel amplifies
    # float round-off: the plain layers alone differ by up to 4e-4 between
    # XLA's 1- and 4-device CPU configurations (the updates are 5e-3-2e-2).
    chex.assert_trees_all_close(fast[:2], plain[:2], rtol=1e-3, atol=1e-3)


def _smoke_run(test: absltest.TestCase, script: str):
  """Runs ``benchmarks/<script> --smoke --nets=alexnet``; asserts it
  succeeded; returns the process and its JSON report."""
  directory = tempfile.TemporaryDirectory()
  test.addCleanup(directory.cleanup)
  output = os.path.join(directory.name, "report.json")
  proc = subprocess.run(
      [sys.executable, os.path.join("benchmarks", script), "--smoke",
       "--nets=alexnet", f"--output={output}"],
      capture_output=True, text=True, timeout=600, check=False, cwd=REPO)
  test.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
  with open(output) as f:
    return proc, json.load(f)


class VsPytorchBenchmarkTest(absltest.TestCase):

  def test_smoke_run_reports_both_sides_or_skips_pytorch(self):
    proc, report = _smoke_run(self, "vs_pytorch.py")
    (row,) = report["rows"]
    self.assertGreater(row["sides"]["memjax"]["median_examples_per_s"], 0)
    if importlib.util.find_spec("torch") is None:
      self.assertIn("PyTorch is not installed", proc.stderr)
    else:
      self.assertGreater(row["sides"]["memjax"]["vs_best_pytorch"], 0)
      self.assertIn("best PyTorch", proc.stdout)


def _import_benchmark(name: str):
  """A module of benchmarks/ (not a package), imported by path."""
  directory = os.path.join(REPO, "benchmarks")
  if directory not in sys.path:
    sys.path.insert(0, directory)
  return importlib.import_module(name)


class ConvKernelsBenchmarkTest(absltest.TestCase):

  def test_reads_every_convolution_of_each_model(self):
    conv_kernels = _import_benchmark("conv_kernels")
    counts = {net: len(conv_kernels.model_convs(net, 128))
              for net in ("alexnet", "arpit_cnn", "inception")}
    # Inception: a stem, eight modules of a 1x1 and a 3x3, two stride-2 3x3s.
    self.assertEqual(counts, {"alexnet": 2, "arpit_cnn": 2, "inception": 19})
    first, second = conv_kernels.model_convs("arpit_cnn", 128)
    self.assertFalse(first.needs_input_gradient)
    self.assertTrue(second.needs_input_gradient)
    self.assertEqual(second.x_shape, (128, 14, 14, 200))
    work = conv_kernels.flops(second)
    self.assertEqual(work["output_shape"], (128, 14, 14, 200))
    self.assertEqual(work["forward"], 2 * 128 * 14 * 14 * 5 * 5 * 200 * 200)
    self.assertEqual(work["backward"], 2 * work["forward"])
    self.assertEqual(conv_kernels.flops(first)["backward"],
                     conv_kernels.flops(first)["forward"])

  def test_strided_convolutions_keep_their_output_size(self):
    conv_kernels = _import_benchmark("conv_kernels")
    strided = [c for c in conv_kernels.model_convs("inception", 2)
               if c.strides != (1, 1)]
    self.assertEqual([conv_kernels.flops(c)["output_shape"][1:3]
                      for c in strided], [(14, 14), (7, 7)])

  def test_timed_loop_runs_each_convolution_inside_the_loop(self):
    # A static loop of two calls compiled to one convolution outside any loop.
    conv_kernels = _import_benchmark("conv_kernels")
    c = conv_kernels.model_convs("alexnet", 2)[1]
    timed = conv_kernels.MemjaxConv(c)
    compiled = timed.forward.lower(2, timed.x, timed.kernel).compile()
    computations = compiled.as_text().split("\n\n")
    (entry,) = [text for text in computations if text.startswith("ENTRY")]
    self.assertIn(" while(", entry)
    self.assertNotIn("convolution(", entry)
    self.assertEqual(sum(text.count("convolution(") for text in computations),
                     1)

  def test_smoke_run_reports_both_sides_or_skips_pytorch(self):
    proc, report = _smoke_run(self, "conv_kernels.py")
    (result,) = report["nets"]
    self.assertLen(result["convs"], 2)
    self.assertGreater(result["conv_step_seconds"]["memjax"], 0)
    self.assertIn("convolutions alone, memjax", proc.stdout)
    if importlib.util.find_spec("torch") is None:
      self.assertIn("PyTorch is not installed", proc.stderr)
    else:
      self.assertGreater(result["conv_step_seconds"]["pytorch"], 0)
      self.assertIn("of PyTorch's whole step", proc.stdout)

  def test_bad_input_is_one_error_line_and_status_2(self):
    directory = tempfile.TemporaryDirectory()
    self.addCleanup(directory.cleanup)
    users_file = os.path.join(directory.name, "mine.json")
    with open(users_file, "w") as f:
      f.write("a user's results")
    cases = {"--nets=mlp1x512": "['mlp1x512']; valid: ",
             "--rounds=0": "--rounds=0",
             f"--output={directory.name}": f"--output={directory.name}",
             f"--output={users_file}": "already exists",
             "--output=/nonexistent/kernels.json": "/nonexistent"}
    for script in ("conv_kernels.py", "vs_pytorch.py"):
      for arg, named in cases.items():
        with self.subTest(script=script, arg=arg):
          proc = subprocess.run(
              [sys.executable, os.path.join("benchmarks", script), arg],
              capture_output=True, text=True, timeout=600, check=False,
              cwd=REPO)
          self.assertEqual(proc.returncode, 2, proc.stderr[-2000:])
          errors = [line for line in proc.stderr.splitlines()
                    if line.startswith("error:")]
          self.assertLen(errors, 1)
          self.assertIn(named, errors[0])
    self.assertEqual(os.listdir(directory.name), ["mine.json"])
    with open(users_file) as f:
      self.assertEqual(f.read(), "a user's results")


if __name__ == "__main__":
  absltest.main()
