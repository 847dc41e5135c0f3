"""Hessian traces per layer and for the whole network by Hutchinson's estimator (docs/methods.md §4.2), with
Hutch++ as an option.

A block is a set of leaves (a layer: one weight tensor). Hutchinson: tr(H_bb) = E[z_b^T (H z)_b]
with Rademacher z over ALL parameters, so one HVP per probe gives every block's sample at once; the
per-leaf products z_l^T (H z)_l are summed into blocks on the host.

The estimators are quiet: their `progress` option wraps the iterable of compiled HVP calls they
loop over (e.g. `tqdm.tqdm`, for a bar with the time left) and changes no number.
"""

import functools
import itertools
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ftjax import tree_paths
from ftjax.hessian import products

NETWORK = "network"

Progress = Callable[[Iterable], Iterable]


class TraceEstimate(NamedTuple):
  """A trace estimate, its standard error, and the number of HVPs (probes) it used."""

  estimate: float
  stderr: float
  num_probes: int


def layer_blocks(params, is_layer=tree_paths.is_weight_tensor) -> dict[str, tuple[str, ...]]:
  """{layer path: (layer path,)} for every leaf with `is_layer(name, leaf)` (default: weight
  tensors, docs/methods.md §1; `lambda name, leaf: True` takes every leaf)."""
  return {name: (name,) for name in tree_paths.layer_names(params, is_layer)}


def network_block(params) -> dict[str, tuple[str, ...]]:
  """{'network': every leaf}: the whole-network trace as a block."""
  return {NETWORK: tuple(tree_paths.named_leaves(params))}


@functools.partial(jax.jit, static_argnames="sizes")
def leaf_gram(x: jax.Array, y: jax.Array, sizes: tuple[int, ...]) -> jax.Array:
  """[L, c, c']: x_l y_l^T for each leaf l, x [c, d] and y [c', d] being flat parameter vectors
  whose consecutive segments of `sizes` are the leaves in tree order."""
  bounds = np.cumsum((0,) + sizes)
  return jnp.stack([x[:, a:b] @ y[:, a:b].T for a, b in zip(bounds[:-1], bounds[1:])])


def leaf_dots(x: jax.Array, y: jax.Array, sizes: tuple[int, ...]) -> np.ndarray:
  """[c, L]: x_l . y_l for each row pair and leaf l (the diagonal of `leaf_gram`), in float64."""
  return np.asarray(jnp.diagonal(leaf_gram(x, y, sizes), axis1=1, axis2=2).T, np.float64)


