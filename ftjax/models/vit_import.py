"""Pretrained ViT weights as ftjax `ViT` params (ftjax/models/vit.py): the original JAX ViT's .npz files (vit_jax;
AugReg's have the same names) and timm VisionTransformer state dicts (.safetensors, .pth/.pt).

An .npz key is the ftjax parameter path itself ('Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/
kernel'). timm's keys become ftjax's (D = width, H = num_heads):
  patch_embed.proj.{weight [D, C, p, p], bias}  -> embedding/{kernel [p, p, C, D], bias}
  cls_token, pos_embed, norm                    -> cls, Transformer/posembed_input/pos_embedding, .../encoder_norm
  blocks.{i}.norm1, norm2                       -> Transformer/encoderblock_{i}/LayerNorm_0, LayerNorm_2
  blocks.{i}.attn.qkv.{weight [3D, D], bias}    -> .../MultiHeadDotProductAttention_1/{query,key,value} (its thirds
                                                   in that order; kernel W.T as [D, H, D/H], bias as [H, D/H])
  blocks.{i}.attn.proj.{weight, bias}           -> .../MultiHeadDotProductAttention_1/out (kernel W.T as [H, D/H, D])
  blocks.{i}.mlp.fc1, fc2                       -> .../MlpBlock_3/Dense_0, Dense_1 (kernel W.T)
(LayerNorm 'weight' -> 'scale'). The classifier head is never loaded: a fine-tuned model's head is fresh
(docs/methods.md §1), so 'head' and vit_jax's 'pre_logits' (the representation layer vit_jax drops for fine-tuning)
are left out. Loading at another image size resizes the position embedding (`vit.resize_position_embedding`).
"""

import math
import os
import re
import zipfile
from typing import Mapping

import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from ftjax import tree_paths
from ftjax.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from ftjax.models import torch_state_dicts, vit

NPZ_SUFFIX = ".npz"
SUFFIXES = (NPZ_SUFFIX, *torch_state_dicts.SUFFIXES)
# vit_jax feeds images scaled to [-1, 1]: x / 127.5 - 1, i.e. mean 0.5 and std 0.5 on [0, 1] pixels.
JAX_VIT_NORMALIZATION = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
# timm's fused qkv hides the head count; these are the widths of big_vision's named ViTs (mu, Ti, S, M, B, L, H:
# Zhai et al. 2022, Table 2), mu being ftjax's vit_tiny shape.
NUM_HEADS_BY_WIDTH = {32: 2, 192: 3, 384: 6, 512: 8, 768: 12, 1024: 16, 1280: 16}
MODULE_FIELDS = ("width", "depth", "mlp_dim", "num_heads", "patch_size", "pooling", "approximate_gelu")

_LEFT_OUT = {"npz": re.compile(r"(head|pre_logits)/(kernel|bias)"), "timm": re.compile(r"head\.(weight|bias)")}
# Per format: the tensors the architecture is read from, and the pattern of a block's keys.
_KEYS = {
  "npz": dict(
    embedding="embedding/kernel",
    cls="cls",
    posemb="Transformer/posembed_input/pos_embedding",
    mlp="Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel",
    query="Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel",
    block=r"Transformer/encoderblock_(\d+)/",
  ),
  "timm": dict(
    embedding="patch_embed.proj.weight",
    cls="cls_token",
    posemb="pos_embed",
    mlp="blocks.0.mlp.fc1.weight",
    block=r"blocks\.(\d+)\.",
  ),
}
_TIMM_BLOCK_LEAVES = {  # timm key in block i -> ftjax path in encoderblock_i, for the tensors renamed as they are
  "norm1.weight": "LayerNorm_0/scale",
  "norm1.bias": "LayerNorm_0/bias",
  "attn.proj.bias": "MultiHeadDotProductAttention_1/out/bias",
  "norm2.weight": "LayerNorm_2/scale",
  "norm2.bias": "LayerNorm_2/bias",
  "mlp.fc1.bias": "MlpBlock_3/Dense_0/bias",
  "mlp.fc2.bias": "MlpBlock_3/Dense_1/bias",
}


def source_format(path: str | os.PathLike) -> str:
  """'npz' for a vit_jax .npz file, 'timm' for a state dict file; a one-line error for another extension."""
  path = os.fspath(path)
  if not path.endswith(SUFFIXES):
    raise ValueError(
      f"{path!r} has an unsupported extension {os.path.splitext(path)[1]!r}; expected one of {', '.join(SUFFIXES)}"
    )
  return "npz" if path.endswith(NPZ_SUFFIX) else "timm"


def _unreadable_npz(path: str, error: Exception) -> ValueError:
  """The one-line error for an .npz file at `path` that holds no readable arrays."""
  detail = (str(error).strip().splitlines() or [""])[0][:120]
  return ValueError(
    f"pretrained file {path!r} is not readable ({type(error).__name__}: {detail}); valid: a vit_jax .npz of "
    "named arrays (np.savez)"
  )


