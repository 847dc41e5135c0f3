"""torchvision ResNet state dicts (.safetensors / .pth / .pt, read by `torch_state_dicts`) as ftjax ResNet variables.

torchvision 'conv1', 'bn1', 'layer{s}.{b}.{conv1,bn1,...,downsample.0,downsample.1}', 'fc' become
'stem/conv', 'stem/bn', 'stage{s}/block{b}/{conv1,bn1,...,downsample_conv,downsample_bn}', 'head';
BN running statistics go to 'batch_stats' and 'num_batches_tracked' is dropped.
"""

import os
import re
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from ftjax import tree_paths
from ftjax.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from ftjax.models import torch_state_dicts
from ftjax.models.registry import MODELS, create_model

# The input torchvision's ImageNet weights expect, and the ftjax ResNet fields that hold them.
IMAGENET_ARCHITECTURE = dict(
  width=64, stem="imagenet", image_size=224, channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD
)
_ARCHITECTURES = {
  (tuple(f.module.keywords["stage_sizes"]), f.module.keywords["bottleneck"]): name
  for name, f in MODELS.items()
  if name.startswith("resnet")
}
_MODULES = {
  "stem/conv": "conv1",
  "stem/bn": "bn1",
  "head": "fc",
  "downsample_conv": "downsample.0",
  "downsample_bn": "downsample.1",
}
_LEAVES = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
# conv (out, in, kh, kw) -> (kh, kw, in, out); linear (out, in) -> (in, out)
_TO_FLAX_AXES = {4: (2, 3, 1, 0), 2: (1, 0)}


def torch_key(flax_name: str) -> str:
  """torchvision's key for a Flax ResNet leaf, e.g. 'stage2/block0/downsample_conv/kernel' ->
  'layer2.0.downsample.0.weight' (the name excludes the 'params'/'batch_stats' collection)."""
  *module, leaf = flax_name.split("/")
  module = "/".join(module)
  if module not in _MODULES:
    stage, block, layer = module.split("/")
    return f"layer{stage[len('stage') :]}.{block[len('block') :]}.{_MODULES.get(layer, layer)}.{_LEAVES[leaf]}"
  return f"{_MODULES[module]}.{_LEAVES[leaf]}"


def infer_resnet_depth(state_dict: Mapping[str, np.ndarray]) -> str:
  """The ResNet name ('resnet18', ..., 'resnet101') whose blocks per layer and block type
  (bottleneck iff some block has a conv3) match the torchvision `state_dict`."""
  blocks: dict[int, int] = {}
  for key in state_dict:
    match = re.match(r"layer(\d+)\.(\d+)\.", key)
    if match:
      blocks[int(match[1])] = max(blocks.get(int(match[1]), 0), int(match[2]) + 1)
  sizes = tuple(blocks.get(s, 0) for s in range(1, max(blocks, default=0) + 1))
  bottleneck = any(".conv3." in key for key in state_dict)
  if (sizes, bottleneck) not in _ARCHITECTURES:
    known = ", ".join(f"{name} {list(s)}{' bottleneck' if b else ''}" for (s, b), name in _ARCHITECTURES.items())
    raise ValueError(
      f"state dict has blocks per layer {list(sizes)}{' (bottleneck)' if bottleneck else ''}, "
      f"which is no known torchvision ResNet; expected one of: {known}"
    )
  return _ARCHITECTURES[sizes, bottleneck]


def _to_flax(array: np.ndarray) -> np.ndarray:
  """A torch-layout tensor as a float32 array in Flax's layout."""
  array = np.asarray(array, dtype=np.float32)
  return np.ascontiguousarray(array.transpose(_TO_FLAX_AXES[array.ndim])) if array.ndim in _TO_FLAX_AXES else array


def torchvision_to_flax(state_dict: Mapping[str, np.ndarray]) -> dict:
  """{'params', 'batch_stats'} (numpy float32) of the ftjax ResNet ('imagenet' stem, head from 'fc',
  width = conv1's output channels: 64 in torchvision's models) holding the torchvision ResNet
  `state_dict`; exactly the tree `model.init` gives."""
  model_name = infer_resnet_depth(state_dict)
  if "fc.weight" not in state_dict:
    raise ValueError(f"state dict lacks 'fc.weight', expected in a torchvision {model_name}")
  width = np.shape(state_dict["conv1.weight"])[0] if "conv1.weight" in state_dict else 64
  model = create_model(model_name, num_classes=np.shape(state_dict["fc.weight"])[0], width=width)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))
  keys = {name: torch_key(name.partition("/")[2]) for name in tree_paths.named_leaves(shapes)}
  expected = set(keys.values())
  for key in state_dict:
    if key not in expected and not key.endswith(".num_batches_tracked"):
      raise ValueError(
        f"unknown key {key!r} in a torchvision {model_name} state dict; expected keys like "
        f"'layer1.0.conv1.weight' ({len(expected)} in all, plus num_batches_tracked)"
      )

  def convert(name: str, leaf: jax.ShapeDtypeStruct) -> np.ndarray:
    key = keys[name]
    if key not in state_dict:
      raise ValueError(f"state dict lacks {key!r}, expected in a torchvision {model_name} (for ftjax {name!r})")
    array = _to_flax(state_dict[key])
    if array.shape != leaf.shape:
      raise ValueError(
        f"{key!r} has shape {np.shape(state_dict[key])}, giving {array.shape} where ftjax "
        f"{model_name} (width {width}) expects {tuple(leaf.shape)} for {name!r}"
      )
    return array

  return tree_paths.map_with_names(convert, shapes)


def architecture_of(path: str | os.PathLike) -> dict:
  """The config fields (model, width, stem, image_size, channels, mean, std) of the torchvision
  ResNet saved at `path`, with torchvision's ImageNet input format."""
  return {"model": infer_resnet_depth(torch_state_dicts.read_shapes(path)), **IMAGENET_ARCHITECTURE}


def load_torchvision_resnet(path: str | os.PathLike) -> tuple[str, dict]:
  """(model name, {'params', 'batch_stats'}) of the torchvision ResNet saved at `path`."""
  state_dict = torch_state_dicts.read_state_dict(path)
  return infer_resnet_depth(state_dict), torchvision_to_flax(state_dict)
