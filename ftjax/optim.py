"""Optimisers and learning-rate schedules from the config, as optax transformations."""

import ml_collections
import optax

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step")


def learning_rate_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int) -> optax.Schedule:
  """Linear warm-up over `warmup_epochs`, then `lr_schedule`: constant, cosine decay to zero, or
  ×0.1 at each epoch of `lr_decay_epochs`."""
  total = max(1, config.num_epochs * steps_per_epoch)
  warmup = int(config.warmup_epochs * steps_per_epoch)
  lr = config.learning_rate
  if config.lr_schedule == "constant":
    main = optax.constant_schedule(lr)
  elif config.lr_schedule == "cosine":
    main = optax.cosine_decay_schedule(lr, max(1, total - warmup))
  else:
    boundaries = {int(e * steps_per_epoch) - warmup: 0.1 for e in config.lr_decay_epochs}
    main = optax.piecewise_constant_schedule(lr, boundaries)
  if warmup == 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def make_optimizer(config: ml_collections.ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
  """SGD with (Nesterov) momentum, Adam or AdamW; `weight_decay` is decoupled for adamw and
  added to the gradient (classic L2) for sgd and adam."""
  if config.optimizer == "adamw":
    return optax.adamw(schedule, weight_decay=config.weight_decay)
  base = (
    optax.sgd(schedule, momentum=config.momentum or None, nesterov=config.nesterov)
    if config.optimizer == "sgd"
    else optax.adam(schedule)
  )
  if config.weight_decay:
    return optax.chain(optax.add_decayed_weights(config.weight_decay), base)
  return base
