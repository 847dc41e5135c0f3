"""Flax model families by name (see `registry`: ResNets, a small CNN, ViTs), the structure each declares, and
loaders of pretrained source weights (torchvision ResNets, timm and vit_jax ViTs)."""

from ftjax.models import (
  pretrained,
  registry,
  resnet,
  small_cnn,
  structure,
  torch_state_dicts,
  torchvision_import,
  vit,
  vit_import,
)
from ftjax.models.registry import MODELS, ModelFamily, create_model, register, structure_of
from ftjax.models.structure import ModelStructure

__all__ = [
  "MODELS",
  "ModelFamily",
  "ModelStructure",
  "create_model",
  "pretrained",
  "register",
  "registry",
  "resnet",
  "small_cnn",
  "structure",
  "structure_of",
  "torch_state_dicts",
  "torchvision_import",
  "vit",
  "vit_import",
]
