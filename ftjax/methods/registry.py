"""Methods by the config's `method` name. A new method adds a module and one entry here."""

from typing import Callable

import numpy as np

from ftjax.methods import (distance_regularization, feature_regularization, label_smoothing, noisy_labels,
                           transition_estimation)
from ftjax.methods.base import Method, MethodContext, cross_entropy_loss


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


METHODS: dict[str, Callable[[MethodContext], Method]] = {
    "none": plain_finetuning,
    "l2": distance_regularization.l2,
    "l2sp": distance_regularization.l2sp,
    "penalty": distance_regularization.layerwise_penalty,
    "constraint": distance_regularization.constraint,
    "regsl": noisy_labels.regsl,
    "consistent": consistent_loss,
    "delta": feature_regularization.delta,
    "bss": feature_regularization.bss,
    "label_smoothing": label_smoothing.label_smoothing,
}


# Checks a method needs beyond the config's fields, on the model's param shapes (before compiling).
METHOD_CHECKS: dict[str, Callable] = {
    **{name: distance_regularization.check_layer_groups
       for name in ("l2", "l2sp", "penalty", "constraint", "regsl", "consistent", "delta")},
    "bss": feature_regularization.check_bss,
}


def check_method_name(name: str) -> None:
  if name not in METHODS:
    raise ValueError(f"method={name!r} is not a known method; valid: {', '.join(METHODS)}")


def check_method(config, param_shapes) -> None:
  """Raises a one-line ValueError if `config.method` cannot be built for a model with `param_shapes`."""
  check_method_name(config.method)
  if config.method in METHOD_CHECKS:
    METHOD_CHECKS[config.method](config, param_shapes)


def build_method(context: MethodContext) -> Method:
  """The `Method` that `context.config.method` names."""
  check_method_name(context.config.method)
  return METHODS[context.config.method](context)