def _npz_shapes(path: str) -> dict[str, tuple[int, ...]]:
  """{key: shape} of the arrays in an .npz file, from their .npy headers alone."""
  shapes = {}
  with zipfile.ZipFile(path) as archive:
    for member in archive.namelist():
      with archive.open(member) as f:
        version = np.lib.format.read_magic(f)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shapes[member.removesuffix(".npy")] = header(f)[0]
  return shapes


def read_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
  """{key: shape} of the checkpoint at `path`; an .npz's and a .safetensors file's are read from headers alone."""
  path = os.fspath(path)
  if source_format(path) == "timm":
    return torch_state_dicts.read_shapes(path)
  try:
    return _npz_shapes(path)
  except Exception as e:  # zipfile and numpy raise BadZipFile, ValueError, ... for a damaged file
    raise _unreadable_npz(path, e) from e


def read_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """{key: float32 array} of the checkpoint at `path` (an .npz's keys or a timm state dict's)."""
  path = os.fspath(path)
  if source_format(path) == "timm":
    return torch_state_dicts.read_state_dict(path)
  try:
    with np.load(path) as arrays:
      return {key: np.asarray(arrays[key], np.float32) for key in arrays.files}
  except Exception as e:  # zipfile and numpy raise BadZipFile, ValueError, ... for a damaged file
    raise _unreadable_npz(path, e) from e


def _shape(shapes: Mapping[str, tuple], key: str, ndim: int, fmt: str, layout: str) -> tuple[int, ...]:
  """The shape of `key`, or a one-line error when it is absent or has not `ndim` axes (`layout` names them)."""
  if key not in shapes:
    source = "a vit_jax .npz" if fmt == "npz" else "a timm VisionTransformer state dict"
    raise ValueError(f"checkpoint lacks {key!r}, expected in {source}; it has e.g. {sorted(shapes)[:3]}")
  if len(shapes[key]) != ndim:
    raise ValueError(f"{key!r} has shape {tuple(shapes[key])}; expected {layout}")
  return tuple(shapes[key])


def infer_architecture(shapes: Mapping[str, tuple], fmt: str) -> dict:
  """The ViT that a checkpoint of format `fmt` ('npz' or 'timm') with these {key: shape} holds: the `ViT` fields
  of `MODULE_FIELDS`, the input's image_size (position-embedding grid x patch size) and channels, 'model' (the
  `vit.VARIANTS` name of that shape, or None), and for an .npz vit_jax's input normalisation (mean, std).
  approximate_gelu is what the source computes: tanh for vit_jax, erf for timm."""
  keys = _KEYS[fmt]
  if fmt == "npz":
    patch, patch_w, channels, width = _shape(shapes, keys["embedding"], 4, fmt, "[patch, patch, channels, width]")
    mlp_dim = _shape(shapes, keys["mlp"], 2, fmt, "[width, mlp_dim]")[1]
    num_heads = _shape(shapes, keys["query"], 3, fmt, "[width, heads, head_dim]")[1]
  else:
    width, channels, patch, patch_w = _shape(shapes, keys["embedding"], 4, fmt, "[width, channels, patch, patch]")
    mlp_dim = _shape(shapes, keys["mlp"], 2, fmt, "[mlp_dim, width]")[0]
    if "fc_norm.weight" in shapes:
      raise ValueError(
        "'fc_norm.weight': this timm ViT normalises after pooling (fc_norm), which ftjax's ViT does not; valid: "
        "a timm ViT with its final LayerNorm 'norm' before pooling (fc_norm=False)"
      )
    if width not in NUM_HEADS_BY_WIDTH:
      raise ValueError(
        f"'patch_embed.proj.weight' gives width {width}, whose head count a timm state dict does not record; "
        f"known widths: {', '.join(map(str, NUM_HEADS_BY_WIDTH))}"
      )
    num_heads = NUM_HEADS_BY_WIDTH[width]
  if patch != patch_w:
    raise ValueError(f"{keys['embedding']!r} has shape {tuple(shapes[keys['embedding']])}; expected square patches")
  pooling = "cls" if keys["cls"] in shapes else "gap"
  tokens = _shape(shapes, keys["posemb"], 3, fmt, "[1, tokens, width]")[1] - (pooling == "cls")
  grid = math.isqrt(max(tokens, 0))
  if grid * grid != tokens or grid == 0:
    raise ValueError(
      f"{keys['posemb']!r} has shape {tuple(shapes[keys['posemb']])}: {tokens} patch positions"
      f"{' after the class token' if pooling == 'cls' else ''}, not a square grid"
    )
  depth = 1 + max(int(m[1]) for key in shapes if (m := re.match(keys["block"], key)))
  shape = dict(width=width, depth=depth, mlp_dim=mlp_dim, num_heads=num_heads, patch_size=patch)
  model = next((name for name, variant in vit.VARIANTS.items() if variant == shape), None)
  normalization = JAX_VIT_NORMALIZATION if fmt == "npz" and channels == 3 else {}
  return dict(
    model=model,
    **shape,
    pooling=pooling,
    approximate_gelu=fmt == "npz",
    image_size=grid * patch,
    channels=channels,
    **normalization,
  )