def _num_calls(num_vectors: int, chunk: int) -> int:
  """Compiled calls for `num_vectors` products, `chunk` per call."""
  return -(-num_vectors // chunk)


def _products(apply, vectors: jax.Array, chunk: int, ticks: Iterator | None = None) -> jax.Array:
  """H v for the rows of `vectors` [c, d] by `apply` (a `products.rows_operator`), `chunk` rows per compiled call
  (the last padded), advancing `ticks` once per call."""
  padded = jnp.pad(vectors, ((0, -len(vectors) % chunk), (0, 0)))
  starts = range(0, len(padded), chunk)
  out = [apply(padded[i : i + chunk]) for i, _ in zip(starts, itertools.repeat(None) if ticks is None else ticks)]
  return jnp.concatenate(out)[: len(vectors)]


def _mean_and_stderr(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Per block: the mean of samples [P, B] and its standard error."""
  return np.mean(samples, axis=0), np.std(samples, axis=0, ddof=1) / np.sqrt(len(samples))


def hutchinson(
  apply,
  params,
  key,
  membership: np.ndarray,
  num_probes: int,
  rtol: float | None,
  max_probes: int,
  probes_per_batch: int,
  progress: Progress | None = None,
) -> np.ndarray:
  """samples [P, B]: z_b^T (H z)_b, H z by `apply` (`products.rows_operator` over `params`), for blocks given by a
  0/1 `membership` [B, leaves] matrix and Rademacher z over all parameters, drawn `probes_per_batch` at a time
  until `num_probes` are drawn and, with `rtol`, until every block's stderr <= rtol * |mean| or `max_probes` are
  drawn. `progress` wraps the range of probe batches (up to `max_probes` of them with `rtol`)."""
  leaves = jax.tree.leaves(params)
  sizes, dtype = tuple(leaf.size for leaf in leaves), leaves[0].dtype
  samples = np.zeros((0, len(membership)))
  batches = range(_num_calls(num_probes if rtol is None else max_probes, probes_per_batch))
  for chunk in batches if progress is None else progress(batches):
    probes = jax.random.rademacher(jax.random.fold_in(key, chunk), (probes_per_batch, sum(sizes)), dtype)
    per_leaf = leaf_dots(probes, _products(apply, probes, probes_per_batch), sizes)
    samples = np.concatenate([samples, per_leaf @ membership.T])
    if rtol is not None and len(samples) >= num_probes:
      mean, stderr = _mean_and_stderr(samples)
      if np.all(stderr <= rtol * np.abs(mean)):
        break
  return samples


def hutch_plus_plus(
  apply, params, key, membership: np.ndarray, num_probes: int, probes_per_batch: int, progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """(low-rank part [B], residual samples [P, B]) of Hutch++ (Meyer et al. 2021) per block, with
  `num_probes` HVPs by `apply` (`products.rows_operator` over `params`): k = num_probes // 3 for the sketch H S
  (S Rademacher [d, k]) whose orthonormal basis is Q, k for H Q, and the rest for Hutchinson probes
  z = (I - QQ^T) g.

  With B = I - QQ^T and P_b the 0/1 diagonal projection onto block b, tr(P_b H) splits into
  tr(P_b (H - BHB)) = 2 tr(Q^T P_b H Q) - tr(Q^T H Q Q^T P_b Q), exact from Q and H Q, plus
  tr(P_b BHB) = E[z^T P_b (B H z)], estimated by the probes. Summed over all blocks this is the
  usual Hutch++ estimate tr(Q^T H Q) + mean z^T H z; for every block it is unbiased, with the
  variance of the part of H outside the sketched subspace. `progress` wraps the range of the
  compiled HVP calls of all three parts."""
  leaves = jax.tree.leaves(params)
  sizes, dtype = tuple(leaf.size for leaf in leaves), leaves[0].dtype
  k = num_probes // 3
  calls = range(2 * _num_calls(k, probes_per_batch) + _num_calls(num_probes - 2 * k, probes_per_batch))
  ticks = iter(calls if progress is None else progress(calls))
  sketch_key, probe_key = jax.random.split(key)
  sketch = _products(apply, jax.random.rademacher(sketch_key, (k, sum(sizes)), dtype), probes_per_batch, ticks)
  basis = jnp.linalg.qr(sketch.T)[0].T
  basis_products = _products(apply, basis, probes_per_batch, ticks)
  small = basis @ basis_products.T
  small = (small + small.T) / 2
  cross = jnp.trace(leaf_gram(basis_products, basis, sizes), axis1=1, axis2=2)
  low_rank = np.asarray(2 * cross - jnp.einsum("jk,lkj->l", small, leaf_gram(basis, basis, sizes)), np.float64)
  deflate = lambda x: x - (x @ basis.T) @ basis
  probes = deflate(jax.random.rademacher(probe_key, (num_probes - 2 * k, sum(sizes)), dtype))
  residual = leaf_dots(probes, deflate(_products(apply, probes, probes_per_batch, ticks)), sizes)
  next(ticks, None)  # every call is made: this ends the iteration (a progress bar closes)
  return membership @ low_rank, residual @ membership.T


def block_traces(
  loss_fn,
  params,
  key: jax.Array,
  num_probes: int,
  *,
  blocks: dict[str, Sequence[str]],
  method: str = "hutchinson",
  rtol: float | None = None,
  max_probes: int | None = None,
  probes_per_batch: int = 1,
  progress: Progress | None = None,
  linearize: bool = True,
) -> dict[str, TraceEstimate]:
  """{block name: tr(H_bb)} for named sets of leaves ('/'-joined paths) of `params`, with H the
  Hessian of `loss_fn` (or of the mean of a sequence of per-batch losses) at `params`, all blocks
  from the same HVPs.

  method 'hutchinson': `num_probes` Rademacher probes over all parameters (rounded up to a multiple
  of `probes_per_batch`); with `rtol`, more until every block's stderr <= rtol * |estimate| or
  `max_probes` (default 10 * num_probes). method 'hutchpp': Hutch++ with `num_probes` HVPs in all
  (see `hutch_plus_plus`; the stderr is that of its Hutchinson part, given the sketch).
  `probes_per_batch` HVPs are `vmap`ped per compiled call: on accelerators raise it as memory
  allows; on XLA:CPU a loop of single HVPs is faster for convolutional nets (bench/bench_hessian.py).
  With `linearize` each batch's gradient is linearized once for the whole estimate (`products.rows_operator`), its
  intermediate values held meanwhile; without, every product is a whole HVP (slower, less memory).
  `progress` (e.g. `tqdm.tqdm`) wraps the range of compiled HVP calls: probe batches, or all of
  Hutch++'s calls."""
  names = list(tree_paths.named_leaves(params))
  membership = np.array([[name in members for name in names] for members in blocks.values()], np.float64)
  apply = products.rows_operator(loss_fn, params, linearize=linearize)[0]
  if method == "hutchinson":
    max_probes = max(num_probes, max_probes or 10 * num_probes)
    samples = hutchinson(apply, params, key, membership, num_probes, rtol, max_probes, probes_per_batch, progress)
    low_rank, used = np.zeros(len(blocks)), len(samples)
  elif method == "hutchpp":
    if rtol is not None or num_probes < 6:
      raise ValueError(
        f"method='hutchpp' takes a fixed budget of num_probes >= 6 HVPs and no rtol "
        f"(got num_probes={num_probes}, rtol={rtol})"
      )
    low_rank, samples = hutch_plus_plus(apply, params, key, membership, num_probes, probes_per_batch, progress)
    used = num_probes
  else:
    raise ValueError(f"method={method!r}; valid: 'hutchinson', 'hutchpp'")
  mean, stderr = _mean_and_stderr(samples)
  return {
    name: TraceEstimate(float(low + m), float(s), used) for name, low, m, s in zip(blocks, low_rank, mean, stderr)
  }


def layer_traces(
  loss_fn, params, key: jax.Array, num_probes: int, *, is_layer=tree_paths.is_weight_tensor, **options
) -> dict[str, TraceEstimate]:
  """{layer path: tr(H_ii)} for every leaf with `is_layer(name, leaf)`; `options` as in `block_traces`."""
  return block_traces(loss_fn, params, key, num_probes, blocks=layer_blocks(params, is_layer), **options)


def network_trace(loss_fn, params, key: jax.Array, num_probes: int, **options) -> TraceEstimate:
  """tr(H) over all parameters; `options` as in `block_traces`."""
  return block_traces(loss_fn, params, key, num_probes, blocks=network_block(params), **options)[NETWORK]
