"""Pure train and eval steps over the global batch; `compile_steps` jits them for a mesh."""

import functools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ftjax import parallel
from ftjax.methods.base import LossInputs, Method
from ftjax.train.state import TrainState


def train_step(state: TrainState, batch: dict, *, model: nn.Module, method: Method,
               tx: optax.GradientTransformation, steps_per_epoch: int) -> tuple[TrainState, dict]:
  """One optimiser step of `method` on `batch` ({'image', 'label', 'index'}); returns the new
  state and scalar metrics. `tx.update` receives the new BatchNorm statistics as `batch_stats`."""
  epoch = state.step // steps_per_epoch
  dropout_rng = jax.random.fold_in(state.rng, state.step)

  def loss_fn(params):
    (logits, features), updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats}, batch["image"], train=True,
        return_features=True, mutable=["batch_stats"], rngs={"dropout": dropout_rng})
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
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_state=opt_state, method_state=method_state)
  return new_state, metrics


def eval_step(state: TrainState, batch: dict, *, model: nn.Module) -> dict:
  """Sums over the real examples of `batch` (padding has mask 0): loss_sum, correct, count, and
  the largest per-example loss."""
  logits = model.apply({"params": state.params, "batch_stats": state.batch_stats}, batch["image"], train=False)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
  mask = batch["mask"]
  return {
      "loss_sum": jnp.sum(losses * mask),
      "correct": jnp.sum((jnp.argmax(logits, -1) == batch["label"]) * mask),
      "count": jnp.sum(mask),
      "max_loss": jnp.max(jnp.where(mask > 0, losses, -jnp.inf)),
  }


def predict_step(state: TrainState, batch: dict, *, model: nn.Module) -> tuple[jax.Array, jax.Array]:
  """(softmax probabilities [batch, classes] in eval mode, the batch's mask [batch])."""
  logits = model.apply({"params": state.params, "batch_stats": state.batch_stats}, batch["image"], train=False)
  return jax.nn.softmax(logits), batch["mask"]


class CompiledSteps:
  """The jitted steps for one mesh: state replicated, batches sharded over 'data'; outputs
  replicated, so every process can read them."""

  def __init__(self, mesh, *, model, method, tx, steps_per_epoch: int, donate: bool = True):
    rep = parallel.replicated(mesh)
    self.train: Callable = jax.jit(
        functools.partial(train_step, model=model, method=method, tx=tx, steps_per_epoch=steps_per_epoch),
        out_shardings=(rep, rep), donate_argnums=(0,) if donate else ())
    self.eval: Callable = jax.jit(functools.partial(eval_step, model=model), out_shardings=rep)
    self.predict: Callable = jax.jit(functools.partial(predict_step, model=model), out_shardings=rep)
