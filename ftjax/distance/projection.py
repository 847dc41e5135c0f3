"""Hard distance constraints (docs/methods.md §2.2): project t = W_i - W_i^(s) onto a Frobenius or MARS ball
after every optimiser update."""

from typing import Mapping

import jax
import jax.numpy as jnp
import optax

from ftjax import tree_paths
from ftjax.distance import anchors, norms

MARS_MODES = ("rescale", "exact")
PROJECTION_NORMS = ("frobenius", "mars")


def _shrink_factor(norm: jax.Array, radius) -> jax.Array:
  """min(1, radius / norm): exactly 1 inside the ball, and finite with finite gradients at norm 0 and
  radius 0 (the division only sees norms above the radius)."""
  outside = norm > radius
  return jnp.where(outside, radius / jnp.where(outside, norm, 1.0), 1.0)


def project_to_frobenius_ball(t: jax.Array, radius) -> jax.Array:
  """t * min(1, radius / ||t||_F): the Euclidean projection onto {||t||_F <= radius}."""
  norm = jnp.sqrt(jnp.maximum(jnp.sum(jnp.square(t)), jnp.finfo(t.dtype).tiny))  # sqrt' stays finite at t = 0
  return t * _shrink_factor(norm, radius)


def project_to_mars_ball(t: jax.Array, radius, mode: str = "rescale", num_input_axes: int | None = None) -> jax.Array:
  """A point of {max_j ||t[:, j]||_1 <= radius} on the (fan_in, out) view of t whose first `num_input_axes` axes
  (default all but the last) are the inputs (`norms.as_matrix`), returned in t's shape.

  'rescale' ([GHP21] and [LZ21] code): t[:, j] * min(1, radius / ||t[:, j]||_1) for each output
  unit j. 'exact': the Euclidean projection of each column onto the L1 ball of `radius`
  (`optax.projections.projection_l1_ball`), the nearest point of the constraint set.
  """
  if mode not in MARS_MODES:
    raise ValueError(f"mars_mode={mode!r} is not valid; valid: {', '.join(MARS_MODES)}")
  columns = norms.as_matrix(t, num_input_axes)
  if mode == "rescale":
    projected = columns * _shrink_factor(jnp.sum(jnp.abs(columns), axis=0), radius)
  else:
    # optax divides by the radius: radius 0 (the ball {0}) is answered without it.
    positive = radius > 0
    project_column = lambda column: optax.projections.projection_l1_ball(column, jnp.where(positive, radius, 1.0))
    projected = jnp.where(positive, jax.vmap(project_column, in_axes=1, out_axes=1)(columns), 0.0)
  return projected.reshape(t.shape)


def distance_projection(
  anchor_params,
  radii: Mapping[str, float],
  norm: str = "frobenius",
  mars_mode: str = "rescale",
  fan_in: norms.FanIn = (),
) -> optax.GradientTransformation:
  """Chained last: updates such that params + updates = anchor + project(params + updates_in - anchor)
  for every path of `radii` ({'/'-joined path: radius}); other leaves' updates pass unchanged. The MARS
  ball is that of each tensor's (fan_in, out) view as `fan_in` (`ModelStructure.fan_in`) declares it.

  The state keeps the whole anchor tree rather than only the constrained leaves: kernels are nearly
  all of a model's parameters, and a params-shaped state shards, checkpoints and restores like the
  params themselves. Keeping the anchor in the state (not the closure) also keeps it out of the
  compiled program's constants.
  """
  if norm not in PROJECTION_NORMS:
    raise ValueError(f"norm={norm!r} is not valid; valid: {', '.join(PROJECTION_NORMS)}")
  if norm == "mars" and mars_mode not in MARS_MODES:
    raise ValueError(f"mars_mode={mars_mode!r} is not valid; valid: {', '.join(MARS_MODES)}")
  leaves = tree_paths.named_leaves(anchor_params)
  unknown = sorted(set(radii) - set(leaves))
  if unknown:
    raise ValueError(f"radii given for paths {unknown} that the anchor params do not have")
  axes = {name: norms.input_axes(name, leaves[name].ndim, fan_in) for name in radii}

  def project(name, t):
    if norm == "frobenius":
      return project_to_frobenius_ball(t, radii[name])
    return project_to_mars_ball(t, radii[name], mars_mode, axes[name])

  def init_fn(params):
    del params
    return anchors.AnchorState(anchor=jax.tree.map(jnp.array, anchor_params))  # a copy: steps donate state

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("distance_projection needs the params: call update(updates, state, params)")

    def constrain(name, update, param, anchor):
      if name not in radii:
        return update
      t = param + update - anchor.astype(param.dtype)
      return update + (project(name, t) - t)

    return tree_paths.map_with_names(constrain, updates, params, state.anchor), state

  return optax.GradientTransformation(init_fn, update_fn)
