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
  return rz.apply(synthetic(), rz.from_name(name, **kwargs),
                  jax.random.key(key))


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


def balanced_labels(per_class: int, k: int = K) -> np.ndarray:
  return np.repeat(np.arange(k, dtype=np.int32), per_class)


def empirical_transition(before, after, k: int = K) -> np.ndarray:
  counts = np.zeros((k, k))
  np.add.at(counts, (before, after), 1)
  return counts / counts.sum(1, keepdims=True)


class ClassConditionalNoiseTest(absltest.TestCase):
  """The saved transition matrix is the one the labels were drawn from."""

  PER_CLASS, P = 20_000, 0.3

  def assert_within_binomial_error(self, empirical, intended, per_class):
    # 5 binomial standard errors per entry: a false alarm in ~1e-5 of runs
    # over all entries; an entry the matrix says is impossible must be 0.
    se = np.sqrt(intended * (1 - intended) / per_class)
    np.testing.assert_array_equal(empirical[intended == 0], 0)
    np.testing.assert_array_less(np.abs(empirical - intended), 5 * se + 1e-12)

  def test_empirical_flip_matrix_of_every_kind_matches_the_intended_one(self):
    labels = balanced_labels(self.PER_CLASS)
    for noise in rz.LABEL_NOISE:
      with self.subTest(noise):
        new, mask = rz.corrupt_labels(jax.random.key(3), labels, self.P, K,
                                      noise)
        intended = rz.transition_matrix(noise, self.P, K)
        np.testing.assert_allclose(intended.sum(1), 1.0)
        self.assert_within_binomial_error(
            empirical_transition(labels, new), intended, self.PER_CLASS)
        if noise != "uniform":  # uniform marks redrawn labels, may be kept
          np.testing.assert_array_equal(mask, new != labels)

  def test_pair_flips_go_to_the_next_class(self):
    intended = rz.transition_matrix("pair", 0.4, K)
    for c in range(K):
      self.assertAlmostEqual(intended[c, c], 0.6)
      self.assertAlmostEqual(intended[c, (c + 1) % K], 0.4)
    labels = balanced_labels(50)
    new, mask = rz.corrupt_labels(jax.random.key(0), labels, 0.4, K, "pair")
    np.testing.assert_array_equal(new[mask], (labels[mask] + 1) % K)

  def test_patrini_maps_are_the_papers(self):
    mnist = rz.transition_matrix("patrini_mnist", 0.2, K)
    for source, target in ((2, 7), (3, 8), (5, 6), (6, 5), (7, 1)):
      self.assertAlmostEqual(mnist[source, target], 0.2)
    for kept in (0, 1, 4, 8, 9):
      self.assertEqual(mnist[kept, kept], 1.0)
    cifar = rz.transition_matrix("patrini_cifar10", 0.2, K)
    # truck -> automobile, bird -> airplane, deer -> horse, cat <-> dog.
    for source, target in ((9, 1), (2, 0), (4, 7), (3, 5), (5, 3)):
      self.assertAlmostEqual(cifar[source, target], 0.2)
    for kept in (0, 1, 6, 7, 8):
      self.assertEqual(cifar[kept, kept], 1.0)

  def test_general_transition_matrix(self):
    k, per_class = 5, 20_000
    intended = np.random.default_rng(1).dirichlet(np.ones(k), size=k)
    intended[0] = [0, 1, 0, 0, 0]  # a certain flip and impossible entries
    labels = balanced_labels(per_class, k)
    new, mask = rz.flip_labels(jax.random.key(2), labels, intended)
    self.assert_within_binomial_error(
        empirical_transition(labels, new, k), intended, per_class)
    np.testing.assert_array_equal(mask, new != labels)

  def test_same_key_same_draw(self):
    labels = balanced_labels(300)
    for noise in rz.LABEL_NOISE:
      first = rz.corrupt_labels(jax.random.key(7), labels, 0.5, K, noise)
      again = rz.corrupt_labels(jax.random.key(7), labels, 0.5, K, noise)
      other = rz.corrupt_labels(jax.random.key(8), labels, 0.5, K, noise)
      np.testing.assert_array_equal(first[0], again[0])
      np.testing.assert_array_equal(first[1], again[1])
      self.assertFalse(np.array_equal(first[0], other[0]))
    t = rz.transition_matrix("uniform", 0.5, K)
    np.testing.assert_array_equal(rz.flip_labels(jax.random.key(7), labels, t),
                                  rz.flip_labels(jax.random.key(7), labels, t))

  def test_zero_probability_changes_nothing(self):
    ds = synthetic()
    for noise in rz.LABEL_NOISE:
      r = run("corrupt_0", label_noise=noise, corrupt_test=True)
      np.testing.assert_array_equal(r.dataset.y_train, ds.y_train)
      np.testing.assert_array_equal(r.dataset.y_test, ds.y_test)
      self.assertFalse(r.train_mask.any() or r.test_mask.any())
      np.testing.assert_array_equal(r.transition, np.eye(K))

  def test_every_result_carries_its_transition_matrix(self):
    ds = synthetic()
    r = run("random_labels", label_noise="pair")
    np.testing.assert_array_equal(r.transition, np.roll(np.eye(K), 1, axis=1))
    np.testing.assert_array_equal(r.dataset.y_train, (ds.y_train + 1) % K)
    np.testing.assert_array_equal(r.dataset.y_test, ds.y_test)  # test clean
    np.testing.assert_allclose(run("corrupt_0.3").transition,
                               rz.transition_matrix("uniform", 0.3, K))
    np.testing.assert_array_equal(run("gaussian").transition, np.eye(K))

  def test_bad_noise_and_probabilities_are_clear_errors(self):
    labels = balanced_labels(2)
    with self.assertRaisesRegex(ValueError, "Unknown label_noise 'flip'.*pair"):
      rz.corrupt_labels(jax.random.key(0), labels, 0.2, K, "flip")
    with self.assertRaisesRegex(ValueError, "Unknown label_noise 'flip'"):
      rz.from_name("corrupt_0.2", label_noise="flip")
    with self.assertRaisesRegex(ValueError, r"\[0, 1\], got 1.5"):
      rz.corrupt_labels(jax.random.key(0), labels, 1.5, K, "pair")
    with self.assertRaisesRegex(ValueError, r"\[0, 1\], got -0.1"):
      rz.transition_matrix("pair", -0.1, K)
    with self.assertRaisesRegex(ValueError, "10 classes.*has 100 classes"):
      rz.transition_matrix("patrini_cifar10", 0.2, 100)
    with self.assertRaisesRegex(ValueError, "sum to 1.*0.9"):
      rz.flip_labels(jax.random.key(0), labels, np.full((K, K), 0.09))
    with self.assertRaisesRegex(ValueError, "K x K.*shape \\(3, 4\\)"):
      rz.flip_labels(jax.random.key(0), labels, np.full((3, 4), 0.25))
    with self.assertRaisesRegex(ValueError, "classes 0..1, got 0..9"):
      rz.flip_labels(jax.random.key(0), labels, np.eye(2))


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
