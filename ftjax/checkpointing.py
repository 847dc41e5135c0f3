"""Orbax checkpoints of the `TrainState`, restored with an abstract target so its types survive.

Each checkpoint holds two items: 'state' (the whole TrainState: the resume point) and 'model'
({'params', 'batch_stats'}: what another run loads as its pretrained source).
"""

import os

import jax
import orbax.checkpoint as ocp

from ftjax.config_validation import ConfigError
from ftjax.train.state import TrainState


ITEMS = ("state", "model")


class UnreadableCheckpointError(ConfigError):
  """A checkpoint that cannot be restored into the run's state: damaged, or from another config."""


def checkpoint_manager(directory: str, max_to_keep: int = 2, create: bool = True) -> ocp.CheckpointManager:
  """A manager over `directory` (created if asked) with items 'state' and 'model', whose handlers
  are known up front so that a fresh process can read the items' metadata."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create)
  handlers = {item: ocp.StandardCheckpointHandler() for item in ITEMS}
  return ocp.CheckpointManager(os.path.abspath(directory), options=options, item_handlers=handlers)


def save(manager: ocp.CheckpointManager, state: TrainState, *, force: bool = False) -> bool:
  """Saves `state` at its own step (asynchronously); returns whether a save started."""
  step = int(jax.device_get(state.step))
  model = {"params": state.params, "batch_stats": state.batch_stats}
  return manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                   model=ocp.args.StandardSave(model)), force=force)


def abstract_like(tree):
  """ShapeDtypeStructs (with shardings) of every array leaf of `tree`."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def restore_latest(manager: ocp.CheckpointManager, like: TrainState) -> TrainState | None:
  """The latest saved state, typed and sharded like `like`; None when there is none."""
  step = manager.latest_step()
  if step is None:
    return None
  try:
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_like(like))))
  except Exception as e:  # orbax raises many types for unreadable or mismatched checkpoints
    raise UnreadableCheckpointError(
        f"checkpoint {os.path.join(str(manager.directory), str(step))} is damaged or was not written by this "
        f"config ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); valid: move that step folder "
        "away to resume from an earlier one, or use a new workdir") from e
  return restored["state"]


def restore_model(directory: str, sharding=None) -> tuple[dict, int]:
  """({'params', 'batch_stats'}, step) from the latest checkpoint under `directory`, shaped as
  saved (its head may differ from the model that loads it)."""
  manager = checkpoint_manager(directory, create=False)
  step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"no ftjax checkpoint under {directory!r}: expected step folders written by "
                            "experiments.finetune (DIR/checkpoints/<step>/model)")
  metadata = manager.item_metadata(step)["model"]
  sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding), metadata,
                          is_leaf=lambda m: hasattr(m, "shape") and hasattr(m, "dtype"))
  restored = manager.restore(step, args=ocp.args.Composite(model=ocp.args.StandardRestore(abstract)))
  manager.close()
  return jax.device_get(restored["model"]), step
