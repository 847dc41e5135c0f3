"""Layer groups (docs/methods.md §1): regular expressions over '/'-joined parameter paths name the group
of every weight tensor (a model family declares its own in its `ModelStructure`), and the role of some.

Patterns are ordered (pattern, group) pairs, listed from the input to the output; a path's group
is that of the first pattern that `re.fullmatch`es the whole path. Roles are (pattern, role) pairs read the
same way, without an order by depth and without covering every tensor.
"""

import re
from typing import Iterable, Sequence

from ftjax import tree_paths

GroupPatterns = Sequence[tuple[str, str]]


def compile_patterns(patterns: GroupPatterns) -> list[tuple[re.Pattern, str]]:
  """`patterns` with each regular expression compiled."""
  return [(re.compile(pattern), group) for pattern, group in patterns]


def group_of(name: str, compiled: Sequence[tuple[re.Pattern, str]]) -> str | None:
  """The group of the first compiled pattern that fullmatches the path `name`, or None."""
  return next((group for pattern, group in compiled if pattern.fullmatch(name)), None)


def assign_groups(params, patterns: GroupPatterns) -> dict[str, str]:
  """{path: group} for every weight tensor of `params` (`tree_paths.is_weight_tensor`), in tree
  order: the group of the first pattern that fullmatches the path. A weight tensor that no pattern
  matches is an error."""
  compiled = compile_patterns(patterns)
  groups = {}
  for name, leaf in tree_paths.named_leaves(params).items():
    if not tree_paths.is_weight_tensor(name, leaf):
      continue
    group = group_of(name, compiled)
    if group is None:
      raise ValueError(
        f"weight tensor {name!r} matches no layer-group pattern; patterns: {[pattern for pattern, _ in patterns]}"
      )
    groups[name] = group
  return groups


def assign_roles(params, roles: GroupPatterns) -> dict[str, str]:
  """{path: role} for every weight tensor of `params` that a (regex, role) pair of `roles` fullmatches, in tree
  order: the role of the first such pair. Weight tensors that no pattern matches have no role (no entry)."""
  compiled = compile_patterns(roles)
  named = (
    (name, group_of(name, compiled))
    for name, leaf in tree_paths.named_leaves(params).items()
    if tree_paths.is_weight_tensor(name, leaf)
  )
  return {name: role for name, role in named if role is not None}


def group_order(patterns: GroupPatterns, head: str | None = None) -> list[str]:
  """The groups by depth: in order of first appearance in `patterns`, the group `head` (if any) last."""
  groups = list(dict.fromkeys(group for _, group in patterns))
  return [g for g in groups if g != head] + [g for g in groups if g == head]


def natural_key(name: str) -> tuple:
  """Sort key of a path that compares its digit runs as numbers: 'block2' before 'block10'."""
  return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def network_order(names: Iterable[str], patterns: GroupPatterns, head: str | None = None) -> list[str]:
  """`names` (paths) from the input to the output: by group in `group_order` (`head` last), then in the natural
  order of the path within a group (block2 before block10; conv1, conv2, downsample_conv). Paths
  that no pattern matches come last, in natural order."""
  compiled = compile_patterns(patterns)
  depth = {group: i for i, group in enumerate(group_order(patterns, head))}
  return sorted(names, key=lambda name: (depth.get(group_of(name, compiled), len(depth)), natural_key(name)))
