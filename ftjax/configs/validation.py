"""Checks of a run config before anything is loaded or compiled: each field against the check the
schema declares beside it, then the checks that involve several fields."""

import os

import ml_collections

from ftjax import data
from ftjax.config_validation import ConfigError, as_config_error, check_fields
from ftjax.configs.schema import field_checks
from ftjax.models import pretrained


def check_input_format(config: ml_collections.ConfigDict) -> None:
  """Raises `ConfigError` unless `config.mean` and `config.std` hold one value per channel."""
  for field in ("mean", "std"):
    if len(config[field]) != config.channels:
      raise ConfigError(
        f"config.{field}={config[field]!r} is invalid; valid: {config.channels} values, one per "
        f"channel (config.channels={config.channels})"
      )


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises `ConfigError` (one line, naming the field) for the first invalid field; reads no data."""
  check_fields(config, field_checks())
  check_input_format(config)
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
    data.check_dataset(config.dataset, config.data_dir or None)
