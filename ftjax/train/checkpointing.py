"""Orbax checkpoints of the `TrainState`, restored with an abstract target so its types survive.

Each checkpoint holds two items: 'state' (the whole TrainState: the resume point) and 'model'
({'params', 'batch_stats'}: what another run loads as its pretrained source); `ftjax.checkpoint_io`
opens and reads them without the TrainState.
"""

import jax
import orbax.checkpoint as ocp

from ftjax.checkpoint_io import UnreadableCheckpointError, checkpoint_manager, restore_latest_item, restore_model
from ftjax.train.state import TrainState

__all__ = ["UnreadableCheckpointError", "checkpoint_manager", "restore_latest", "restore_model", "save"]


def save(manager: ocp.CheckpointManager, state: TrainState, *, force: bool = False) -> bool:
  """Saves `state` at its own step (asynchronously); returns whether a save started."""
  step = int(jax.device_get(state.step))
  model = {"params": state.params, "batch_stats": state.batch_stats}
  return manager.save(
    step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), model=ocp.args.StandardSave(model)), force=force
  )


def restore_latest(manager: ocp.CheckpointManager, like: TrainState) -> TrainState | None:
  """The latest saved state, typed and sharded like `like`; None when there is none (a one-line
  `UnreadableCheckpointError` when it does not fit `like`)."""
  return restore_latest_item(manager, "state", like)
