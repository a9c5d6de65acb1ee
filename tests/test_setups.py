"""Each experiment's default preprocessing is its paper's (issue 12).

Zhang et al. standardize each CIFAR10 image (zero mean, unit variance); Arpit
et al. feed MNIST pixels / 255, and so do the Zhang et al. MNIST kernel and
expressivity experiments and the later per-example score papers run here on
MNIST. Read from the experiments' sources (their flag definitions), so the
check needs no run.
"""

from __future__ import annotations

import ast
import os

from absl.testing import absltest
from absl.testing import parameterized

from memjax import data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# experiment -> default of --standardize (per mode where a script has modes).
PAPER_PREPROCESSING = {
    "random_labels": True,
    "label_corruption": True,
    "regularization": {"table1": True, "sweep": False},
    "expressivity": False,
    "implicit_regularization": False,
    "easy_examples": False,
    "loss_sensitivity": False,
    "example_scores": False,
    "capacity": False,
    "convergence_time": False,
    "critical_samples": False,
    "sharpness": False,
    "memorization_scores": True,
    # Paul et al. normalize CIFAR-10 by its channel statistics; per-image
    # standardization is the closest preprocessing memjax has.
    "data_pruning": True,
    "score_atlas": True,  # memorization_scores' recipe, for every score
}


def _tree(name):
  with open(os.path.join(ROOT, "experiments", f"{name}.py")) as f:
    return ast.parse(f.read())


def standardize_default(name):
  """The ``standardize=`` of the script's ``cli.define_data_flags`` call; a
  per-mode dict where the script resolves it from ``MODE_DEFAULTS``."""
  tree = _tree(name)
  calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
           and getattr(node.func, "attr", None) == "define_data_flags"]
  assert len(calls) == 1, name
  value = {k.arg: k.value for k in calls[0].keywords}["standardize"]
  if isinstance(value, ast.Constant):
    return value.value
  for node in ast.walk(tree):
    if isinstance(node, ast.Assign) and any(
        getattr(t, "id", None) == "MODE_DEFAULTS" for t in node.targets):
      # A dict of dict(...) calls with literal arguments.
      # pylint: disable-next=eval-used
      modes = eval(compile(ast.Expression(node.value), name, "eval"),
                   {"__builtins__": {}, "dict": dict})
      return {mode: d["standardize"] for mode, d in modes.items()}
  raise AssertionError(f"{name}: cannot read the standardize default")


class PaperPreprocessingTest(parameterized.TestCase):

  def test_every_experiment_is_listed(self):
    scripts = {f[:-3] for f in os.listdir(os.path.join(ROOT, "experiments"))
               if f.endswith(".py") and not f.startswith("_")}
    self.assertContainsSubset(set(PAPER_PREPROCESSING), scripts)
    self.assertContainsSubset(
        {s for s in scripts if "define_data_flags" in open(
            os.path.join(ROOT, "experiments", f"{s}.py")).read()},
        set(PAPER_PREPROCESSING))

  @parameterized.parameters(*PAPER_PREPROCESSING)
  def test_default_is_the_papers(self, name):
    self.assertEqual(standardize_default(name), PAPER_PREPROCESSING[name])

  def test_unstandardized_inputs_are_pixels_over_255(self):
    config = data.DataConfig(name="digits", standardize=False)
    dataset = data.load(config)
    self.assertGreaterEqual(dataset.x_train.min(), 0.0)
    self.assertLessEqual(dataset.x_train.max(), 1.0)
    self.assertAlmostEqual(float(dataset.x_train.max()), 1.0, places=5)
    self.assertTrue((dataset.train_scale == 1.0).all())

  def test_standardized_scale_maps_intensity_levels_to_input_units(self):
    raw = data.load(data.DataConfig(name="digits", standardize=False))
    std = data.load(data.DataConfig(name="digits", standardize=True))
    # Image i's standardized values are (raw - mean_i) * scale_i.
    centred = raw.x_train - raw.x_train.mean(axis=(1, 2, 3), keepdims=True)
    expected = centred * std.train_scale[:, None, None, None]
    self.assertLess(abs(expected - std.x_train).max(), 1e-4)


if __name__ == "__main__":
  absltest.main()
