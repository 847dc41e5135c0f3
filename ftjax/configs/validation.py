"""Checks of a run config before anything is loaded or compiled: each field against the check the
schema declares beside it, then the checks that involve several fields."""

import os
import re

import ml_collections

from ftjax import data
from ftjax.config_validation import ConfigError, as_config_error, check_fields
from ftjax.configs.schema import field_checks
from ftjax.methods import transition_estimation
from ftjax.models import pretrained


def check_input_format(data: ml_collections.ConfigDict) -> None:
  """Raises `ConfigError` unless the data section's `mean` and `std` hold one value per channel and its
  `crop_padding` is below its `image_size`."""
  for field in ("mean", "std"):
    if len(data[field]) != data.channels:
      raise ConfigError(
        f"config.data.{field}={data[field]!r} is invalid; valid: {data.channels} values, one per "
        f"channel (config.data.channels={data.channels})"
      )
  if data.crop_padding >= data.image_size:
    raise ConfigError(
      f"config.data.crop_padding={data.crop_padding} is invalid; valid: an integer below image_size={data.image_size}"
    )


def host_memory_bytes() -> int:
  """This machine's physical memory in bytes."""
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_batch_memory(config: ml_collections.ConfigDict, memory: int | None = None) -> None:
  """Raises `ConfigError` when one global batch of float32 inputs (`optim.batch_size` or `optim.eval_batch_size`
  images of `data.image_size`² × `data.channels`) would not fit in `memory` bytes (this machine's)."""
  memory = host_memory_bytes() if memory is None else memory
  per_example = 4 * config.data.image_size**2 * config.data.channels
  for field in ("batch_size", "eval_batch_size"):
    size = config.optim[field]
    if size * per_example > memory:
      raise ConfigError(
        f"config.optim.{field}={size} needs {size * per_example / 2**30:.1f} GiB for one batch of "
        f"{config.data.image_size}x{config.data.image_size}x{config.data.channels} float32 inputs, more than this "
        f"machine's {memory / 2**30:.1f} GiB of memory; valid: at most {memory // per_example}"
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
  check_input_format(config.data)
  check_batch_memory(config)
  late = [epoch for epoch in config.optim.lr_decay_epochs if epoch > config.optim.num_epochs]
  if late:
    raise ConfigError(
      f"config.optim.lr_decay_epochs={tuple(config.optim.lr_decay_epochs)} holds {late[0]}, past the last epoch; "
      "valid: "
      f"epochs <= num_epochs={config.optim.num_epochs}"
    )
  check_group_patterns(config.reg.groups)
  if len(config.data.splits) == 3 and config.data.validation_fraction:
    raise ConfigError(
      f"config.data.splits={tuple(config.data.splits)!r} names a validation split and "
      f"config.data.validation_fraction={config.data.validation_fraction} holds one out of the training split; "
      "valid: one of them (validation_fraction=0, or two splits)"
    )
  if config.optim.warmup_epochs >= config.optim.num_epochs:
    raise ConfigError(
      f"config.optim.warmup_epochs={config.optim.warmup_epochs} must be below num_epochs={config.optim.num_epochs}"
    )
  transition = config.consistent.transition
  if config.method == "consistent" and transition not in ("estimate", "true") and not os.path.isfile(transition):
    raise ConfigError(
      f"config.consistent.transition={transition!r} is not a file; valid: 'estimate', 'true' or a .json/.npy matrix"
    )
  if config.method == "consistent" and transition not in ("estimate", "true"):
    with as_config_error():
      transition_estimation.read_matrix(transition, None)  # its class count is checked once the data is read
  if config.method == "consistent" and transition == "true" and config.noise.type == "none":
    raise ConfigError(
      "config.consistent.transition='true' needs synthetic noise (config.noise.type != 'none'); "
      "valid: 'estimate' or a .json/.npy matrix"
    )
  with as_config_error():
    pretrained.check_spec(config.model.pretrained)
    data.check_dataset(
      config.data.name, config.data.dir or None, config.data.test_fraction, splits=tuple(config.data.splits)
    )
