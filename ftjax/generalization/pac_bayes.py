"""The PAC-Bayes bound of [LZ21] from per-layer distances and noise (SPEC §4.5).

McAllester's bound with posterior N(W, sigma_i^2 I) and prior N(W^(s), sigma_i^2 I) on each layer:
with probability at least 1 - delta over n training examples,
  test loss <= E_U[train loss(W + U)] + sqrt((KL + ln(2 sqrt(n) / delta)) / (2n)),
  KL = sum_i ||W_i - W_i^(s)||_F^2 / (2 sigma_i^2).
It holds for a loss with values in [0, 1]; for cross-entropy it is reported as this formula's
value. Leaves that are not layers (biases, BatchNorm) are not perturbed and count as fixed.
"""

import math
from typing import NamedTuple


class PacBayesBound(NamedTuple):
  """bound = expected_perturbed_train_loss + complexity; complexity = sqrt((kl + ln(2 sqrt(n)/delta)) / 2n)."""
  bound: float
  expected_perturbed_train_loss: float
  kl: float
  complexity: float
  delta: float


def kl_divergence(distances: dict[str, float], sigmas: dict[str, float]) -> float:
  """sum_i ||v_i||_F^2 / (2 sigma_i^2): KL(N(W, diag sigma^2) || N(W^(s), diag sigma^2))."""
  return sum(distances[name] ** 2 / (2 * sigmas[name] ** 2) for name in distances)


def pac_bayes_bound(expected_perturbed_train_loss: float, distances: dict[str, float], sigmas: dict[str, float],
                    num_train: int, delta: float = 0.05) -> PacBayesBound:
  """McAllester's bound (module docstring) from E_U[train loss(W + U)], the per-layer ||v_i||_F
  (`distances`) and noise stds (`sigmas`), n = `num_train`."""
  kl = kl_divergence(distances, sigmas)
  complexity = math.sqrt((kl + math.log(2 * math.sqrt(num_train) / delta)) / (2 * num_train))
  return PacBayesBound(expected_perturbed_train_loss + complexity, expected_perturbed_train_loss, kl, complexity,
                       delta)
