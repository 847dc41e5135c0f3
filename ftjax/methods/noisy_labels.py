"""The noisy-label methods (docs/methods.md §3): 'regsl', regularized self-labeling [LZ21], and 'consistent',
the consistent loss with a noise transition matrix [JLZ22]; each optionally under the layer-wise
constraint of `config.reg` (docs/methods.md §2.2)."""

import jax.numpy as jnp
import optax
from jax.scipy.special import entr

from ftjax import label_noise
from ftjax.methods import distance_regularization
from ftjax.methods.base import LossInputs, Method, MethodContext, cross_entropy
from ftjax.methods.consistent_loss import forward_corrected_loss
from ftjax.methods.label_correction import (
  correct_labels,
  init_label_correction,
  label_marginal,
  self_labeling_loss,
)


def _constraint(context: MethodContext, constrained: bool) -> tuple[optax.GradientTransformation, dict]:
  """(post_optimizer, results) of the 'constraint' method when `constrained`, else (identity, {})."""
  if not constrained:
    return optax.identity(), {}
  method = distance_regularization.constraint(context)
  return method.post_optimizer, method.results


def regsl(context: MethodContext) -> Method:
  """RegSL [LZ21]: cross-entropy on labels kept in the method state (`context.train_labels` at the
  start) with label reweighting (docs/methods.md §3.3) and self label-correction (docs/methods.md §3.2), each switched
  by `config.regsl`, plus the layer-wise constraint when `regsl.constraint`.

  Metrics: 'unweighted_loss' (mean cross-entropy on the stored labels), 'max_weight' and
  'weight_entropy' of the batch weights, 'labels_changed' (label changes before this step).
  """
  config = context.config

  def loss(inputs: LossInputs):
    state = inputs.method_state
    labels = state.labels[inputs.batch["index"]]
    value, weights = self_labeling_loss(
      inputs.logits,
      labels,
      inputs.epoch,
      config.regsl.reweighting,
      config.reweighting.temperature,
      config.reweighting.start_epoch,
    )
    metrics = {
      "unweighted_loss": jnp.mean(cross_entropy(inputs.logits, labels)),
      "max_weight": jnp.max(weights),
      "weight_entropy": jnp.sum(entr(weights)),
      "labels_changed": state.num_changed,
    }
    return value, metrics

  given_marginal = None
  if config.correction.align_prior:
    given_marginal = label_marginal(jnp.asarray(context.train_labels, jnp.int32), context.num_classes)

  def update_state(state, probs, batch, epoch):
    if not config.regsl.correction:
      return state
    return correct_labels(
      state, probs, batch["index"], epoch, config.correction.threshold, config.correction.start_epoch, given_marginal
    )

  post_optimizer, results = _constraint(context, config.regsl.constraint)
  return Method(
    "regsl",
    loss,
    init_state=init_label_correction(context.train_labels),
    update_state=update_state,
    post_optimizer=post_optimizer,
    results=results,
  )


def consistent(context: MethodContext, transition) -> Method:
  """The consistent loss [JLZ22]: forward correction with the noise transition matrix `transition`
  [C, C] (docs/methods.md §3.4; row-stochastic within 1e-3), plus the layer-wise constraint when
  `consistent.constraint`."""
  transition = label_noise.check_transition(transition, context.num_classes, atol=1e-3)

  def loss(inputs: LossInputs):
    return forward_corrected_loss(inputs.logits, inputs.batch["label"], transition), {}

  post_optimizer, results = _constraint(context, context.config.consistent.constraint)
  return Method(
    "consistent", loss, post_optimizer=post_optimizer, results={**results, "transition_matrix": transition.tolist()}
  )
