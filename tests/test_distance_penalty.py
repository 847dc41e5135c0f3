"""docs/methods.md §2.3 penalties against numpy, and the added gradients against hand-derived gradients."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import parameterized

from ftjax.distance import penalty


def random_problem(seed: int):
  """(params, anchor, grads, weights): conv, dense and head kernels weighted, a bias not."""
  rng = np.random.default_rng(seed)
  tree = lambda: {
    "conv": {"kernel": rng.normal(size=(3, 3, 2, 4)).astype(np.float32), "bias": rng.normal(size=4).astype(np.float32)},
    "dense": {"kernel": rng.normal(size=(8, 5)).astype(np.float32)},
    "head": {"kernel": rng.normal(size=(5, 3)).astype(np.float32)},
  }
  weights = {"conv/kernel": 0.1, "dense/kernel": 0.3, "head/kernel": 2.0}
  return tree(), tree(), tree(), weights


def _leaf(tree, path):
  module, name = path.split("/")
  return np.asarray(tree[module][name], np.float64)


def penalty_by_numpy(params, anchor, weights, norm):
  total = 0.0
  for path, weight in weights.items():
    t = _leaf(params, path) - _leaf(anchor, path)
    total += weight * (np.sum(t**2) if norm == "frobenius" else np.abs(t.reshape(-1, t.shape[-1])).sum(0).max())
  return total


def penalty_gradient_by_hand(params, anchor, weights, norm):
  """d/dW of lambda * ||t||_F^2 is 2 lambda t; of lambda * max_j ||t[:, j]||_1 it is lambda sign(t) on
  the maximising column j*, zero elsewhere."""
  grads = jax.tree.map(lambda p: np.zeros(p.shape), params)
  for path, weight in weights.items():
    module, name = path.split("/")
    t = _leaf(params, path) - _leaf(anchor, path)
    if norm == "frobenius":
      grads[module][name] = 2 * weight * t
    else:
      columns = t.reshape(-1, t.shape[-1])
      mask = np.zeros_like(columns)
      mask[:, np.argmax(np.abs(columns).sum(0))] = 1
      grads[module][name] = (weight * np.sign(columns) * mask).reshape(t.shape)
  return grads


class PenaltyTest(chex.TestCase):
  @parameterized.product(norm=["frobenius", "mars"], seed=[0, 1, 2])
  def test_penalties_match_numpy(self, norm, seed):
    params, anchor, _, weights = random_problem(seed)
    np.testing.assert_allclose(
      penalty.layerwise_penalty(params, anchor, weights, norm),
      penalty_by_numpy(params, anchor, weights, norm),
      rtol=1e-5,
    )
    if norm == "frobenius":
      np.testing.assert_allclose(
        penalty.l2sp_penalty(params, anchor, weights), penalty_by_numpy(params, anchor, weights, norm), rtol=1e-5
      )

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(norm=["frobenius", "mars"], seed=[0, 1, 2])
  def test_added_gradient_is_the_penalty_gradient(self, norm, seed):
    params, anchor, grads, weights = random_problem(seed)
    tx = penalty.add_penalty_gradient(functools.partial(penalty.layerwise_penalty, weights=weights, norm=norm), anchor)
    updates, _ = self.variant(tx.update)(grads, tx.init(params), params)
    added = jax.tree.map(lambda u, g: np.asarray(u, np.float64) - g, updates, grads)
    chex.assert_trees_all_close(added, penalty_gradient_by_hand(params, anchor, weights, norm), atol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_plain_l2_is_l2sp_with_a_zero_anchor(self):
    params, _, grads, weights = random_problem(3)
    zero = jax.tree.map(np.zeros_like, params)
    tx = penalty.add_penalty_gradient(functools.partial(penalty.l2sp_penalty, weights=weights), zero)
    updates, _ = self.variant(tx.update)(grads, tx.init(params), params)
    expected = jax.tree.map(lambda g, p: g + 2 * weights["dense/kernel"] * p, grads["dense"], params["dense"])
    chex.assert_trees_all_close(updates["dense"], expected, rtol=1e-5)
    chex.assert_trees_all_equal(updates["conv"]["bias"], grads["conv"]["bias"])


def test_chained_with_sgd_converges_to_the_penalised_minimum():
  """min ||W - c||^2 + lambda ||W - a||^2 is W = (c + lambda a) / (1 + lambda)."""
  rng = np.random.default_rng(4)
  anchor = {"dense": {"kernel": rng.normal(size=(4, 3)).astype(np.float32)}}
  target = {"dense": {"kernel": rng.normal(size=(4, 3)).astype(np.float32)}}
  lam = 0.5
  loss = lambda p: jnp.sum((p["dense"]["kernel"] - target["dense"]["kernel"]) ** 2)
  tx = optax.chain(
    penalty.add_penalty_gradient(functools.partial(penalty.l2sp_penalty, weights={"dense/kernel": lam}), anchor),
    optax.sgd(0.1, momentum=0.5),
  )

  @jax.jit
  def run(params):
    def step(_, carry):
      params, state = carry
      updates, state = tx.update(jax.grad(loss)(params), state, params)
      return optax.apply_updates(params, updates), state

    return jax.lax.fori_loop(0, 200, step, (params, tx.init(params)))[0]

  expected = (target["dense"]["kernel"] + lam * anchor["dense"]["kernel"]) / (1 + lam)
  np.testing.assert_allclose(run(target)["dense"]["kernel"], expected, atol=1e-5)


def test_chained_with_adam_is_adam_on_the_penalised_gradient():
  params, anchor, grads, weights = random_problem(5)
  penalty_fn = functools.partial(penalty.layerwise_penalty, weights=weights, norm="mars")
  chained = optax.chain(penalty.add_penalty_gradient(penalty_fn, anchor), optax.adam(0.01))
  plain = optax.adam(0.01)

  @jax.jit
  def steps(params):
    chained_state, plain_state, reference = chained.init(params), plain.init(params), params
    for _ in range(3):
      updates, chained_state = chained.update(grads, chained_state, params)
      params = optax.apply_updates(params, updates)
      total = jax.tree.map(jnp.add, grads, jax.grad(penalty_fn)(reference, anchor))
      updates, plain_state = plain.update(total, plain_state, reference)
      reference = optax.apply_updates(reference, updates)
    return params, reference

  chex.assert_trees_all_close(*steps(params), atol=1e-6)
