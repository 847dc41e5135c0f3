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
    optimizer="sgd",
    momentum=0.9,
    nesterov=False,
    weight_decay=0.0,
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
  config = _config(optimizer=name, weight_decay=0.5, momentum=0.0)
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
