"""Reading and opening the orbax checkpoints a run writes, without the training state's type: what a
model source or a measurement needs from a run's checkpoint (`ftjax.train.checkpointing` saves them).

Each checkpoint holds two items: 'state' (the whole TrainState: the resume point) and 'model'
({'params', 'batch_stats'}: what another run loads as its pretrained source).
"""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from ftjax.config_validation import ConfigError

ITEMS = ("state", "model")


class UnreadableCheckpointError(ConfigError):
  """A checkpoint that cannot be restored into the run's state: damaged, or from another config."""


def checkpoint_manager(directory: str, max_to_keep: int = 2, create: bool = True) -> ocp.CheckpointManager:
  """A manager over `directory` (created if asked) with items 'state' and 'model', whose handlers
  are known up front so that a fresh process can read the items' metadata."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create)
  handlers = {item: ocp.StandardCheckpointHandler() for item in ITEMS}
  return ocp.CheckpointManager(os.path.abspath(directory), options=options, item_handlers=handlers)


def abstract_like(tree):
  """ShapeDtypeStructs (with shardings) of every array leaf of `tree`."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def check_fits(saved_metadata, like) -> None:
  """Raises ValueError naming the first tensor that the checkpointed tree (orbax's metadata of it)
  and `like` do not both hold, or hold with different shapes."""
  saved, wanted = ocp.tree.to_flat_dict(saved_metadata), ocp.tree.to_flat_dict(like)
  for path in sorted(set(saved) | set(wanted)):
    name = "/".join(path)
    if path not in saved or path not in wanted:
      raise ValueError(f"tensor {name!r} is only in the {'checkpoint' if path in saved else 'state of this config'}")
    saved_shape, wanted_shape = np.shape(saved[path]), np.shape(wanted[path])
    if saved_shape != wanted_shape:
      raise ValueError(f"tensor {name!r} has shape {saved_shape} in the checkpoint, {wanted_shape} in this config")


def restore_latest_item(manager: ocp.CheckpointManager, item: str, like):
  """Item `item` ('state' or 'model') of the latest checkpoint, typed and sharded like `like`; None
  when there is none. The saved tree is checked against `like` from its metadata first: orbax's
  restore, failing partway, leaves TensorStore reads pending on a closed event loop ('Exception
  ignored' dumps at exit)."""
  step = manager.latest_step()
  if step is None:
    return None
  try:
    abstract = abstract_like(like)
    check_fits(manager.item_metadata(step)[item], abstract)
    restored = manager.restore(step, args=ocp.args.Composite(**{item: ocp.args.StandardRestore(abstract)}))
  except Exception as e:  # orbax raises many types for unreadable or mismatched checkpoints
    raise UnreadableCheckpointError(
      f"checkpoint {os.path.join(str(manager.directory), str(step))} is damaged or was not written by this "
      f"config ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); valid: move that step folder "
      "away to resume from an earlier one, or use a new workdir"
    ) from e
  return restored[item]


def restore_model(directory: str, sharding=None) -> tuple[dict, int]:
  """({'params', 'batch_stats'}, step) from the latest checkpoint under `directory`, shaped as
  saved (its head may differ from the model that loads it); an `UnreadableCheckpointError` naming the
  step folder if that checkpoint cannot be read."""
  manager = checkpoint_manager(directory, create=False)
  try:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(
        f"no ftjax checkpoint under {directory!r}: expected step folders written by "
        "experiments.finetune (DIR/checkpoints/<step>/model)"
      )
    try:
      restored = _restore_model_item(manager, step, sharding)
    except Exception as e:  # orbax and TensorStore raise many types for a damaged checkpoint
      detail = " ".join(str(e).split())
      detail = detail if len(detail) <= 120 else detail[:120] + "..."
      raise UnreadableCheckpointError(
        f"checkpoint {os.path.join(os.path.abspath(directory), str(step))} cannot be read ({type(e).__name__}: "
        f"{detail}); valid: a workdir whose latest checkpoint is intact (move a damaged step folder away to "
        "use an earlier one)"
      ) from e
  finally:
    manager.close()
  return restored, step


def _restore_model_item(manager: ocp.CheckpointManager, step: int, sharding) -> dict:
  """Item 'model' of checkpoint `step`, shaped as its metadata says, on the host."""
  metadata = manager.item_metadata(step)["model"]
  sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(
    lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
    metadata,
    is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"),
  )
  restored = manager.restore(step, args=ocp.args.Composite(model=ocp.args.StandardRestore(abstract)))
  return jax.device_get(restored["model"])
