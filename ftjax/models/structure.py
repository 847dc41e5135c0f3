"""What a model family declares about its parameters and features, so that methods and measures need no layer
names of their own (docs/extending.md).

Paths are '/'-joined parameter paths inside the 'params' collection (e.g. 'stage1/block0/conv1/kernel').
"""

import re
from typing import NamedTuple


class ModelStructure(NamedTuple):
  """groups: (regex, group) pairs over parameter paths in network order, from the input to the head (what the
  depth schedule of radii walks; docs/methods.md §2.4); a path's group is that of the first pattern that
  fullmatches it. head: the group of the freshly initialised classifier (its own radius or weight, its zero
  anchor; never taken from a source model). feature_maps: the keys of the model's `features` dict that DELTA
  regularises (docs/methods.md §5). penultimate: the key of the features the head reads (what BSS shrinks).
  inputs: the input format, as the batch entries the module's `__call__` takes positionally, in order
  (('image',): float32 [N, H, W, C] normalised images; ('token_ids', 'attention_mask'): int32 [N, L] each).
  roles: (regex, role) pairs over parameter paths; a weight tensor's role is that of the first pattern that
  fullmatches it (none if no pattern does), and `reg.role_values` gives a role its own radius or penalty weight
  (docs/methods.md §2.4). fan_in: (regex, k) pairs; the first k axes of a weight tensor whose path the pattern
  fullmatches index its inputs and the rest its output units, which is how the MARS norm and projection view it
  (docs/methods.md §2.1); a tensor that no pattern matches has all axes but the last as inputs.

  The module's `__call__(*inputs, train=..., return_features=...)` returns logits, or (logits, features) with
  `return_features`."""

  groups: tuple[tuple[str, str], ...]
  head: str
  feature_maps: tuple[str, ...]
  penultimate: str
  inputs: tuple[str, ...] = ("image",)
  roles: tuple[tuple[str, str], ...] = ()
  fan_in: tuple[tuple[str, int], ...] = ()

  def model_inputs(self, batch) -> tuple:
    """The entries of `batch` the module takes, in its argument order."""
    return tuple(batch[key] for key in self.inputs)

  @property
  def role_names(self) -> tuple[str, ...]:
    """The roles `roles` declares, in order of first appearance."""
    return tuple(dict.fromkeys(role for _, role in self.roles))

  @property
  def head_pattern(self) -> str:
    """One regex that fullmatches exactly the paths of the head group's patterns."""
    patterns = [pattern for pattern, group in self.groups if group == self.head]
    if not patterns:
      raise ValueError(f"head group {self.head!r} has no pattern among the groups {list(self.groups)}")
    return "|".join(f"(?:{pattern})" for pattern in patterns)


def in_head(path: str, head_pattern: str) -> bool:
  """Whether the parameter path `path` lies in the head: `head_pattern` fullmatches it."""
  return re.fullmatch(head_pattern, path) is not None
