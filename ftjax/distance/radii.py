"""Per-group radii or penalty weights that grow with depth (docs/methods.md §2.4), their per-layer view, and the
per-role values that replace them.

The same values serve projection radii D_g and penalty weights lambda_g.
"""

import math
from typing import Mapping, Sequence

SCHEDULES = ("depth", "authors")


def _exponents(num_groups: int, schedule: str) -> list[int]:
  """gamma's exponent for each of `num_groups` non-head groups, earliest first.

  'depth' (the paper): g - 1 for the g-th group. 'authors' (the [LZ21] ResNet code): the first
  ceil(n / 2) groups 0, then 1, 2, ...; for a ResNet's stem, stage1..stage4 that is
  0, 0, 0, 1, 2 (stem, stage1, stage2 at D, stage3 at D*gamma, stage4 at D*gamma^2).
  """
  if schedule == "depth":
    return list(range(num_groups))
  flat = math.ceil(num_groups / 2)
  return [max(0, g - flat + 1) for g in range(num_groups)]


def group_values(
  groups: Sequence[str],
  value: float,
  gamma: float,
  head_value: float,
  schedule: str = "depth",
  overrides: Mapping[str, float] | None = None,
  *,
  head: str,
) -> dict[str, float]:
  """{group: value} for `groups` in depth order (`layer_groups.group_order`): the groups but `head`
  get value * gamma^k with k from `schedule` ('depth' or 'authors'), the group `head` `head_value`;
  `overrides` ({group: value}) then replaces any entry. Values are not checked: radii and weights >= 0 are the
  config schema's check (ftjax.configs)."""
  if schedule not in SCHEDULES:
    raise ValueError(f"schedule={schedule!r} is not valid; valid: {', '.join(SCHEDULES)}")
  overrides = dict(overrides or {})
  unknown = sorted(set(overrides) - set(groups))
  if unknown:
    raise ValueError(f"values given for unknown groups {unknown}; valid: {list(groups)}")
  body = [g for g in groups if g != head]
  values = {g: value * gamma**k for g, k in zip(body, _exponents(len(body), schedule))}
  if head in groups:
    values[head] = head_value
  return {g: float(overrides.get(g, values[g])) for g in groups}


def layer_values(groups_by_path: Mapping[str, str], values_by_group: Mapping[str, float]) -> dict[str, float]:
  """{path: value of its group} for every path of `groups_by_path` (`layer_groups.assign_groups`)."""
  missing = sorted(set(groups_by_path.values()) - set(values_by_group))
  if missing:
    raise ValueError(f"no value for groups {missing}; given: {sorted(values_by_group)}")
  return {path: values_by_group[group] for path, group in groups_by_path.items()}


def apply_role_values(
  values_by_path: Mapping[str, float],
  roles_by_path: Mapping[str, str],
  values_by_role: Mapping[str, float],
  roles: Sequence[str],
) -> dict[str, float]:
  """`values_by_path` with the value of every path whose role (`roles_by_path`, `layer_groups.assign_roles`) has
  an entry in `values_by_role` ({role: value}) replaced by that entry; `roles`: the roles the model declares, the
  only ones `values_by_role` may name."""
  unknown = sorted(set(values_by_role) - set(roles))
  if unknown:
    valid = ", ".join(map(repr, roles)) if roles else "none (the model declares no roles)"
    raise ValueError(f"values given for unknown roles {unknown}; valid: {valid}")
  return {
    path: float(values_by_role[roles_by_path[path]]) if roles_by_path.get(path) in values_by_role else value
    for path, value in values_by_path.items()
  }
