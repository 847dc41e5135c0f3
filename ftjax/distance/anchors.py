"""The reference point W^(s) that distances are measured from (docs/methods.md §1)."""

import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ftjax import tree_paths

HEAD_ANCHORS = ("zero", "init")


class AnchorState(NamedTuple):
  """The optimizer state of the transforms that measure from W^(s) (`penalty.add_penalty_gradient`,
  `projection.distance_projection`): anchor, W^(s) as a tree shaped like the params."""

  anchor: Any


def anchor_params(start_params, head_anchor: str, head: str):
  """`start_params` (pretrained backbone, fresh head) with the head's tensors (the paths the regex `head`
  fullmatches) set to zero ('zero', the [LZ21] code's choice) or kept at their initialisation ('init')."""
  if head_anchor not in HEAD_ANCHORS:
    raise ValueError(f"head_anchor={head_anchor!r} is not valid; valid: {', '.join(HEAD_ANCHORS)}")
  in_head = re.compile(head).fullmatch

  def anchor(name: str, leaf: jax.Array) -> jax.Array:
    return jnp.zeros_like(leaf) if head_anchor == "zero" and in_head(name) else leaf

  return tree_paths.map_with_names(anchor, start_params)
