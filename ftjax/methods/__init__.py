"""Fine-tuning methods: each a loss, a state pytree and optax transforms (see `base`), built from a
`MethodContext` by a function such as `regsl`; `METHODS` (in `registry`) names them for `config.method`."""

from ftjax.methods import (
  base,
  bss,
  consistent_loss,
  delta,
  distance_regularization,
  label_correction,
  label_smoothing,
  noisy_labels,
  registry,
  transition_estimation,
)
from ftjax.methods.base import LossInputs, Method, MethodContext, cross_entropy
from ftjax.methods.distance_regularization import constraint, l2, l2sp
from ftjax.methods.noisy_labels import consistent, regsl
from ftjax.methods.registry import METHODS, build_method, method_config

__all__ = [
  "LossInputs",
  "METHODS",
  "Method",
  "MethodContext",
  "base",
  "bss",
  "build_method",
  "consistent",
  "consistent_loss",
  "constraint",
  "cross_entropy",
  "delta",
  "distance_regularization",
  "l2",
  "l2sp",
  "label_correction",
  "label_smoothing",
  "method_config",
  "noisy_labels",
  "regsl",
  "registry",
  "transition_estimation",
]
