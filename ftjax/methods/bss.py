"""Batch spectral shrinkage, BSS (Chen et al. 2019; docs/methods.md §5): η Σ_{i=1..k} σ_{−i}², the squares of
the k smallest singular values of the batch's penultimate features [batch, features] (the features the head reads,
`ModelStructure.penultimate`)."""

import math

import jax
import jax.numpy as jnp

from ftjax import layer_groups, tree_paths
from ftjax.methods.base import LossInputs, Method, MethodContext, cross_entropy
from ftjax.models.structure import ModelStructure


def batch_spectral_shrinkage(features: jax.Array, k: int) -> jax.Array:
  """Σ_{i=1..k} σ_{−i}²: the squares of the k smallest singular values of features [batch, dim]
  (docs/methods.md §5); a one-line error unless 1 <= k <= min(batch, dim)."""
  if not 1 <= k <= min(features.shape):
    raise ValueError(
      f"k={k} must be in 1..{min(features.shape)}, the smaller side of the features {tuple(features.shape)}"
    )
  singular_values = jnp.linalg.svd(features, compute_uv=False)  # descending
  return jnp.sum(jnp.square(singular_values[-k:]))


def penultimate_width(param_shapes, structure: ModelStructure) -> int:
  """The width of the features the head reads: the fan-in of the head group's first weight tensor in network
  order (a Dense head's kernel is [width, classes])."""
  groups = layer_groups.assign_groups(param_shapes, structure.groups)
  head = layer_groups.network_order(
    [path for path, group in groups.items() if group == structure.head], structure.groups, structure.head
  )
  if not head:
    raise ValueError(f"the head group {structure.head!r} has no weight tensor")
  return math.prod(tree_paths.named_leaves(param_shapes)[head[0]].shape[:-1])


def check_bss(config, param_shapes, structure: ModelStructure, batch_size: int) -> None:
  """One-line error unless `bss.k` is at most the smaller side of the penultimate feature matrix:
  the global batch size or the head's input width."""
  width = penultimate_width(param_shapes, structure)
  if config.bss.k > min(batch_size, width):
    raise ValueError(
      f"bss.k={config.bss.k} exceeds min(optim.batch_size={batch_size}, penultimate width "
      f"{width}); valid: 1..{min(batch_size, width)}"
    )


def bss(context: MethodContext) -> Method:
  """BSS: mean cross-entropy + η · batch_spectral_shrinkage(features the head reads, k) with η, k from
  `config.bss`; metrics 'cross_entropy' and 'spectral_penalty' (the unscaled shrinkage term)."""
  eta, k = context.config.bss.eta, context.config.bss.k
  penultimate = context.structure.penultimate

  def loss(inputs: LossInputs):
    data_loss = jnp.mean(cross_entropy(inputs.logits, inputs.batch["label"]))
    shrinkage = batch_spectral_shrinkage(inputs.features[penultimate], k)
    return data_loss + eta * shrinkage, {"cross_entropy": data_loss, "spectral_penalty": shrinkage}

  return Method("bss", loss)
