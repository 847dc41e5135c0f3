"""Orbax checkpoints of the `TrainState`, restored with an abstract target so its types survive.

Each checkpoint holds two items: 'state' (the whole TrainState: the resume point) and 'model'
({'params', 'batch_stats'}: what another run loads as its pretrained source); `ftjax.checkpoint_io`
opens and reads them without the TrainState. Beside them, `pending_metrics.json` keeps each checkpoint's
train metrics not yet logged (the steps since the last log line), so that a resumed run logs what an
uninterrupted one does, and `checksums.json` the sha256 of every array of each checkpoint's state, checked on
restore.
"""

import contextlib
import errno
import hashlib
import io
import json
import logging
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from ftjax.checkpoint_io import (
  UnreadableCheckpointError,
  abstract_like,
  check_fits,
  checkpoint_manager,
  restore_latest_item,
  restore_model,
)
from ftjax.train import interruptions
from ftjax.train.state import TrainState

log = logging.getLogger(__name__)

__all__ = [
  "UnreadableCheckpointError",
  "checkpoint_manager",
  "restore_latest",
  "restore_model",
  "restore_pending_metrics",
  "save",
  "save_pending_metrics",
  "wait_until_finished",
  "saved_steps",
  "checkpoint_bytes",
]


CHECKSUMS_FILE = "checksums.json"
DAMAGED_DIR = "damaged_checkpoints"


