"""Source (pretrained) weights: where they come from and how they enter a fresh model.

A `pretrained` spec is one of
- 'none': no source; the model's own initialisation is the anchor;
- the name of a model shipped in `ftjax/pretrained_weights/` (see `SHIPPED`);
- a `.msgpack` file of {'params', 'batch_stats'} written by `save_variables`;
- a `.safetensors` / `.pth` / `.pt` state dict of a torchvision ResNet or a timm VisionTransformer (told apart by
  its keys: 'conv1.weight' or 'patch_embed.proj.weight');
- a `.npz` of the original JAX ViT (vit_jax, AugReg);
- a Hugging Face BERT or RoBERTa model directory (config.json, model.safetensors or pytorch_model.bin);
- a directory holding ftjax checkpoints (a workdir of `experiments.finetune` / `pretrain`).

A ViT source is fitted to the run's image size: its position embedding is resized when the patch grid differs.
A text source's tokenizer (`source_tokenizer`) lies beside its weights: a Hugging Face directory's tokenizer.json,
NAME.tokenizer.json beside a shipped or exported NAME.msgpack, or the tokenizer a workdir's run recorded.
"""

import functools
import json
import os
from typing import Any, NamedTuple

import flax.serialization
import jax
import numpy as np

from ftjax import config_layout, tree_paths
from ftjax.models import hf_import, structure, text_encoder, torch_state_dicts, torchvision_import, vit, vit_import

WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "pretrained_weights")
# What `model='auto'` takes from the source: its architecture and input format ({key: config field}).
ARCHITECTURE_FIELDS = config_layout.ARCHITECTURE_FIELDS
# A state dict's kind, by a key only it holds.
STATE_DICT_KINDS = {"conv1.weight": "torchvision", "patch_embed.proj.weight": "timm"}
FILE_SUFFIXES = (".msgpack", *vit_import.SUFFIXES)  # the source files read: ours, vit_jax's and state dicts
TOKENIZER_SUFFIX = ".tokenizer.json"  # NAME.tokenizer.json: the tokenizer of the text model NAME.msgpack


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
    f"'none', a shipped model ({', '.join(shipped_models()) or 'none shipped'}), a .msgpack file, a torchvision "
    "ResNet's or timm ViT's .safetensors or .pth file, a vit_jax .npz, a Hugging Face BERT/RoBERTa directory, or an "
    "ftjax workdir"
  )


def state_dict_kind(path: str) -> str:
  """'torchvision' or 'timm': whose state dict the .safetensors/.pth/.pt file at `path` holds, by its keys (a
  .safetensors file's header alone is read); a one-line error for a file that holds neither."""
  keys = torch_state_dicts.read_shapes(path)
  kinds = [kind for key, kind in STATE_DICT_KINDS.items() if key in keys]
  if not kinds:
    raise ValueError(
      f"pretrained file {path!r} holds neither a torchvision ResNet's state dict (no 'conv1.weight') nor a timm "
      f"VisionTransformer's (no 'patch_embed.proj.weight'); its keys include {sorted(keys)[:3]}; valid: one of those"
    )
  return kinds[0]


def is_vit_file(path: str) -> bool:
  """Whether `path` is a vit_jax .npz or a timm ViT's state dict file (else a torchvision ResNet's)."""
  return path.endswith(vit_import.NPZ_SUFFIX) or state_dict_kind(path) == "timm"


def file_architecture(path: str) -> dict:
  """The `ARCHITECTURE_FIELDS` of the torchvision, timm or vit_jax file at `path`, from its keys and shapes."""
  return vit_import.config_fields(path) if is_vit_file(path) else torchvision_import.architecture_of(path)


def is_hf_directory(spec: str) -> bool:
  """Whether `spec` is a Hugging Face model directory: one holding model.safetensors or pytorch_model.bin."""
  return os.path.isdir(spec) and any(os.path.isfile(os.path.join(spec, name)) for name in hf_import.WEIGHT_FILES)


def hf_architecture(directory: str) -> dict:
  """{'model': the `text_encoder.ARCHITECTURES` name of the Hugging Face model in `directory`, 'vocab_size': its
  vocabulary}: the named architecture that has its sizes but for the vocabulary; a one-line error when none has."""
  architecture = hf_import.architecture_of(directory)
  for name, named in text_encoder.ARCHITECTURES.items():
    if named._replace(vocab_size=architecture.vocab_size) == architecture:
      return {"model": name, "vocab_size": architecture.vocab_size}
  raise ValueError(
    f"the {architecture.family} in {directory!r} ({architecture.num_layers} layers, hidden size "
    f"{architecture.hidden_size}, {architecture.num_heads} heads, intermediate size {architecture.intermediate_size}, "
    f"{architecture.max_positions} positions) has the sizes of none of ftjax's text models; valid: a directory of "
    f"one of {', '.join(text_encoder.ARCHITECTURES)} (any vocabulary)"
  )


