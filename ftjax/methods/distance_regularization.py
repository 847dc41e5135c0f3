"""Distance-regularised fine-tuning (docs/methods.md §2): the methods 'l2', 'l2sp', 'penalty' and 'constraint'
built from `config.reg` and the transforms of `ftjax.distance`.

Per-layer radii and penalty weights follow the group schedule of docs/methods.md §2.4 over the layer groups
that the model's `ModelStructure` declares ('reg.groups' replaces them), with 'reg.role_values' replacing the value
of every tensor of a role it declares; MARS norms view each kernel as its `fan_in` declares.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax

from ftjax import layer_groups
from ftjax.distance import batchnorm, norms, penalty, projection, radii
from ftjax.methods.base import Method, MethodContext, cross_entropy_loss
from ftjax.models.structure import ModelStructure


def group_patterns(config: ml_collections.ConfigDict, structure: ModelStructure) -> layer_groups.GroupPatterns:
  """The (pattern, group) pairs of `config.reg.groups`, or the model's groups (`structure.groups`) when empty."""
  return tuple((pattern, group) for pattern, group in config.reg.groups) or structure.groups


def per_layer_values(
  config: ml_collections.ConfigDict, structure: ModelStructure, params, value: float, head_value: float, gamma: float
) -> dict[str, float]:
  """{weight-tensor path of `params`: value}: value·γ^k over the groups by depth (`reg.schedule`),
  `head_value` for the head group `structure.head`, `reg.group_values` overriding per group, then `reg.role_values`
  per role of `structure.roles` (docs/methods.md §2.4). `params` may be abstract (shapes only)."""
  reg = config.reg
  patterns = group_patterns(config, structure)
  groups = layer_groups.assign_groups(params, patterns)
  values = radii.group_values(
    layer_groups.group_order(patterns, structure.head),
    value,
    gamma,
    head_value,
    reg.schedule,
    dict(reg.group_values),
    head=structure.head,
  )
  return radii.apply_role_values(
    radii.layer_values(groups, values),
    layer_groups.assign_roles(params, structure.roles),
    dict(reg.role_values),
    structure.role_names,
  )


def check_layer_groups(
  config: ml_collections.ConfigDict, param_shapes, structure: ModelStructure, batch_size: int | None = None
) -> None:
  """One-line error unless `reg.groups` covers every weight tensor, `reg.group_values` names only known groups,
  `reg.role_values` only roles the model declares, and the model's `fan_in` fits its kernels; needs only the
  params' shapes, so it runs before anything compiles."""
  del batch_size  # the layer groups do not depend on it
  per_layer_values(config, structure, param_shapes, 1.0, 1.0, 1.0)
  norms.layer_input_axes(param_shapes, structure.fan_in)


def constraint(context: MethodContext) -> Method:
  """Projection onto the per-layer ball of `reg.norm` after every update (docs/methods.md §2.2), and the
  BatchNorm constraint of docs/methods.md §2.5 when `reg.bn_radius` > 0."""
  reg = context.config.reg
  layer_radii = per_layer_values(
    context.config, context.structure, context.init_variables["params"], reg.radius, reg.head_radius, reg.gamma
  )
  post = projection.distance_projection(
    context.anchor_variables["params"], layer_radii, reg.norm, reg.mars_mode, context.structure.fan_in
  )
  if reg.bn_radius > 0:
    post = optax.chain(
      post,
      batchnorm.batchnorm_constraint(
        context.init_variables["params"], context.init_variables["batch_stats"], reg.bn_radius
      ),
    )
  return Method("constraint", cross_entropy_loss, post_optimizer=post, results={"radii": layer_radii})


def layerwise_penalty(context: MethodContext) -> Method:
  """λ_i · norm(W_i − W_i^(s)) added to the loss through its gradient (docs/methods.md §2.3), λ_i on the
  same depth schedule as radii."""
  reg = context.config.reg
  weights = per_layer_values(
    context.config, context.structure, context.init_variables["params"], reg.weight, reg.head_weight, reg.gamma
  )
  penalty_fn = functools.partial(
    penalty.layerwise_penalty, weights=weights, norm=reg.norm, fan_in=context.structure.fan_in
  )
  return Method(
    "penalty",
    cross_entropy_loss,
    pre_optimizer=penalty.add_penalty_gradient(penalty_fn, context.anchor_variables["params"]),
    results={"penalty_weights": weights},
  )


def _l2_method(name: str, context: MethodContext, anchor) -> Method:
  """λ Σ ||W_i − anchor_i||² over the backbone plus λ_head ||W_head − anchor_head||² (docs/methods.md §2.3)."""
  reg = context.config.reg
  weights = per_layer_values(
    context.config, context.structure, context.init_variables["params"], reg.weight, reg.head_weight, gamma=1.0
  )
  penalty_fn = functools.partial(penalty.l2sp_penalty, weights=weights)
  return Method(
    name,
    cross_entropy_loss,
    pre_optimizer=penalty.add_penalty_gradient(penalty_fn, anchor),
    results={"penalty_weights": weights},
  )


def l2sp(context: MethodContext) -> Method:
  """L2-SP (Li, Grandvalet & Davoine 2018): squared distance to the pretrained weights, the head to zero."""
  return _l2_method("l2sp", context, context.anchor_variables["params"])


def l2(context: MethodContext) -> Method:
  """Plain L2: squared norm of every weight tensor (L2-SP with a zero anchor)."""
  zeros = jax.tree.map(jnp.zeros_like, context.anchor_variables["params"])
  return _l2_method("l2", context, zeros)
