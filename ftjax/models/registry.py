"""Models by name: `create_model(name, num_classes, width=..., stem=...)`."""

import functools
from typing import Callable

import flax.linen as nn

from ftjax.models.resnet import STEMS, ResNet
from ftjax.models.small_cnn import SmallCNN

MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), bottleneck=False),
    "resnet34": functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), bottleneck=False),
    "resnet50": functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), bottleneck=True),
    "resnet101": functools.partial(ResNet, stage_sizes=(3, 4, 23, 3), bottleneck=True),
    "small_cnn": SmallCNN,
}


def check_model_name(name: str) -> None:
  if name not in MODELS:
    raise ValueError(f"model={name!r} is not a known model; valid: {', '.join(sorted(MODELS))}")


def create_model(name: str, num_classes: int, width: int | None = None, stem: str = "imagenet") -> nn.Module:
  """The Flax module `name` with a fresh `num_classes`-way head; `width` is the first stage's
  channel count (ResNet default 64), `stem` one of STEMS (ResNets only)."""
  check_model_name(name)
  if stem not in STEMS:
    raise ValueError(f"stem={stem!r} is not a known stem; valid: {', '.join(STEMS)}")
  kwargs = {"num_classes": num_classes}
  if width is not None:
    kwargs["width"] = width
  if name.startswith("resnet"):
    kwargs["stem"] = stem
  return MODELS[name](**kwargs)
