"""Source (pretrained) weights: where they come from and how they enter a fresh model.

A `pretrained` spec is one of
- 'none': no source; the model's own initialisation is the anchor;
- the name of a model shipped in `ftjax/pretrained_weights/` (see `SHIPPED`);
- a `.msgpack` file of {'params', 'batch_stats'} written by `save_variables`;
- a `.safetensors` / `.pth` / `.pt` torchvision ResNet state dict;
- a directory holding ftjax checkpoints (a workdir of `experiments.finetune` / `pretrain`).
"""

import functools
import json
import os
from typing import Any, NamedTuple

import flax.serialization
import jax
import numpy as np

from ftjax import tree_paths
from ftjax.models import structure, torchvision_import

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "pretrained_weights")
# The config fields that `model='auto'` takes from the source: its architecture and input format.
ARCHITECTURE_FIELDS = ("model", "width", "stem", "image_size", "channels", "mean", "std")


class SourceModel(NamedTuple):
  """variables: {'params', 'batch_stats'} as numpy trees; info: what is known of how they were
  made (for a shipped model: model, width, stem, image_size, channels, dataset, accuracy)."""

  variables: dict
  info: dict


def shipped_models() -> tuple[str, ...]:
  """Names of the source models shipped inside the package."""
  if not os.path.isdir(WEIGHTS_DIR):
    return ()
  return tuple(sorted(f[: -len(".msgpack")] for f in os.listdir(WEIGHTS_DIR) if f.endswith(".msgpack")))


def describe_valid() -> str:
  return (
    f"'none', a shipped model ({', '.join(shipped_models()) or 'none shipped'}), a .msgpack, "
    ".safetensors or .pth file, or an ftjax workdir"
  )


def check_spec(spec: str) -> None:
  """One-line error unless `spec` names a source that exists and, for a file, can be read before JAX starts:
  a .msgpack's weights are read once per process (`load_source` then reuses them); a torchvision file's
  state dict is read as far as its keys (a .safetensors header alone), its tensors converted only by
  `load_source`. A workdir's checkpoint is read only by `load_source` (orbax needs JAX's devices)."""
  if spec == "none" or spec in shipped_models():
    return
  if not os.path.exists(spec):
    raise FileNotFoundError(f"pretrained={spec!r} does not exist; valid: {describe_valid()}")
  if os.path.isfile(spec) and not spec.endswith((".msgpack",) + torchvision_import.TORCH_SUFFIXES):
    raise ValueError(f"pretrained={spec!r} has an unknown file type; valid: {describe_valid()}")
  if spec.endswith(torchvision_import.TORCH_SUFFIXES):
    torchvision_import.architecture_of(spec)
  elif os.path.isfile(spec):
    _read_source(spec, _stamp(spec))
  else:
    _read_info(_info_path(spec))


def _stamp(spec: str) -> tuple:
  """(mtime, size) of `spec` and of the checkpoint folder under it: a source read earlier is read again
  only when these change."""
  paths = (spec, os.path.join(spec, "checkpoints"))
  return tuple((os.stat(p).st_mtime_ns, os.stat(p).st_size) for p in paths if os.path.exists(p))


def save_variables(path: str, variables: dict, info: dict) -> None:
  """Writes {'params', 'batch_stats'} to `path` (.msgpack) and `info` beside it (.json)."""
  variables = jax.device_get({"params": variables["params"], "batch_stats": variables.get("batch_stats", {})})
  with open(path, "wb") as f:
    f.write(flax.serialization.msgpack_serialize(variables))
  with open(path[: -len(".msgpack")] + ".json", "w") as f:
    json.dump(info, f, indent=2)


def _read_msgpack(path: str) -> SourceModel:
  """The variables in a .msgpack file written by `save_variables`; a one-line ValueError naming a file that
  holds none."""
  valid = "valid: a .msgpack of {'params', 'batch_stats'} written by experiments.pretrain --export"
  with open(path, "rb") as f:
    content = f.read()
  try:
    variables = flax.serialization.msgpack_restore(content)
  except Exception as e:  # msgpack raises ExtraData, ValueError, ... for bytes that are no msgpack
    detail = " ".join(str(e).split())[:200]
    raise ValueError(f"pretrained file {path!r} is not readable msgpack ({type(e).__name__}: {detail}); {valid}") from e
  if not isinstance(variables, dict) or not isinstance(variables.get("params"), dict):
    raise ValueError(f"pretrained file {path!r} holds no 'params' tree; {valid}")
  return SourceModel(variables, _read_info(_info_path(path)))


def load_source(spec: str) -> SourceModel | None:
  """The source model named by `spec` (module docstring), or None for 'none'."""
  check_spec(spec)
  if spec == "none":
    return None
  return _read_source(spec, _stamp(spec))


