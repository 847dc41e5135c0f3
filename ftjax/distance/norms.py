"""Norms of a difference tensor t = W_i - W_i^(s) (docs/methods.md §2.1) and per-layer distances of a params tree."""

import math
import re
from typing import Sequence

import jax
import jax.numpy as jnp

from ftjax import tree_paths

FanIn = Sequence[tuple[str, int]]  # (regex over parameter paths, number of leading input axes); `ModelStructure.fan_in`


def input_axes(name: str, ndim: int, fan_in: FanIn = ()) -> int:
  """How many leading axes of the `ndim`-dimensional tensor at path `name` index its inputs: the k of the first
  (regex, k) pair of `fan_in` that fullmatches `name`, else ndim - 1 (all but the last). A declared k must lie in
  [1, ndim - 1]."""
  axes = next((k for pattern, k in fan_in if re.fullmatch(pattern, name)), None)
  if axes is None:
    return ndim - 1
  if not 1 <= axes < ndim:
    raise ValueError(f"fan_in declares {axes} input axes for {name!r}, which has {ndim}; valid: 1 to {ndim - 1}")
  return axes


def layer_input_axes(params, fan_in: FanIn = ()) -> dict[str, int]:
  """{path: `input_axes`} for every weight tensor of `params` (shapes suffice)."""
  return {
    name: input_axes(name, leaf.ndim, fan_in)
    for name, leaf in tree_paths.named_leaves(params).items()
    if tree_paths.is_weight_tensor(name, leaf)
  }


def as_matrix(t: jax.Array, num_input_axes: int | None = None) -> jax.Array:
  """t viewed as (fan_in, out): its first `num_input_axes` axes (default all but the last) flattened into rows, the
  rest into columns. A conv kernel (kh, kw, in, out) becomes (kh*kw*in, out); an attention query kernel
  (D, heads, head_dim) with 1 input axis becomes (D, heads*head_dim)."""
  num_input_axes = t.ndim - 1 if num_input_axes is None else num_input_axes
  return t.reshape(math.prod(t.shape[:num_input_axes]), math.prod(t.shape[num_input_axes:]))


def frobenius_norm(t: jax.Array) -> jax.Array:
  """sqrt(sum t^2)."""
  return jnp.sqrt(jnp.sum(jnp.square(t)))


def column_l1_norms(t: jax.Array, num_input_axes: int | None = None) -> jax.Array:
  """[out]: for each output unit j, sum over inputs |t[:, j]| of the (fan_in, out) view (`as_matrix`)."""
  return jnp.sum(jnp.abs(as_matrix(t, num_input_axes)), axis=0)


def mars_norm(t: jax.Array, num_input_axes: int | None = None) -> jax.Array:
  """Maximum absolute row sum (the ∞→∞ operator norm) of the (fan_in, out) view (`as_matrix`):
  max_j ||t[:, j]||_1."""
  return jnp.max(column_l1_norms(t, num_input_axes))


def layer_distance_arrays(params, anchor_params, fan_in: FanIn = ()) -> dict[str, dict[str, jax.Array]]:
  """{layer path: {'frobenius', 'mars'}} of W - W_anchor for every weight tensor (docs/methods.md §1), as
  scalars, the MARS norm on the view that `fan_in` (`ModelStructure.fan_in`) declares; jittable."""
  anchors = tree_paths.named_leaves(anchor_params)
  weights = tree_paths.named_leaves(params)
  distances = {}
  for name, axes in layer_input_axes(params, fan_in).items():
    t = weights[name] - anchors[name]
    distances[name] = {"frobenius": frobenius_norm(t), "mars": mars_norm(t, axes)}
  return distances


def layer_distances(params, anchor_params, fan_in: FanIn = ()) -> dict[str, dict[str, float]]:
  """`layer_distance_arrays` as Python floats."""
  fan_in = tuple(map(tuple, fan_in))  # hashable: a static argument of the compiled function
  arrays = jax.device_get(jax.jit(layer_distance_arrays, static_argnums=2)(params, anchor_params, fan_in))
  return jax.tree.map(float, arrays)
