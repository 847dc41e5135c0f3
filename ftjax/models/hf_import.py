"""A local Hugging Face BERT or RoBERTa model directory (config.json, and model.safetensors or pytorch_model.bin)
as ftjax `TextEncoder` parameters.

transformers' keys, with or without the 'bert.' / 'roberta.' prefix of a task model, become ftjax paths:
'embeddings.{word,position,token_type}_embeddings.weight' -> 'embeddings/{word,position,token_type}/embedding',
'embeddings.LayerNorm' -> 'embeddings/norm', 'encoder.layer.{i}.attention.self.{query,key,value}' ->
'layer{i}/attention/{query,key,value}', 'encoder.layer.{i}.attention.output.dense' -> 'layer{i}/attention/output',
'encoder.layer.{i}.attention.output.LayerNorm' -> 'layer{i}/attention_norm', 'encoder.layer.{i}.intermediate.dense'
-> 'layer{i}/intermediate', 'encoder.layer.{i}.output.dense' -> 'layer{i}/output', 'encoder.layer.{i}.output.LayerNorm'
-> 'layer{i}/output_norm', 'pooler.dense' -> 'pooler' (BERT); linear weights transposed, LayerNorm 'weight'/'bias'
(or the older 'gamma'/'beta') -> 'scale'/'bias'. The classifier ('classifier' -> 'head/out_proj'; RoBERTa's
'classifier.dense', 'classifier.out_proj' -> 'head/dense', 'head/out_proj') is read only on request: a fine-tuning
run starts from a fresh head.
"""

import json
import os
import re
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ftjax import tree_paths
from ftjax.models.text_encoder import FAMILIES, TextArchitecture, TextEncoder

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # read in this order of preference
# transformers' config defaults per family (BertConfig, RobertaConfig), for fields a config.json leaves out.
_DEFAULTS = {
  "bert": dict(max_position_embeddings=512, type_vocab_size=2, pad_token_id=0, layer_norm_eps=1e-12),
  "roberta": dict(max_position_embeddings=512, type_vocab_size=2, pad_token_id=1, layer_norm_eps=1e-12),
}
_REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
_MODULES = {
  "embeddings/word": "embeddings.word_embeddings",
  "embeddings/position": "embeddings.position_embeddings",
  "embeddings/token_type": "embeddings.token_type_embeddings",
  "embeddings/norm": "embeddings.LayerNorm",
  "attention/query": "attention.self.query",
  "attention/key": "attention.self.key",
  "attention/value": "attention.self.value",
  "attention/output": "attention.output.dense",
  "attention_norm": "attention.output.LayerNorm",
  "intermediate": "intermediate.dense",
  "output": "output.dense",
  "output_norm": "output.LayerNorm",
  "pooler": "pooler.dense",
}
_HEAD_MODULES = {
  "bert": {"head/out_proj": "classifier"},
  "roberta": {"head/dense": "classifier.dense", "head/out_proj": "classifier.out_proj"},
}
_LEAVES = {"kernel": ("weight",), "embedding": ("weight",), "scale": ("weight", "gamma"), "bias": ("bias", "beta")}
_VALID_DIRECTORY = (
  "valid: a Hugging Face BERT or RoBERTa directory with config.json and model.safetensors or pytorch_model.bin"
)


def _read_config(directory: str) -> dict:
  """The JSON object in `directory`/config.json; a one-line ValueError for a missing or malformed file."""
  path = os.path.join(directory, "config.json")
  if not os.path.isfile(path):
    raise ValueError(f"{path!r} does not exist; {_VALID_DIRECTORY}")
  try:
    with open(path) as f:
      config = json.load(f)
  except ValueError as e:
    raise ValueError(f"{path!r} is not valid JSON ({e}); {_VALID_DIRECTORY}") from e
  if not isinstance(config, dict):
    raise ValueError(f"{path!r} holds a JSON {type(config).__name__}, not an object; {_VALID_DIRECTORY}")
  return config


