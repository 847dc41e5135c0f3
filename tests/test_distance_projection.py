"""docs/methods.md §2.2 projections against closed forms, written-out loops and nearest-point checks."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized

from ftjax.distance import norms, projection

SHAPES = {"conv/kernel": (3, 3, 4, 6), "dense/kernel": (12, 5), "head/kernel": (5, 3)}
NORM_NP = {
  "frobenius": lambda t: np.sqrt(np.sum(t.astype(np.float64) ** 2)),
  "mars": lambda t: np.abs(t.reshape(-1, t.shape[-1]).astype(np.float64)).sum(0).max(),
}


def _nest(flat: dict) -> dict:
  tree = {}
  for path, leaf in flat.items():
    module, name = path.split("/")
    tree.setdefault(module, {})[name] = leaf
  return tree


def random_problem(seed: int, norm: str):
  """(anchor, params, updates, radii, inside): conv and dense kernels plus an unconstrained bias; each
  constrained tensor's new distance is inside (radius 1.5x) or outside (0.3x) its ball, alternating
  with the seed."""
  rng = np.random.default_rng(seed)
  flat = lambda scale: {
    **{p: (scale * rng.normal(size=s)).astype(np.float32) for p, s in SHAPES.items()},
    "conv/bias": (scale * rng.normal(size=6)).astype(np.float32),
  }
  anchor, params, updates = flat(1.0), flat(1.0), flat(0.5)
  inside, radii = {}, {}
  for i, path in enumerate(SHAPES):
    inside[path] = (seed + i) % 2 == 0
    radii[path] = float((1.5 if inside[path] else 0.3) * NORM_NP[norm](params[path] + updates[path] - anchor[path]))
  return _nest(anchor), _nest(params), _nest(updates), radii, inside


def _leaf(tree, path):
  module, name = path.split("/")
  return np.asarray(tree[module][name])


def mars_rescale_by_loops(t: np.ndarray, radius: float) -> np.ndarray:
  """docs/methods.md §2.2: for each output unit j, every entry t[..., j] times min(1, D / sum |t[..., j]|)."""
  out = t.astype(np.float64)
  for j in range(t.shape[-1]):
    l1 = sum(abs(x) for x in np.ravel(out[..., j]))
    out[..., j] *= min(1.0, radius / l1)
  return out


def l1_ball_by_sorting(v: np.ndarray, radius: float) -> np.ndarray:
  """Euclidean projection onto {||x||_1 <= radius} by sorting (Duchi et al. 2008)."""
  if np.abs(v).sum() <= radius:
    return v
  u = np.sort(np.abs(v))[::-1]
  css = np.cumsum(u)
  rho = np.nonzero(u - (css - radius) / np.arange(1, len(u) + 1) > 0)[0][-1]
  theta = (css[rho] - radius) / (rho + 1)
  return np.sign(v) * np.maximum(np.abs(v) - theta, 0)


class DistanceProjectionTest(chex.TestCase):
  def _apply(self, norm, seed, mars_mode="rescale"):
    anchor, params, updates, radii, inside = random_problem(seed, norm)
    tx = projection.distance_projection(anchor, radii, norm, mars_mode)
    new_updates, _ = self.variant(tx.update)(updates, tx.init(params), params)
    return anchor, params, updates, radii, inside, new_updates

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(norm=["frobenius", "mars"], seed=[0, 1, 2])
  def test_constrained_tensors_end_in_their_ball(self, norm, seed):
    anchor, params, updates, radii, inside, new_updates = self._apply(norm, seed)
    new_params = optax.apply_updates(params, new_updates)
    for path, radius in radii.items():
      distance = NORM_NP[norm](_leaf(new_params, path) - _leaf(anchor, path))
      assert distance <= radius * (1 + 1e-5), (path, distance, radius)
      if inside[path]:
        np.testing.assert_array_equal(_leaf(new_updates, path), _leaf(updates, path))
    np.testing.assert_array_equal(new_updates["conv"]["bias"], updates["conv"]["bias"])

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0, 1, 2)
  def test_frobenius_matches_closed_form(self, seed):
    anchor, params, updates, radii, inside, new_updates = self._apply("frobenius", seed)
    new_params = optax.apply_updates(params, new_updates)
    for path, radius in radii.items():
      t = (_leaf(params, path) + _leaf(updates, path)).astype(np.float64) - _leaf(anchor, path)
      expected = _leaf(anchor, path) + t * min(1.0, radius / np.linalg.norm(t.ravel()))
      np.testing.assert_allclose(_leaf(new_params, path), expected, rtol=1e-5, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0, 1, 2)
  def test_mars_rescale_matches_loops(self, seed):
    anchor, params, updates, radii, inside, new_updates = self._apply("mars", seed)
    new_params = optax.apply_updates(params, new_updates)
    for path, radius in radii.items():
      t = (_leaf(params, path) + _leaf(updates, path)).astype(np.float64) - _leaf(anchor, path)
      expected = _leaf(anchor, path) + mars_rescale_by_loops(t, radius)
      np.testing.assert_allclose(_leaf(new_params, path), expected, rtol=1e-5, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0, 1, 2)
  def test_exact_mars_is_feasible_sorted_projection_and_no_farther_than_rescaling(self, seed):
    anchor, params, updates, radii, inside, exact = self._apply("mars", seed, "exact")
    for path, radius in radii.items():
      t = _leaf(params, path) + _leaf(updates, path) - _leaf(anchor, path)
      projected = t + _leaf(exact, path) - _leaf(updates, path)
      assert np.abs(norms.as_matrix(projected)).sum(0).max() <= radius * (1 + 1e-5)
      columns = norms.as_matrix(t.astype(np.float64))
      by_sorting = np.stack([l1_ball_by_sorting(c, radius) for c in columns.T], axis=1).reshape(t.shape)
      np.testing.assert_allclose(projected, by_sorting, atol=1e-5)
      rescaled = mars_rescale_by_loops(t, radius)
      assert np.linalg.norm(projected - t) <= np.linalg.norm(rescaled - t) + 1e-6
      if inside[path]:
        np.testing.assert_array_equal(_leaf(exact, path), _leaf(updates, path))

  @chex.variants(with_jit=True, without_jit=True)
  def test_zero_difference_and_zero_radius_give_no_nan(self):
    t = jnp.zeros((3, 3, 2, 4))
    fns = [
      projection.project_to_frobenius_ball,
      lambda x, r: projection.project_to_mars_ball(x, r, "rescale"),
      lambda x, r: projection.project_to_mars_ball(x, r, "exact"),
    ]
    for fn in fns:
      for radius in (0.0, 1.0):
        value, grad = self.variant(jax.value_and_grad(lambda x: jnp.sum(fn(x, radius) ** 2)))(t)  # noqa: B023
        chex.assert_trees_all_equal(value, 0.0)
        chex.assert_tree_all_finite(grad)
      frozen = self.variant(fn)(jnp.ones_like(t), 0.0)
      chex.assert_trees_all_equal(frozen, jnp.zeros_like(t))


def test_frobenius_projection_is_the_nearest_point_of_the_ball():
  rng = np.random.default_rng(0)
  for _ in range(5):
    t = rng.normal(size=(4, 6)).astype(np.float32)
    radius = 0.4 * np.linalg.norm(t)
    projected = np.asarray(projection.project_to_frobenius_ball(jnp.asarray(t), radius), np.float64)
    interior = rng.normal(size=(200, 4, 6))
    interior *= radius * rng.uniform(size=(200, 1, 1)) / np.linalg.norm(interior, axis=(1, 2), keepdims=True)
    boundary = projected + 0.05 * radius * rng.normal(size=(200, 4, 6))
    boundary *= radius / np.linalg.norm(boundary, axis=(1, 2), keepdims=True)
    points = np.concatenate([interior, boundary])
    assert np.linalg.norm(projected - t) <= np.linalg.norm(points - t, axis=(1, 2)).min() * (1 + 1e-6)


def test_unknown_paths_and_norms_are_errors():
  anchor = {"dense": {"kernel": np.zeros((2, 2))}}
  with np.testing.assert_raises_regex(ValueError, "dens/kernel"):
    projection.distance_projection(anchor, {"dens/kernel": 1.0})
  with np.testing.assert_raises_regex(ValueError, "norm='l1'"):
    projection.distance_projection(anchor, {"dense/kernel": 1.0}, "l1")
  with np.testing.assert_raises_regex(ValueError, "mars_mode='sort'"):
    projection.distance_projection(anchor, {"dense/kernel": 1.0}, "mars", "sort")


def test_chained_with_sgd_and_adam_under_jit_hold_the_constraint_every_step():
  """A tiny quadratic pulls a dense and a conv kernel far from the anchor; the chain keeps them inside."""
  rng = np.random.default_rng(3)
  anchor = {
    "dense": {"kernel": rng.normal(size=(6, 4)).astype(np.float32)},
    "conv": {"kernel": rng.normal(size=(3, 3, 2, 4)).astype(np.float32)},
  }
  target = jax.tree.map(lambda a: a + 3.0, anchor)
  radii = {"dense/kernel": 0.5, "conv/kernel": 1.5}
  loss = lambda p: sum(jnp.sum((x - y) ** 2) for x, y in zip(jax.tree.leaves(p), jax.tree.leaves(target)))
  for norm in ("frobenius", "mars"):
    for optimizer in (optax.sgd(0.05, momentum=0.9), optax.adam(0.1)):
      tx = optax.chain(optimizer, projection.distance_projection(anchor, radii, norm))

      @jax.jit
      def step(params, state):
        updates, state = tx.update(jax.grad(loss)(params), state, params)  # noqa: B023
        return optax.apply_updates(params, updates), state

      params, state = anchor, tx.init(anchor)
      for _ in range(5):
        params, state = step(params, state)
        for path, radius in radii.items():
          assert NORM_NP[norm](_leaf(params, path) - _leaf(anchor, path)) <= radius * (1 + 1e-5)
      assert loss(params) < loss(anchor)


@pytest.mark.parametrize("mode", ["rescale", "exact"])
def test_mars_projection_of_an_attention_kernel_projects_its_matrix(mode):
  """A query kernel [D, heads, head_dim] with one input axis is projected as its (D, heads*head_dim) matrix."""
  t = np.random.default_rng(4).normal(size=(6, 2, 3)).astype(np.float32)
  radius = 0.5 * np.abs(t.reshape(6, 6)).sum(0).max()
  projected = np.asarray(projection.project_to_mars_ball(jnp.asarray(t), radius, mode, 1))
  of_matrix = np.asarray(projection.project_to_mars_ball(jnp.asarray(t.reshape(6, 6)), radius, mode))
  np.testing.assert_array_equal(projected, of_matrix.reshape(t.shape))
  columns = t.reshape(6, 6).astype(np.float64)
  if mode == "rescale":
    expected = mars_rescale_by_loops(columns, radius)
  else:
    expected = np.stack([l1_ball_by_sorting(c, radius) for c in columns.T], axis=1)
  np.testing.assert_allclose(projected.reshape(6, 6), expected, rtol=1e-5, atol=1e-6)


def test_distance_projection_follows_the_declared_fan_in():
  rng = np.random.default_rng(5)
  anchor = {"attn": {"query": {"kernel": rng.normal(size=(6, 2, 3)).astype(np.float32)}}}
  updates = {"attn": {"query": {"kernel": rng.normal(size=(6, 2, 3)).astype(np.float32)}}}
  radius = 0.5 * np.abs(updates["attn"]["query"]["kernel"].reshape(6, 6)).sum(0).max()
  tx = projection.distance_projection(anchor, {"attn/query/kernel": radius}, "mars", fan_in=((r"attn/.*", 1),))
  new_updates, _ = jax.jit(tx.update)(updates, tx.init(anchor), anchor)
  expected = mars_rescale_by_loops(updates["attn"]["query"]["kernel"].reshape(6, 6), radius)
  np.testing.assert_allclose(np.asarray(new_updates["attn"]["query"]["kernel"]).reshape(6, 6), expected, rtol=1e-5)
