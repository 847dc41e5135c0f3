"""The consistent loss of [JLZ22] (docs/methods.md §3.4): forward correction with a noise transition matrix
F[true, noisy], and the dual-T estimate of F from a plainly fine-tuned model's probabilities."""

import jax
import jax.numpy as jnp
import numpy as np


def forward_corrected_losses(logits: jax.Array, labels: jax.Array, transition) -> jax.Array:
  """docs/methods.md §3.4: per example, −log Σ_c p_c(x) F[c, ỹ], with p = softmax(logits) ([batch]).

  Computed as −logsumexp_c(log p_c + log F[c, ỹ]), so it stays finite however small p is and
  entries of F may be zero (they drop out); a label ỹ whose column of F is all zero gives +inf.
  logits: [batch, classes]; labels: int [batch] (noisy); transition: [classes, classes].
  """
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  log_columns = jnp.log(jnp.asarray(transition, log_probs.dtype)).T[labels]
  return -jax.nn.logsumexp(log_probs + log_columns, axis=-1)


def forward_corrected_loss(logits: jax.Array, labels: jax.Array, transition) -> jax.Array:
  """The mean over the batch of `forward_corrected_losses`: the consistent loss (docs/methods.md §3.4)."""
  return jnp.mean(forward_corrected_losses(logits, labels, transition))


def anchor_transition(probs, percentile: float = 97.0) -> np.ndarray:
  """T_club of docs/methods.md §3.4 (numpy, float64 [C, C]): row i = p(x*) for the anchor x* of class i, the
  example with the highest p_i among those below the `percentile`-th percentile of p_i (numpy's
  'higher' method, as in the authors' code); when no example is below it (all p_i equal), the
  example with the highest p_i. On its own this is the anchor-point estimator of F (Patrini et al.
  2017), exact when p is the noisy posterior p = q F and the anchors are clean (q ≈ e_i)."""
  probs = np.asarray(probs, np.float64)
  thresholds = np.percentile(probs, percentile, axis=0, method="higher")
  below = np.where(probs < thresholds, probs, -np.inf)
  anchors = np.where(np.isfinite(below.max(axis=0)), below.argmax(axis=0), probs.argmax(axis=0))
  return probs[anchors]


def dual_t_estimate(probs, noisy_labels, percentile: float = 97.0) -> np.ndarray:
  """The dual-T estimate F = T_club @ T_spade of docs/methods.md §3.4 (numpy, float64 [C, C]).

  probs: [n, C], a plainly fine-tuned model's probabilities on the noisy training examples;
  noisy_labels: int [n]. T_club: `anchor_transition`. T_spade[i, j]: fraction of the examples
  predicted i (argmax) whose noisy label is j; a class that is never predicted has no such
  fraction, and its row is taken as e_i (no noise seen), so F stays row-stochastic (the authors'
  code leaves it zero).
  F is recovered when the model's argmax is mostly the clean class and its anchors are near
  one-hot (T_club ≈ I, T_spade ≈ F); probabilities that are the calibrated noisy posterior
  p = q F (q clean) give T_club ≈ T_spade ≈ F, hence ≈ F F — then `anchor_transition` alone is
  the better estimate.
  """
  probs = np.asarray(probs, np.float64)
  num_classes = probs.shape[1]
  counts = np.zeros((num_classes, num_classes))
  np.add.at(counts, (np.argmax(probs, axis=1), np.asarray(noisy_labels)), 1.0)
  totals = counts.sum(axis=1, keepdims=True)
  spade = np.where(totals > 0, counts / np.maximum(totals, 1.0), np.eye(num_classes))
  return anchor_transition(probs, percentile) @ spade
