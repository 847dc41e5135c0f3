"""Hessian-vector products of a scalar loss over a params pytree (docs/methods.md §4.1).

`loss_fn` maps params to a scalar. Pass it as `jax.tree_util.Partial(loss, batch=batch)` (a pytree
whose leaves are the batch) so that the jitted functions here take it as an argument: batches of
one shape then share one compilation. The estimators (`hessian_operator`, `mean_products` and what
uses them) also take a sequence of such losses, one per batch, and use their mean: each product is
then the mean of one compiled product per batch, so the data need not fit in one batch. When a
batch is sharded over a mesh's 'data' axis and the params are replicated (`ftjax.parallel`), the
jitted HVP averages over that axis as the gradient does.
"""

import functools
from typing import Callable, Sequence

import jax
from jax.flatten_util import ravel_pytree

from ftjax import tree_paths

LossFn = Callable[..., jax.Array]


def as_argument(loss_fn: LossFn) -> jax.tree_util.Partial:
  """`loss_fn` as a pytree a jitted function can take as an argument: a `Partial` as it is (its
  bound arrays stay traced), any other callable wrapped (it is then part of the compilation key)."""
  return loss_fn if isinstance(loss_fn, jax.tree_util.Partial) else jax.tree_util.Partial(loss_fn)


def as_arguments(loss_fn: LossFn | Sequence[LossFn]) -> tuple[jax.tree_util.Partial, ...]:
  """A loss, or a sequence of per-batch losses whose mean is the loss, as a tuple of `as_argument`s."""
  return tuple(map(as_argument, loss_fn if isinstance(loss_fn, (list, tuple)) else [loss_fn]))


def hvp(loss_fn: LossFn, params, tangent):
  """H(params) · tangent, forward-over-reverse (`jax.jvp` of `jax.grad`); a tree like `params`."""
  return jax.jvp(jax.grad(loss_fn), (params,), (tangent,))[1]


def with_leaf(params, name: str, value):
  """`params` with the leaf called `name` ('/'-joined path) replaced by `value`."""
  return tree_paths.map_with_names(lambda n, leaf: value if n == name else leaf, params)


def leaf_loss(loss_fn: LossFn, params, name: str) -> LossFn:
  """The loss as a function of the one leaf `name` (a layer W_i), the others held at `params`:
  its Hessian is the diagonal block H_ii."""
  return lambda leaf: loss_fn(with_leaf(params, name, leaf))


@functools.partial(jax.jit, static_argnames="layer")
def flat_products(loss_fn: LossFn, params, vectors: jax.Array, layer: str | None = None) -> jax.Array:
  """[c, d] -> [c, d]: H v for each row v, with H the Hessian over all params flattened in tree
  order (`ravel_pytree`), or with `layer` the block H_ii over that leaf alone (d its size). The
  rows are `vmap`ped: one compiled call evaluates c products; a layer's block is the Hessian of
  `leaf_loss`, so its product skips every other layer's weight derivatives."""
  if layer is not None:
    loss_fn, params = leaf_loss(loss_fn, params, layer), tree_paths.named_leaves(params)[layer]
  unravel = ravel_pytree(params)[1]
  return jax.vmap(lambda v: ravel_pytree(hvp(loss_fn, params, unravel(v)))[0])(vectors)


def mean_products(
  loss_fn: LossFn | Sequence[LossFn], params, vectors: jax.Array, layer: str | None = None
) -> jax.Array:
  """`flat_products` of the mean of one or several per-batch losses: the mean of one call per loss."""
  losses = as_arguments(loss_fn)
  return sum(flat_products(loss, params, vectors, layer) for loss in losses) / len(losses)


@functools.partial(jax.jit, static_argnames="layer")
def linearized_hessian(loss_fn: LossFn, params, layer: str | None = None) -> jax.tree_util.Partial:
  """tangent -> H tangent at `params`, over all params or with `layer` the block H_ii over that leaf: `jax.linearize`
  of the gradient, a pytree holding the intermediate values of one gradient (forward and backward pass), so that
  each product (`linear_products`) computes only the tangent part; the products are `hvp`'s to float32 rounding."""
  if layer is not None:
    loss_fn, params = leaf_loss(loss_fn, params, layer), tree_paths.named_leaves(params)[layer]
  return jax.linearize(jax.grad(loss_fn), params)[1]


@jax.jit
def linear_products(linear_map: jax.tree_util.Partial, like, vectors: jax.Array) -> jax.Array:
  """[c, d] -> [c, d]: `linear_map` (a `linearized_hessian`) applied to each row, rows flattened as `like` (its
  params, or its layer's leaf) is by `ravel_pytree`."""
  unravel = ravel_pytree(like)[1]
  return jax.vmap(lambda v: ravel_pytree(linear_map(unravel(v)))[0])(vectors)


def rows_operator(
  loss_fn: LossFn | Sequence[LossFn], params, layer: str | None = None, linearize: bool = True
) -> tuple[Callable[[jax.Array], jax.Array], int]:
  """([c, d] -> [c, d], d): `mean_products` of a batch of rows, over all params or the block of `layer`. With
  `linearize`, to float32 rounding: each batch's gradient is linearized once (`linearized_hessian`) and held while
  the map lives, so a product costs its tangent part alone (for a layer's block near the output, a small fraction
  of an HVP); without, each product is a whole HVP and nothing is held between products (less memory)."""
  losses = as_arguments(loss_fn)
  like = tree_paths.named_leaves(params)[layer] if layer else params
  dim = sum(leaf.size for leaf in jax.tree.leaves(like))
  place = _placement(like)
  if not linearize:
    return (lambda rows: mean_products(losses, params, place(rows), layer)), dim
  maps = [linearized_hessian(loss, params, layer) for loss in losses]
  return (lambda rows: sum(linear_products(m, like, place(rows)) for m in maps) / len(maps)), dim


def hessian_operator(
  loss_fn: LossFn | Sequence[LossFn], params, layer: str | None = None, linearize: bool = True
) -> tuple[Callable[[jax.Array], jax.Array], int]:
  """(v [d] -> H v [d], d): `rows_operator` for one vector."""
  apply, dim = rows_operator(loss_fn, params, layer, linearize)
  return (lambda v: apply(v[None])[0]), dim


def _placement(like) -> Callable[[jax.Array], jax.Array]:
  """x -> x placed as the leaves of `like` are when they are replicated (x unchanged otherwise): a start vector
  drawn on the host and the products computed from it then call one compiled program, not two."""
  leaf = jax.tree.leaves(like)[0]
  if not isinstance(leaf, jax.Array) or isinstance(leaf, jax.core.Tracer) or not leaf.sharding.is_fully_replicated:
    return lambda x: x
  return lambda x: jax.device_put(x, leaf.sharding)
