"""Methods by the config's `method` name. A new method adds a module and one entry here."""

from typing import Callable, NamedTuple

import ml_collections
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
  """`build(context) -> Method`; `check(config, param_shapes, structure, batch_size)`: what the method needs
  beyond the config's fields, checked on the model's param shapes and structure and the global batch size before
  anything compiles (None: nothing); `sections`: the config sections the method reads (it receives only these)."""

  build: Callable[[MethodContext], Method]
  check: Callable | None = None
  sections: tuple[str, ...] = ()


_DISTANCE = ("reg",)
METHODS: dict[str, MethodEntry] = {
  "none": MethodEntry(plain_finetuning),
  "l2": MethodEntry(distance_regularization.l2, distance_regularization.check_layer_groups, _DISTANCE),
  "l2sp": MethodEntry(distance_regularization.l2sp, distance_regularization.check_layer_groups, _DISTANCE),
  "penalty": MethodEntry(
    distance_regularization.layerwise_penalty, distance_regularization.check_layer_groups, _DISTANCE
  ),
  "constraint": MethodEntry(distance_regularization.constraint, distance_regularization.check_layer_groups, _DISTANCE),
  "regsl": MethodEntry(
    noisy_labels.regsl,
    distance_regularization.check_layer_groups,
    ("reg", "regsl", "correction", "reweighting"),
  ),
  "consistent": MethodEntry(consistent_loss, distance_regularization.check_layer_groups, ("reg", "consistent")),
  "delta": MethodEntry(delta.delta, distance_regularization.check_layer_groups, ("reg", "delta")),
  "bss": MethodEntry(bss.bss, bss.check_bss, ("bss",)),
  "label_smoothing": MethodEntry(label_smoothing.label_smoothing, None, ("label_smoothing",)),
}


# `config.method` is checked against METHODS by the config schema (ftjax.configs): here it is a known name.
def method_config(config: ml_collections.ConfigDict) -> ml_collections.FrozenConfigDict:
  """What the method `config.method` receives of the run's config: its name and its own sections, read-only."""
  entry = METHODS[config.method]
  return ml_collections.FrozenConfigDict(
    {"method": config.method, **{section: config[section].to_dict() for section in entry.sections}}
  )


def check_method(config: ml_collections.ConfigDict, param_shapes, structure: ModelStructure) -> None:
  """Raises a one-line ValueError if `config.method` cannot be built for a model with `param_shapes` and
  `structure`, at the global batch size `config.optim.batch_size`."""
  check = METHODS[config.method].check
  if check is not None:
    check(method_config(config), param_shapes, structure, config.optim.batch_size)


def build_method(context: MethodContext) -> Method:
  """The `Method` that `context.config.method` names (`context.config`: its `method_config`)."""
  return METHODS[context.config.method].build(context)
