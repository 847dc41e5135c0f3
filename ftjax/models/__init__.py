"""Flax model families by name (see `registry`), the structure each declares, and loaders of pretrained source
weights."""

from ftjax.models import pretrained, registry, resnet, small_cnn, structure, torchvision_import
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
  "torchvision_import",
]
