"""Flax models by name (see `registry`) and loaders of pretrained source weights."""

from ftjax.models.registry import MODELS, create_model
