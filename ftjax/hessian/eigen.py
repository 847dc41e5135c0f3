"""Top-k Hessian eigenvalues by power iteration with deflation (docs/methods.md §4.3), for the whole network
and for each layer's diagonal block H_ii.

The iterations run as a host loop over one jitted HVP each: XLA:CPU runs convolutions inside
`lax.while_loop` bodies an order of magnitude slower than at top level (jax#12868).
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ftjax import tree_paths
from ftjax.hessian import products


class TopEigenvalues(NamedTuple):
  """eigenvalues [k], largest magnitude first (what power iteration finds; near a minimum these are
  the largest positive ones); num_iterations [k]: HVPs spent on each; converged [k]."""

  eigenvalues: np.ndarray
  num_iterations: np.ndarray
  converged: np.ndarray


def power_iteration(
  matvec: Callable[[jax.Array], jax.Array], start: jax.Array, max_iterations: int, tol: float
) -> TopEigenvalues:
  """The k eigenvalues of largest magnitude of the symmetric map `matvec` over vectors [d], from
  start vectors [k, d]. Eigenpair j iterates v <- P A v / |P A v|, with P the projection away from
  the eigenvectors already found (deflation), until the Rayleigh quotient v^T P A v changes by at
  most `tol` relative, or `max_iterations` products."""
  found, result = jnp.zeros((0, start.shape[1]), start.dtype), []
  deflate = lambda w: w - found.T @ (found @ w)
  for v in start:
    v = deflate(v)
    v = v / jnp.linalg.norm(v)
    value, converged, it = 0.0, False, 0
    while it < max_iterations and not converged:
      w = deflate(matvec(v))
      new_value = float(jnp.vdot(v, w))
      converged = abs(new_value - value) <= tol * abs(new_value)
      value, it = new_value, it + 1
      v = w / max(float(jnp.linalg.norm(w)), np.finfo(np.float32).tiny)
    found = jnp.concatenate([found, v[None]])
    result.append((value, it, converged))
  values, iterations, converged = zip(*result)
  return TopEigenvalues(np.array(values), np.array(iterations), np.array(converged))


def top_eigenvalues(
  loss_fn,
  params,
  key: jax.Array,
  k: int = 1,
  *,
  max_iterations: int = 100,
  tol: float = 1e-4,
  layer: str | None = None,
  linearize: bool = True,
) -> TopEigenvalues:
  """The k eigenvalues of largest magnitude of the Hessian of `loss_fn` at `params`: over all
  parameters, or with `layer` ('/'-joined path) of the block H_ii over that leaf alone (`linearize`: see
  `products.rows_operator`)."""
  matvec, dim = products.hessian_operator(loss_fn, params, layer, linearize)
  return power_iteration(matvec, jax.random.normal(key, (k, dim)), max_iterations, tol)


def layer_top_eigenvalues(
  loss_fn, params, key: jax.Array, k: int = 1, *, is_layer=tree_paths.is_weight_tensor, **options
) -> dict[str, TopEigenvalues]:
  """{layer path: `top_eigenvalues` of its block H_ii} for every leaf with `is_layer(name, leaf)`
  (default: weight tensors, docs/methods.md §1), layer i drawing from `key` folded with i; `options`
  (max_iterations, tol, linearize) as in `top_eigenvalues`."""
  return {
    name: top_eigenvalues(loss_fn, params, jax.random.fold_in(key, i), k, layer=name, **options)
    for i, name in enumerate(tree_paths.layer_names(params, is_layer))
  }
