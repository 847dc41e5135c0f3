"""Soft distance constraints (docs/methods.md §2.3): penalties on W_i - W_i^(s) and the transform that adds
their gradient to the loss gradient."""

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from ftjax import tree_paths
from ftjax.distance import anchors, norms


def squared_frobenius_norm(t: jax.Array) -> jax.Array:
  """sum t^2."""
  return jnp.sum(jnp.square(t))


PENALTY_NORMS = ("frobenius", "mars")


def layerwise_penalty(
  params, anchor, weights: Mapping[str, float], norm: str = "frobenius", fan_in: norms.FanIn = ()
) -> jax.Array:
  """sum_i lambda_i * norm(W_i - W_i^(s)) over the paths of `weights` ({path: lambda_i}); norm
  'frobenius' is the squared Frobenius norm, 'mars' the MARS norm (docs/methods.md §2.1) of each tensor's
  (fan_in, out) view as `fan_in` (`ModelStructure.fan_in`) declares it."""
  if norm not in PENALTY_NORMS:
    raise ValueError(f"norm={norm!r} is not valid; valid: {', '.join(PENALTY_NORMS)}")
  params, anchor = tree_paths.named_leaves(params), tree_paths.named_leaves(anchor)

  def distance(name: str) -> jax.Array:
    t = params[name] - anchor[name]
    if norm == "frobenius":
      return squared_frobenius_norm(t)
    return norms.mars_norm(t, norms.input_axes(name, t.ndim, fan_in))

  return sum((weight * distance(name) for name, weight in weights.items()), jnp.zeros(()))


def l2sp_penalty(params, anchor, weights: Mapping[str, float]) -> jax.Array:
  """L2-SP: sum_i lambda_i * ||W_i - W_i^(s)||_F^2 (lambda for the backbone, lambda_head for the head
  with its zero anchor). Plain L2 toward zero is this with a zero anchor."""
  return layerwise_penalty(params, anchor, weights, "frobenius")


def add_penalty_gradient(penalty_fn: Callable[[Any, Any], jax.Array], anchor_params) -> optax.GradientTransformation:
  """Chained first (before the optimiser): updates + grad_params penalty_fn(params, anchor), so the
  loss stays the data term. `penalty_fn(params, anchor) -> scalar`, e.g.
  `functools.partial(layerwise_penalty, weights=w, norm='mars')`. The state keeps the anchor so the
  transform is pure and checkpointable."""

  def init_fn(params):
    del params
    return anchors.AnchorState(anchor=jax.tree.map(jnp.array, anchor_params))  # a copy: steps donate state

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("add_penalty_gradient needs the params: call update(updates, state, params)")
    penalty_grads = jax.grad(penalty_fn)(params, state.anchor)
    return jax.tree.map(jnp.add, updates, penalty_grads), state

  return optax.GradientTransformation(init_fn, update_fn)