def state_checksums(state: TrainState) -> dict[str, str]:
  """{tensor path: sha256 of its dtype, shape and bytes} of every array of `state` (as this host sees it)."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(jax.device_get(state))
  sums = {}
  for path, leaf in leaves:
    value = np.asarray(jax.random.key_data(leaf) if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key) else leaf)
    digest = hashlib.sha256(f"{value.dtype} {value.shape} ".encode())
    digest.update(np.ascontiguousarray(value).tobytes())
    sums[jax.tree_util.keystr(path)] = digest.hexdigest()
  return sums


def checksums_path(manager: ocp.CheckpointManager) -> str:
  """`checkpoints/../checksums.json`: beside the step folders, outside what orbax manages."""
  return os.path.join(os.path.dirname(str(manager.directory)), CHECKSUMS_FILE)


def save(manager: ocp.CheckpointManager, state: TrainState, *, force: bool = False) -> bool:
  """Saves `state` at its own step (asynchronously) and records the checksums of its arrays (process 0;
  kept for the steps still on disk); returns whether a save started. A full disk, met by this save or by the
  previous one (which orbax finishes in the background), raises an OSError(ENOSPC) naming the checkpoints."""
  step = int(jax.device_get(state.step))
  model = {"params": state.params, "batch_stats": state.batch_stats}
  with full_disk_named(manager):
    args = ocp.args.Composite(state=ocp.args.StandardSave(state), model=ocp.args.StandardSave(model))
    started = manager.save(step, args=args, force=force)
  if started and jax.process_index() == 0:
    path = checksums_path(manager)
    kept = {k: v for k, v in load_json(path).items() if int(k) in set(manager.all_steps())}
    write_json_atomically(path, {**kept, str(step): state_checksums(state)})
  return started


@contextlib.contextmanager
def full_disk_named(manager: ocp.CheckpointManager):
  """Re-raises a full disk met inside (orbax words it in many ways) as OSError(ENOSPC) naming the checkpoints
  folder of `manager`, from the original error."""
  try:
    yield
  except Exception as e:
    if not interruptions.is_disk_full(e) or (isinstance(e, OSError) and e.errno == errno.ENOSPC and e.filename):
      raise
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(manager.directory)) from e


def wait_until_finished(manager: ocp.CheckpointManager) -> None:
  """Waits for the checkpoint orbax is writing in the background; a full disk raises as `full_disk_named`."""
  with full_disk_named(manager):
    manager.wait_until_finished()


def restore_latest(manager: ocp.CheckpointManager, like: TrainState) -> TrainState | None:
  """The newest intact saved state, typed and sharded like `like`; None when there is none. A checkpoint whose
  arrays do not match the checksums recorded at save, or that orbax cannot read, is reported in one warning line,
  moved (never deleted) to `damaged_checkpoints/`, and the next newest is tried; one that does not fit `like`
  (another config's) raises a one-line `UnreadableCheckpointError`. The latest step is refused as before when no
  checksums were recorded for it (a workdir written before they were)."""
  recorded = load_json(checksums_path(manager))
  while (step := manager.latest_step()) is not None:
    if str(step) not in recorded:
      return restore_latest_item(manager, "state", like)
    try:
      metadata = manager.item_metadata(step)["state"]
    except Exception as e:  # orbax raises many types for unreadable metadata: a damaged step
      set_aside_damaged(manager, step, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
      continue
    try:
      check_fits(metadata, abstract_like(like))
    except ValueError:  # another config's checkpoint: refused in one line, as restore_latest_item words it
      return restore_latest_item(manager, "state", like)
    try:
      state = restore_latest_item(manager, "state", like)
    except UnreadableCheckpointError as e:
      set_aside_damaged(manager, step, f"{type(e.__cause__).__name__}: {str(e.__cause__).splitlines()[0]}")
      continue
    damaged = sorted(k for k, v in state_checksums(state).items() if recorded[str(step)].get(k) != v)
    if not damaged:
      return state
    set_aside_damaged(manager, step, f"checksum mismatch in {', '.join(damaged[:3])}")
  return None


def set_aside_damaged(manager: ocp.CheckpointManager, step: int, why: str) -> None:
  """Moves step folder `step` to `damaged_checkpoints/<step>` (`<step>.<n>` when taken) beside the checkpoints,
  with a one-line warning."""
  source = os.path.join(str(manager.directory), str(step))
  target = os.path.join(os.path.dirname(str(manager.directory)), DAMAGED_DIR, str(step))
  if os.path.exists(target):  # the same step damaged before: keep both
    target = f"{target}.{len([d for d in os.listdir(os.path.dirname(target)) if d.split('.')[0] == str(step)])}"
  if jax.process_index() == 0:
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.replace(source, target)
  log.warning("checkpoint %s is damaged (%s); moved to %s, resuming from the newest intact one", source, why, target)
  manager.reload()


def load_json(path: str) -> dict:
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def write_bytes_atomically(path: str, content: bytes) -> None:
  """Writes `content` to `path` through a temporary file renamed over it: a write cut short (a full disk, a crash)
  leaves the previous file whole."""
  temporary = f"{path}.tmp"
  try:
    with open(temporary, "wb") as f:
      f.write(content)
      f.flush()
      os.fsync(f.fileno())
  except OSError as e:  # a failed write names no file: name it
    if e.filename is not None:
      raise
    raise OSError(e.errno, e.strerror, temporary) from e
  os.replace(temporary, path)


def write_json_atomically(path: str, value, indent: int | None = None) -> None:
  """Writes `value` as JSON to `path` (`write_bytes_atomically`)."""
  write_bytes_atomically(path, json.dumps(value, indent=indent).encode())


def write_array_atomically(path: str, array: np.ndarray) -> None:
  """Writes `array` as .npy to `path` (`write_bytes_atomically`)."""
  content = io.BytesIO()
  np.save(content, array)
  write_bytes_atomically(path, content.getvalue())


PENDING_METRICS_FILE = "pending_metrics.json"


def save_pending_metrics(path: str, step: int, pending: list[dict], keep_steps) -> None:
  """Records in `path` (JSON {step: {'dtypes', 'steps'}}, replaced atomically) the per-step train metrics of
  the steps after the last log line up to checkpoint `step`, so that a run resumed there logs the same means;
  keeps the entries of `keep_steps` (the checkpoints still on disk) besides `step`'s."""
  entries = {k: v for k, v in load_json(path).items() if int(k) in set(keep_steps)}
  host = [{name: np.asarray(value) for name, value in metrics.items()} for metrics in jax.device_get(pending)]
  dtypes = {name: str(value.dtype) for name, value in host[0].items()} if host else {}
  entries[str(step)] = {"dtypes": dtypes, "steps": [{k: v.tolist() for k, v in m.items()} for m in host]}
  write_json_atomically(path, entries)


def restore_pending_metrics(path: str, step: int) -> list[dict] | None:
  """The per-step train metrics `save_pending_metrics` kept for checkpoint `step`, with their dtypes; None when
  it kept none."""
  entry = load_json(path).get(str(step))
  if entry is None:
    return None
  return [{k: np.asarray(v, dtype=entry["dtypes"][k]) for k, v in m.items()} for m in entry["steps"]]


def saved_steps(manager: ocp.CheckpointManager) -> list[int]:
  """The steps whose checkpoint finished writing, as the folder holds them now (orbax writes a step into a
  temporary folder and renames it only once complete, so an interrupted save is not among them)."""
  directory = str(manager.directory)
  return sorted(int(name) for name in os.listdir(directory) if name.isdigit()) if os.path.isdir(directory) else []


def checkpoint_bytes(manager: ocp.CheckpointManager, state: TrainState) -> int:
  """About the bytes one more checkpoint takes: the disk space of the newest finished step folder's files, else
  (none yet) the bytes of the arrays it would hold (the whole state, and its params and batch_stats again)."""
  steps = saved_steps(manager)
  if steps:
    folder = os.path.join(str(manager.directory), str(steps[-1]))
    return sum(os.stat(os.path.join(d, f)).st_blocks * 512 for d, _, files in os.walk(folder) for f in files)
  arrays = [state, state.params, state.batch_stats]
  return sum(leaf.nbytes for leaf in jax.tree.leaves(arrays) if hasattr(leaf, "nbytes"))