def architecture_of(directory: str | os.PathLike) -> TextArchitecture:
  """The family ('bert' or 'roberta', config.json's model_type) and sizes of the model in `directory`, from its
  config.json (transformers' defaults for the fields it leaves out); a one-line ValueError for a model ftjax's
  `TextEncoder` does not compute (another model_type or activation, relative positions, a decoder)."""
  directory = os.fspath(directory)
  path = os.path.join(directory, "config.json")
  config = _read_config(directory)
  family = config.get("model_type")
  if family not in FAMILIES:
    raise ValueError(f"{path!r} has model_type {family!r}; valid: {', '.join(FAMILIES)}")
  missing = [key for key in _REQUIRED if key not in config]
  if missing:
    raise ValueError(f"{path!r} lacks {', '.join(missing)}; valid: a transformers {family} config.json")
  for key, supported in (("hidden_act", "gelu"), ("position_embedding_type", "absolute"), ("is_decoder", False)):
    if config.get(key, supported) != supported:
      raise ValueError(f"{path!r} has {key}={config[key]!r}; ftjax's {family} encoder computes only {supported!r}")
  if config["hidden_size"] % config["num_attention_heads"]:
    raise ValueError(
      f"{path!r} has hidden_size {config['hidden_size']}, not a multiple of num_attention_heads "
      f"{config['num_attention_heads']}"
    )
  config = {**_DEFAULTS[family], **{key: value for key, value in config.items() if value is not None}}
  return TextArchitecture(
    family=family,
    vocab_size=int(config["vocab_size"]),
    hidden_size=int(config["hidden_size"]),
    num_layers=int(config["num_hidden_layers"]),
    num_heads=int(config["num_attention_heads"]),
    intermediate_size=int(config["intermediate_size"]),
    max_positions=int(config["max_position_embeddings"]),
    type_vocab_size=int(config["type_vocab_size"]),
    pad_token_id=int(config["pad_token_id"]),
    layer_norm_eps=float(config["layer_norm_eps"]),
  )


def weights_file(directory: str | os.PathLike) -> str:
  """The path of the weights in `directory`: model.safetensors, else pytorch_model.bin."""
  for name in WEIGHT_FILES:
    path = os.path.join(os.fspath(directory), name)
    if os.path.isfile(path):
      return path
  raise ValueError(f"{os.fspath(directory)!r} holds neither {' nor '.join(WEIGHT_FILES)}; {_VALID_DIRECTORY}")


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """{key: numpy array, floats as float32} of a .safetensors file, or of a pytorch_model.bin read with
  torch.load(weights_only=True) (torch imported only then); a one-line ValueError for an unreadable file."""
  if path.endswith(".safetensors"):
    from safetensors import safe_open

    try:
      # through JAX arrays on the host (numpy alone has no bfloat16)
      with jax.default_device(jax.devices("cpu")[0]), safe_open(path, framework="flax") as f:
        return {key: _as_numpy(f.get_tensor(key)) for key in f.keys()}
    except Exception as e:  # safetensors raises its own SafetensorError (and others) for a damaged file
      raise ValueError(f"weights file {path!r} is not readable ({_first_line(e)}); {_VALID_DIRECTORY}") from e
  try:
    import torch
  except ImportError:
    raise ImportError(f"reading {path!r} needs `pip install torch`; a model.safetensors does not") from None
  try:
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for a damaged file
    raise ValueError(f"weights file {path!r} is not readable ({_first_line(e)}); {_VALID_DIRECTORY}") from e
  if not isinstance(state_dict, Mapping):
    raise ValueError(f"weights file {path!r} holds a {type(state_dict).__name__}, not a state dict; {_VALID_DIRECTORY}")
  return {
    key: (value.float() if value.is_floating_point() else value).numpy()
    for key, value in state_dict.items()
    if isinstance(value, torch.Tensor)
  }


def _first_line(error: Exception) -> str:
  return f"{type(error).__name__}: {' '.join(str(error).split())[:160]}"


def _as_numpy(array) -> np.ndarray:
  """A float array as float32 numpy (from bfloat16/float16 too); integer arrays as they are."""
  return np.asarray(array, np.float32) if jnp.issubdtype(array.dtype, jnp.floating) else np.asarray(array)


