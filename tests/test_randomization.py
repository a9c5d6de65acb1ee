"""Each randomization test's defining property (Zhang et al. Sec. 2.1)."""

from absl.testing import absltest
import jax
import numpy as np

from memjax import data
from memjax import randomization as rz

N_TRAIN, N_TEST, K = 2000, 300, 10


def synthetic() -> data.Dataset:
  """Images whose pixel values are all distinct, so permutations are visible."""
  rng = np.random.default_rng(0)
  x_train = rng.permutation(N_TRAIN * 36).reshape(N_TRAIN, 6, 6, 1)
  x_test = rng.permutation(N_TEST * 36).reshape(N_TEST, 6, 6, 1) + 0.5
  return data.Dataset("synthetic", x_train.astype(np.float32),
                      rng.integers(0, K, N_TRAIN).astype(np.int32),
                      x_test.astype(np.float32),
                      rng.integers(0, K, N_TEST).astype(np.int32), K)


def run(name, key=0, **kwargs):
  return rz.apply(synthetic(), rz.from_name(name, **kwargs), jax.random.key(key))


def pixel_sets_equal(a, b):
  flat = lambda x: np.sort(x.reshape(len(x), -1), axis=1)
  return np.array_equal(flat(a), flat(b))


class LabelTest(absltest.TestCase):

  def test_true_labels_change_nothing(self):
    ds, r = synthetic(), run("true_labels")
    np.testing.assert_array_equal(r.dataset.y_train, ds.y_train)
    np.testing.assert_array_equal(r.dataset.x_train, ds.x_train)
    self.assertFalse(r.train_mask.any())

  def test_random_labels_are_uniform_and_fixed_once(self):
    ds, r = synthetic(), run("random_labels")
    self.assertTrue(r.train_mask.all())
    kept = np.mean(r.dataset.y_train == ds.y_train)
    self.assertAlmostEqual(kept, 1 / K, delta=0.03)  # may keep the true class
    counts = np.bincount(r.dataset.y_train, minlength=K)
    self.assertGreater(counts.min(), N_TRAIN / K * 0.7)
    np.testing.assert_array_equal(r.dataset.x_train, ds.x_train)
    np.testing.assert_array_equal(r.dataset.y_test, ds.y_test)  # test clean
    np.testing.assert_array_equal(run("random_labels").dataset.y_train,
                                  r.dataset.y_train)
    self.assertFalse(np.array_equal(run("random_labels", key=1).dataset.y_train,
                                    r.dataset.y_train))

  def test_partial_corruption_only_touches_the_mask(self):
    ds, r = synthetic(), run("corrupt_0.3")
    self.assertAlmostEqual(r.train_mask.mean(), 0.3, delta=0.04)
    np.testing.assert_array_equal(r.dataset.y_train[~r.train_mask],
                                  ds.y_train[~r.train_mask])

  def test_different_class_variant_always_changes_the_label(self):
    ds = synthetic()
    r = run("corrupt_0.5", label_noise="different_class")
    masked = r.train_mask
    self.assertTrue((r.dataset.y_train[masked] != ds.y_train[masked]).all())

  def test_corrupt_test(self):
    ds, r = synthetic(), run("random_labels", corrupt_test=True)
    self.assertTrue(r.test_mask.all())
    self.assertLess(np.mean(r.dataset.y_test == ds.y_test), 0.2)


