"""Model zoo: parameter counts of PAPERS.md, shapes, train/eval behaviour."""

from absl.testing import absltest
from absl.testing import parameterized
import chex
from flax import nnx
import jax
import jax.numpy as jnp

from memjax import models

# Zhang et al.'s models on 28x28x3 CIFAR10 crops (PAPERS.md, derived counts).
PAPER_COUNTS = {"mlp1x512": 1_209_866, "mlp3x512": 1_735_178,
                "alexnet": 1_387_786, "inception": 1_649_402,
                "inception_nobn": 1_649_402}


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
    chex.assert_shape(model(x, train=False), (3, 7))
    chex.assert_shape(model(x, train=True, rngs=nnx.Rngs(dropout=2)), (3, 7))

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
