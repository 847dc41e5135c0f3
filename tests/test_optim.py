"""Learning-rate schedules and optimisers from the config, against closed forms."""

import math

import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from ftjax import optim


def _config(**kw):
  base = dict(
    num_epochs=10,
    warmup_epochs=0.0,
    learning_rate=0.1,
    lr_schedule="constant",
    lr_decay_epochs=(),
    name="sgd",
    momentum=0.9,
    nesterov=False,
    weight_decay=0.0,
    grad_clip_norm=0.0,
  )
  base.update(kw)
  return ml_collections.ConfigDict(base)


def test_cosine_with_warmup_matches_closed_form():
  schedule = optim.learning_rate_schedule(_config(lr_schedule="cosine", warmup_epochs=1.0), steps_per_epoch=10)
  for step in (0, 5, 10, 40, 99):
    expected = 0.1 * step / 10 if step < 10 else 0.05 * (1 + math.cos(math.pi * (step - 10) / 90))
    np.testing.assert_allclose(schedule(step), expected, rtol=1e-5, atol=1e-8)


def test_step_schedule_divides_by_ten_at_each_epoch():
  schedule = optim.learning_rate_schedule(_config(lr_schedule="step", lr_decay_epochs=(3, 6)), steps_per_epoch=10)
  assert [round(float(schedule(s)), 6) for s in (0, 29, 30, 59, 60, 99)] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_weight_decay_is_added_to_the_gradient(name):
  config = _config(name=name, weight_decay=0.5, momentum=0.0)
  tx = optim.make_optimizer(config, optim.learning_rate_schedule(config, 1))
  params = {"w": jnp.array([1.0, -2.0])}
  grads = {"w": jnp.array([0.3, 0.1])}
  updates, _ = tx.update(grads, tx.init(params), params)
  reference = optax.sgd(0.1) if name == "sgd" else optax.adam(0.1)
  expected, _ = reference.update({"w": grads["w"] + 0.5 * params["w"]}, reference.init(params), params)
  np.testing.assert_allclose(updates["w"], expected["w"], rtol=1e-6)


def test_sgd_momentum_matches_heavy_ball_recursion():
  config = _config(momentum=0.9)
  tx = optim.make_optimizer(config, optim.learning_rate_schedule(config, 1))
  params = {"w": jnp.array(0.0)}
  state = tx.init(params)
  velocity = 0.0
  for g in (1.0, 2.0, -1.0):
    updates, state = tx.update({"w": jnp.array(g)}, state, params)
    velocity = 0.9 * velocity + g
    np.testing.assert_allclose(updates["w"], -0.1 * velocity, rtol=1e-6)


@pytest.mark.parametrize("clip_norm, weight_decay", [(1.0, 0.0), (100.0, 0.0), (1.0, 0.5), (0.0, 0.0)])
def test_gradient_is_clipped_to_its_global_norm_before_the_optimiser(clip_norm, weight_decay):
  # g · min(1, c / ||g||), the norm over both leaves; the weight decay is added to the clipped gradient.
  config = _config(momentum=0.0, grad_clip_norm=clip_norm, weight_decay=weight_decay)
  tx = optim.make_optimizer(config, optim.learning_rate_schedule(config, 1))
  params = {"a": jnp.array([1.0, -2.0]), "b": jnp.array(0.5)}
  grads = {"a": jnp.array([3.0, 0.0]), "b": jnp.array(-4.0)}  # ||g|| = 5
  updates, _ = tx.update(grads, tx.init(params), params)
  scale = min(1.0, clip_norm / 5.0) if clip_norm else 1.0
  for name in grads:
    expected = -0.1 * (scale * np.asarray(grads[name]) + weight_decay * np.asarray(params[name]))
    np.testing.assert_allclose(updates[name], expected, rtol=1e-6)
