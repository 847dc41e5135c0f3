"""Stopping a run cleanly: on SIGTERM (what a preempted VM or TPU host receives) or SIGINT, and on
a non-finite loss or gradient."""

import signal
import threading

import numpy as np

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
WATCHED_METRICS = ("loss", "grad_norm")


class Preempted(Exception):
  """The run saved a checkpoint at `step` and stopped because it received `signal_number`."""

  def __init__(self, step: int, signal_number: int):
    self.step, self.signal_number = step, signal_number
    super().__init__(
      f"stopped by {signal.Signals(signal_number).name} at step {step} after saving a checkpoint; "
      "rerun the same command to resume"
    )


class NonFiniteError(RuntimeError):
  """A step produced a NaN or infinite loss or gradient."""


class StopSignals:
  """Context manager that records SIGTERM / SIGINT instead of dying (`received`: the signal
  number or None) and restores the previous handlers on exit; a no-op outside the main thread."""

  def __init__(self):
    self.received: int | None = None
    self._previous = {}

  def _record(self, signal_number, frame):
    del frame
    self.received = signal_number

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = {s: signal.signal(s, self._record) for s in STOP_SIGNALS}
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    return False


def check_finite(step: int, metrics: dict, last_checkpoint: int | None) -> None:
  """Raises `NonFiniteError` naming the step and the quantity if a watched metric of `metrics`
  (host or device scalars of that step) is NaN or infinite."""
  for name in WATCHED_METRICS:
    value = float(np.asarray(metrics[name]))
    if not np.isfinite(value):
      kept = f"the checkpoint of step {last_checkpoint} is kept" if last_checkpoint else "no checkpoint was saved"
      raise NonFiniteError(
        f"step {step}: {name} is {value}; training stopped and {kept} (lower the learning rate or check the data)"
      )
