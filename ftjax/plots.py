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


class LabelTrajectory(NamedTuple):
  """One run's fraction of correct training labels, overall and of its worst clean class, by epoch (an empty
  `worst_class_correct` when the run did not record it)."""

  seed: int
  epochs: list[float]
  fraction_correct: list[float]
  worst_class_correct: list[float]


def plot_label_trajectories(panels: dict[str, list[LabelTrajectory]], path: str) -> str:
  """Writes `path`: one panel per title of `panels`, in each one solid line per seed of the fraction of training
  labels that are correct against the epoch and, dashed in the same colour, that of the seed's worst class."""
  columns = min(3, len(panels))
  rows = -(-len(panels) // columns)
  fig = Figure(figsize=(4.6 * columns, 3.6 * rows), layout="constrained")
  axes = fig.subplots(rows, columns, squeeze=False).ravel()
  for ax, (title, trajectories) in zip(axes, panels.items()):
    for i, run in enumerate(trajectories):
      colour = f"C{i % 10}"
      ax.plot(run.epochs, run.fraction_correct, color=colour, marker="o", markersize=3, label=f"seed {run.seed}")
      if run.worst_class_correct:
        ax.plot(run.epochs, run.worst_class_correct, color=colour, linestyle="--", marker="o", markersize=2)
    if any(run.worst_class_correct for run in trajectories):
      ax.plot([], [], color="grey", linestyle="--", label="worst class")
    ax.set_title(title, fontsize="medium")
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training labels correct")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
  for ax in axes[len(panels) :]:
    ax.set_visible(False)
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
  fraction of training labels that are correct ('labels/fraction_correct', once per epoch) and, where recorded,
  that of the worst clean class ('labels/worst_class_correct')."""
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
    worst = any("labels/worst_class_correct" in record for record in records)
    panels.append(
      (
        "fraction of training labels correct",
        [("labels/fraction_correct", "training labels")] + [("labels/worst_class_correct", "worst class")] * worst,
      )
    )
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
