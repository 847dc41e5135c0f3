"""Figures shared by the experiment modules (matplotlib's object API, no global pyplot state)."""

import os
from typing import NamedTuple

from matplotlib.figure import Figure


class BoundPoint(NamedTuple):
  """One run on the bound-against-gap plot (SPEC §4.4); runs of one `group` share a colour."""
  label: str
  group: str
  generalization_gap: float
  bound: float


def plot_bound_vs_gap(points: list[BoundPoint], path: str) -> str:
  """Writes `path`: each run's Hessian distance bound against its measured generalisation gap."""
  fig = Figure(figsize=(5.5, 4.2))
  ax = fig.subplots()
  groups = list(dict.fromkeys(p.group for p in points))
  for group in groups:
    members = [p for p in points if p.group == group]
    ax.scatter([p.generalization_gap for p in members], [p.bound for p in members], label=group)
  for p in points:
    if p.label != p.group:
      ax.annotate(p.label, (p.generalization_gap, p.bound), fontsize=6)
  if len(groups) > 1:
    ax.legend(fontsize="small")
  ax.set_xlabel("measured gap (test loss - train loss)")
  ax.set_ylabel("Hessian bound sum_i sqrt(C H_i / n)")
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=110)
  return path
