"""The Hessian distance measure and bound ([JLZ22], docs/methods.md §4.4), noise stability and the PAC-Bayes
bound ([LZ21], docs/methods.md §4.5), against exact Hessians, closed forms and the formulas by hand."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from ftjax import generalization
from tests.test_hessian import MLP, RecordingProgress, TinyCNN, full_hessian, leaf_slices, tiny_problem


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def problem(request):
  """(loss_fn, params, anchor params, exact Hessian): the anchor is params moved by random noise."""
  model, shape = {"mlp": (MLP(), (4,)), "cnn": (TinyCNN(), (5, 5, 2))}[request.param]
  loss_fn, params, _, _ = tiny_problem(model, shape)
  flat, unravel = ravel_pytree(params)
  anchor = unravel(flat + 0.3 * jax.random.normal(jax.random.key(1), flat.shape))
  return loss_fn, params, anchor, full_hessian(loss_fn, params)


def flat_differences(params, anchor) -> np.ndarray:
  """v = W - W^(s) on the kernels (the layers), zero on the biases, flattened in tree order."""
  v = np.asarray(ravel_pytree(params)[0] - ravel_pytree(anchor)[0], np.float64)
  for name, part in leaf_slices(params).items():
    if not name.endswith("kernel"):
      v[part] = 0.0
  return v


def test_full_hvp_quadratic_forms_are_blocks_of_v_h_v(problem):
  loss_fn, params, anchor, h = problem
  v = flat_differences(params, anchor)
  got = generalization.full_hvp_quadratic_forms(loss_fn, params, anchor)
  assert set(got) == {name for name in leaf_slices(params) if name.endswith("kernel")}
  for name, part in leaf_slices(params).items():
    if name in got:
      np.testing.assert_allclose(got[name], v[part] @ (h @ v)[part], rtol=1e-4, atol=1e-7)


def test_positive_part_quadratic_forms_match_the_eigendecomposition(problem):
  loss_fn, params, anchor, h = problem
  v = flat_differences(params, anchor)
  # As many Lanczos steps as the largest block has parameters: the quadrature is exact.
  got = generalization.positive_part_quadratic_forms(loss_fn, params, anchor, num_steps=40)
  for name in got:
    part = leaf_slices(params)[name]
    values, vectors = np.linalg.eigh(h[part, part])
    coefficients = vectors.T @ v[part]
    expected = np.sum(np.maximum(values, 0) * coefficients**2)
    np.testing.assert_allclose(got[name], expected, rtol=2e-3, atol=1e-7)


def test_max_over_batches_and_the_bound_by_hand():
  measures = generalization.max_over_batches([{"a": 0.5, "b": -1.0, "c": 1.0}, {"a": 0.2, "b": -2.0, "c": 2.0}])
  assert measures == {"a": 0.5, "b": -1.0, "c": 2.0}
  expected = math.sqrt(3.0 * 0.5 / 100) + 0.0 + math.sqrt(3.0 * 2.0 / 100)
  assert generalization.hessian_bound(measures, max_loss=3.0, num_train=100) == pytest.approx(expected)


def quadratic_problem():
  """loss(params) = 1/2 x^T A x over x = ravel(params), for two layers 'a' [3, 4] and 'b' [5, 2]."""
  rng = np.random.default_rng(0)
  params = {
    "a": {"kernel": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)},
    "b": {"kernel": jnp.asarray(rng.normal(size=(5, 2)), jnp.float32)},
  }
  m = rng.normal(size=(22, 22))
  a = jnp.asarray(m @ m.T / 22, jnp.float32)
  loss_fn = jax.tree_util.Partial(lambda p, a: 0.5 * ravel_pytree(p)[0] @ a @ ravel_pytree(p)[0], a=a)
  return loss_fn, params, np.asarray(a, np.float64)


def test_noise_stability_of_a_quadratic_is_half_sigma_squared_trace():
  loss_fn, params, a = quadratic_problem()
  sigmas = {"a/kernel": 0.3, "b/kernel": 0.1}
  stability = generalization.layer_noise_stability(loss_fn, params, sigmas, jax.random.key(0), num_draws=2000)
  slices = {"a/kernel": slice(0, 12), "b/kernel": slice(12, 22)}
  exact = {name: 0.5 * sigmas[name] ** 2 * np.trace(a[part, part]) for name, part in slices.items()}
  exact[generalization.ALL_LAYERS] = sum(exact.values())
  for name, value in exact.items():
    assert stability[name].num_draws == 2000
    assert abs(stability[name].estimate - value) <= 4 * stability[name].stderr, (name, stability[name], value)
  assert stability["b/kernel"].stderr < stability["a/kernel"].stderr


def test_progress_sees_each_case_and_changes_no_number():
  loss_fn, params, _ = quadratic_problem()
  sigmas = {"a/kernel": 0.3, "b/kernel": 0.1}
  quiet = generalization.layer_noise_stability(loss_fn, params, sigmas, jax.random.key(0), num_draws=3)
  progress = RecordingProgress()
  shown = generalization.layer_noise_stability(
    loss_fn, params, sigmas, jax.random.key(0), num_draws=3, progress=progress
  )
  assert shown == quiet
  assert [name for name, _ in progress.items] == ["a/kernel", "b/kernel", generalization.ALL_LAYERS]


def test_relative_sigmas_scale_the_rms_of_each_layer():
  _, params, _ = quadratic_problem()
  sigmas = generalization.relative_sigmas(params, 0.1)
  for name, leaf in (("a/kernel", params["a"]["kernel"]), ("b/kernel", params["b"]["kernel"])):
    assert sigmas[name] == pytest.approx(0.1 * float(np.sqrt(np.mean(np.square(leaf)))), rel=1e-6)


def test_pac_bayes_bound_by_hand():
  distances, sigmas = {"a": 2.0, "b": 1.0}, {"a": 0.5, "b": 0.1}
  kl = 4.0 / (2 * 0.25) + 1.0 / (2 * 0.01)
  assert generalization.kl_divergence(distances, sigmas) == pytest.approx(kl)
  bound = generalization.pac_bayes_bound(0.3, distances, sigmas, num_train=1000, delta=0.1)
  complexity = math.sqrt((kl + math.log(2 * math.sqrt(1000) / 0.1)) / 2000)
  assert bound.kl == pytest.approx(kl) and bound.complexity == pytest.approx(complexity)
  assert bound.bound == pytest.approx(0.3 + complexity) and bound.expected_perturbed_train_loss == 0.3


@pytest.mark.parametrize("distance,vacuous", [(0.1, False), (10.0, True)])
def test_a_pac_bayes_bound_of_one_or_more_is_vacuous(distance, vacuous):
  bound = generalization.pac_bayes_bound(0.2, {"a": distance}, {"a": 0.1}, num_train=1000, delta=0.05)
  value = 0.2 + math.sqrt((distance**2 / (2 * 0.01) + math.log(2 * math.sqrt(1000) / 0.05)) / 2000)
  assert bound.bound == pytest.approx(value) and (value >= 1.0) is vacuous
  assert bound.vacuous is vacuous and bound._asdict()["vacuous"] is vacuous


def test_the_trivial_gap_bound_is_the_loss_range_above_the_training_loss():
  # Losses in [0, C]: test loss <= C, so test - train <= C - train.
  assert generalization.trivial_gap_bound(max_loss=2.5, train_loss=0.25) == 2.25
