"""docs/methods.md §2.5 BatchNorm constraint against the formula in numpy, on real and random trees."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

from ftjax.distance import batchnorm
from ftjax.models import create_model

EPS = 1e-6


def _abstract_variables(name: str, **kwargs):
  model = create_model(name, 10, **kwargs)
  return jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, 28, 28, 1)), train=False), jax.random.key(0))


def test_bn_scale_paths_of_real_models():
  variables = _abstract_variables("resnet18", width=4, stem="small")
  pairs = batchnorm.bn_scale_paths(variables["params"], variables["batch_stats"])
  assert len(pairs) == 20 and "stem/bn/scale" in pairs and "stage2/block0/downsample_bn/scale" in pairs
  assert all(var == scale[: -len("scale")] + "var" for scale, var in pairs.items())
  variables = _abstract_variables("small_cnn", width=4)
  assert batchnorm.bn_scale_paths(variables["params"], variables["batch_stats"]) == {
    "bn1/scale": "bn1/var",
    "bn2/scale": "bn2/var",
  }


def random_problem(seed: int):
  """(params, updates, batch_stats, anchor_params, anchor_stats) with two BN layers and a dense kernel."""
  rng = np.random.default_rng(seed)
  bn = lambda n, low, high: {
    "scale": rng.uniform(low, high, n).astype(np.float32),
    "bias": rng.normal(size=n).astype(np.float32),
  }
  var = lambda n: {"mean": rng.normal(size=n).astype(np.float32), "var": rng.uniform(0.1, 3, n).astype(np.float32)}
  tree = lambda low, high: {
    "bn1": bn(6, low, high),
    "block": {"bn2": bn(4, low, high)},
    "dense": {"kernel": rng.normal(size=(4, 3)).astype(np.float32)},
  }
  stats = lambda: {"bn1": var(6), "block": {"bn2": var(4)}}
  return tree(0.5, 2), tree(-0.3, 0.3), stats(), tree(0.5, 2), stats()


def clip_by_numpy(scale, running_var, anchor_scale, anchor_var, radius):
  """docs/methods.md §2.5 entry by entry."""
  out = np.empty(len(scale))
  for k in range(len(scale)):
    d = scale[k] / np.sqrt(running_var[k] + EPS)
    d_anchor = anchor_scale[k] / np.sqrt(anchor_var[k] + EPS)
    out[k] = (d_anchor + min(max(d - d_anchor, -radius), radius)) * np.sqrt(running_var[k] + EPS)
  return out


BN_LAYERS = {"bn1": lambda tree: tree["bn1"], "bn2": lambda tree: tree["block"]["bn2"]}


class BatchNormConstraintTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(seed=[0, 1, 2], radius=[0.05, 0.3])
  def test_matches_formula_and_bounds_the_effective_scale(self, seed, radius):
    params, updates, stats, anchor, anchor_stats = random_problem(seed)
    tx = batchnorm.batchnorm_constraint(anchor, anchor_stats, radius)
    new_updates, _ = self.variant(tx.update)(updates, tx.init(params), params, batch_stats=stats)
    new_params = optax.apply_updates(params, new_updates)
    for get in BN_LAYERS.values():
      scale = get(params)["scale"] + get(updates)["scale"]
      expected = clip_by_numpy(scale, get(stats)["var"], get(anchor)["scale"], get(anchor_stats)["var"], radius)
      np.testing.assert_allclose(get(new_params)["scale"], expected, rtol=1e-5, atol=1e-6)
      d = get(new_params)["scale"] / np.sqrt(get(stats)["var"] + EPS)
      d_anchor = get(anchor)["scale"] / np.sqrt(get(anchor_stats)["var"] + EPS)
      assert np.all(np.abs(d - d_anchor) <= radius * (1 + 1e-5) + 1e-6)
      inside = np.abs(scale / np.sqrt(get(stats)["var"] + EPS) - d_anchor) <= radius
      np.testing.assert_array_equal(np.asarray(get(new_updates)["scale"])[inside], get(updates)["scale"][inside])
      np.testing.assert_array_equal(get(new_updates)["bias"], get(updates)["bias"])
    np.testing.assert_array_equal(new_updates["dense"]["kernel"], updates["dense"]["kernel"])

  @chex.variants(with_jit=True, without_jit=True)
  def test_without_batch_stats_is_an_error(self):
    params, updates, _, anchor, anchor_stats = random_problem(0)
    tx = batchnorm.batchnorm_constraint(anchor, anchor_stats, 0.1)
    with pytest.raises(ValueError, match="batch_stats="):
      self.variant(tx.update)(updates, tx.init(params), params)


@pytest.mark.parametrize("optimizer", [optax.sgd(0.5, momentum=0.9), optax.adam(0.2)])
def test_chained_under_jit_holds_with_each_steps_running_variance(optimizer):
  """The step's new running variance (not the anchor's) defines d after every step."""
  params, _, _, anchor, anchor_stats = random_problem(3)
  radius = 0.1
  tx = optax.chain(optimizer, batchnorm.batchnorm_constraint(anchor, anchor_stats, radius))
  loss = lambda p: -jnp.sum(p["bn1"]["scale"]) + jnp.sum(p["block"]["bn2"]["scale"] ** 2)

  @jax.jit
  def step(params, state, stats):
    updates, state = tx.update(jax.grad(loss)(params), state, params, batch_stats=stats)
    return optax.apply_updates(params, updates), state

  state, rng = tx.init(params), np.random.default_rng(0)
  for _ in range(5):
    stats = jax.tree.map(lambda s: rng.uniform(0.1, 3, s.shape).astype(np.float32), anchor_stats)
    params, state = step(params, state, stats)
    for get in BN_LAYERS.values():
      d = np.asarray(get(params)["scale"]) / np.sqrt(get(stats)["var"] + EPS)
      d_anchor = get(anchor)["scale"] / np.sqrt(get(anchor_stats)["var"] + EPS)
      assert np.all(np.abs(d - d_anchor) <= radius * (1 + 1e-5) + 1e-6)
