"""Model zoo: parameter counts of PAPERS.md, shapes, train/eval behaviour,
convolutions in the layout XLA:CPU runs fast."""

from absl.testing import absltest
from absl.testing import parameterized
import chex
from flax import nnx
import jax
import jax.numpy as jnp

from memjax import conv
from memjax import models

# Zhang et al.'s models on 28x28x3 CIFAR10 crops (PAPERS.md, derived counts).
PAPER_COUNTS = {"mlp1x512": 1_209_866, "mlp3x512": 1_735_178,
                "alexnet": 1_387_786, "inception": 1_649_402,
                "inception_nobn": 1_649_402}


def equations(jaxpr, primitive: str):
  """Every equation of ``primitive`` in ``jaxpr`` and its sub-jaxprs."""
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == primitive:
      yield eqn
    for value in eqn.params.values():
      for sub in value if isinstance(value, (list, tuple)) else (value,):
        if hasattr(sub, "jaxpr") and hasattr(sub, "consts"):
          sub = sub.jaxpr
        if hasattr(sub, "eqns"):
          yield from equations(sub, primitive)


class ModelTest(parameterized.TestCase):

  @parameterized.parameters(*PAPER_COUNTS.items())
  def test_parameter_counts_match_the_paper(self, name, count):
    model = nnx.eval_shape(lambda: models.build(name, (28, 28, 3), 10,
                                                nnx.Rngs(0)))
    self.assertEqual(models.count_params(model), count)

  def test_batchnorm_parameters_are_what_separates_the_inceptions(self):
    build = lambda name: nnx.eval_shape(
        lambda: models.build(name, (28, 28, 3), 10, nnx.Rngs(0)))
    with_bn = models.count_params(build("inception"), include_batchnorm=True)
    without = models.count_params(build("inception_nobn"),
                                  include_batchnorm=True)
    self.assertGreater(with_bn, without)

  @parameterized.parameters("mlp2x16", "alexnet", "inception", "arpit_cnn")
  def test_forward_shapes(self, name):
    model = models.build(name, (8, 8, 1), 7, nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (3, 8, 8, 1))
    # Jitted: one compilation instead of one per layer op in eager mode.
    forward = nnx.jit(lambda model, x, rngs: model(x, train=True, rngs=rngs))
    chex.assert_shape(nnx.jit(lambda model, x: model(x))(model, x), (3, 7))
    chex.assert_shape(forward(model, x, nnx.Rngs(dropout=2)), (3, 7))

  @parameterized.parameters("alexnet", "inception", "arpit_cnn")
  def test_training_step_has_only_canonical_convolutions(self, name):
    # XLA:CPU runs a convolution on its fast kernels only in NHWC/HWIO layout
    # without window reversal; autodiff's backward convolutions are neither,
    # and inside an epoch's lax.scan they ran 25x slower (issue 15).
    model = models.build(name, (8, 8, 3), 10, nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    x = jnp.ones((4, 8, 8, 3))
    loss = lambda params: nnx.merge(graphdef, params, rest, copy=True)(
        x, train=True).sum()
    convolutions = list(equations(jax.make_jaxpr(jax.grad(loss))(params).jaxpr,
                                  "conv_general_dilated"))
    canonical = jax.lax.conv_dimension_numbers(
        (1, 1, 1, 1), (1, 1, 1, 1), conv.CANONICAL)
    self.assertNotEmpty(convolutions)
    for eqn in convolutions:
      self.assertEqual(eqn.params["dimension_numbers"], canonical)
      self.assertEqual(eqn.params["feature_group_count"], 1)
    self.assertEmpty(list(equations(
        jax.make_jaxpr(jax.grad(loss))(params).jaxpr,
        "select_and_scatter_add")))

  def test_dropout_only_in_training(self):
    model = models.build("mlp1x64", (4, 4, 1), 3, nnx.Rngs(0), dropout=0.5)
    x = jnp.ones((5, 4, 4, 1))
    chex.assert_trees_all_close(model(x), model(x))
    a = model(x, train=True, rngs=nnx.Rngs(dropout=0))
    b = model(x, train=True, rngs=nnx.Rngs(dropout=1))
    self.assertFalse(jnp.allclose(a, b))

  def test_bad_names_list_the_valid_ones(self):
    for name in ("resnet", "mlp0x5", "mlpx"):
      with self.assertRaisesRegex(ValueError, f"'{name}'.*alexnet"):
        models.validate_name(name)
    with self.assertRaisesRegex(ValueError, "dropout"):
      models.build("mlp1x4", (2, 2, 1), 2, nnx.Rngs(0), dropout=1.0)


if __name__ == "__main__":
  absltest.main()
