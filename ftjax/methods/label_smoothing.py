"""Label smoothing (docs/methods.md §5): cross-entropy against the smoothed target (1 − ε)·onehot + ε/C."""

import jax
import jax.numpy as jnp
import optax

from ftjax.methods.base import LossInputs, Method, MethodContext, cross_entropy


def smoothed_cross_entropy(logits: jax.Array, labels: jax.Array, eps: float) -> jax.Array:
  """Per-example cross-entropy against (1 − eps)·onehot(labels) + eps/C; logits [batch, C],
  labels [batch] -> [batch]. eps = 0 is the plain cross-entropy."""
  targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), eps)
  return optax.softmax_cross_entropy(logits, targets)


def label_smoothing(context: MethodContext) -> Method:
  """Mean smoothed cross-entropy with ε = `config.label_smoothing.eps`; metric 'cross_entropy' is
  the mean cross-entropy on the hard labels."""
  eps = context.config.label_smoothing.eps

  def loss(inputs: LossInputs):
    labels = inputs.batch["label"]
    value = jnp.mean(smoothed_cross_entropy(inputs.logits, labels, eps))
    return value, {"cross_entropy": jnp.mean(cross_entropy(inputs.logits, labels))}

  return Method("label_smoothing", loss)