def check_spec(spec: str) -> None:
  """One-line error unless `spec` names a source that exists and, for a file, can be read before JAX starts:
  a .msgpack's weights are read once per process (`load_source` then reuses them); a torchvision, timm or
  vit_jax file is read as far as its keys and shapes (a .safetensors or .npz file's headers alone), its tensors
  converted only by `load_source`; a Hugging Face directory as far as its config.json and the name of its weights
  file. A workdir's checkpoint is read only by `load_source` (orbax needs JAX's devices)."""
  if spec == "none" or spec in shipped_models():
    return
  if not os.path.exists(spec):
    raise FileNotFoundError(f"pretrained={spec!r} does not exist; valid: {describe_valid()}")
  if os.path.isfile(spec) and not spec.endswith(FILE_SUFFIXES):
    raise ValueError(f"pretrained={spec!r} has an unknown file type; valid: {describe_valid()}")
  if os.path.isfile(spec) and spec.endswith(vit_import.SUFFIXES):
    file_architecture(spec)
  elif is_hf_directory(spec):
    hf_import.architecture_of(spec)
  elif os.path.isfile(spec):
    _read_source(spec, _stamp(spec))
  else:
    _read_info(_info_path(spec))


def _stamp(spec: str) -> tuple:
  """(mtime, size) of `spec` and of the checkpoint folder or Hugging Face weights under it: a source read earlier
  is read again only when these change."""
  paths = (spec, os.path.join(spec, "checkpoints"), *(os.path.join(spec, name) for name in hf_import.WEIGHT_FILES))
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


def load_source(spec: str, image_size: int | None = None) -> SourceModel | None:
  """The source model named by `spec` (module docstring), or None for 'none'; a ViT source (one whose info names a
  `vit.VARIANTS` model) with its position embedding fitted to image_size x image_size inputs (None: as stored)."""
  check_spec(spec)
  if spec == "none":
    return None
  source = _read_source(spec, _stamp(spec))
  model = config_layout.architecture_of_recorded(source.info).get("model")
  if image_size is None or model not in vit.VARIANTS:
    return source
  patch_size = vit.VARIANTS[model]["patch_size"]
  params = vit_import.fit_position_embedding(source.variables["params"], patch_size, image_size)
  return (
    source
    if params is source.variables["params"]
    else source._replace(variables={**source.variables, "params": params})
  )


@functools.lru_cache(maxsize=2)
def _read_source(spec: str, stamp: tuple) -> SourceModel:
  """The source model named by `spec` (not 'none'), as its files were at `stamp`."""
  del stamp  # the cache key: the files' state when read
  if spec in shipped_models():
    return _read_msgpack(os.path.join(WEIGHTS_DIR, spec + ".msgpack"))
  if spec.endswith(".msgpack"):
    return _read_msgpack(spec)
  if spec.endswith(vit_import.SUFFIXES) and is_vit_file(spec):
    return SourceModel(vit_import.load_vit(spec), {**file_architecture(spec), "format": vit_import.source_format(spec)})
  if spec.endswith(vit_import.SUFFIXES):
    model_name, variables = torchvision_import.load_torchvision_resnet(spec)
    return SourceModel(
      variables, {**torchvision_import.IMAGENET_ARCHITECTURE, "model": model_name, "format": "torchvision"}
    )
  if is_hf_directory(spec):
    _, variables = hf_import.load_hf_encoder(spec)
    return SourceModel(variables, {**hf_architecture(spec), "format": "huggingface"})
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
      "config.model.name='auto' takes the architecture from the pretrained source, but "
      "config.model.pretrained='none'; valid: a model name, or a source other than 'none'"
    )
  if os.path.isfile(spec) and spec.endswith(vit_import.SUFFIXES):
    return file_architecture(spec)
  if is_hf_directory(spec):
    return hf_architecture(spec)
  info = config_layout.architecture_of_recorded(_read_info(_info_path(spec)))
  if "model" not in info:
    raise ValueError(
      f"config.model.pretrained={spec!r} records no architecture (no 'model' in its .json or "
      "config.json), so config.model.name='auto' cannot be resolved; valid: a model name (with width, stem)"
    )
  return info


def source_tokenizer(spec: str) -> str | None:
  """The tokenizer.json of the text source `spec` (module docstring), or None when it has none."""
  check_spec(spec)
  if spec == "none":
    return None
  if spec in shipped_models() or spec.endswith(".msgpack"):
    path = _info_path(spec)[: -len(".json")] + TOKENIZER_SUFFIX
  elif is_hf_directory(spec):
    path = os.path.join(spec, "tokenizer.json")
  elif os.path.isdir(spec):
    path = config_layout.get_path(config_layout.in_sections(_read_info(_info_path(spec))), "data.tokenizer") or ""
  else:
    return None
  return path if os.path.isfile(path) else None


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
        f"expects {tuple(leaf.shape)} (is `model`/`width`/`stem`/`channels`/`vocab_size` the source's?)"
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