@functools.lru_cache(maxsize=2)
def _read_source(spec: str, stamp: tuple) -> SourceModel:
  """The source model named by `spec` (not 'none'), as its files were at `stamp`."""
  del stamp  # the cache key: the files' state when read
  if spec in shipped_models():
    return _read_msgpack(os.path.join(WEIGHTS_DIR, spec + ".msgpack"))
  if spec.endswith(".msgpack"):
    return _read_msgpack(spec)
  if spec.endswith(torchvision_import.TORCH_SUFFIXES):
    model_name, variables = torchvision_import.load_torchvision_resnet(spec)
    return SourceModel(
      variables, {**torchvision_import.IMAGENET_ARCHITECTURE, "model": model_name, "format": "torchvision"}
    )
  from ftjax import checkpoint_io

  directory = os.path.join(spec, "checkpoints") if os.path.isdir(os.path.join(spec, "checkpoints")) else spec
  variables, step = checkpoint_io.restore_model(directory)
  return SourceModel(variables, {**_read_info(_info_path(spec)), "step": step})


def _info_path(spec: str) -> str:
  """Where the info of a shipped model, .msgpack file or workdir source lies."""
  if spec in shipped_models():
    return os.path.join(WEIGHTS_DIR, spec + ".json")
  if spec.endswith(".msgpack"):
    return spec[: -len(".msgpack")] + ".json"
  return os.path.join(spec, "config.json")


def _read_info(path: str) -> dict:
  """The JSON object at `path` ({} when absent); a one-line ValueError naming a file that holds none."""
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    text = f.read()
  try:
    info = json.loads(text)
  except ValueError as e:
    raise ValueError(f"{path!r} is not valid JSON ({e}); valid: the JSON object ftjax wrote there") from e
  if not isinstance(info, dict):
    raise ValueError(f"{path!r} holds a JSON {type(info).__name__}; valid: the JSON object ftjax wrote there")
  return info


def source_architecture(spec: str) -> dict:
  """The `ARCHITECTURE_FIELDS` the source named by `spec` records (reads no weights, except a
  .pth file's); a one-line error if it records no model."""
  check_spec(spec)
  if spec == "none":
    raise ValueError(
      "config.model='auto' takes the architecture from the pretrained source, but "
      "config.pretrained='none'; valid: a model name, or a source other than 'none'"
    )
  if spec.endswith(torchvision_import.TORCH_SUFFIXES):
    return torchvision_import.architecture_of(spec)
  info = _read_info(_info_path(spec))
  if "model" not in info:
    raise ValueError(
      f"config.pretrained={spec!r} records no architecture (no 'model' in its .json or "
      "config.json), so config.model='auto' cannot be resolved; valid: a model name (with width, stem)"
    )
  return {field: info[field] for field in ARCHITECTURE_FIELDS if field in info}


def check_fits(source_variables: dict, model_shapes: dict, head: str) -> None:
  """One-line error naming the first tensor of the model (outside the head, whose parameter paths the regex
  `head` fullmatches) that the source lacks or holds with another shape."""
  source = tree_paths.named_leaves(source_variables)
  model = tree_paths.named_leaves(model_shapes)
  for name in sorted(model, key=lambda n: not n.startswith("params/")):  # weights before statistics
    leaf = model[name]
    if _in_head(name, head):
      continue
    if name not in source:
      raise ValueError(
        f"pretrained weights lack tensor {name!r} of the model; source has e.g. "
        f"{list(source)[:3]} (is `model`/`width`/`stem` the source's?)"
      )
    if tuple(source[name].shape) != tuple(leaf.shape):
      raise ValueError(
        f"pretrained tensor {name!r} has shape {tuple(source[name].shape)} but the model "
        f"expects {tuple(leaf.shape)} (is `model`/`width`/`stem`/`channels` the source's?)"
      )


def _in_head(name: str, head: str) -> bool:
  """Whether 'collection/path' lies in the head: `head` fullmatches its path (e.g. 'params/head/kernel')."""
  return structure.in_head(name.partition("/")[2], head)


def merge_into(init_variables: dict, source_variables: dict, head: str) -> dict:
  """`init_variables` with every tensor outside the head (the paths the regex `head` fullmatches) replaced by
  the source's (docs/methods.md §1: the head stays a fresh classifier)."""
  check_fits(source_variables, init_variables, head)
  source = tree_paths.named_leaves(source_variables)

  def pick(name: str, leaf: Any):
    return leaf if _in_head(name, head) else np.asarray(source[name], dtype=leaf.dtype)

  return tree_paths.map_with_names(pick, init_variables)
