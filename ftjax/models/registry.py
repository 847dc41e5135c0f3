"""Model families by name: `create_model(name, num_classes, **options)` and `structure_of(name)`.

A family is its Flax module's constructor, the `ModelStructure` it declares and the options (config fields of the
`model` section) its constructor takes; `register` adds one (the config's `model.name` then accepts its name).
The ResNets take width, stem and dtype; each ViT variant (`vit.VARIANTS`: its shape fixed) takes pooling,
dropout_rate, stochastic_depth_rate and dtype.
"""

import functools
from typing import Callable, NamedTuple

import flax.linen as nn

from ftjax.models import resnet, small_cnn, vit
from ftjax.models.resnet import STEMS, ResNet
from ftjax.models.small_cnn import SmallCNN
from ftjax.models.structure import ModelStructure

# An option that a family does not take may be passed at this value, which changes nothing (a config's `model`
# section holds every family's options); any other value is refused.
NEUTRAL_OPTIONS = {"dtype": "float32", "dropout_rate": 0.0, "stochastic_depth_rate": 0.0}
VIT_OPTIONS = ("pooling", "dropout_rate", "stochastic_depth_rate", "dtype")


class ModelFamily(NamedTuple):
  """module: `module(num_classes=..., **options)` -> a Flax module; structure: its `ModelStructure`;
  options: the constructor arguments beyond `num_classes` that `create_model` passes on (config fields)."""

  module: Callable[..., nn.Module]
  structure: ModelStructure
  options: tuple[str, ...] = ("width",)


def _resnet(stage_sizes: tuple[int, ...], bottleneck: bool) -> ModelFamily:
  return ModelFamily(
    functools.partial(ResNet, stage_sizes=stage_sizes, bottleneck=bottleneck),
    resnet.STRUCTURE,
    options=("width", "stem", "dtype"),
  )


def _vit(variant: str) -> ModelFamily:
  module, structure = vit.vit_family(variant)
  return ModelFamily(module, structure, options=VIT_OPTIONS)


MODELS: dict[str, ModelFamily] = {
  "resnet18": _resnet((2, 2, 2, 2), bottleneck=False),
  "resnet34": _resnet((3, 4, 6, 3), bottleneck=False),
  "resnet50": _resnet((3, 4, 6, 3), bottleneck=True),
  "resnet101": _resnet((3, 4, 23, 3), bottleneck=True),
  "small_cnn": ModelFamily(SmallCNN, small_cnn.STRUCTURE),
  **{variant: _vit(variant) for variant in vit.VARIANTS},
}


def register(name: str, family: ModelFamily) -> None:
  """Adds (or replaces) the family `name`: `create_model`, `structure_of` and the config's `model` field accept it."""
  if not isinstance(family, ModelFamily):
    raise TypeError(f"register({name!r}, ...) needs a ModelFamily; got {type(family).__name__}")
  MODELS[name] = family


def check_model_name(name: str) -> None:
  if name not in MODELS:
    raise ValueError(f"model={name!r} is not a known model; valid: {', '.join(sorted(MODELS))}")


def family_of(name: str) -> ModelFamily:
  """The registered family `name`; a one-line error for an unknown name."""
  check_model_name(name)
  return MODELS[name]


def structure_of(name: str) -> ModelStructure:
  """The `ModelStructure` of the registered family `name`."""
  return family_of(name).structure


def create_model(name: str, num_classes: int, **options) -> nn.Module:
  """The Flax module `name` with a fresh `num_classes`-way head, built with those of `options` that its family
  lists (e.g. width: the ResNet's first-stage channels; stem: one of STEMS; pooling, dropout_rate,
  stochastic_depth_rate: the ViT's; dtype: the compute dtype). The others are dropped, unless set to a value other
  than their `NEUTRAL_OPTIONS` one: a one-line error."""
  family = family_of(name)
  check_options(name, options)
  taken = {option: value for option, value in options.items() if option in family.options and value is not None}
  return family.module(num_classes=num_classes, **taken)


def check_options(name: str, options: dict) -> None:
  """A one-line error for an option of `options` that the family `name` does not take, set to another value than
  its `NEUTRAL_OPTIONS` one (e.g. dtype='bfloat16' for a model that computes in float32 only), or for an unknown
  stem."""
  family = family_of(name)
  for option, value in options.items():
    if option not in family.options and option in NEUTRAL_OPTIONS and value != NEUTRAL_OPTIONS[option]:
      raise ValueError(
        f"model {name!r} takes no option {option}={value!r} (its options: {', '.join(family.options)}); "
        f"valid: {NEUTRAL_OPTIONS[option]!r}"
      )
  if "stem" in family.options and options.get("stem", STEMS[0]) not in STEMS:
    raise ValueError(f"stem={options['stem']!r} is not a known stem; valid: {', '.join(STEMS)}")
