"""The BatchNorm constraint (docs/methods.md §2.5, [GHP21] and [LZ21] code): the effective scale
d = gamma / sqrt(running_var + eps) stays within D_bn of the anchor's d^(s), entry by entry."""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from ftjax import tree_paths

BN_EPS = 1e-6


def bn_scale_paths(params, batch_stats) -> dict[str, str]:
  """{scale path: running-variance path} for every BatchNorm layer: a '.../scale' leaf of `params`
  whose sibling '.../var' exists in `batch_stats`."""
  stats = tree_paths.named_leaves(batch_stats)
  pairs = {}
  for name in tree_paths.named_leaves(params):
    prefix, _, leaf = name.rpartition("/")
    if leaf == "scale" and f"{prefix}/var" in stats:
      pairs[name] = f"{prefix}/var"
  return pairs


def clip_bn_scale(scale, running_var, anchor_scale, anchor_var, radius, eps: float = BN_EPS) -> jax.Array:
  """gamma = (d^(s) + clip(d - d^(s), -radius, radius)) * sqrt(running_var + eps) with
  d = scale / sqrt(running_var + eps), d^(s) = anchor_scale / sqrt(anchor_var + eps); entries
  already within `radius` are returned bit-identical."""
  root = jnp.sqrt(running_var + eps)
  anchor_d = anchor_scale / jnp.sqrt(anchor_var + eps)
  delta = scale / root - anchor_d
  return jnp.where(jnp.abs(delta) <= radius, scale, (anchor_d + jnp.clip(delta, -radius, radius)) * root)


class BatchNormConstraintState(NamedTuple):
  """anchor_scale: gamma^(s) nested like the params' BN scales; anchor_var: running_var^(s) nested
  like the batch_stats' BN variances."""

  anchor_scale: Any
  anchor_var: Any


def batchnorm_constraint(
  anchor_params, anchor_batch_stats, radius: float, eps: float = BN_EPS
) -> optax.GradientTransformationExtraArgs:
  """Chained last: updates such that params + updates has every BN scale clipped by `clip_bn_scale`
  against the anchor (gamma^(s) from `anchor_params`, running_var^(s) from `anchor_batch_stats`).

  The running variance of d is the current one, after this step's BatchNorm update: `update`
  reads it from the `batch_stats` extra argument (the new batch_stats collection the train step
  passes to `tx.update`), and raises if it is missing. Other leaves' updates pass unchanged.
  """
  pairs = bn_scale_paths(anchor_params, anchor_batch_stats)
  scales, variances = tree_paths.named_leaves(anchor_params), tree_paths.named_leaves(anchor_batch_stats)
  # Copies (steps donate their state), nested by path so the state checkpoints like any tree.
  nest = lambda flat: traverse_util.unflatten_dict({k: jnp.array(v) for k, v in flat.items()}, sep="/")

  def init_fn(params):
    del params
    return BatchNormConstraintState(
      anchor_scale=nest({s: scales[s] for s in pairs}), anchor_var=nest({v: variances[v] for v in pairs.values()})
    )

  def update_fn(updates, state, params=None, *, batch_stats=None, **extra_args):
    del extra_args
    if batch_stats is None:
      raise ValueError(
        "batchnorm_constraint needs this step's running statistics: call "
        "tx.update(updates, state, params, batch_stats=new_batch_stats)"
      )
    if params is None:
      raise ValueError("batchnorm_constraint needs the params: call update(updates, state, params, ...)")
    running_var = tree_paths.named_leaves(batch_stats)
    anchor_scale = traverse_util.flatten_dict(state.anchor_scale, sep="/")
    anchor_var = traverse_util.flatten_dict(state.anchor_var, sep="/")

    def constrain(name, update, param):
      if name not in pairs:
        return update
      scale = param + update
      var = pairs[name]
      return update + (clip_bn_scale(scale, running_var[var], anchor_scale[name], anchor_var[var], radius, eps) - scale)

    return tree_paths.map_with_names(constrain, updates, params), state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
