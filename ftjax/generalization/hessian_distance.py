"""The Hessian distance measure of [JLZ22] and its generalisation bound (docs/methods.md §4.4).

For layer i with v_i = W_i - W_i^(s): Q_i = v_i^T H_i v_i of the loss on a batch, in two variants:
the paper's, with the positive part H_ii^+ of the layer's diagonal block, and the authors' code's,
v_i^T (H v)_i, block i of the full HVP with v over all layers. H_i = max over evaluation batches of
the batch-mean Q_i, and the bound on the generalisation gap is sum_i sqrt(C_loss * H_i / n).
Under its assumption that the loss takes values in [0, C_loss], the gap is at most C_loss minus the
training loss anyway (`trivial_gap_bound`): a bound that large is vacuous.
"""

import math
from typing import Sequence

import jax
import jax.numpy as jnp

from ftjax import tree_paths
from ftjax.hessian import products, quadrature


def layer_differences(params, anchor_params, is_layer=tree_paths.is_weight_tensor) -> dict[str, jax.Array]:
  """{layer path: v_i = W_i - W_i^(s)} for every leaf with `is_layer(name, leaf)`."""
  anchors = tree_paths.named_leaves(anchor_params)
  return {name: leaf - anchors[name] for name, leaf in tree_paths.named_leaves(params).items() if is_layer(name, leaf)}


@jax.jit
def _blockwise_quadratic_forms(loss_fn, params, tangent) -> dict[str, jax.Array]:
  """{leaf path: tangent_l^T (H tangent)_l} for every leaf."""
  product = tree_paths.named_leaves(products.hvp(loss_fn, params, tangent))
  return {name: jnp.vdot(t, product[name]) for name, t in tree_paths.named_leaves(tangent).items()}


def full_hvp_quadratic_forms(loss_fn, params, anchor_params, is_layer=tree_paths.is_weight_tensor) -> dict[str, float]:
  """{layer path: v_i^T (H v)_i} (the authors' code): one HVP with v = W - W^(s) on every layer
  and zero on the other leaves, read block by block. Not sign-definite: H is not PSD."""
  differences = layer_differences(params, anchor_params, is_layer)
  tangent = tree_paths.map_with_names(lambda name, leaf: differences.get(name, jnp.zeros_like(leaf)), params)
  forms = jax.device_get(_blockwise_quadratic_forms(products.as_argument(loss_fn), params, tangent))
  return {name: float(forms[name]) for name in differences}


def positive_part_quadratic_form(
  loss_fn, params, layer: str, difference: jax.Array, num_steps: int, linearize: bool = True
) -> float:
  """v_i^T H_ii^+ v_i (the paper) for `layer` with v_i = `difference`, H_ii^+ the positive part of
  the layer's diagonal Hessian block, by `num_steps`-node Lanczos quadrature started from v_i on
  block HVPs (`ftjax.hessian.quadrature.quadratic_form`): exact once Lanczos exhausts the Krylov
  space of v_i (at most rank(H_ii) + 1 steps); with fewer steps, a Gauss quadrature of v_i's
  spectral measure, whose error is that of the best polynomial approximation of max(x, 0) on the
  block's spectrum. `linearize`: see `ftjax.hessian.products.rows_operator`."""
  matvec = products.hessian_operator(loss_fn, params, layer, linearize)[0]
  return quadrature.quadratic_form(matvec, difference.ravel(), num_steps, quadrature.positive_part)


def positive_part_quadratic_forms(
  loss_fn, params, anchor_params, num_steps: int, is_layer=tree_paths.is_weight_tensor
) -> dict[str, float]:
  """{layer path: `positive_part_quadratic_form`} for every leaf with `is_layer(name, leaf)`."""
  loss_fn = products.as_argument(loss_fn)
  return {
    name: positive_part_quadratic_form(loss_fn, params, name, v, num_steps)
    for name, v in layer_differences(params, anchor_params, is_layer).items()
  }


def max_over_batches(per_batch: Sequence[dict[str, float]]) -> dict[str, float]:
  """{layer: max over batches}: H_i from the batch-mean Q_i of each evaluation batch."""
  return {name: max(batch[name] for batch in per_batch) for name in per_batch[0]}


def hessian_bound(measures: dict[str, float], max_loss: float, num_train: int) -> float:
  """sum_i sqrt(C_loss * max(H_i, 0) / n) over the layers' measures H_i, with C_loss = `max_loss`
  and n = `num_train` ([JLZ22]; a negative H_i, possible for the full-HVP variant, counts as 0)."""
  return sum(math.sqrt(max_loss * max(value, 0.0) / num_train) for value in measures.values())


def trivial_gap_bound(max_loss: float, train_loss: float) -> float:
  """C_loss - train loss, C_loss = `max_loss`: the most the gap (test loss - train loss) can be for a
  loss with values in [0, C_loss], which `hessian_bound` assumes."""
  return max_loss - train_loss
