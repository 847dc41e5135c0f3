"""Orbax checkpoints of the `TrainState`, restored with an abstract target so its types survive.

Each checkpoint holds two items: 'state' (the whole TrainState: the resume point) and 'model'
({'params', 'batch_stats'}: what another run loads as its pretrained source).
"""

import os

import jax
import orbax.checkpoint as ocp

from ftjax.train.state import TrainState


def checkpoint_manager(directory: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
  """A manager over `directory` (created if needed) with items 'state' and 'model'."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
  return ocp.CheckpointManager(os.path.abspath(directory), options=options, item_names=("state", "model"))


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
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_like(like))))
  return restored["state"]


def restore_model(directory: str, sharding=None) -> tuple[dict, int]:
  """({'params', 'batch_stats'}, step) from the latest checkpoint under `directory`, shaped as
  saved (its head may differ from the model that loads it)."""
  manager = ocp.CheckpointManager(os.path.abspath(directory), item_names=("state", "model"))
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
