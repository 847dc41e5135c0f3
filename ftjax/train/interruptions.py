"""Stopping a run cleanly: on SIGTERM (what a preempted VM or TPU host receives) or SIGINT, on
a non-finite loss, gradient or train state, and on a full disk."""

import contextlib
import errno
import logging
import os
import re
import signal
import sys
import threading

import jax
import jax.numpy as jnp
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
  """A step produced a NaN or infinite loss, gradient or train state (the launcher exits with code 3)."""


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


CHECKED_STATE_PARTS = ("params", "batch_stats", "opt_state", "method_state")


@jax.jit
def finite_parts(parts: dict) -> dict:
  """{name: whether every floating-point value of that pytree is finite} (True for one without any)."""
  finite = {}
  for name, tree in parts.items():
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    finite[name] = jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)
  return finite


def check_state_finite(step: int, state, last_checkpoint: int | None) -> None:
  """Raises `NonFiniteError` naming the step and the parts of train state `state` (params, batch_stats,
  opt_state, method_state) that hold a NaN or infinite value: a finite loss and gradient with a huge
  learning rate can still overflow the update. One jitted reduction; called before each checkpoint save."""
  finite = jax.device_get(finite_parts({name: getattr(state, name) for name in CHECKED_STATE_PARTS}))
  broken = [name for name in CHECKED_STATE_PARTS if not finite[name]]
  if broken:
    kept = f"the checkpoint of step {last_checkpoint} is kept" if last_checkpoint else "no checkpoint was saved"
    raise NonFiniteError(
      f"step {step}: the train state's {', '.join(broken)} hold non-finite values (the loss and gradient were "
      f"finite); training stopped and {kept} (lower the learning rate or check the data)"
    )


DISK_FULL_MESSAGE = "No space left on device"


class DiskFullError(RuntimeError):
  """A write into the workdir found the disk full; the last checkpoint that finished is intact and the run
  resumes from it once space is freed (the launcher prints the one-line message and exits with code 4)."""


def is_disk_full(error: BaseException | None) -> bool:
  """Whether `error` or an exception it was raised from or while handling is a full disk: an OSError with
  errno ENOSPC, or one (orbax's, TensorStore's) whose message says 'No space left on device'."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    if (isinstance(error, OSError) and error.errno == errno.ENOSPC) or DISK_FULL_MESSAGE in str(error):
      return True
    error = error.__cause__ or error.__context__
  return False


def written_path(error: BaseException, default: str) -> str:
  """The file that a failed write named, the closest to the root cause in `error`'s chain: an OSError's
  filename, or the first quoted path under `default` in an error message (TensorStore names its files so);
  else `default`."""
  chain, seen = [], set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    chain.append(error)
    error = error.__cause__ or error.__context__
  prefix = os.path.abspath(default)
  for e in reversed(chain):
    if isinstance(e, OSError) and e.filename:
      return os.fsdecode(e.filename)
    for quoted in re.findall(r"[\"']([^\"']+)[\"']", str(e)):
      path = quoted.removeprefix("file://")
      if path.startswith(prefix):
        return path
  return default


QUIETED_LOGGERS = ("absl", "asyncio")  # orbax logs through absl; asyncio reports the futures orbax left failed


class _WithoutDiskFullErrors(logging.Filter):
  """Drops log records of a full disk (their message says so, or the exception they carry is one)."""

  def filter(self, record: logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    return not (is_disk_full(error) or DISK_FULL_MESSAGE in record.getMessage())


@contextlib.contextmanager
def full_disk_told_once():
  """While open, leaves out what orbax prints when a checkpoint write finds the disk full (the errors it logs
  with tracebacks through absl, asyncio's 'Future exception was never retrieved', and the 'Event loop is
  closed' tracebacks TensorStore's callbacks print once orbax has given up on the save): the run reports the
  full disk itself, in one line (`DiskFullError`). Left in place when a full disk ends the block, as orbax's
  threads may report the failed save afterwards."""
  loggers, log_filter = [logging.getLogger(name) for name in QUIETED_LOGGERS], _WithoutDiskFullErrors()
  unraisablehook = sys.unraisablehook

  def quiet_unraisablehook(unraisable):
    if not (isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed"):
      unraisablehook(unraisable)

  for logger in loggers:
    logger.addFilter(log_filter)
  sys.unraisablehook, disk_full = quiet_unraisablehook, False
  try:
    yield
  except Exception as e:
    disk_full = is_disk_full(e)
    raise
  finally:
    if not disk_full:  # else orbax's threads may still report the failed save after the run has stopped
      sys.unraisablehook = unraisablehook
      for logger in loggers:
        logger.removeFilter(log_filter)
