"""The Hessian eigenvalue density by stochastic Lanczos quadrature (docs/methods.md §4.6) against the full Hessian of
tiny models formed by `jax.hessian` and its numpy eigendecomposition, and the figure that shows it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
from matplotlib import image
from PIL import Image

from ftjax import hessian
from ftjax.hessian import density
from ftjax.runs import density_report
from tests.test_hessian import MLP, full_hessian, leaf_slices, tiny_problem

RUNS, STEPS, RUNS_PER_BATCH = 300, 20, 50  # the SLQ of the whole MLP: enough runs for its moments to within 4 stderr


@pytest.fixture(scope="module")
def mlp():
  loss_fn, params, batch, loss = tiny_problem(MLP(), (4,))
  return loss_fn, params, full_hessian(loss_fn, params), batch, loss


def matrix_product(a: np.ndarray):
  """v -> A v in float32, the map SLQ sees."""
  a = jnp.asarray(a, jnp.float32)
  return lambda v: a @ v


def probe_moments(a: np.ndarray, starts: np.ndarray, orders) -> np.ndarray:
  """[runs, K]: v^T A^k v / |v|^2 for each row v of `starts`, in float64."""
  unit = starts / np.linalg.norm(starts, axis=1, keepdims=True)
  return np.stack([np.einsum("rd,de,re->r", unit, np.linalg.matrix_power(a, k), unit) for k in orders], axis=1)


def scaled_moments(spectrum: density.SpectralQuadrature, orders, scale: float) -> np.ndarray:
  """[runs, K]: the quadrature moments of each run in units of scale^k."""
  return np.asarray(density.moments(spectrum.nodes, spectrum.weights, orders)) / scale ** np.array(orders)


def test_each_run_is_the_gauss_quadrature_of_its_probe(mlp):
  # m nodes integrate every power below 2m exactly; with m = n the nodes are the whole spectrum.
  _, _, h, _, _ = mlp
  n, scale = len(h), np.abs(np.linalg.eigvalsh(h)).max()
  starts = np.random.default_rng(0).choice([-1.0, 1.0], size=(3, n))
  for num_steps, orders in [(5, range(10)), (n, range(14))]:
    got = density.lanczos_quadrature(matrix_product(h), jnp.asarray(starts, jnp.float32), num_steps)
    assert got.nodes.shape == got.weights.shape == (3, num_steps)
    expected = probe_moments(h, starts, orders) / scale ** np.array(orders)
    np.testing.assert_allclose(scaled_moments(got, orders, scale), expected, atol=1e-4)
  np.testing.assert_allclose(got.nodes, np.tile(np.linalg.eigvalsh(h), (3, 1)), atol=1e-4 * scale)


def test_exhausted_krylov_spaces_restart_and_keep_the_quadrature():
  # 6 distinct eigenvalues among 10: the Krylov space of v ends after 6 steps; the restarts find the repeats.
  rng = np.random.default_rng(2)
  basis = np.linalg.qr(rng.normal(size=(10, 10)))[0]
  values = np.array([4.0, 2.0, 2.0, 1.0, 0.0, 0.0, 0.0, -1.0, -1.0, -3.0])
  a = (basis * values) @ basis.T
  starts = rng.normal(size=(2, 10))
  got = density.lanczos_quadrature(matrix_product(a), jnp.asarray(starts, jnp.float32), 10)
  np.testing.assert_allclose(got.nodes, np.tile(np.sort(values), (2, 1)), atol=1e-5)
  np.testing.assert_allclose(got.weights.sum(axis=1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(
    density.moments(got.nodes, got.weights, range(8)), probe_moments(a, starts, range(8)), rtol=1e-4, atol=1e-5
  )
  # An eigenvector as the start: the residual is exactly zero after one step, all weight on its eigenvalue.
  diagonal = density.lanczos_quadrature(matrix_product(np.diag(values)), jnp.eye(10)[:1], 10)
  np.testing.assert_allclose(diagonal.nodes[0], np.sort(values), atol=1e-6)
  np.testing.assert_allclose(diagonal.weights[0], np.sort(values) == values[0], atol=1e-6)


@pytest.mark.parametrize("distribution", ["rademacher", "normal"])
def test_slq_estimates_the_spectral_moments_and_spans_the_spectrum(mlp, distribution):
  loss_fn, params, h, _, _ = mlp
  n, eigenvalues = len(h), np.linalg.eigvalsh(h)
  scale = np.abs(eigenvalues).max()
  got = hessian.hessian_spectrum(
    loss_fn, params, jax.random.key(4), RUNS, STEPS, distribution=distribution, runs_per_batch=RUNS_PER_BATCH
  )
  per_run = np.asarray(density.moments(got.nodes, got.weights, (0, 1, 2)), np.float64)
  np.testing.assert_allclose(per_run[:, 0], 1.0, rtol=1e-5)
  mean, stderr = per_run.mean(axis=0), per_run.std(axis=0, ddof=1) / np.sqrt(len(per_run))
  exact = np.array([np.trace(h), np.trace(h @ h)]) / n
  assert np.all(np.abs(mean[1:] - exact) <= 4 * stderr[1:] + 1e-6 * scale), (mean, stderr, exact)
  # Ritz values interlace the spectrum, and Lanczos finds its two ends.
  assert got.nodes.min() >= eigenvalues[0] - 1e-4 * scale and got.nodes.max() <= eigenvalues[-1] + 1e-4 * scale
  np.testing.assert_allclose([got.nodes.min(), got.nodes.max()], eigenvalues[[0, -1]], atol=1e-3 * scale)


def test_layer_spectra_are_slq_on_the_exact_diagonal_blocks(mlp):
  loss_fn, params, h, _, _ = mlp
  key = jax.random.key(5)
  layers = hessian.layer_spectra(loss_fn, params, key, 4, 6)
  assert list(layers) == ["hidden/kernel", "out/kernel"]
  for i, (name, part) in enumerate((name, leaf_slices(params)[name]) for name in layers):
    block = h[part, part]
    exact = density.stochastic_lanczos_quadrature(matrix_product(block), len(block), jax.random.fold_in(key, i), 4, 6)
    scale = np.abs(np.linalg.eigvalsh(block)).max()
    np.testing.assert_allclose(layers[name].nodes, exact.nodes, atol=1e-4 * scale, err_msg=name)
    # Weights of repeated Ritz values (a head's block has repeated eigenvalues) split arbitrarily: compare moments.
    orders = range(12)
    np.testing.assert_allclose(
      scaled_moments(layers[name], orders, scale), scaled_moments(exact, orders, scale), atol=1e-4, err_msg=name
    )


def test_a_fixed_key_gives_the_same_spectrum_and_batches_average(mlp):
  loss_fn, params, _, batch, loss = mlp
  first, again, other = (
    hessian.hessian_spectrum(loss_fn, params, jax.random.key(seed), RUNS, STEPS, runs_per_batch=RUNS_PER_BATCH)
    for seed in (4, 4, 5)
  )
  np.testing.assert_array_equal(first.nodes, again.nodes)
  np.testing.assert_array_equal(first.weights, again.weights)
  assert not np.allclose(first.nodes, other.nodes)
  # The batch's mean loss is the mean of its two halves' mean losses, and so is its Hessian.
  halves = [
    jax.tree_util.Partial(loss, batch={name: x[part] for name, x in batch.items()})
    for part in (slice(0, 16), slice(16, 32))
  ]
  split = hessian.hessian_spectrum(halves, params, jax.random.key(4), RUNS, STEPS, runs_per_batch=RUNS_PER_BATCH)
  np.testing.assert_allclose(split.nodes, first.nodes, atol=1e-4 * np.abs(first.nodes).max())


def test_whole_hvps_give_the_spectrum_of_linearized_products(mlp):
  loss_fn, params, _, _, _ = mlp
  linearized, whole = (
    hessian.hessian_spectrum(loss_fn, params, jax.random.key(4), 4, 8, runs_per_batch=2, linearize=linearize)
    for linearize in (True, False)
  )
  scale = np.abs(np.asarray(whole.nodes)).max()
  np.testing.assert_allclose(linearized.nodes, whole.nodes, atol=1e-5 * scale)
  np.testing.assert_allclose(linearized.weights, whole.weights, atol=1e-4)


def test_an_unknown_probe_distribution_names_the_valid_ones(mlp):
  loss_fn, params, _, _, _ = mlp
  with pytest.raises(ValueError, match="'rademacher', 'normal'"):
    hessian.hessian_spectrum(loss_fn, params, jax.random.key(0), 2, 3, distribution="uniform")


def mixture(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray, sigma: float) -> np.ndarray:
  """The mean over runs of sum_j w_j N(t; theta_j, sigma^2), restated with numpy loops."""
  total = np.zeros_like(grid)
  for run_nodes, run_weights in zip(nodes, weights):
    for node, weight in zip(run_nodes, run_weights):
      total += weight * np.exp(-((grid - node) ** 2) / (2 * sigma**2)) / np.sqrt(2 * np.pi * sigma**2)
  return total / len(nodes)


def random_spectrum(seed: int, runs: int = 3, nodes: int = 7) -> density.SpectralQuadrature:
  rng = np.random.default_rng(seed)
  return density.SpectralQuadrature(
    np.sort(rng.normal(size=(runs, nodes)), axis=1), rng.dirichlet(np.ones(nodes), runs)
  )


def test_density_is_the_broadened_mixture_integrating_to_one():
  nodes, weights = random_spectrum(8)
  sigma = 0.05
  wide = np.linspace(nodes.min() - 1, nodes.max() + 1, 4001)
  got = np.asarray(density.density(jnp.asarray(nodes), jnp.asarray(weights), jnp.asarray(wide), sigma))
  np.testing.assert_allclose(got, mixture(nodes, weights, wide, sigma), rtol=1e-3, atol=1e-5)
  assert scipy.integrate.simpson(got, x=wide) == pytest.approx(1.0, abs=1e-4)
  # A grid that cuts off part of the mass: rescaled to integrate to 1 there, the same shape.
  narrow = np.linspace(-0.5, 0.5, 2001)
  cut = np.asarray(density.density(jnp.asarray(nodes), jnp.asarray(weights), jnp.asarray(narrow), sigma))
  assert scipy.integrate.simpson(cut, x=narrow) == pytest.approx(1.0, abs=1e-4)
  reference = mixture(nodes, weights, narrow, sigma)
  np.testing.assert_allclose(cut / cut.max(), reference / reference.max(), rtol=1e-3, atol=1e-5)


def test_density_figure_is_a_png(tmp_path):
  layers = {"hidden/kernel": random_spectrum(10), "out/kernel": random_spectrum(11)}
  path = density_report.hessian_density_figure(
    str(tmp_path / "run"), random_spectrum(9), layers, top_eigenvalues={"network": 1.5}, title="tiny MLP"
  )
  assert path == str(tmp_path / "run" / "hessian_density.png")
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  pixels = image.imread(path)
  assert pixels.shape[0] > 0 and pixels.shape[1] > 0 and pixels.std() > 0
  assert Image.open(path).text["Title"] == "tiny MLP"
  alone = density_report.hessian_density_figure(str(tmp_path), random_spectrum(9))
  assert image.imread(alone).shape[1] < pixels.shape[1]  # one panel, narrower than three
