"""Methods by the config's `method` name. A new method adds a module and one entry here."""

from typing import Callable, NamedTuple

import numpy as np

from ftjax.methods import bss, delta, distance_regularization, label_smoothing, noisy_labels, transition_estimation
from ftjax.methods.base import Method, MethodContext, cross_entropy_loss
from ftjax.models.structure import ModelStructure


def plain_finetuning(context: MethodContext) -> Method:
  """Plain fine-tuning: cross-entropy on the given labels, no regularisation."""
  del context
  return Method(name="none", loss=cross_entropy_loss)


def consistent_loss(context: MethodContext) -> Method:
  """The consistent loss [JLZ22] with the transition matrix `config.consistent.transition` names;
  results add its largest entry-wise error against the true matrix when that is known."""
  transition = transition_estimation.transition_matrix(context)
  method = noisy_labels.consistent(context, transition)
  if context.noise_transition is None:
    return method
  error = float(np.max(np.abs(np.asarray(transition) - np.asarray(context.noise_transition))))
  return method._replace(results={**method.results, "transition_max_abs_error": error})


class MethodEntry(NamedTuple):
  """`build(context) -> Method`; `check(config, param_shapes, structure)`: what the method needs beyond the
  config's fields, checked on the model's param shapes and structure before anything compiles (None: nothing)."""

  build: Callable[[MethodContext], Method]
  check: Callable | None = None


METHODS: dict[str, MethodEntry] = {
  "none": MethodEntry(plain_finetuning),
  "l2": MethodEntry(distance_regularization.l2, distance_regularization.check_layer_groups),
  "l2sp": MethodEntry(distance_regularization.l2sp, distance_regularization.check_layer_groups),
  "penalty": MethodEntry(distance_regularization.layerwise_penalty, distance_regularization.check_layer_groups),
  "constraint": MethodEntry(distance_regularization.constraint, distance_regularization.check_layer_groups),
  "regsl": MethodEntry(noisy_labels.regsl, distance_regularization.check_layer_groups),
  "consistent": MethodEntry(consistent_loss, distance_regularization.check_layer_groups),
  "delta": MethodEntry(delta.delta, distance_regularization.check_layer_groups),
  "bss": MethodEntry(bss.bss, bss.check_bss),
  "label_smoothing": MethodEntry(label_smoothing.label_smoothing),
}


# `config.method` is checked against METHODS by the config schema (ftjax.configs): here it is a known name.
def check_method(config, param_shapes, structure: ModelStructure) -> None:
  """Raises a one-line ValueError if `config.method` cannot be built for a model with `param_shapes` and
  `structure`."""
  check = METHODS[config.method].check
  if check is not None:
    check(config, param_shapes, structure)


def build_method(context: MethodContext) -> Method:
  """The `Method` that `context.config.method` names."""
  return METHODS[context.config.method].build(context)
