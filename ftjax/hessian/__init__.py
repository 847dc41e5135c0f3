"""Hessian-vector products, traces, top eigenvalues, Lanczos quadrature and the eigenvalue density of a loss
over a params pytree (docs/methods.md §4.1–4.4, §4.6)."""

from ftjax.hessian.density import (
  SpectralQuadrature,
  hessian_spectrum,
  lanczos_quadrature,
  layer_spectra,
  stochastic_lanczos_quadrature,
)
from ftjax.hessian.eigen import TopEigenvalues, layer_top_eigenvalues, power_iteration, top_eigenvalues
from ftjax.hessian.products import (
  as_argument,
  as_arguments,
  flat_products,
  hessian_operator,
  hvp,
  leaf_loss,
  linear_products,
  linearized_hessian,
  mean_products,
  rows_operator,
)
from ftjax.hessian.quadrature import lanczos, positive_part, quadratic_form
from ftjax.hessian.trace import (
  NETWORK,
  Progress,
  TraceEstimate,
  block_traces,
  layer_blocks,
  layer_traces,
  network_block,
  network_trace,
)

__all__ = [
  "NETWORK",
  "Progress",
  "SpectralQuadrature",
  "TopEigenvalues",
  "TraceEstimate",
  "as_argument",
  "as_arguments",
  "block_traces",
  "flat_products",
  "hessian_operator",
  "hessian_spectrum",
  "hvp",
  "lanczos",
  "lanczos_quadrature",
  "layer_blocks",
  "layer_spectra",
  "layer_top_eigenvalues",
  "layer_traces",
  "leaf_loss",
  "linear_products",
  "linearized_hessian",
  "mean_products",
  "network_block",
  "network_trace",
  "positive_part",
  "power_iteration",
  "quadratic_form",
  "rows_operator",
  "stochastic_lanczos_quadrature",
  "top_eigenvalues",
]