class InputTest(absltest.TestCase):

  def test_shuffled_pixels_use_one_permutation_for_train_and_test(self):
    ds, r = synthetic(), run("shuffled_pixels")
    flat = lambda x: x.reshape(len(x), -1)
    # Recover the permutation from the first image, then check it everywhere.
    src, dst = flat(ds.x_train)[0], flat(r.dataset.x_train)[0]
    perm = np.argsort(src)[np.searchsorted(np.sort(src), dst)]
    np.testing.assert_array_equal(flat(ds.x_train)[:, perm],
                                  flat(r.dataset.x_train))
    np.testing.assert_array_equal(flat(ds.x_test)[:, perm],
                                  flat(r.dataset.x_test))
    self.assertFalse(np.array_equal(perm, np.arange(perm.size)))
    np.testing.assert_array_equal(r.dataset.y_train, ds.y_train)

  def test_random_pixels_permute_each_image_differently(self):
    ds, r = synthetic(), run("random_pixels")
    self.assertTrue(pixel_sets_equal(ds.x_train, r.dataset.x_train))
    self.assertTrue(pixel_sets_equal(ds.x_test, r.dataset.x_test))
    flat = lambda x: x.reshape(len(x), -1)
    perms = {tuple(np.argsort(np.argsort(flat(ds.x_train)[i]))[
        np.argsort(flat(r.dataset.x_train)[i])]) for i in range(20)}
    self.assertLen(perms, 20)

  def test_gaussian_matches_mean_and_variance(self):
    ds, r = synthetic(), run("gaussian")
    self.assertAlmostEqual(r.dataset.x_train.mean(), ds.x_train.mean(),
                           delta=0.01 * ds.x_train.std())
    self.assertAlmostEqual(r.dataset.x_train.std(), ds.x_train.std(),
                           delta=0.01 * ds.x_train.std())
    corr = np.corrcoef(r.dataset.x_train.ravel(), ds.x_train.ravel())[0, 1]
    self.assertLess(abs(corr), 0.01)

  def test_partial_input_noise_replaces_a_fraction(self):
    ds, r = synthetic(), run("randX_0.4")
    self.assertAlmostEqual(r.train_mask.mean(), 0.4, delta=0.04)
    np.testing.assert_array_equal(r.dataset.x_train[~r.train_mask],
                                  ds.x_train[~r.train_mask])
    changed = r.dataset.x_train[r.train_mask] != ds.x_train[r.train_mask]
    self.assertGreater(changed.mean(), 0.99)
    # Validation inputs come from the same distribution: the same fraction
    # of fresh noise, the rest real.
    self.assertAlmostEqual(r.test_mask.mean(), 0.4, delta=0.1)
    np.testing.assert_array_equal(r.dataset.x_test[~r.test_mask],
                                  ds.x_test[~r.test_mask])

  def test_randx_validation_inputs_are_noise_not_the_real_images(self):
    ds, r = synthetic(), run("randX")
    self.assertTrue(r.test_mask.all())
    corr = np.corrcoef(r.dataset.x_test.ravel(), ds.x_test.ravel())[0, 1]
    self.assertLess(abs(corr), 0.05)
    self.assertAlmostEqual(r.dataset.x_test.mean(), ds.x_train.mean(),
                           delta=0.05 * ds.x_train.std())
    self.assertAlmostEqual(r.dataset.x_test.std(), ds.x_train.std(),
                           delta=0.05 * ds.x_train.std())
    # Fresh draws, not the training noise again.
    self.assertFalse(np.allclose(r.dataset.x_test[:4], r.dataset.x_train[:4]))


class NameTest(absltest.TestCase):

  def test_names(self):
    self.assertEqual(rz.from_name("randY"), rz.from_name("random_labels"))
    self.assertEqual(rz.from_name("corrupt_0.25").fraction, 0.25)
    self.assertEqual(rz.from_name("randX_0.2").kind, "noisy_inputs")

  def test_bad_names_and_fractions(self):
    with self.assertRaisesRegex(ValueError, "Unknown condition 'foo'.*valid"):
      rz.from_name("foo")
    with self.assertRaisesRegex(ValueError, r"\[0, 1\], got 1.5"):
      rz.from_name("corrupt_1.5")
    with self.assertRaisesRegex(ValueError, "label_noise"):
      rz.from_name("random_labels", label_noise="sometimes")


if __name__ == "__main__":
  absltest.main()
