"""Noise stability per layer (docs/methods.md §4.5, [LZ21]): E_U[loss(W + U)] - loss(W), U isotropic
Gaussian with std sigma_i on layer i, for each layer alone and for all layers together."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ftjax import tree_paths
from ftjax.hessian import Progress, products

ALL_LAYERS = "all_layers"


class StabilityEstimate(NamedTuple):
  """Mean over noise draws of loss(W + U) - loss(W), its standard error, and the draw count."""

  estimate: float
  stderr: float
  num_draws: int


def relative_sigmas(params, scale: float, is_layer=tree_paths.is_weight_tensor) -> dict[str, float]:
  """{layer path: sigma_i = scale * rms(W_i)}: noise relative to each layer's weight magnitude."""
  return {
    name: scale * float(jnp.sqrt(jnp.mean(jnp.square(leaf))))
    for name, leaf in tree_paths.named_leaves(params).items()
    if is_layer(name, leaf)
  }


@jax.jit
def _loss(loss_fn, params) -> jax.Array:
  return loss_fn(params)


@jax.jit
def _perturbed_loss(loss_fn, params, stds, key) -> jax.Array:
  """loss(W + U) for one draw, U ~ N(0, std_l^2 I) on each leaf l (`stds`: a scalar per leaf)."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  noisy = [w + s * jax.random.normal(k, w.shape, w.dtype) for w, s, k in zip(leaves, jax.tree.leaves(stds), keys)]
  return loss_fn(jax.tree.unflatten(treedef, noisy))


def noise_stability(loss_fn, params, sigmas: dict[str, float], key: jax.Array, num_draws: int) -> StabilityEstimate:
  """E_U[loss(W + U)] - loss(W) with U ~ N(0, sigma_i^2 I) on every layer named in `sigmas` (the
  other leaves unperturbed), over `num_draws` draws (draw j uses `fold_in(key, j)`). `loss_fn` may
  be a sequence of per-batch losses: the loss is their mean, every batch seeing the same U."""
  losses = products.as_arguments(loss_fn)
  stds = tree_paths.map_with_names(lambda name, leaf: jnp.asarray(sigmas.get(name, 0.0), leaf.dtype), params)
  mean_loss = lambda fn, *args: np.mean([float(fn(loss, params, *args)) for loss in losses])
  base = mean_loss(_loss)
  increases = np.array([mean_loss(_perturbed_loss, stds, jax.random.fold_in(key, j)) - base for j in range(num_draws)])
  return StabilityEstimate(float(increases.mean()), float(increases.std(ddof=1) / np.sqrt(num_draws)), num_draws)


def layer_noise_stability(
  loss_fn, params, sigmas: dict[str, float], key: jax.Array, num_draws: int, progress: Progress | None = None
) -> dict[str, StabilityEstimate]:
  """{layer path: `noise_stability` with only that layer perturbed, ALL_LAYERS: all of `sigmas`
  at once}; every case sees the same draw keys. `progress` (e.g. `tqdm.tqdm`) wraps the cases'
  (name, sigmas) items and changes no number."""
  cases = {**{name: {name: sigma} for name, sigma in sigmas.items()}, ALL_LAYERS: sigmas}.items()
  return {
    name: noise_stability(loss_fn, params, case, key, num_draws)
    for name, case in (cases if progress is None else progress(cases))
  }
