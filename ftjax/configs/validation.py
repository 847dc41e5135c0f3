"""Checks of a run config before anything is loaded or compiled: each field against the check the
schema declares beside it, then the checks that involve several fields."""

import os
import re

import ml_collections

from ftjax import data
from ftjax.config_validation import ConfigError, as_config_error, check_fields
from ftjax.configs.schema import field_checks
from ftjax.models import pretrained


def check_input_format(config: ml_collections.ConfigDict) -> None:
  """Raises `ConfigError` unless `config.mean` and `config.std` hold one value per channel and
  `config.crop_padding` is below `config.image_size`."""
  for field in ("mean", "std"):
    if len(config[field]) != config.channels:
      raise ConfigError(
        f"config.{field}={config[field]!r} is invalid; valid: {config.channels} values, one per "
        f"channel (config.channels={config.channels})"
      )
  if config.crop_padding >= config.image_size:
    raise ConfigError(
      f"config.crop_padding={config.crop_padding} is invalid; valid: an integer below image_size={config.image_size}"
    )


def check_group_patterns(groups) -> None:
  """Raises `ConfigError` naming the first pattern of `reg.groups` that is no regular expression."""
  for pattern, _ in groups:
    try:
      re.compile(pattern)
    except re.error as e:
      raise ConfigError(
        f"config.reg.groups holds {pattern!r}, which is no regular expression ({e}); valid: a Python regex "
        "over parameter paths such as 'stage1/.*'"
      ) from e


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `ConfigError` (one line, naming the field) for the first invalid field; reads no data."""
  check_fields(config, field_checks())
  check_input_format(config)
  late = [epoch for epoch in config.lr_decay_epochs if epoch > config.num_epochs]
  if late:
    raise ConfigError(
      f"config.lr_decay_epochs={tuple(config.lr_decay_epochs)} holds {late[0]}, past the last epoch; valid: "
      f"epochs <= num_epochs={config.num_epochs}"
    )
  check_group_patterns(config.reg.groups)
  if config.warmup_epochs >= config.num_epochs:
    raise ConfigError(f"config.warmup_epochs={config.warmup_epochs} must be below num_epochs={config.num_epochs}")
  transition = config.consistent.transition
  if config.method == "consistent" and transition not in ("estimate", "true") and not os.path.isfile(transition):
    raise ConfigError(
      f"config.consistent.transition={transition!r} is not a file; valid: 'estimate', 'true' or a .json/.npy matrix"
    )
  if config.method == "consistent" and transition == "true" and config.noise.type == "none":
    raise ConfigError(
      "config.consistent.transition='true' needs synthetic noise (config.noise.type != 'none'); "
      "valid: 'estimate' or a .json/.npy matrix"
    )
  with as_config_error():
    pretrained.check_spec(config.pretrained)
    data.check_dataset(config.dataset, config.data_dir or None, config.test_fraction)
