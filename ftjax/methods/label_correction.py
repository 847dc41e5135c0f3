"""Self label-correction and label reweighting of [LZ21] (docs/methods.md §3.2–3.3): the per-example labels
carried through training, the rule that corrects them, and the reweighted self-labeling loss."""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ftjax.methods.base import cross_entropy


class LabelCorrectionState(NamedTuple):
  """labels: int32 [n], the current label of every training example (by its index in the split);
  num_changed: int32, label changes made so far; last_changed: int32, changes in the last update."""

  labels: jax.Array
  num_changed: jax.Array
  last_changed: jax.Array


def init_label_correction(labels) -> LabelCorrectionState:
  """The state before any correction: `labels` [n] (those the run starts from) and zero counters."""
  zero = jnp.zeros((), jnp.int32)
  return LabelCorrectionState(jnp.asarray(labels, jnp.int32), zero, zero)


def label_marginal(labels: jax.Array, num_classes: int) -> jax.Array:
  """float32 [num_classes]: the fraction of `labels` [n] in each class."""
  return jnp.bincount(labels, length=num_classes).astype(jnp.float32) / labels.shape[0]


def prior_aligned(probs: jax.Array, given_marginal: jax.Array, current_marginal: jax.Array) -> jax.Array:
  """docs/methods.md §3.2, prior alignment: probs [batch, classes] times given_marginal / current_marginal (the
  label marginal the run started from over that of the stored labels now), renormalised per example."""
  aligned = probs * (given_marginal / current_marginal)
  return aligned / jnp.sum(aligned, axis=-1, keepdims=True)


def correct_labels(
  state: LabelCorrectionState,
  probs: jax.Array,
  indices: jax.Array,
  epoch: jax.Array,
  threshold: float,
  start_epoch: int,
  given_marginal: jax.Array | None = None,
) -> LabelCorrectionState:
  """docs/methods.md §3.2: from epoch `start_epoch` on, each example of the batch whose largest probability
  exceeds `threshold` and whose argmax differs from its stored label gets the argmax as its label. With
  `given_marginal` [classes] (the label marginal the run started from), the rule reads `prior_aligned`
  probabilities, so no class can be drained of its labels.

  probs: [batch, classes]; indices: int [batch], distinct indices of the batch's examples into
  `state.labels`, in any order.
  """
  if given_marginal is not None:  # a class with no label left counts as half an example
    current_marginal = jnp.maximum(label_marginal(state.labels, probs.shape[-1]), 0.5 / state.labels.shape[0])
    probs = prior_aligned(probs, given_marginal, current_marginal)
  current = state.labels[indices]
  predicted = jnp.argmax(probs, axis=-1).astype(jnp.int32)
  change = (jnp.max(probs, axis=-1) > threshold) & (predicted != current) & (epoch >= start_epoch)
  labels = state.labels.at[indices].set(jnp.where(change, predicted, current))
  changed = jnp.sum(change, dtype=jnp.int32)
  return LabelCorrectionState(labels, state.num_changed + changed, changed)


def reweighting_weights(losses: jax.Array, temperature) -> jax.Array:
  """docs/methods.md §3.3: w = softmax(−loss_i / T) over the batch [batch], a constant for the gradient."""
  return jax.nn.softmax(-jax.lax.stop_gradient(losses) / temperature)


def reweighting_temperature(epoch, initial: float, start_epoch: int) -> jax.Array:
  """docs/methods.md §3.3: T_e = T_0 · max(0.5, exp(−0.1 (e − E_reweight)))."""
  decay = jnp.exp(-0.1 * (jnp.asarray(epoch, jnp.float32) - start_epoch))
  return initial * jnp.maximum(0.5, decay)


def self_labeling_loss(
  logits: jax.Array, labels: jax.Array, epoch: jax.Array, reweight: bool, initial_temperature: float, start_epoch: int
) -> tuple[jax.Array, jax.Array]:
  """(loss, weights [batch]) of docs/methods.md §3.3 on the current labels: per-example cross-entropy summed
  with weights softmax(−loss_i / T_e) from epoch `start_epoch` on when `reweight`, else (and
  before that epoch) with uniform weights 1/batch, i.e. the mean.

  logits: [batch, classes]; labels: int [batch], the stored labels of the batch's examples.
  """
  losses = cross_entropy(logits, labels)
  weights = jnp.full_like(losses, 1.0 / losses.shape[0])
  if reweight:
    temperature = reweighting_temperature(epoch, initial_temperature, start_epoch)
    weights = jnp.where(epoch >= start_epoch, reweighting_weights(losses, temperature), weights)
  return jnp.sum(weights * losses), weights
