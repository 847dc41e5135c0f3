"""Hessian-vector products, traces, top eigenvalues and Lanczos quadrature of a loss over a params
pytree (docs/methods.md §4.1–4.4)."""

from ftjax.hessian.eigen import TopEigenvalues, layer_top_eigenvalues, power_iteration, top_eigenvalues
from ftjax.hessian.products import (
  as_argument,
  as_arguments,
  flat_products,
  hessian_operator,
  hvp,
  leaf_loss,
  mean_products,
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
  "TopEigenvalues",
  "TraceEstimate",
  "as_argument",
  "as_arguments",
  "block_traces",
  "flat_products",
  "hessian_operator",
  "hvp",
  "lanczos",
  "layer_blocks",
  "layer_top_eigenvalues",
  "layer_traces",
  "leaf_loss",
  "mean_products",
  "network_block",
  "network_trace",
  "positive_part",
  "power_iteration",
  "quadratic_form",
  "top_eigenvalues",
]
