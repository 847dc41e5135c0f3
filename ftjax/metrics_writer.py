"""Metrics as they are produced: JSON lines (`metrics.jsonl`) and TensorBoard event files."""

import json
import os

import jax
import numpy as np


class MetricsWriter:
  """Appends {'step', **scalars} records to `DIR/metrics.jsonl` and to TensorBoard under
  `DIR/tensorboard`; only process 0 writes."""

  def __init__(self, workdir: str, enabled: bool | None = None):
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._tb = None
    self._path = os.path.join(workdir, "metrics.jsonl")
    if self.enabled:
      from tensorboardX import SummaryWriter

      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def truncate_after(self, step: int) -> None:
    """Drops the records of steps after `step` (written before a preemption, redone on resume)."""
    if not self.enabled:
      return
    kept = [r for r in read_metrics(os.path.dirname(self._path)) if r["step"] <= step]
    with open(self._path, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in kept)

  def write(self, step: int, scalars: dict, prefix: str = "") -> None:
    if not self.enabled:
      return
    values = {f"{prefix}{k}": float(np.asarray(v)) for k, v in scalars.items()}
    with open(self._path, "a") as f:
      f.write(json.dumps({"step": int(step), **values}) + "\n")
    for name, value in values.items():
      self._tb.add_scalar(name, value, int(step))
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
  """Every record of `DIR/metrics.jsonl`, in order."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
