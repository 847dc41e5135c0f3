"""docs/methods.md §3.1 synthetic label noise: matrices against closed forms, realised noise against the
requested matrix within sampling error, seeding, and one-line errors."""

import numpy as np
import pytest

from ftjax import label_noise

N = 50_000
C = 5


def _clean(seed=0, n=N, num_classes=C):
  return np.random.default_rng(seed).integers(0, num_classes, n)


def test_symmetric_other_matrix_by_entries():
  eta = 0.3
  matrix = label_noise.symmetric_transition(C, eta, "other")
  for i in range(C):
    for j in range(C):
      assert matrix[i, j] == pytest.approx(1 - eta if i == j else eta / (C - 1))


def test_symmetric_any_matrix_by_entries():
  eta = 0.3
  matrix = label_noise.symmetric_transition(C, eta, "any")
  for i in range(C):
    for j in range(C):
      assert matrix[i, j] == pytest.approx(1 - eta + eta / C if i == j else eta / C)


def test_pairflip_matrix_by_entries():
  eta = 0.4
  matrix = label_noise.pairflip_transition(C, eta)
  expected = np.zeros((C, C))
  for i in range(C):
    expected[i, i] = 1 - eta
    expected[i, (i + 1) % C] = eta
  np.testing.assert_allclose(matrix, expected)


def _random_matrix_with_zeros():
  rng = np.random.default_rng(3)
  matrix = rng.random((C, C)) * (rng.random((C, C)) < 0.6) + 2 * np.eye(C)
  return matrix / matrix.sum(1, keepdims=True)


@pytest.mark.parametrize(
  "transition, flip_rate",
  [
    (label_noise.symmetric_transition(C, 0.4, "other"), 0.4),
    (label_noise.symmetric_transition(C, 0.4, "any"), 0.4 * (C - 1) / C),
    (label_noise.pairflip_transition(C, 0.3), 0.3),
    (_random_matrix_with_zeros(), None),
  ],
)
def test_realised_noise_matches_the_matrix_within_sampling_error(transition, flip_rate):
  clean = _clean()
  noisy = label_noise.corrupt_labels(clean, transition, seed=7)
  empirical = label_noise.empirical_transition(clean, noisy, C)
  per_class = np.bincount(clean, minlength=C)[:, None]
  standard_error = np.sqrt(transition * (1 - transition) / per_class)
  assert np.all(np.abs(empirical - transition) <= 5 * standard_error + 1e-12)
  assert np.all(empirical[transition == 0] == 0)  # impossible flips never happen
  expected_rate = 1 - np.sum(np.bincount(clean, minlength=C) * np.diag(transition)) / N
  if flip_rate is not None:
    assert expected_rate == pytest.approx(flip_rate, abs=0.01)  # classes are near-balanced
  realised = 1 - label_noise.fraction_correct(noisy, clean)
  assert abs(realised - expected_rate) <= 5 * np.sqrt(expected_rate * (1 - expected_rate) / N)


def test_symmetric_other_flips_only_to_other_classes_uniformly():
  clean = _clean()
  noisy = label_noise.corrupt_labels(clean, label_noise.symmetric_transition(C, 0.5, "other"), seed=1)
  flipped = noisy != clean
  assert abs(flipped.mean() - 0.5) <= 5 * np.sqrt(0.25 / N)
  offsets = np.bincount((noisy[flipped] - clean[flipped]) % C, minlength=C) / flipped.sum()
  assert offsets[0] == 0
  np.testing.assert_allclose(offsets[1:], 1 / (C - 1), atol=5 * np.sqrt(0.25 * 0.75 / flipped.sum()))


def test_pairflip_only_flips_to_the_next_class():
  clean = _clean()
  noisy = label_noise.corrupt_labels(clean, label_noise.pairflip_transition(C, 0.45), seed=2)
  assert set(np.unique((noisy - clean) % C)) == {0, 1}


def test_zero_rate_keeps_every_label():
  clean = _clean(n=1000)
  np.testing.assert_array_equal(label_noise.corrupt_labels(clean, label_noise.symmetric_transition(C, 0.0), 0), clean)


def test_same_seed_same_labels_other_seed_other_labels():
  clean = _clean(n=2000)
  transition = label_noise.symmetric_transition(C, 0.4)
  first = label_noise.corrupt_labels(clean, transition, seed=11)
  np.random.seed(123)  # the global generator plays no part
  second = label_noise.corrupt_labels(clean, transition, seed=11)
  other = label_noise.corrupt_labels(clean, transition, seed=12)
  np.testing.assert_array_equal(first, second)
  assert np.mean(first != other) > 0.2
  assert first.dtype == np.int32 and first.shape == clean.shape


