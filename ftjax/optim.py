"""Optimisers and learning-rate schedules from the config, as optax transformations."""

import ml_collections
import optax

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")


def learning_rate_schedule(optim: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
  """Linear warm-up over `warmup_epochs`, then `lr_schedule`: constant, cosine decay to zero, or
  ×0.1 at each epoch of `lr_decay_epochs`."""
  total = max(1, optim.num_epochs * steps_per_epoch)
  warmup = int(optim.warmup_epochs * steps_per_epoch)
  lr = optim.learning_rate
  if optim.lr_schedule == "constant":
    main = optax.constant_schedule(lr)
  elif optim.lr_schedule == "cosine":
    main = optax.cosine_decay_schedule(lr, max(1, total - warmup))
  else:
    boundaries = {int(e * steps_per_epoch) - warmup: 0.1 for e in optim.lr_decay_epochs}
    main = optax.piecewise_constant_schedule(lr, boundaries)
  if warmup == 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def make_optimizer(optim: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
  """SGD with (Nesterov) momentum, Adam or AdamW; `weight_decay` is decoupled for adamw and
  added to the gradient (classic L2) for sgd and adam. With `grad_clip_norm` > 0 the gradient g is first
  scaled to g · min(1, grad_clip_norm / ||g||_2), ||g||_2 taken over all parameters together."""
  optimizer = _optimizer(optim, schedule)
  if optim.grad_clip_norm:
    return optax.chain(optax.clip_by_global_norm(optim.grad_clip_norm), optimizer)
  return optimizer


def _optimizer(optim: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
  """`make_optimizer` without gradient clipping."""
  if optim.name == "adamw":
    return optax.adamw(schedule, weight_decay=optim.weight_decay)
  base = (
    optax.sgd(schedule, momentum=optim.momentum or None, nesterov=optim.nesterov)
    if optim.name == "sgd"
    else optax.adam(schedule)
  )
  if optim.weight_decay:
    return optax.chain(optax.add_decayed_weights(optim.weight_decay), base)
  return base
