"""Norms of a difference tensor t = W_i - W_i^(s) (docs/methods.md §2.1) and per-layer distances of a params tree."""

import jax
import jax.numpy as jnp

from ftjax import tree_paths


def as_matrix(t: jax.Array) -> jax.Array:
  """A kernel viewed as (fan_in, out): a conv kernel (kh, kw, in, out) becomes (kh*kw*in, out)."""
  return t.reshape(-1, t.shape[-1])


def frobenius_norm(t: jax.Array) -> jax.Array:
  """sqrt(sum t^2)."""
  return jnp.sqrt(jnp.sum(jnp.square(t)))


def column_l1_norms(t: jax.Array) -> jax.Array:
  """[out]: for each output unit j, sum over inputs |t[:, j]| of the (fan_in, out) view."""
  return jnp.sum(jnp.abs(as_matrix(t)), axis=0)


def mars_norm(t: jax.Array) -> jax.Array:
  """Maximum absolute row sum (the ∞→∞ operator norm) of the (fan_in, out) view: max_j ||t[:, j]||_1."""
  return jnp.max(column_l1_norms(t))


NORMS = {"frobenius": frobenius_norm, "mars": mars_norm}


def layer_distance_arrays(params, anchor_params) -> dict[str, dict[str, jax.Array]]:
  """{layer path: {'frobenius', 'mars'}} of W - W_anchor for every weight tensor (docs/methods.md §1), as
  scalars; jittable."""
  anchors = tree_paths.named_leaves(anchor_params)
  return {
    name: {norm: fn(weight - anchors[name]) for norm, fn in NORMS.items()}
    for name, weight in tree_paths.named_leaves(params).items()
    if tree_paths.is_weight_tensor(name, weight)
  }


def layer_distances(params, anchor_params) -> dict[str, dict[str, float]]:
  """`layer_distance_arrays` as Python floats."""
  arrays = jax.device_get(jax.jit(layer_distance_arrays)(params, anchor_params))
  return jax.tree.map(float, arrays)
