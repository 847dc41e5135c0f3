"""Synthetic label noise (docs/methods.md §3.1): transition matrices F[true, noisy] = P(noisy | true), seeded
corruption of a label array, and how far noisy labels are from clean ones.

Symmetric noise comes in two conventions. 'other': a flipped label is a uniformly random *other*
class, so F = (1 − η) I + η/(C − 1) (1 − I) and a fraction η of labels is wrong in expectation.
'any': a label picked for flipping (probability η) is redrawn uniformly from all C classes, the
true one included, so F = (1 − η) I + η/C · 1 and the realised flip rate is η (C − 1)/C (the
convention of the [JLZ22] code, which redraws a fixed η·n labels).
"""

import numpy as np

NOISE_TYPES = ("none", "symmetric", "pairflip", "matrix")  # config.noise.type: none, the two below, or a given F
SYMMETRIC_MODES = ("other", "any")


def _check_rate(rate: float) -> None:
  if not 0.0 <= rate < 1.0:
    raise ValueError(f"noise rate={rate} is outside [0, 1)")


def _check_num_classes(num_classes: int) -> None:
  if num_classes < 2:
    raise ValueError(f"num_classes={num_classes} is too small for label noise; valid: at least 2")


def symmetric_transition(num_classes: int, rate: float, mode: str = "other") -> np.ndarray:
  """F [C, C] of symmetric noise with rate η in the 'other' or 'any' convention (module docstring)."""
  _check_num_classes(num_classes)
  _check_rate(rate)
  if mode not in SYMMETRIC_MODES:
    raise ValueError(f"symmetric noise mode={mode!r} is not known; valid: {', '.join(SYMMETRIC_MODES)}")
  eye = np.eye(num_classes)
  if mode == "other":
    return (1.0 - rate) * eye + rate / (num_classes - 1) * (1.0 - eye)
  return (1.0 - rate) * eye + rate / num_classes


def pairflip_transition(num_classes: int, rate: float) -> np.ndarray:
  """F [C, C] of pair-flip noise: class i keeps its label with probability 1 − η, else becomes i + 1 mod C."""
  _check_num_classes(num_classes)
  _check_rate(rate)
  eye = np.eye(num_classes)
  return (1.0 - rate) * eye + rate * np.roll(eye, 1, axis=1)


def check_transition(matrix, num_classes: int | None = None, atol: float = 1e-6) -> np.ndarray:
  """`matrix` as float64 [C, C] if it is row-stochastic (finite, non-negative, rows summing to 1
  within `atol`) and C is `num_classes` (any C when None); otherwise a one-line ValueError naming
  the bad shape, entry or row."""
  matrix = np.asarray(matrix, np.float64)
  square = matrix.ndim == 2 and matrix.shape[0] == matrix.shape[1]
  if not square or num_classes not in (None, matrix.shape[0]):
    size = "C" if num_classes is None else num_classes
    raise ValueError(f"transition matrix has shape {matrix.shape}; valid: ({size}, {size})")
  bad = np.argwhere(~np.isfinite(matrix) | (matrix < 0))
  if bad.size:
    i, j = bad[0]
    raise ValueError(f"transition matrix entry [{i}, {j}]={matrix[i, j]} is not a probability")
  sums = matrix.sum(axis=1)
  bad_rows = np.flatnonzero(np.abs(sums - 1.0) > atol)
  if bad_rows.size:
    row = bad_rows[0]
    raise ValueError(f"transition matrix row {row} sums to {sums[row]:.6g}; valid: rows summing to 1")
  return matrix


def _check_labels(labels: np.ndarray, num_classes: int, name: str) -> None:
  if labels.ndim != 1:
    raise ValueError(f"{name} have shape {labels.shape}; valid: a 1-D array of class indices")
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    bad = labels[(labels < 0) | (labels >= num_classes)][0]
    raise ValueError(f"{name} contain class {bad}; valid: 0..{num_classes - 1}")


def _as_square(matrix) -> np.ndarray:
  """`matrix` as float64, asserted square: callers pass an F built or checked (`check_transition`) before."""
  matrix = np.asarray(matrix, np.float64)
  assert matrix.ndim == 2 and matrix.shape[0] == matrix.shape[1], f"transition matrix has shape {matrix.shape}"
  return matrix


def corrupt_labels(labels, transition, seed: int | tuple[int, ...]) -> np.ndarray:
  """Noisy int32 labels [n]: label i is drawn from row F[labels[i]] of the row-stochastic `transition`
  with a generator seeded by `seed` alone (`numpy.random.default_rng(seed)`), so the same (labels, F, seed) always
  gives the same noisy labels."""
  labels = np.asarray(labels)
  transition = _as_square(transition)
  _check_labels(labels, transition.shape[0], "labels")
  cdf = np.cumsum(transition, axis=1)
  cdf /= cdf[:, -1:]
  uniform = np.random.default_rng(seed).random(labels.shape[0])
  return np.sum(cdf[labels] <= uniform[:, None], axis=1).astype(np.int32)


def empirical_transition(clean, noisy, num_classes: int) -> np.ndarray:
  """[C, C] fraction of examples of clean class i whose noisy label is j; a row of zeros for a
  class absent from `clean`."""
  clean, noisy = np.asarray(clean), np.asarray(noisy)
  if clean.shape != noisy.shape:
    raise ValueError(f"clean labels have shape {clean.shape} but noisy labels {noisy.shape}; valid: equal shapes")
  _check_labels(clean, num_classes, "clean labels")
  _check_labels(noisy, num_classes, "noisy labels")
  counts = np.zeros((num_classes, num_classes))
  np.add.at(counts, (clean, noisy), 1.0)
  totals = counts.sum(axis=1, keepdims=True)
  return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def fraction_correct(labels, clean) -> float:
  """Fraction of `labels` equal to the `clean` labels."""
  labels, clean = np.asarray(labels), np.asarray(clean)
  if labels.shape != clean.shape:
    raise ValueError(f"labels have shape {labels.shape} but clean labels {clean.shape}; valid: equal shapes")
  return float(np.mean(labels == clean))


def per_class_correct(labels, clean, num_classes: int) -> np.ndarray:
  """[C] fraction of the examples of clean class c whose label in `labels` is c; NaN for a class absent from
  `clean`."""
  labels, clean = np.asarray(labels), np.asarray(clean)
  if labels.shape != clean.shape:
    raise ValueError(f"labels have shape {labels.shape} but clean labels {clean.shape}; valid: equal shapes")
  _check_labels(clean, num_classes, "clean labels")
  members = np.bincount(clean, minlength=num_classes)
  correct = np.bincount(clean[labels == clean], minlength=num_classes)
  return np.divide(correct, members, out=np.full(num_classes, np.nan), where=members > 0)


def expected_noisy_cross_entropy(probabilities, labels, transition) -> float:
  """Mean over examples of E_{ỹ ~ F[y]}[-log p_ỹ(x)]: the cross-entropy of `probabilities` [n, C]
  against labels drawn from the noisy distribution F [C, C] (row-stochastic) of the clean `labels` (docs/methods.md
  §3.1)."""
  probabilities = np.asarray(probabilities, np.float64)
  transition = _as_square(transition)
  assert transition.shape[0] == probabilities.shape[1], f"F is {transition.shape}, probabilities {probabilities.shape}"
  labels = np.asarray(labels)
  _check_labels(labels, probabilities.shape[1], "labels")
  log_probabilities = np.log(np.maximum(probabilities, np.finfo(np.float32).tiny))
  return float(np.mean(-np.sum(transition[labels] * log_probabilities, axis=1)))