def architecture_of(path: str | os.PathLike) -> dict:
  """`infer_architecture` of the checkpoint at `path` (an .npz's or .safetensors file's headers alone are read)."""
  return infer_architecture(read_shapes(path), source_format(path))


def param_shapes(architecture: Mapping) -> dict[str, tuple[int, ...]]:
  """{parameter path: shape} of the ftjax ViT of `architecture` at its image_size, without the head."""
  model = vit.ViT(num_classes=1, **{field: architecture[field] for field in MODULE_FIELDS})
  size, channels = architecture["image_size"], architecture["channels"]
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, channels))))
  return {name: tuple(leaf.shape) for name, leaf in tree_paths.named_leaves(shapes["params"]).items()}


def timm_shapes(architecture: Mapping) -> dict[str, tuple[int, ...]]:
  """{key: shape} of timm's VisionTransformer state dict (without its head) for `architecture`, restated from
  timm.models.vision_transformer (qkv_bias, no layer scale, no register tokens, final norm before pooling)."""
  width, mlp_dim, patch = architecture["width"], architecture["mlp_dim"], architecture["patch_size"]
  cls = architecture["pooling"] == "cls"
  tokens = (architecture["image_size"] // patch) ** 2 + cls
  shapes = {
    "patch_embed.proj.weight": (width, architecture["channels"], patch, patch),
    "patch_embed.proj.bias": (width,),
    **({"cls_token": (1, 1, width)} if cls else {}),
    "pos_embed": (1, tokens, width),
  }
  for i in range(architecture["depth"]):
    block = {
      "norm1.weight": (width,),
      "norm1.bias": (width,),
      "attn.qkv.weight": (3 * width, width),
      "attn.qkv.bias": (3 * width,),
      "attn.proj.weight": (width, width),
      "attn.proj.bias": (width,),
      "norm2.weight": (width,),
      "norm2.bias": (width,),
      "mlp.fc1.weight": (mlp_dim, width),
      "mlp.fc1.bias": (mlp_dim,),
      "mlp.fc2.weight": (width, mlp_dim),
      "mlp.fc2.bias": (width,),
    }
    shapes.update({f"blocks.{i}.{key}": shape for key, shape in block.items()})
  return {**shapes, "norm.weight": (width,), "norm.bias": (width,)}


def _check_against(found: Mapping[str, tuple], expected: Mapping[str, tuple], fmt: str, architecture: Mapping):
  """One-line error naming the first tensor that `expected` lacks, that `found` lacks, or whose shapes differ."""
  summary = ", ".join(f"{field} {architecture[field]}" for field in ("width", "depth", "mlp_dim", "patch_size"))
  source = "vit_jax .npz" if fmt == "npz" else "timm state dict"
  for key in found:
    if key not in expected and not _LEFT_OUT[fmt].fullmatch(key):
      raise ValueError(
        f"unknown key {key!r} in a {source}; ftjax's ViT has no such tensor (its keys: {next(iter(expected))!r}, ...)"
      )
  for key, shape in expected.items():
    if key not in found:
      raise ValueError(f"{source} lacks {key!r} of shape {shape}, expected in a ViT with {summary}")
    if tuple(found[key]) != tuple(shape):
      raise ValueError(f"{key!r} has shape {tuple(found[key])} where a ViT with {summary} expects {tuple(shape)}")


def timm_to_params(state_dict: Mapping[str, np.ndarray], architecture: Mapping) -> dict[str, np.ndarray]:
  """{ftjax parameter path: float32 array} of the timm `state_dict` (head left out; module docstring's mapping)."""
  _check_against({k: np.shape(v) for k, v in state_dict.items()}, timm_shapes(architecture), "timm", architecture)
  width, heads = architecture["width"], architecture["num_heads"]
  params = {
    "embedding/kernel": np.transpose(state_dict["patch_embed.proj.weight"], (2, 3, 1, 0)),
    "embedding/bias": state_dict["patch_embed.proj.bias"],
    "Transformer/posembed_input/pos_embedding": state_dict["pos_embed"],
    "Transformer/encoder_norm/scale": state_dict["norm.weight"],
    "Transformer/encoder_norm/bias": state_dict["norm.bias"],
  }
  if "cls_token" in state_dict:
    params["cls"] = state_dict["cls_token"]
  for i in range(architecture["depth"]):
    timm, ftjax = f"blocks.{i}.", f"Transformer/encoderblock_{i}/"
    params.update({ftjax + leaf: state_dict[timm + key] for key, leaf in _TIMM_BLOCK_LEAVES.items()})
    attention = ftjax + "MultiHeadDotProductAttention_1/"
    thirds = zip(np.split(state_dict[timm + "attn.qkv.weight"], 3), np.split(state_dict[timm + "attn.qkv.bias"], 3))
    for name, (weight, bias) in zip(("query", "key", "value"), thirds):
      params[attention + name + "/kernel"] = weight.T.reshape(width, heads, -1)
      params[attention + name + "/bias"] = bias.reshape(heads, -1)
    params[attention + "out/kernel"] = state_dict[timm + "attn.proj.weight"].T.reshape(heads, -1, width)
    params[ftjax + "MlpBlock_3/Dense_0/kernel"] = state_dict[timm + "mlp.fc1.weight"].T
    params[ftjax + "MlpBlock_3/Dense_1/kernel"] = state_dict[timm + "mlp.fc2.weight"].T
  return {path: np.ascontiguousarray(value, np.float32) for path, value in params.items()}


def load_vit(path: str | os.PathLike, image_size: int | None = None, resize_method: str = "bilinear") -> dict:
  """{'params': the backbone (no 'head') as numpy float32} of the ViT checkpoint at `path` (an .npz or a timm state
  dict), the model of `architecture_of(path)`, for image_size x image_size inputs (`fit_position_embedding`; None =
  the checkpoint's own size). Every missing, unknown or misshapen tensor is a one-line ValueError."""
  fmt = source_format(path)
  arrays = read_arrays(path)
  architecture = infer_architecture({key: value.shape for key, value in arrays.items()}, fmt)
  expected = {name: shape for name, shape in param_shapes(architecture).items() if not name.startswith("head/")}
  if fmt == "timm":
    arrays = timm_to_params(arrays, architecture)
  _check_against({key: value.shape for key, value in arrays.items()}, expected, fmt, architecture)
  params = flax.traverse_util.unflatten_dict({key: arrays[key] for key in expected}, sep="/")
  if image_size is not None:
    params = fit_position_embedding(params, architecture["patch_size"], image_size, resize_method)
  return {"params": params}


def fit_position_embedding(params: dict, patch_size: int, image_size: int, resize_method: str = "bilinear") -> dict:
  """The ViT params tree `params` for image_size x image_size inputs: `params` itself when its position embedding's
  grid is already image_size // patch_size a side, else a copy whose embedding is resized to that grid
  (`vit.resize_position_embedding`, `resize_method` 'bilinear' or 'bicubic'; a class token's entry kept)."""
  if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < patch_size:
    raise ValueError(
      f"image_size={image_size!r} is not valid; valid: an integer of at least the patch size {patch_size}"
    )
  posemb = params["Transformer"]["posembed_input"]["pos_embedding"]
  has_class_token = "cls" in params
  grid = image_size // patch_size
  if np.shape(posemb)[1] == has_class_token + grid * grid:
    return params
  resized = vit.resize_position_embedding(posemb, grid, has_class_token, resize_method)
  return {**params, "Transformer": {**params["Transformer"], "posembed_input": {"pos_embedding": resized}}}


def config_fields(path: str | os.PathLike) -> dict:
  """What `model.name='auto'` takes from the ViT checkpoint at `path` (the keys of
  `config_layout.ARCHITECTURE_FIELDS`): the `vit.VARIANTS` name of its shape, its pooling, image size and channels,
  and its release's input normalisation (vit_jax's x / 127.5 - 1 for an .npz, ImageNet's mean and std for timm's;
  0.5 and 0.5 for inputs of other than 3 channels). A one-line error when its shape is no variant's."""
  architecture = architecture_of(path)
  if architecture["model"] is None:
    shape = ", ".join(f"{field} {architecture[field]}" for field in ("width", "depth", "mlp_dim", "patch_size"))
    raise ValueError(
      f"pretrained file {os.fspath(path)!r} holds a ViT of {shape}, the shape of no ftjax ViT; valid: a checkpoint "
      f"of one of {', '.join(vit.VARIANTS)}"
    )
  channels = architecture["channels"]
  if channels != 3:
    normalization = dict(mean=(0.5,) * channels, std=(0.5,) * channels)
  elif source_format(path) == "npz":
    normalization = JAX_VIT_NORMALIZATION
  else:
    normalization = dict(mean=IMAGENET_MEAN, std=IMAGENET_STD)
  fields = ("model", "pooling", "image_size", "channels")
  return {**{field: architecture[field] for field in fields}, **normalization}
