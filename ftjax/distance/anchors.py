"""The reference point W^(s) that distances are measured from (docs/methods.md §1)."""

import jax
import jax.numpy as jnp

from ftjax import tree_paths

HEAD_ANCHORS = ("zero", "init")


def anchor_params(start_params, head_anchor: str = "zero", head_prefix: str = "head"):
  """`start_params` (pretrained backbone, fresh head) with the head's tensors set to zero
  ('zero', the [LZ21] code's choice) or kept at their initialisation ('init')."""
  if head_anchor not in HEAD_ANCHORS:
    raise ValueError(f"head_anchor={head_anchor!r} is not valid; valid: {', '.join(HEAD_ANCHORS)}")

  def anchor(name: str, leaf: jax.Array) -> jax.Array:
    in_head = name == head_prefix or name.startswith(head_prefix + "/")
    return jnp.zeros_like(leaf) if in_head and head_anchor == "zero" else leaf

  return tree_paths.map_with_names(anchor, start_params)
