"""Metrics as they are produced: JSON lines (`metrics.jsonl`) and TensorBoard event files."""

import json
import logging
import math
import os

import jax
import numpy as np

from ftjax.config_validation import ConfigError

log = logging.getLogger(__name__)


class MetricsWriter:
  """Appends {'step', **scalars} records to `DIR/metrics.jsonl` and to TensorBoard under
  `DIR/tensorboard`; only process 0 writes. A NaN or infinite value is written as JSON null (with a warning
  naming the step and the metric)."""

  def __init__(self, workdir: str, enabled: bool | None = None):
    self.workdir = workdir
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self._tb = None
    self._path = os.path.join(workdir, "metrics.jsonl")
    if self.enabled:
      from tensorboardX import SummaryWriter

      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def truncate_after(self, step: int) -> None:
    """Drops the records of steps after `step` (written before a preemption, redone on resume) and a torn last
    line; the log is replaced atomically, and only when that changes it, so a full disk leaves it whole."""
    if not self.enabled:
      return
    kept = "".join(json.dumps(r) + "\n" for r in read_metrics(os.path.dirname(self._path)) if r["step"] <= step)
    if os.path.exists(self._path):
      with open(self._path) as f:
        if f.read() == kept:
          return
    temporary = f"{self._path}.tmp"
    try:
      with open(temporary, "w") as f:
        f.write(kept)
    except OSError as e:
      if e.filename is not None:
        raise
      raise OSError(e.errno, e.strerror, temporary) from e
    os.replace(temporary, self._path)

  def write(self, step: int, scalars: dict, prefix: str = "") -> None:
    if not self.enabled:
      return
    values = {f"{prefix}{k}": float(np.asarray(v)) for k, v in scalars.items()}
    non_finite = sorted(name for name, value in values.items() if not math.isfinite(value))
    if non_finite:
      log.warning(
        "step %d: %s non-finite (%s); written to metrics.jsonl as null",
        step,
        ", ".join(non_finite),
        ", ".join(str(values[name]) for name in non_finite),
      )
    record = {"step": int(step), **{k: v if math.isfinite(v) else None for k, v in values.items()}}
    try:
      with open(self._path, "a") as f:
        f.write(json.dumps(record, allow_nan=False) + "\n")
    except OSError as e:  # a failed write (a full disk) names no file: name it
      if e.filename is not None:
        raise
      raise OSError(e.errno, e.strerror, self._path) from e
    for name, value in values.items():
      self._tb.add_scalar(name, value, int(step))
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: str) -> list[dict]:
  """Every record of `DIR/metrics.jsonl`, in order. A torn last line (a write cut short, as power loss leaves
  it) is dropped with a warning; any other line that is not a JSON record raises a one-line `ConfigError`."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = [(number, line) for number, line in enumerate(f, 1) if line.strip()]
  records = []
  for number, line in lines:
    try:
      record = json.loads(line)
      if not isinstance(record, dict) or "step" not in record:
        raise ValueError("not a record with a step")
    except ValueError as e:
      if number == lines[-1][0]:
        log.warning("%s: dropped its torn last line %d (%r)", path, number, line.rstrip("\n")[:80])
        break
      raise ConfigError(
        f"{path} line {number} is not a metrics record ({e}); valid: JSON lines of one record each, as a run writes "
        "them (move the file away to start its log afresh)"
      ) from e
    records.append(record)
  return records