def hf_keys(flax_path: str, family: str) -> tuple[str, ...]:
  """transformers' keys in a `family` task model for the ftjax parameter `flax_path`, its current leaf name first,
  then the older one: 'layer3/attention_norm/scale' -> ('bert.encoder.layer.3.attention.output.LayerNorm.weight',
  '....gamma')."""
  *module, leaf = flax_path.split("/")
  module = "/".join(module)
  layer = re.fullmatch(r"layer(\d+)/(.+)", module)
  if layer:
    base = f"{family}.encoder.layer.{layer[1]}.{_MODULES[layer[2]]}"
  elif module in _HEAD_MODULES[family]:
    base = _HEAD_MODULES[family][module]
  else:
    base = f"{family}.{_MODULES[module]}"
  return tuple(f"{base}.{name}" for name in _LEAVES[leaf])


def _find(state_dict: Mapping[str, np.ndarray], keys: tuple[str, ...], family: str) -> str | None:
  """The first of `keys` in `state_dict`, also without the family's prefix (a saved bare encoder); None if none."""
  for key in keys:
    for candidate in (key, key.removeprefix(f"{family}.")):
      if candidate in state_dict:
        return candidate
  return None


def _encoder_key(key: str, family: str) -> bool:
  """Whether `key` names a tensor of the encoder itself (not a buffer, a head or a pretraining head)."""
  key = key.removeprefix(f"{family}.")
  buffers = ("embeddings.position_ids", "embeddings.token_type_ids")
  return key.startswith(("embeddings.", "encoder.")) and key not in buffers


def hf_to_flax(
  state_dict: Mapping[str, np.ndarray], architecture: TextArchitecture, *, include_head: bool = False, source: str = ""
) -> dict:
  """{'params': numpy float32 tree} of `TextEncoder(architecture)` holding the transformers `state_dict` (of
  `source`, named in errors): the encoder and BERT's pooler; the classifier too with `include_head` (its class
  count read from it), else no 'head'. A one-line ValueError names a missing tensor, one of another shape than
  `architecture` gives, or an encoder tensor it has no place for."""
  family = architecture.family
  where = f"{source!r}" if source else "the state dict"
  out_proj = _find(state_dict, hf_keys("head/out_proj/kernel", family), family)
  if include_head and out_proj is None:
    raise ValueError(f"{where} lacks the classifier {hf_keys('head/out_proj/kernel', family)[0]!r}")
  num_classes = np.shape(state_dict[out_proj])[0] if include_head else 2
  model = TextEncoder(architecture, num_classes)
  tokens = jnp.zeros((1, 4), jnp.int32)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), tokens, tokens))["params"]
  if not include_head:
    params = {name: value for name, value in params.items() if name != "head"}
  used = set()

  def convert(path: str, leaf: jax.ShapeDtypeStruct) -> np.ndarray:
    keys = hf_keys(path, family)
    key = _find(state_dict, keys, family)
    if key is None:
      raise ValueError(
        f"{where} lacks {keys[0]!r}, expected in a {family} with {architecture.num_layers} layers (for ftjax {path!r})"
      )
    used.add(key)
    array = np.asarray(state_dict[key], np.float32)
    expected = leaf.shape[::-1] if path.endswith("/kernel") else leaf.shape
    if array.shape != expected:
      raise ValueError(
        f"{where}: {key!r} has shape {array.shape}, expected {expected} (ftjax {path!r} of {architecture})"
      )
    return np.ascontiguousarray(array.T) if path.endswith("/kernel") else array

  converted = tree_paths.map_with_names(convert, params)
  extra = sorted(key for key in state_dict if _encoder_key(key, family) and key not in used)
  if extra:
    raise ValueError(
      f"{where} holds {extra[0]!r} ({len(extra)} such), which a {family} with {architecture.num_layers} layers "
      f"and these sizes has no place for: {architecture}"
    )
  return {"params": converted}


def load_hf_encoder(directory: str | os.PathLike) -> tuple[TextArchitecture, dict]:
  """(architecture, {'params'} without 'head') of the Hugging Face model in `directory`."""
  architecture = architecture_of(directory)
  path = weights_file(directory)
  return architecture, hf_to_flax(read_state_dict(path), architecture, source=path)
