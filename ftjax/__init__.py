"""ftjax: robust fine-tuning of pretrained networks in JAX/Flax (see README and docs/).

`import ftjax` gives every subpackage as an attribute: `ftjax.data`, `ftjax.models`, `ftjax.distance`,
`ftjax.hessian`, `ftjax.generalization`, `ftjax.methods`, `ftjax.configs`, `ftjax.train` and the drivers in
`ftjax.runs`, and the shared modules the docs name (`label_noise`, `layer_groups`, `optim`, `progress_logging`).
Each is imported when first used, so a process that needs one (a data worker unpickling `ftjax.data`) does not
import the others."""

import importlib

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
_SUBMODULES = frozenset(__all__) - {"__version__"}


def __getattr__(name: str):
  """The subpackage or module `ftjax.<name>` of `__all__`, imported on first use."""
  if name in _SUBMODULES:
    return importlib.import_module(f"{__name__}.{name}")
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted(set(globals()) | _SUBMODULES)
