"""The training state: everything a step changes, so one checkpoint of it is a resume point."""

from typing import Any

import flax
import jax
import optax


@flax.struct.dataclass
class TrainState:
  """step: int32 scalar; params / batch_stats: flax collections; opt_state: the optax state;
  method_state: a method's own pytree (e.g. per-example labels, docs/methods.md §3.2), `()` if none;
  rng: the run's base key — every draw folds in the step, never an iteration count."""

  step: jax.Array
  params: dict
  batch_stats: dict
  opt_state: optax.OptState
  method_state: Any
  rng: jax.Array


def create_train_state(
  variables: dict, tx: optax.GradientTransformation, method_state: Any, rng: jax.Array
) -> TrainState:
  """A step-0 state from model variables ({'params', 'batch_stats'})."""
  params = variables["params"]
  return TrainState(
    step=jax.numpy.zeros((), jax.numpy.int32),
    params=params,
    batch_stats=variables.get("batch_stats", {}),
    opt_state=tx.init(params),
    method_state=method_state,
    rng=rng,
  )
