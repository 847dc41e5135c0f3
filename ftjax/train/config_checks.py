"""What every field of a fine-tuning config may hold (experiments/configs/default.py)."""

import os

import ml_collections

from ftjax import data, optim
from ftjax.config_validation import (BOOLEAN, STRING, ConfigError, as_config_error, check_fields, integer,
                                     name_value_pairs, number, numbers, one_of)
from ftjax.distance import anchors, projection, radii
from ftjax.models import pretrained, registry as model_registry, resnet
from ftjax.methods import feature_regularization, registry as method_registry


def _dataset_name(value) -> bool:
  return isinstance(value, str) and (value in data.DATASETS or value.startswith("tfds:"))


FIELD_CHECKS = {
    "data_dir": STRING,
    "num_classes": integer(0),
    "test_fraction": number(0.0, 1.0, low_open=True, high_open=True),
    "examples_per_class": integer(0),
    "image_size": integer(1),
    "channels": one_of((1, 3)),
    "crop_padding": integer(0),
    "flip": BOOLEAN,
    "model": one_of((*model_registry.MODELS, "auto")),
    "width": integer(1),
    "stem": one_of(resnet.STEMS),
    "pretrained": STRING,
    "num_epochs": integer(1),
    "batch_size": integer(1),
    "eval_batch_size": integer(1),
    "optimizer": one_of(optim.OPTIMIZERS),
    "learning_rate": number(0.0, low_open=True),
    "momentum": number(0.0, 1.0, high_open=True),
    "nesterov": BOOLEAN,
    "weight_decay": number(0.0),
    "lr_schedule": one_of(optim.SCHEDULES),
    "lr_decay_epochs": numbers(0.0),
    "warmup_epochs": number(0.0),
    "method": one_of(method_registry.METHODS),
    "noise.type": one_of(("none", "symmetric", "pairflip", "matrix")),
    "noise.rate": number(0.0, 1.0, high_open=True),
    "noise.seed": integer(0),
    "noise.symmetric_mode": one_of(("other", "any")),
    "regsl.constraint": BOOLEAN,
    "regsl.correction": BOOLEAN,
    "regsl.reweighting": BOOLEAN,
    "correction.threshold": number(0.0, 1.0, low_open=True),
    "correction.start_epoch": integer(0),
    "reweighting.start_epoch": integer(0),
    "reweighting.temperature": number(0.0, low_open=True),
    "consistent.constraint": BOOLEAN,
    "consistent.transition": STRING,
    "consistent.estimator": one_of(("dual_t", "anchor")),
    "consistent.anchor_percentile": number(0.0, 100.0, low_open=True),
    "delta.alpha": number(0.0),
    "delta.beta": number(0.0),
    "delta.num_batches": integer(1),
    "delta.normalization": one_of(feature_regularization.NORMALIZATIONS),
    "bss.eta": number(0.0),
    "bss.k": integer(1),
    "label_smoothing.eps": number(0.0, 1.0),
    "reg.norm": one_of(projection.PROJECTION_NORMS),
    "reg.radius": number(0.0),
    "reg.gamma": number(1.0),
    "reg.schedule": one_of(radii.SCHEDULES),
    "reg.head_radius": number(0.0),
    "reg.bn_radius": number(0.0),
    "reg.weight": number(0.0),
    "reg.head_weight": number(0.0),
    "reg.head_anchor": one_of(anchors.HEAD_ANCHORS),
    "reg.mars_mode": one_of(projection.MARS_MODES),
    "reg.groups": name_value_pairs(str),
    "reg.group_values": name_value_pairs(float),
    "seed": integer(0),
    "checkpoint_every": integer(1),
    "log_every": integer(1),
    "eval_every": integer(0),
}


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `ConfigError` (one line, naming the field) for the first invalid field; reads no data."""
  if not _dataset_name(config.get("dataset")):
    raise ConfigError(f"config.dataset={config.get('dataset')!r} is not a known dataset; valid: "
                      f"{', '.join(data.DATASETS)} or 'tfds:NAME'")
  check_fields(config, FIELD_CHECKS)
  for field in ("mean", "std"):
    check_fields(config, {field: numbers(0.0, low_open=field == "std", length=config.channels)})
  if config.warmup_epochs >= config.num_epochs:
    raise ConfigError(f"config.warmup_epochs={config.warmup_epochs} must be below num_epochs={config.num_epochs}")
  transition = config.consistent.transition
  if config.method == "consistent" and transition not in ("estimate", "true") and not os.path.isfile(transition):
    raise ConfigError(f"config.consistent.transition={transition!r} is not a file; valid: 'estimate', 'true' "
                      "or a .json/.npy matrix")
  if config.method == "consistent" and transition == "true" and config.noise.type == "none":
    raise ConfigError("config.consistent.transition='true' needs synthetic noise (config.noise.type != 'none'); "
                      "valid: 'estimate' or a .json/.npy matrix")
  with as_config_error():
    pretrained.check_spec(config.pretrained)
    data.check_dataset(config.dataset, config.data_dir or None)
