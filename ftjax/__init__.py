"""ftjax: robust fine-tuning of pretrained networks in JAX/Flax (see README and docs/).

`import ftjax` brings every subpackage: `ftjax.data`, `ftjax.models`, `ftjax.distance`, `ftjax.hessian`,
`ftjax.generalization`, `ftjax.methods`, `ftjax.configs`, `ftjax.train` and the drivers in `ftjax.runs`,
and the shared modules the docs name (`label_noise`, `layer_groups`, `optim`, `progress_logging`)."""

from ftjax import (
  configs,
  data,
  distance,
  generalization,
  hessian,
  label_noise,
  layer_groups,
  methods,
  models,
  optim,
  progress_logging,
  runs,
  train,
)

__version__ = "0.1.0"

__all__ = [
  "__version__",
  "configs",
  "data",
  "distance",
  "generalization",
  "hessian",
  "label_noise",
  "layer_groups",
  "methods",
  "models",
  "optim",
  "progress_logging",
  "runs",
  "train",
]
