"""Pure train and eval steps over the global batch; `CompiledSteps` and `eval_steps` jit them for a mesh."""

import functools
from typing import Callable, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ftjax import parallel
from ftjax.methods.base import LossInputs, Method
from ftjax.train.state import TrainState


def train_step(
  state: TrainState,
  batch: dict,
  *,
  model: nn.Module,
  method: Method,
  tx: optax.GradientTransformation,
  steps_per_epoch: int,
  inputs: tuple[str, ...] = ("image",),
) -> tuple[TrainState, dict]:
  """One optimiser step of `method` on `batch` ({'label', 'index'} and the model's `inputs`, e.g. 'image'); returns
  the new state and scalar metrics. `tx.update` receives the new BatchNorm statistics as `batch_stats`."""
  epoch = state.step // steps_per_epoch
  dropout_rng = jax.random.fold_in(state.rng, state.step)

  def loss_fn(params):
    (logits, features), updates = model.apply(
      {"params": params, "batch_stats": state.batch_stats},
      *(batch[key] for key in inputs),
      train=True,
      return_features=True,
      mutable=["batch_stats"],
      rngs={"dropout": dropout_rng},
    )
    loss, aux = method.loss(LossInputs(logits, features, batch, state.method_state, epoch, params))
    return loss, (logits, updates.get("batch_stats", {}), aux)

  (loss, (logits, batch_stats, aux)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params, batch_stats=batch_stats)
  params = optax.apply_updates(state.params, updates)
  probs = jax.nn.softmax(jax.lax.stop_gradient(logits))
  method_state = method.update_state(state.method_state, probs, batch, epoch)
  metrics = {
    "loss": loss,
    "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
    "grad_norm": optax.tree.norm(grads),
    **aux,
  }
  new_state = state.replace(
    step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state, method_state=method_state
  )
  return new_state, metrics


def eval_losses(
  model: nn.Module, params: dict, batch_stats: dict, batch: dict, inputs: tuple[str, ...] = ("image",)
) -> tuple[jax.Array, jax.Array]:
  """(logits [batch, classes], per-example cross-entropy [batch]) of `batch` (the model's `inputs`) in eval mode."""
  logits = model.apply({"params": params, "batch_stats": batch_stats}, *(batch[key] for key in inputs), train=False)
  return logits, optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])


def masked_cross_entropy(
  model: nn.Module, params: dict, batch_stats: dict, batch: dict, inputs: tuple[str, ...] = ("image",)
) -> jax.Array:
  """Mean cross-entropy over the real examples of `batch` (mask 1) in eval mode: `eval_step`'s loss_sum / count."""
  _, losses = eval_losses(model, params, batch_stats, batch, inputs)
  return jnp.sum(losses * batch["mask"]) / jnp.sum(batch["mask"])


def eval_step(state: TrainState, batch: dict, *, model: nn.Module, inputs: tuple[str, ...] = ("image",)) -> dict:
  """Sums over the real examples of `batch` (padding has mask 0): loss_sum, correct, count, and
  the largest per-example loss."""
  logits, losses = eval_losses(model, state.params, state.batch_stats, batch, inputs)
  mask = batch["mask"]
  return {
    "loss_sum": jnp.sum(losses * mask),
    "correct": jnp.sum((jnp.argmax(logits, -1) == batch["label"]) * mask),
    "count": jnp.sum(mask),
    "max_loss": jnp.max(jnp.where(mask > 0, losses, -jnp.inf)),
  }


def predict_step(
  state: TrainState, batch: dict, *, model: nn.Module, inputs: tuple[str, ...] = ("image",)
) -> tuple[jax.Array, jax.Array]:
  """(softmax probabilities [batch, classes] in eval mode, the batch's mask [batch])."""
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  logits = model.apply(variables, *(batch[key] for key in inputs), train=False)
  return jax.nn.softmax(logits), batch["mask"]


class EvalSteps(NamedTuple):
  """The jitted eval and predict steps of one model (no method, no optimiser), state replicated."""

  eval: Callable
  predict: Callable


def eval_steps(mesh: jax.sharding.Mesh, model: nn.Module, inputs: tuple[str, ...] = ("image",)) -> EvalSteps:
  """`eval_step` and `predict_step` of `model` (taking the batch entries `inputs`) jitted for `mesh`, outputs
  replicated."""
  rep = parallel.replicated(mesh)
  return EvalSteps(
    jax.jit(functools.partial(eval_step, model=model, inputs=inputs), out_shardings=rep),
    jax.jit(functools.partial(predict_step, model=model, inputs=inputs), out_shardings=rep),
  )


class CompiledSteps:
  """The jitted steps for one mesh: state replicated, batches sharded over 'data'; outputs
  replicated, so every process can read them."""

  def __init__(
    self,
    mesh: jax.sharding.Mesh,
    *,
    model: nn.Module,
    method: Method,
    tx: optax.GradientTransformation,
    steps_per_epoch: int,
    donate: bool = True,
    inputs: tuple[str, ...] = ("image",),
  ):
    rep = parallel.replicated(mesh)
    step = functools.partial(
      train_step, model=model, method=method, tx=tx, steps_per_epoch=steps_per_epoch, inputs=inputs
    )
    self.train: Callable = jax.jit(step, out_shardings=(rep, rep), donate_argnums=(0,) if donate else ())
    self.eval, self.predict = eval_steps(mesh, model, inputs)
