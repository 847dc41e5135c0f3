"""Distance-regularised fine-tuning (docs/methods.md §2): the methods 'l2', 'l2sp', 'penalty' and 'constraint'
built from `config.reg` and the transforms of `ftjax.distance`.

Per-layer radii and penalty weights follow the group schedule of docs/methods.md §2.4 over the layer groups
of `ftjax.layer_groups` ('reg.groups' overrides the model's default patterns).
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ftjax import layer_groups
from ftjax.distance import batchnorm, penalty, projection, radii
from ftjax.methods.base import Method, MethodContext, cross_entropy_loss


def parse_pairs(items, value_type=str) -> list[tuple[str, object]]:
  """('left=right', ...) -> [(left, value_type(right)), ...]; one-line error for an item without '='."""
  pairs = []
  for item in items:
    left, sep, right = item.rpartition("=")
    if not sep or not left:
      raise ValueError(f"{item!r} is not of the form 'name=value'")
    pairs.append((left, value_type(right)))
  return pairs


def group_patterns(config: ml_collections.ConfigDict):
  """The (pattern, group) pairs of `config.reg.groups`, or the model's defaults when empty."""
  return parse_pairs(config.reg.groups) or layer_groups.default_group_patterns(config.model)


def per_layer_values(config: ml_collections.ConfigDict, params, value: float, head_value: float,
                     gamma: float) -> dict[str, float]:
  """{weight-tensor path of `params`: value}: value·γ^k over the groups by depth (`reg.schedule`),
  `head_value` for the head, `reg.group_values` overriding per group (docs/methods.md §2.4). `params` may be
  abstract (shapes only)."""
  reg = config.reg
  patterns = group_patterns(config)
  groups = layer_groups.assign_groups(params, patterns)
  values = radii.group_values(layer_groups.group_order(patterns), value, gamma, head_value, reg.schedule,
                              dict(parse_pairs(reg.group_values, float)))
  return radii.layer_values(groups, values)


def check_layer_groups(config: ml_collections.ConfigDict, param_shapes) -> None:
  """One-line error unless `reg.groups` covers every weight tensor and `reg.group_values` names
  only known groups; needs only the params' shapes, so it runs before anything compiles."""
  per_layer_values(config, param_shapes, 1.0, 1.0, 1.0)


def constraint(context: MethodContext) -> Method:
  """Projection onto the per-layer ball of `reg.norm` after every update (docs/methods.md §2.2), and the
  BatchNorm constraint of docs/methods.md §2.5 when `reg.bn_radius` > 0."""
  reg = context.config.reg
  layer_radii = per_layer_values(context.config, context.init_variables["params"], reg.radius, reg.head_radius, reg.gamma)
  post = projection.distance_projection(context.anchor_variables["params"], layer_radii, reg.norm, reg.mars_mode)
  if reg.bn_radius > 0:
    post = optax.chain(post, batchnorm.batchnorm_constraint(
        context.init_variables["params"], context.init_variables["batch_stats"], reg.bn_radius))
  return Method("constraint", cross_entropy_loss, post_optimizer=post, results={"radii": layer_radii})


def layerwise_penalty(context: MethodContext) -> Method:
  """λ_i · norm(W_i − W_i^(s)) added to the loss through its gradient (docs/methods.md §2.3), λ_i on the
  same depth schedule as radii."""
  reg = context.config.reg
  weights = per_layer_values(context.config, context.init_variables["params"], reg.weight, reg.head_weight, reg.gamma)
  penalty_fn = functools.partial(penalty.layerwise_penalty, weights=weights, norm=reg.norm)
  return Method("penalty", cross_entropy_loss,
                pre_optimizer=penalty.add_penalty_gradient(penalty_fn, context.anchor_variables["params"]),
                results={"penalty_weights": weights})


def _l2_method(name: str, context: MethodContext, anchor) -> Method:
  """λ Σ ||W_i − anchor_i||² over the backbone plus λ_head ||W_head − anchor_head||² (docs/methods.md §2.3)."""
  reg = context.config.reg
  weights = per_layer_values(context.config, context.init_variables["params"], reg.weight, reg.head_weight, gamma=1.0)
  penalty_fn = functools.partial(penalty.l2sp_penalty, weights=weights)
  return Method(name, cross_entropy_loss, pre_optimizer=penalty.add_penalty_gradient(penalty_fn, anchor),
                results={"penalty_weights": weights})


def l2sp(context: MethodContext) -> Method:
  """L2-SP (Li, Grandvalet & Davoine 2018): squared distance to the pretrained weights, the head to zero."""
  return _l2_method("l2sp", context, context.anchor_variables["params"])


def l2(context: MethodContext) -> Method:
  """Plain L2: squared norm of every weight tensor (L2-SP with a zero anchor)."""
  zeros = jax.tree.map(jnp.zeros_like, context.anchor_variables["params"])
  return _l2_method("l2", context, zeros)
