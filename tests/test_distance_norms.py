"""docs/methods.md §2.1 norms against written-out loops, and per-layer distances of a params tree."""

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
