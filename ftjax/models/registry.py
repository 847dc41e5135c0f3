"""Model families by name: `create_model(name, num_classes, width=..., stem=...)` and `structure_of(name)`.

A family is its Flax module's constructor and the `ModelStructure` it declares; `register` adds one (the
config's `model` field then accepts its name).
"""

import functools
from typing import Callable, NamedTuple

import flax.linen as nn

from ftjax.models import resnet, small_cnn
from ftjax.models.resnet import STEMS, ResNet
from ftjax.models.small_cnn import SmallCNN
from ftjax.models.structure import ModelStructure


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
    options=("width", "stem"),
  )


MODELS: dict[str, ModelFamily] = {
  "resnet18": _resnet((2, 2, 2, 2), bottleneck=False),
  "resnet34": _resnet((3, 4, 6, 3), bottleneck=False),
  "resnet50": _resnet((3, 4, 6, 3), bottleneck=True),
  "resnet101": _resnet((3, 4, 23, 3), bottleneck=True),
  "small_cnn": ModelFamily(SmallCNN, small_cnn.STRUCTURE),
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


def create_model(name: str, num_classes: int, width: int | None = None, stem: str = "imagenet") -> nn.Module:
  """The Flax module `name` with a fresh `num_classes`-way head; `width` is the first stage's
  channel count (ResNet default 64), `stem` one of STEMS (for families that take one: the ResNets)."""
  family = family_of(name)
  if stem not in STEMS:
    raise ValueError(f"stem={stem!r} is not a known stem; valid: {', '.join(STEMS)}")
  given = {"width": width, "stem": stem}
  kwargs = {option: given[option] for option in family.options if given.get(option) is not None}
  return family.module(num_classes=num_classes, **kwargs)
