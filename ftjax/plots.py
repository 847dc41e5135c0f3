"""Figures shared by the experiment modules (matplotlib's object API, no global pyplot state)."""

import os
from typing import NamedTuple

from matplotlib.figure import Figure


class BoundPoint(NamedTuple):
  """One run on the bound-against-gap plot (docs/methods.md §4.4); runs of one `group` share a colour."""

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


def _series(records: list[dict], metric: str) -> tuple[list[int], list[float]]:
  """(steps, values) of the records that carry `metric`; a non-finite value (logged as null) is a
  gap in the line."""
  kept = [r for r in records if metric in r]
  return [r["step"] for r in kept], [float("nan") if r[metric] is None else r[metric] for r in kept]


def plot_training_curves(
  records: list[dict],
  path: str,
  title: str,
  *,
  train_loss_label: str = "train",
  train_accuracy_label: str = "train",
  label_fraction: bool = False,
) -> str:
  """Writes `path`: loss and accuracy against the step, train ('train/loss', 'train/accuracy': means
  since the previous log line), test ('test/loss', 'test/accuracy') and validation where recorded, from metrics records
  ({'step', **scalars}, as `metrics.jsonl` holds them); with `label_fraction`, a third panel of the
  fraction of training labels that are correct ('labels/fraction_correct', once per epoch)."""
  validated = any("validation/loss" in record for record in records)
  panels = [
    (
      "loss",
      [("train/loss", train_loss_label), ("test/loss", "test")] + [("validation/loss", "validation")] * validated,
    ),
    (
      "accuracy",
      [("train/accuracy", train_accuracy_label), ("test/accuracy", "test")]
      + [("validation/accuracy", "validation")] * validated,
    ),
  ]
  if label_fraction:
    panels.append(("fraction of training labels correct", [("labels/fraction_correct", "training labels")]))
  fig = Figure(figsize=(4.6 * len(panels), 3.8), layout="constrained")
  for ax, (quantity, lines) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
    for metric, label in lines:
      steps, values = _series(records, metric)
      ax.plot(
        steps,
        values,
        marker="o" if metric.startswith(("test/", "validation/", "labels/")) else None,
        markersize=3,
        label=label,
      )
    ax.set_xlabel("step")
    ax.set_ylabel(quantity)
    ax.grid(alpha=0.3)
    if len(lines) > 1:
      ax.legend(fontsize="small")
  fig.suptitle(title)
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  fig.savefig(path, dpi=110)
  return path
