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

  The module's `__call__(x, train=..., return_features=...)` returns logits, or (logits, features) with
  `return_features`."""

  groups: tuple[tuple[str, str], ...]
  head: str
  feature_maps: tuple[str, ...]
  penultimate: str

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
