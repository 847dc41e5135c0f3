"""Generalisation measures of fine-tuned networks: the Hessian distance measure and its bound
([JLZ22], docs/methods.md §4.4), noise stability and the PAC-Bayes bound ([LZ21], docs/methods.md §4.5)."""

from ftjax.generalization.hessian_distance import (
  full_hvp_quadratic_forms,
  hessian_bound,
  layer_differences,
  max_over_batches,
  positive_part_quadratic_form,
  positive_part_quadratic_forms,
  trivial_gap_bound,
)
from ftjax.generalization.noise_stability import (
  ALL_LAYERS,
  StabilityEstimate,
  layer_noise_stability,
  noise_stability,
  relative_sigmas,
)
from ftjax.generalization.pac_bayes import TRIVIAL_RISK_BOUND, PacBayesBound, kl_divergence, pac_bayes_bound

__all__ = [
  "ALL_LAYERS",
  "PacBayesBound",
  "StabilityEstimate",
  "TRIVIAL_RISK_BOUND",
  "full_hvp_quadratic_forms",
  "hessian_bound",
  "kl_divergence",
  "layer_differences",
  "layer_noise_stability",
  "max_over_batches",
  "noise_stability",
  "pac_bayes_bound",
  "positive_part_quadratic_form",
  "positive_part_quadratic_forms",
  "relative_sigmas",
  "trivial_gap_bound",
]
