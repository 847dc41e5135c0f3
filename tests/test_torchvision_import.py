"""torchvision ResNet weights -> ftjax: logits against PyTorch's stored in tests/fixtures, tree structure, errors.

The fixtures (small width-4 ResNet-18 and ResNet-50 state dicts, an input batch and PyTorch's logits) are
written by tests/fixtures/make_torchvision_fixture.py; tests/test_torchvision_parity_live.py compares
against PyTorch itself where torch is installed. This module never imports torch.
"""

import pathlib
import sys

import chex
import jax
import numpy as np
import pytest
import safetensors.numpy

from ftjax.models import torchvision_import
from ftjax.models.registry import create_model

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
NUM_CLASSES = 10
WIDTH = 4  # the fixtures' first-stage width (torchvision's is 64)
LAYERS = {
  "resnet18": ((2, 2, 2, 2), False),
  "resnet34": ((3, 4, 6, 3), False),
  "resnet50": ((3, 4, 6, 3), True),
  "resnet101": ((3, 4, 23, 3), True),
}


def fixture_path(name: str) -> pathlib.Path:
  """The PyTorch-written state dict of the width-4 torchvision `name` ('resnet18' or 'resnet50')."""
  return FIXTURES / f"torchvision_{name}.safetensors"


def torch_reference() -> dict[str, np.ndarray]:
  """'images' [2, 3, 32, 32] (NCHW) and PyTorch's eval-mode logits of each fixture model on them."""
  return safetensors.numpy.load_file(FIXTURES / "torchvision_logits.safetensors")


def torchvision_keys(name: str) -> list[str]:
  """The state dict keys of torchvision's `name`, restated from torchvision.models.resnet: 'conv1', 'bn1',
  'layer{s}.{b}.{conv1,bn1,conv2,bn2[,conv3,bn3]}', 'layer{s}.0.downsample.{0,1}' where the first block
  strides or widens, and 'fc'."""
  layers, bottleneck = LAYERS[name]
  bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
  keys = ["conv1.weight"] + [f"bn1.{leaf}" for leaf in bn]
  for s, blocks in enumerate(layers, start=1):
    for b in range(blocks):
      for i in range(1, 4 if bottleneck else 3):
        keys += [f"layer{s}.{b}.conv{i}.weight"] + [f"layer{s}.{b}.bn{i}.{leaf}" for leaf in bn]
      if b == 0 and (s > 1 or bottleneck):
        keys += [f"layer{s}.0.downsample.0.weight"] + [f"layer{s}.0.downsample.1.{leaf}" for leaf in bn]
  return keys + ["fc.weight", "fc.bias"]


def ftjax_logits(name: str, state_dict: dict[str, np.ndarray], images: np.ndarray) -> np.ndarray:
  """ftjax's width-4 `name` holding the converted `state_dict`, applied in eval mode to NCHW `images`."""
  variables = torchvision_import.torchvision_to_flax(state_dict)
  model = create_model(name, NUM_CLASSES, width=WIDTH)
  return np.asarray(model.apply(variables, images.transpose(0, 2, 3, 1), train=False))


def assert_matches_torch(logits: np.ndarray, expected: np.ndarray) -> None:
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_fixture_keys_are_torchvisions(name):
  keys = list(safetensors.numpy.load_file(fixture_path(name)))
  assert sorted(keys) == sorted(torchvision_keys(name))
  # torchvision resnet18 has 122 entries, resnet50 320 (counted on torchvision.models).
  assert len(keys) == {"resnet18": 122, "resnet50": 320}[name]


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_logits_match_torch(name):
  reference = torch_reference()
  inferred, variables = torchvision_import.load_torchvision_resnet(fixture_path(name))
  assert inferred == name and torchvision_import.architecture_of(fixture_path(name))["model"] == name

  model = create_model(name, NUM_CLASSES, width=WIDTH)
  images = reference["images"].transpose(0, 2, 3, 1)
  init = model.init(jax.random.key(0), images, train=False)
  assert jax.tree.structure(variables) == jax.tree.structure(init)
  chex.assert_trees_all_equal_shapes_and_dtypes(variables, init)

  logits = np.asarray(model.apply(variables, images, train=False))
  expected = reference[name]
  print(f"{name}: max |logits| {np.abs(expected).max():.3g}, max abs diff {np.abs(logits - expected).max():.3g}")
  assert_matches_torch(logits, expected)


@pytest.mark.parametrize(
  "name, key",
  [
    ("resnet18", "conv1.weight"),
    ("resnet18", "layer2.0.downsample.1.running_mean"),
    ("resnet18", "layer3.1.bn2.running_var"),
    ("resnet50", "layer1.0.conv3.weight"),
    ("resnet50", "layer3.5.bn3.weight"),
  ],
)
def test_a_changed_tensor_fails_the_comparison(name, key):
  reference = torch_reference()
  state_dict = safetensors.numpy.load_file(fixture_path(name))
  state_dict[key] = state_dict[key] + np.float16(0.5)  # every entry: a single one can sit where a ReLU is flat
  with pytest.raises(AssertionError):
    assert_matches_torch(ftjax_logits(name, state_dict, reference["images"]), reference[name])


@pytest.mark.parametrize("name", LAYERS)
def test_infer_resnet_depth(name):
  state_dict = dict.fromkeys(torchvision_keys(name), np.zeros(1, np.float32))
  assert torchvision_import.infer_resnet_depth(state_dict) == name


def test_errors(tmp_path, monkeypatch):
  state_dict = safetensors.numpy.load_file(fixture_path("resnet18"))
  with pytest.raises(ValueError, match=r"unsupported extension '\.ckpt'; expected one of \.safetensors, \.pth, \.pt"):
    torchvision_import.load_torchvision_resnet(tmp_path / "w.ckpt")
  missing = {k: v for k, v in state_dict.items() if k != "layer3.1.bn2.running_var"}
  with pytest.raises(ValueError, match=r"lacks 'layer3\.1\.bn2\.running_var', expected in a torchvision resnet18"):
    torchvision_import.torchvision_to_flax(missing)
  with pytest.raises(ValueError, match=r"unknown key 'layer1\.0\.extra\.weight'"):
    torchvision_import.torchvision_to_flax({**state_dict, "layer1.0.extra.weight": np.zeros(1)})
  with pytest.raises(ValueError, match=r"blocks per layer \[2, 2, 2\]"):
    torchvision_import.infer_resnet_depth({k: v for k, v in state_dict.items() if not k.startswith("layer4")})
  narrow = {**state_dict, "layer2.0.conv1.weight": state_dict["layer2.0.conv1.weight"][:, :2]}
  with pytest.raises(
    ValueError,
    match=r"'layer2\.0\.conv1\.weight' has shape \(8, 2, 3, 3\), giving \(3, 3, 2, 8\) "
    r"where ftjax resnet18 \(width 4\) expects \(3, 3, 4, 8\)",
  ):
    torchvision_import.torchvision_to_flax(narrow)
  monkeypatch.setitem(sys.modules, "torch", None)
  with pytest.raises(ImportError, match=r"needs `pip install torch`; a \.safetensors file does not"):
    torchvision_import.load_torchvision_resnet(tmp_path / "w.pth")
