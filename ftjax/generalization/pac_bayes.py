"""The PAC-Bayes bound of [LZ21] from per-layer distances and noise (docs/methods.md §4.5).

McAllester's bound with posterior N(W, sigma_i^2 I) and prior N(W^(s), sigma_i^2 I) on each layer:
with probability at least 1 - delta over n training examples,
  test loss <= E_U[train loss(W + U)] + sqrt((KL + ln(2 sqrt(n) / delta)) / (2n)),
  KL = sum_i ||W_i - W_i^(s)||_F^2 / (2 sigma_i^2).
It bounds the test risk of the perturbed network W + U (U drawn from the posterior) and holds for
a loss with values in [0, 1], whose risk is at most 1 anyway: a bound of 1 or more is vacuous. For
cross-entropy it is reported as this formula's value. Leaves that are not layers (biases,
BatchNorm) are not perturbed and count as fixed.
"""

import math
from typing import NamedTuple

TRIVIAL_RISK_BOUND = 1.0  # the most the risk of a loss with values in [0, 1] can be


class PacBayesBound(NamedTuple):
  """bound = expected_perturbed_train_loss + complexity; complexity = sqrt((kl + ln(2 sqrt(n)/delta)) / 2n);
  vacuous: bound >= TRIVIAL_RISK_BOUND (it says nothing about a risk in [0, 1])."""

  bound: float
  expected_perturbed_train_loss: float
  kl: float
  complexity: float
  delta: float
  vacuous: bool


def kl_divergence(distances: dict[str, float], sigmas: dict[str, float]) -> float:
  """sum_i ||v_i||_F^2 / (2 sigma_i^2): KL(N(W, diag sigma^2) || N(W^(s), diag sigma^2))."""
  return sum(distances[name] ** 2 / (2 * sigmas[name] ** 2) for name in distances)


def pac_bayes_bound(
  expected_perturbed_train_loss: float,
  distances: dict[str, float],
  sigmas: dict[str, float],
  num_train: int,
  delta: float = 0.05,
) -> PacBayesBound:
  """McAllester's bound (module docstring) from E_U[train loss(W + U)], the per-layer ||v_i||_F
  (`distances`) and noise stds (`sigmas`), n = `num_train`."""
  kl = kl_divergence(distances, sigmas)
  complexity = math.sqrt((kl + math.log(2 * math.sqrt(num_train) / delta)) / (2 * num_train))
  bound = expected_perturbed_train_loss + complexity
  return PacBayesBound(bound, expected_perturbed_train_loss, kl, complexity, delta, bool(bound >= TRIVIAL_RISK_BOUND))
