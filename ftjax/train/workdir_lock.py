"""One run per workdir: `held(workdir)` keeps `workdir/.lock` (the holder's pid and host, flock'ed) while a run
lives, refuses a second run on the same workdir in one line, and takes over a lock whose holder died."""

import contextlib
import fcntl
import logging
import os
import socket

from ftjax.config_validation import ConfigError

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"


class WorkdirBusyError(ConfigError):
  """Another live process holds the workdir's lock."""


def _holder(fd: int) -> tuple[int, str] | None:
  """(pid, host) written in the lock file open as `fd`, or None when it holds no such line."""
  os.lseek(fd, 0, os.SEEK_SET)
  fields = os.read(fd, 4096).decode(errors="replace").split()
  if len(fields) != 2 or not fields[0].isdigit():
    return None
  return int(fields[0]), fields[1]


def _write_holder(fd: int) -> None:
  os.ftruncate(fd, 0)
  os.lseek(fd, 0, os.SEEK_SET)
  os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
  os.fsync(fd)


def _try_flock(fd: int) -> bool:
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    return False
  return True


def acquire(workdir: str) -> int:
  """Creates and flocks `workdir/.lock` holding this process's pid and host; returns its descriptor. A lock whose
  holder died (a lock of this host, or an unreadable one, that nobody flocks) is taken over with a warning;
  a live holder's raises `WorkdirBusyError` naming its pid and host."""
  path = os.path.join(workdir, LOCK_FILE)
  try:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
  except FileExistsError:
    return _take_over(path)
  if not _try_flock(fd):  # another process took the new, still empty, lock over before this one flocked it
    os.close(fd)
    raise _busy(path, None)
  _write_holder(fd)
  return fd


def _who(holder: tuple[int, str] | None, unknown: str = "another process") -> str:
  return f"process {holder[0]} on host {holder[1]}" if holder else unknown


def _is_local(holder: tuple[int, str] | None) -> bool:
  """Whether a lock naming `holder` may be taken over once nobody flocks it: one of this host, or an unreadable one
  (another host's live holder may not show as a flock here)."""
  return holder is None or holder[1] == socket.gethostname()


def _busy(path: str, holder: tuple[int, str] | None) -> WorkdirBusyError:
  """The one-line error for the lock at `path` that `holder` holds."""
  return WorkdirBusyError(
    f"workdir {os.path.dirname(path)!r} is in use by {_who(holder)} (its lock: {path}); valid: wait for that run to "
    "end or stop it, or use another workdir"
  )


def _take_over(path: str) -> int:
  workdir = os.path.dirname(path)
  fd = os.open(path, os.O_RDWR)
  try:
    holder = _holder(fd)
    # A live holder on this host keeps the flock (the kernel drops it when the holder dies, whatever its pid
    # now names); of two processes finding the same stale lock only one gets it, and the file must still be
    # the one at `path` (not removed by a holder that finished meanwhile). Another host's lock is never taken.
    if _is_local(holder) and _try_flock(fd) and os.path.exists(path) and os.fstat(fd).st_ino == os.stat(path).st_ino:
      who = _who(holder, "a process that left no pid")
      log.warning("workdir %r: taking over the lock of %s, which is no longer running", workdir, who)
      _write_holder(fd)
      return fd
  except BaseException:
    os.close(fd)
    raise
  os.close(fd)
  raise _busy(path, holder)


def live_holder(workdir: str) -> str | None:
  """Who holds `workdir`'s lock ('process P on host H'), or None when nobody does: no lock, or a lock of this host
  whose holder died (which `acquire` would take over). Another host's lock counts as held."""
  path = os.path.join(workdir, LOCK_FILE)
  try:
    fd = os.open(path, os.O_RDWR)
  except FileNotFoundError:
    return None
  try:
    holder = _holder(fd)
    if _is_local(holder) and _try_flock(fd):
      return None  # closing `fd` drops the flock just taken
    return _who(holder)
  finally:
    os.close(fd)


def release(fd: int, workdir: str) -> None:
  """Removes `workdir/.lock` (when it is still the file `fd` holds) and drops the flock."""
  path = os.path.join(workdir, LOCK_FILE)
  try:
    if os.path.exists(path) and os.stat(path).st_ino == os.fstat(fd).st_ino:
      os.remove(path)
  finally:
    os.close(fd)


@contextlib.contextmanager
def held(workdir: str, enabled: bool = True):
  """Holds the lock of `workdir` (which must exist) inside the block, when `enabled` (process 0 of a run)."""
  if not enabled:
    yield
    return
  fd = acquire(workdir)
  try:
    yield
  finally:
    release(fd, workdir)
