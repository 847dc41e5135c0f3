"""docs/methods.md §2.1 norms against written-out loops, and per-layer distances of a params tree."""

import jax
import numpy as np
import pytest

from ftjax.distance import norms


def mars_by_loops(t: np.ndarray) -> float:
  """max over output units j of sum over every input (and kernel position) of |t[..., j]|."""
  out = t.shape[-1]
  return max(sum(abs(x) for x in np.ravel(t[..., j])) for j in range(out))


@pytest.mark.parametrize("shape", [(7, 3), (3, 3, 4, 5), (1, 1, 6, 2)])
def test_norms_match_written_out_formulas(shape):
  t = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  np.testing.assert_allclose(norms.frobenius_norm(t), np.sqrt(np.sum(t.astype(np.float64) ** 2)), rtol=1e-6)
  np.testing.assert_allclose(norms.mars_norm(t), mars_by_loops(t), rtol=1e-5)
  assert norms.as_matrix(t).shape == (int(np.prod(shape[:-1])), shape[-1])


def test_layer_distances_cover_kernels_only():
  rng = np.random.default_rng(1)
  params = {
    "conv": {"kernel": rng.normal(size=(3, 3, 2, 4))},
    "bn": {"scale": np.ones(4), "bias": np.zeros(4)},
    "head": {"kernel": rng.normal(size=(4, 3)), "bias": rng.normal(size=3)},
  }
  anchor = {
    "conv": {"kernel": rng.normal(size=(3, 3, 2, 4))},
    "bn": {"scale": np.zeros(4), "bias": np.ones(4)},
    "head": {"kernel": np.zeros((4, 3)), "bias": np.zeros(3)},
  }
  distances = norms.layer_distances(params, anchor)
  assert set(distances) == {"conv/kernel", "head/kernel"}
  diff = params["conv"]["kernel"] - anchor["conv"]["kernel"]
  np.testing.assert_allclose(distances["conv/kernel"]["frobenius"], np.linalg.norm(diff.ravel()), rtol=1e-5)
  np.testing.assert_allclose(distances["head/kernel"]["mars"], np.abs(params["head"]["kernel"]).sum(0).max(), rtol=1e-5)


def test_mars_of_an_attention_kernel_with_one_input_axis_is_that_of_its_matrix():
  """A query kernel [D, heads, head_dim] reads its D inputs on axis 0 and feeds heads × head_dim output units."""
  t = np.random.default_rng(2).normal(size=(6, 2, 3)).astype(np.float32)
  by_loops = max(sum(abs(t[k, h, d]) for k in range(6)) for h in range(2) for d in range(3))
  np.testing.assert_allclose(norms.mars_norm(t, 1), by_loops, rtol=1e-5)
  np.testing.assert_allclose(norms.mars_norm(t, 1), norms.mars_norm(t.reshape(6, 6)), rtol=1e-6)
  assert norms.as_matrix(t, 1).shape == (6, 6) and norms.as_matrix(t).shape == (12, 3)
  assert abs(float(norms.mars_norm(t)) - by_loops) > 1e-3  # the default view (inputs D × heads) is another norm


def test_declared_fan_in_picks_the_first_matching_pattern_and_must_fit_the_tensor():
  fan_in = ((r"attn/(query|key)/kernel", 1), (r"attn/.*", 2))
  assert norms.input_axes("attn/query/kernel", 3, fan_in) == 1
  assert norms.input_axes("attn/out/kernel", 3, fan_in) == 2
  assert norms.input_axes("conv/kernel", 4, fan_in) == 3  # undeclared: all but the last axis
  with pytest.raises(ValueError, match="fan_in declares 2 input axes for 'attn/value/kernel', which has 2"):
    norms.input_axes("attn/value/kernel", 2, fan_in)


def test_layer_distances_use_the_declared_fan_in():
  rng = np.random.default_rng(3)
  params = {"attn": {"query": {"kernel": rng.normal(size=(4, 2, 3))}}, "dense": {"kernel": rng.normal(size=(6, 4))}}
  anchor = jax.tree.map(np.zeros_like, params)
  distances = norms.layer_distances(params, anchor, ((r"attn/query/kernel", 1),))
  query = params["attn"]["query"]["kernel"]
  np.testing.assert_allclose(distances["attn/query/kernel"]["mars"], np.abs(query).sum(0).max(), rtol=1e-5)
  np.testing.assert_allclose(
    distances["dense/kernel"]["mars"], np.abs(params["dense"]["kernel"]).sum(0).max(), rtol=1e-5
  )
  np.testing.assert_allclose(distances["attn/query/kernel"]["frobenius"], np.linalg.norm(query.ravel()), rtol=1e-5)