def test_empirical_transition_and_fraction_correct_by_counting():
  clean = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
  noisy = np.array([0, 1, 0, 1, 1, 0, 2, 2, 1])
  expected = np.array([[2 / 3, 1 / 3, 0], [0, 1, 0], [1 / 4, 1 / 4, 2 / 4], [0, 0, 0]])
  expected = np.pad(expected, ((0, 0), (0, 1)))
  np.testing.assert_allclose(label_noise.empirical_transition(clean, noisy, 4), expected)
  assert label_noise.fraction_correct(noisy, clean) == pytest.approx(6 / 9)


def test_per_class_correct_by_counting_with_nan_for_an_empty_class():
  clean = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
  noisy = np.array([0, 1, 0, 1, 1, 0, 2, 2, 1])
  # class 0: 2 of 3 kept; class 1: 2 of 2; class 2: 2 of 4; class 3 has no example.
  np.testing.assert_array_equal(label_noise.per_class_correct(noisy, clean, 4), [2 / 3, 1.0, 0.5, np.nan])
  # Every example of class 1 relabelled as class 2: class 1 collapses though 7 of 9 labels stay right.
  collapsed = np.where(clean == 1, 2, clean)
  assert label_noise.fraction_correct(collapsed, clean) == pytest.approx(7 / 9)
  np.testing.assert_array_equal(label_noise.per_class_correct(collapsed, clean, 3), [1.0, 0.0, 1.0])


def test_check_transition_accepts_a_stochastic_matrix():
  matrix = _random_matrix_with_zeros()
  np.testing.assert_array_equal(label_noise.check_transition(matrix.tolist(), C), matrix)


@pytest.mark.parametrize(
  "call, message",
  [
    (lambda: label_noise.symmetric_transition(C, 1.0), "noise rate=1.0 is outside [0, 1)"),
    (lambda: label_noise.pairflip_transition(C, -0.1), "noise rate=-0.1 is outside [0, 1)"),
    (lambda: label_noise.symmetric_transition(C, 0.2, "some"), "mode='some' is not known; valid: other, any"),
    (lambda: label_noise.symmetric_transition(1, 0.2), "num_classes=1 is too small"),
    (lambda: label_noise.check_transition(np.eye(3), 4), "has shape (3, 3); valid: (4, 4)"),
    (lambda: label_noise.check_transition(np.ones((2, 3)) / 3), "has shape (2, 3); valid: (C, C)"),
    (lambda: label_noise.check_transition([[1.2, -0.2], [0, 1]], 2), "entry [0, 1]=-0.2 is not a probability"),
    (lambda: label_noise.check_transition([[1, 0], [0.5, 0.4]], 2), "row 1 sums to 0.9; valid: rows summing to 1"),
    (lambda: label_noise.corrupt_labels([0, 5], np.eye(3), 0), "labels contain class 5; valid: 0..2"),
    (lambda: label_noise.per_class_correct([0, 1], [0, 3], 3), "clean labels contain class 3; valid: 0..2"),
    (lambda: label_noise.per_class_correct([0], [0, 1], 2), "labels have shape (1,) but clean labels (2,)"),
  ],
)
def test_bad_input_is_a_one_line_error_naming_the_value(call, message):
  with pytest.raises(ValueError) as error:
    call()
  assert message in str(error.value) and "\n" not in str(error.value)


def test_expected_noisy_cross_entropy_by_writing_out_the_sum_and_by_sampling():
  rng = np.random.default_rng(0)
  probabilities = rng.dirichlet(np.ones(4), size=50)
  labels = rng.integers(0, 4, size=50)
  transition = label_noise.pairflip_transition(4, 0.3)
  expected = np.mean(
    [sum(transition[labels[i], k] * -np.log(probabilities[i, k]) for k in range(4)) for i in range(50)]
  )
  assert label_noise.expected_noisy_cross_entropy(probabilities, labels, transition) == pytest.approx(expected)
  clean = np.mean(-np.log(probabilities[np.arange(50), labels]))
  assert label_noise.expected_noisy_cross_entropy(probabilities, labels, np.eye(4)) == pytest.approx(clean)
  sampled = [
    np.mean(-np.log(probabilities[np.arange(50), label_noise.corrupt_labels(labels, transition, seed)]))
    for seed in range(2000)
  ]
  assert np.mean(sampled) == pytest.approx(expected, abs=4 * np.std(sampled) / np.sqrt(2000))
