"""HVPs, traces, eigenvalues and Lanczos quadrature (docs/methods.md §4.1–4.3) against the full Hessian of
tiny models formed by `jax.hessian`."""

import io

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tqdm
from jax.flatten_util import ravel_pytree

from ftjax import hessian, parallel, tree_paths
from ftjax.hessian import products


class MLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(3, name="out")(jnp.tanh(nn.Dense(5, name="hidden")(x)))


class TinyCNN(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = jnp.tanh(nn.Conv(2, (3, 3), name="conv")(x))
    return nn.Dense(3, name="head")(jnp.mean(x, axis=(1, 2)))


def cross_entropy(model, params, batch):
  logits = model.apply({"params": params}, batch["x"])
  return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()


def tiny_problem(model, input_shape, seed=0, batch_size=32):
  """(loss_fn as a Partial over the batch, params, batch, the batch loss as a function of (params, batch))."""
  rng = np.random.default_rng(seed)
  batch = {
    "x": rng.normal(size=(batch_size, *input_shape)).astype(np.float32),
    "y": rng.integers(0, 3, batch_size).astype(np.int32),
  }
  params = model.init(jax.random.key(seed), batch["x"][:1])["params"]
  loss = lambda p, batch: cross_entropy(model, p, batch)
  return jax.tree_util.Partial(loss, batch=batch), params, batch, loss


def full_hessian(loss_fn, params) -> np.ndarray:
  flat, unravel = ravel_pytree(params)
  return np.asarray(jax.jit(jax.hessian(lambda f: loss_fn(unravel(f))))(flat), np.float64)


def leaf_slices(params) -> dict[str, slice]:
  """{leaf name: its slice of the flat (ravel_pytree) vector}."""
  bounds = np.cumsum([0] + [leaf.size for leaf in jax.tree.leaves(params)])
  return {name: slice(a, b) for name, a, b in zip(tree_paths.named_leaves(params), bounds[:-1], bounds[1:])}


def by_magnitude(values: np.ndarray) -> np.ndarray:
  return values[np.argsort(-np.abs(values))]


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def problem(request):
  model, shape = {"mlp": (MLP(), (4,)), "cnn": (TinyCNN(), (5, 5, 2))}[request.param]
  loss_fn, params, _, _ = tiny_problem(model, shape)
  return loss_fn, params, full_hessian(loss_fn, params)


def test_hvp_is_hessian_times_vector(problem):
  loss_fn, params, h = problem
  flat, unravel = ravel_pytree(params)
  v = np.random.default_rng(1).normal(size=flat.size).astype(np.float32)
  got = ravel_pytree(hessian.hvp(loss_fn, params, unravel(v)))[0]
  np.testing.assert_allclose(got, h @ v, rtol=1e-4, atol=1e-5 * np.abs(h @ v).max())
  batched = products.flat_products(loss_fn, params, jnp.stack([v, 2 * v]))
  np.testing.assert_allclose(batched, np.stack([h @ v, 2 * h @ v]), rtol=1e-4, atol=2e-5 * np.abs(h @ v).max())


def test_layer_product_is_the_diagonal_block(problem):
  loss_fn, params, h = problem
  for name, part in leaf_slices(params).items():
    matvec, dim = hessian.hessian_operator(loss_fn, params, name)
    v = np.random.default_rng(2).normal(size=dim).astype(np.float32)
    expected = h[part, part] @ v
    np.testing.assert_allclose(matvec(jnp.asarray(v)), expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_linearized_products_are_the_hvps_to_float32_rounding(problem):
  # jax.linearize evaluates the primal part of jvp-over-grad once; XLA may fuse the remaining tangent part
  # differently, so the products agree to rounding, not always bit for bit.
  loss_fn, params, _ = problem
  rows = lambda like: jax.random.normal(jax.random.key(11), (3, ravel_pytree(like)[0].size))
  for layer in [None, *leaf_slices(params)]:
    like = params if layer is None else tree_paths.named_leaves(params)[layer]
    vectors = rows(like)
    expected = products.flat_products(loss_fn, params, vectors, layer)
    linear_map = products.linearized_hessian(loss_fn, params, layer)
    tolerance = dict(rtol=1e-6, atol=1e-6 * float(np.abs(expected).max()))
    np.testing.assert_allclose(products.linear_products(linear_map, like, vectors), expected, **tolerance)
    matvec, _ = hessian.hessian_operator([loss_fn, loss_fn], params, layer)
    mean = products.mean_products([loss_fn] * 2, params, vectors[:1], layer)[0]
    np.testing.assert_allclose(matvec(vectors[0]), mean, **tolerance)
    whole, _ = hessian.hessian_operator([loss_fn, loss_fn], params, layer, linearize=False)
    np.testing.assert_array_equal(whole(vectors[0]), mean)  # without linearizing: the HVPs themselves


def test_power_iteration_from_a_host_drawn_start_compiles_one_product():
  # Params replicated on a one-device mesh, as experiments.measure holds them; the start vector is drawn
  # uncommitted, the later ones come out of the product: one compiled program serves both.
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  loss_fn, params, _, _ = tiny_problem(MLP(), (13,), batch_size=7)  # shapes no other test compiles
  params = jax.device_put(params, replicated)
  before = products.linear_products._cache_size()
  found = hessian.top_eigenvalues(
    loss_fn, params, jax.random.key(12), 1, layer="hidden/kernel", max_iterations=6, tol=0
  )
  assert found.num_iterations[0] == 6
  assert products.linear_products._cache_size() - before == 1


def within(estimate: hessian.TraceEstimate, exact: float, sigmas: float = 3.0) -> bool:
  return abs(estimate.estimate - exact) <= sigmas * estimate.stderr + 1e-5 * abs(exact)


@pytest.mark.parametrize("method,num_probes", [("hutchinson", 400), ("hutchpp", 60)])
def test_traces_match_exact_block_traces(problem, method, num_probes):
  loss_fn, params, h = problem
  every_leaf = hessian.layer_traces(
    loss_fn, params, jax.random.key(3), num_probes, is_layer=lambda n, leaf: True, method=method, probes_per_batch=8
  )
  for name, part in leaf_slices(params).items():
    assert every_leaf[name].num_probes == num_probes
    assert within(every_leaf[name], np.trace(h[part, part])), (name, every_leaf[name], np.trace(h[part, part]))
  kernels = hessian.layer_traces(loss_fn, params, jax.random.key(3), num_probes, method=method, probes_per_batch=8)
  assert set(kernels) == {name for name in leaf_slices(params) if name.endswith("kernel")}
  network = hessian.network_trace(loss_fn, params, jax.random.key(4), num_probes, method=method, probes_per_batch=8)
  assert within(network, np.trace(h))


def test_hutchpp_captures_a_low_rank_hessian_exactly():
  # A sketch of 30 columns spans all 28 parameters: the low-rank part is the whole trace, the residual zero.
  loss_fn, params, _, _ = tiny_problem(MLP(), (1,))
  h = full_hessian(loss_fn, params)
  assert len(h) == 28
  traces = hessian.layer_traces(
    loss_fn, params, jax.random.key(0), 90, is_layer=lambda n, leaf: True, method="hutchpp", probes_per_batch=30
  )
  for name, part in leaf_slices(params).items():
    np.testing.assert_allclose(traces[name].estimate, np.trace(h[part, part]), rtol=1e-3, atol=1e-6)
    assert traces[name].stderr < 1e-5


def test_one_hvp_per_probe_serves_every_layer(problem, monkeypatch):
  loss_fn, params, _ = problem
  rows = []
  counted = products.linear_products
  monkeypatch.setattr(
    products, "linear_products", lambda *args, **kw: rows.append(len(args[2])) or counted(*args, **kw)
  )
  blocks = {**hessian.layer_blocks(params, lambda n, leaf: True), **hessian.network_block(params)}
  traces = hessian.block_traces(loss_fn, params, jax.random.key(5), 12, blocks=blocks, probes_per_batch=4)
  assert rows == [4, 4, 4]
  # The same probes give every block: the network sample is the sum of the leaves' samples.
  np.testing.assert_allclose(
    sum(traces[name].estimate for name in leaf_slices(params)), traces[hessian.NETWORK].estimate, rtol=1e-5
  )


def test_relative_tolerance_stops_the_probes(problem):
  loss_fn, params, _ = problem
  loose = hessian.network_trace(loss_fn, params, jax.random.key(6), 4, rtol=10.0, max_probes=40)
  tight = hessian.network_trace(loss_fn, params, jax.random.key(6), 4, rtol=1e-6, max_probes=40)
  assert loose.num_probes == 4 and tight.num_probes == 40
  moderate = hessian.network_trace(loss_fn, params, jax.random.key(6), 4, rtol=0.05, max_probes=400)
  assert moderate.num_probes == 400 or moderate.stderr <= 0.05 * abs(moderate.estimate)


class RecordingProgress:
  """A `progress` wrapper that passes every item through and records it."""

  def __init__(self):
    self.items = []

  def __call__(self, iterable):
    for item in iterable:
      self.items.append(item)
      yield item


@pytest.mark.parametrize(
  "options,calls",
  [
    (dict(method="hutchinson", probes_per_batch=4), 3),
    (dict(method="hutchpp", probes_per_batch=2), 6),  # 4 + 4 + 4 HVPs
    (dict(rtol=10.0, max_probes=40), 12),  # converged at num_probes
    (dict(rtol=1e-6, max_probes=40), 40),
  ],
)
def test_progress_sees_each_hvp_call_and_changes_no_number(problem, monkeypatch, options, calls):
  loss_fn, params, _ = problem
  blocks = {**hessian.layer_blocks(params), **hessian.network_block(params)}
  quiet = hessian.block_traces(loss_fn, params, jax.random.key(9), 12, blocks=blocks, **options)
  counted, made = products.linear_products, []
  monkeypatch.setattr(products, "linear_products", lambda *args, **kw: made.append(1) or counted(*args, **kw))
  progress = RecordingProgress()
  shown = hessian.block_traces(loss_fn, params, jax.random.key(9), 12, blocks=blocks, progress=progress, **options)
  assert shown == quiet
  assert len(progress.items) == len(made) == calls


def test_a_tqdm_bar_over_hutchpp_ends_full():
  loss_fn, params, _, _ = tiny_problem(MLP(), (4,))
  out = io.StringIO()
  progress = lambda calls: tqdm.tqdm(calls, file=out, mininterval=0)
  hessian.network_trace(loss_fn, params, jax.random.key(0), 14, method="hutchpp", probes_per_batch=4, progress=progress)
  final = out.getvalue().split("\r")[-1]  # 4 sketch + 4 basis + 6 probe HVPs, 4 per call: 1 + 1 + 2 calls
  assert "100%" in final and " 4/4 " in final, out.getvalue()


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_eigenvalues_match_eigvalsh(problem, k):
  loss_fn, params, h = problem
  found = hessian.top_eigenvalues(loss_fn, params, jax.random.key(7), k, max_iterations=3000, tol=1e-7)
  np.testing.assert_allclose(found.eigenvalues, by_magnitude(np.linalg.eigvalsh(h))[:k], rtol=2e-3)
  per_layer = hessian.layer_top_eigenvalues(loss_fn, params, jax.random.key(8), k, max_iterations=3000, tol=1e-7)
  for name, part in leaf_slices(params).items():
    if name.endswith("kernel"):
      block = by_magnitude(np.linalg.eigvalsh(h[part, part]))[:k]
      np.testing.assert_allclose(per_layer[name].eigenvalues, block, rtol=2e-3, atol=1e-6)
  assert set(per_layer) == {name for name in leaf_slices(params) if name.endswith("kernel")}


def test_power_iteration_on_a_matrix_reports_iterations():
  rng = np.random.default_rng(0)
  basis = np.linalg.qr(rng.normal(size=(6, 6)))[0]
  a = jnp.asarray((basis * np.array([5.0, -3.0, 1.0, 0.5, 0.1, 0.0])) @ basis.T, jnp.float32)
  found = hessian.power_iteration(lambda v: a @ v, jax.random.normal(jax.random.key(0), (2, 6)), 500, 1e-7)
  np.testing.assert_allclose(found.eigenvalues, [5.0, -3.0], rtol=1e-4)
  assert found.converged.all() and (found.num_iterations < 500).all()
  capped = hessian.power_iteration(lambda v: a @ v, jax.random.normal(jax.random.key(0), (1, 6)), 2, 1e-9)
  assert capped.num_iterations[0] == 2 and not capped.converged[0]


def test_lanczos_quadrature_is_exact_on_the_krylov_space():
  rng = np.random.default_rng(1)
  basis = np.linalg.qr(rng.normal(size=(8, 8)))[0]
  values = np.array([4.0, 2.0, 1.0, -1.0, -2.5, 0.0, 0.0, 0.0])  # rank 5
  a = (basis * values) @ basis.T
  v = rng.normal(size=8)
  positive = v @ (basis * np.maximum(values, 0)) @ basis.T @ v
  matvec = lambda x: jnp.asarray(a, jnp.float32) @ x
  got = hessian.quadratic_form(matvec, jnp.asarray(v, jnp.float32), 8, hessian.positive_part)
  np.testing.assert_allclose(got, positive, rtol=1e-4)
  alphas, betas = hessian.lanczos(matvec, jnp.asarray(v, jnp.float32), 8)
  assert len(alphas) == 6 and len(betas) == 5  # breakdown: 5 distinct eigenvalues + the null space
  np.testing.assert_allclose(
    hessian.quadratic_form(matvec, jnp.asarray(v, jnp.float32), 3, lambda x: x), v @ a @ v, rtol=1e-4
  )  # f(x) = x: exact from one node on


def test_eight_devices_give_the_hvp_of_one():
  assert jax.device_count() == 8
  _, params, batch, loss = tiny_problem(TinyCNN(), (5, 5, 2), batch_size=64)
  tangent = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size, dtype=p.dtype)).reshape(p.shape), params)
  results = []
  for mesh in (parallel.data_mesh(jax.devices()[:1]), parallel.data_mesh()):
    loss_fn = jax.tree_util.Partial(loss, batch=parallel.shard_batch(batch, mesh))
    out = jax.jit(hessian.hvp)(loss_fn, parallel.replicate(params, mesh), parallel.replicate(tangent, mesh))
    assert all(leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(out))
    results.append(jax.device_get(out))
  assert len(loss_fn.keywords["batch"]["x"].sharding.device_set) == 8
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), *results)
