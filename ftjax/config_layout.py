"""The layout of a run's recorded config (its config.json): the sections its fields live in, the flat layout
of ftjax before 0.3 mapped onto them, and field-by-field comparison of two recorded configs."""

import copy
from typing import Any

# Fields that were top-level in configs recorded before the config had sections -> their place now.
FLAT_FIELDS = {
  "dataset": "data.name",
  "data_dir": "data.dir",
  "num_classes": "data.num_classes",
  "test_fraction": "data.test_fraction",
  "examples_per_class": "data.examples_per_class",
  "image_size": "data.image_size",
  "channels": "data.channels",
  "mean": "data.mean",
  "std": "data.std",
  "crop_padding": "data.crop_padding",
  "flip": "data.flip",
  "model": "model.name",
  "width": "model.width",
  "stem": "model.stem",
  "pretrained": "model.pretrained",
  "num_epochs": "optim.num_epochs",
  "batch_size": "optim.batch_size",
  "eval_batch_size": "optim.eval_batch_size",
  "optimizer": "optim.name",
  "learning_rate": "optim.learning_rate",
  "momentum": "optim.momentum",
  "nesterov": "optim.nesterov",
  "weight_decay": "optim.weight_decay",
  "lr_schedule": "optim.lr_schedule",
  "lr_decay_epochs": "optim.lr_decay_epochs",
  "warmup_epochs": "optim.warmup_epochs",
  "seed": "run.seed",
  "checkpoint_every": "run.checkpoint_every",
  "log_every": "run.log_every",
  "eval_every": "run.eval_every",
}

# What a source model records of its architecture and input format (a shipped model's .json, an exported
# .msgpack's) -> the config field `model='auto'` sets from it.
ARCHITECTURE_FIELDS = {
  "model": "model.name",
  "width": "model.width",
  "stem": "model.stem",
  "pooling": "model.pooling",
  "vocab_size": "model.vocab_size",
  "image_size": "data.image_size",
  "channels": "data.channels",
  "mean": "data.mean",
  "std": "data.std",
}


def get_path(tree: dict, dotted: str, default: Any = None) -> Any:
  """The value at the dotted path `dotted` of the nested dict `tree`, or `default` when absent."""
  node = tree
  for part in dotted.split("."):
    if not isinstance(node, dict) or part not in node:
      return default
    node = node[part]
  return node


def set_path(tree: dict, dotted: str, value: Any) -> None:
  """Sets the dotted path `dotted` of the nested dict `tree` to `value`, making the sections it needs."""
  *parents, leaf = dotted.split(".")
  node = tree
  for part in parents:
    node = node.setdefault(part, {})
  node[leaf] = value


def in_sections(recorded: dict) -> dict:
  """The recorded config `recorded` in the sectioned layout: a flat one's top-level fields moved to their
  sections (a sectioned one is returned as it is)."""
  flat = [key for key, value in recorded.items() if key in FLAT_FIELDS and not isinstance(value, dict)]
  if not flat:
    return recorded
  nested = copy.deepcopy({key: value for key, value in recorded.items() if key not in flat})
  for key in flat:
    set_path(nested, FLAT_FIELDS[key], recorded[key])
  return nested


def completed(recorded: dict, defaults: dict) -> dict:
  """`recorded` with the fields it lacks (added to ftjax after it was written) taken from `defaults`."""
  merged = dict(recorded)
  for key, value in defaults.items():
    if key not in merged:
      merged[key] = copy.deepcopy(value)
    elif isinstance(value, dict) and isinstance(merged[key], dict):
      merged[key] = completed(merged[key], value)
  return merged


def architecture_of_recorded(recorded: dict) -> dict:
  """The `ARCHITECTURE_FIELDS` (source vocabulary: 'model', 'width', ...) that a run's recorded config holds, or a
  source model's description (its .json: those keys at the top level, e.g. 'pooling', 'vocab_size')."""
  nested = in_sections(recorded)
  found = {key: get_path(nested, path, recorded.get(key)) for key, path in ARCHITECTURE_FIELDS.items()}
  return {key: value for key, value in found.items() if value is not None and not isinstance(value, dict)}


# Fields that change how a run is computed but not one of its values: a run may resume or count as finished
# under another value of them.
VALUE_FREE_FIELDS = ("data.workers",)


def differing_fields(recorded: dict, expected: dict, prefix: str = "") -> list[str]:
  """The dotted names of the fields whose values differ between two recorded (JSON) configs."""
  fields = []
  for key in sorted(set(recorded) | set(expected)):
    a, b = recorded.get(key), expected.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      fields += differing_fields(a, b, f"{prefix}{key}.")
    elif a != b:
      fields.append(prefix + key)
  return fields


def differing_run_fields(recorded: dict, expected: dict) -> list[str]:
  """`differing_fields` of two recorded configs but `VALUE_FREE_FIELDS`: those that make them different runs."""
  return [field for field in differing_fields(recorded, expected) if field not in VALUE_FREE_FIELDS]
