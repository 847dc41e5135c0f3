"""torchvision ResNet weights -> ftjax: logits parity with a PyTorch reference, tree structure, errors."""

import sys

import chex
import jax
import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn
from torch.nn import functional as F

from ftjax.models import torchvision_import
from ftjax.models.registry import create_model

NUM_CLASSES = 10
LAYERS = {"resnet18": ((2, 2, 2, 2), False), "resnet34": ((3, 4, 6, 3), False),
          "resnet50": ((3, 4, 6, 3), True), "resnet101": ((3, 4, 23, 3), True)}


# A compact copy of torchvision.models.resnet (torchvision cannot be installed beside this torch): the
# parameterised modules carry torchvision's names, so `state_dict()` keys equal torchvision's.
class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = downsample

  def forward(self, x):
    y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
    return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.downsample = downsample

  def forward(self, x):
    y = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
    y = self.bn3(self.conv3(y))
    return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):

  def __init__(self, block, layers, num_classes):
    super().__init__()
    self.inplanes = 64
    self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.layer1 = self._make_layer(block, 64, layers[0], 1)
    self.layer2 = self._make_layer(block, 128, layers[1], 2)
    self.layer3 = self._make_layer(block, 256, layers[2], 2)
    self.layer4 = self._make_layer(block, 512, layers[3], 2)
    self.fc = nn.Linear(512 * block.expansion, num_classes)

  def _make_layer(self, block, planes, blocks, stride):
    downsample = None
    if stride != 1 or self.inplanes != planes * block.expansion:
      downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                                 nn.BatchNorm2d(planes * block.expansion))
    layers = [block(self.inplanes, planes, stride, downsample)]
    self.inplanes = planes * block.expansion
    layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)

  def forward(self, x):
    x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet(layers, bottleneck, num_classes=NUM_CLASSES):
  """The torchvision ResNet with `layers` blocks per stage."""
  return ResNet(Bottleneck if bottleneck else BasicBlock, layers, num_classes)


def random_torch_resnet(name: str) -> ResNet:
  """`name` in eval mode with random (non-trivial) BN affine parameters and running statistics."""
  torch.manual_seed(0)
  model = resnet(*LAYERS[name])
  with torch.no_grad():
    for module in model.modules():
      if isinstance(module, nn.BatchNorm2d):
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_(0.0, 0.2)
        module.running_mean.normal_(0.0, 0.2)
        module.running_var.uniform_(0.5, 2.0)
  return model.eval()


def test_reference_keys_are_torchvisions():
  keys = list(resnet(*LAYERS["resnet18"]).state_dict())
  # torchvision resnet18 has 122 entries: 'conv1.weight', 'bn1.{weight,bias,running_mean,running_var,
  # num_batches_tracked}', 'layer{1..4}.{0,1}.{conv1,bn1,conv2,bn2}.*', 'layer{2,3,4}.0.downsample.{0,1}.*', 'fc.*'.
  assert len(keys) == 122 and len(resnet(*LAYERS["resnet50"]).state_dict()) == 320
  for key in ["conv1.weight", "bn1.running_var", "bn1.num_batches_tracked", "layer1.0.conv1.weight",
              "layer2.0.downsample.0.weight", "layer4.1.bn2.running_mean", "fc.weight", "fc.bias"]:
    assert key in keys


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_logits_match_torch(name, tmp_path):
  torch_model = random_torch_resnet(name)
  state_dict = torch_model.state_dict()
  safetensors.torch.save_file(state_dict, tmp_path / "w.safetensors")
  torch.save(state_dict, tmp_path / "w.pth")
  torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in state_dict.items()}}, tmp_path / "ckpt.pt")

  inferred, variables = torchvision_import.load_torchvision_resnet(tmp_path / "w.safetensors")
  assert inferred == name
  for path in ["w.safetensors", "w.pth"]:
    assert torchvision_import.architecture_of(tmp_path / path) == {
        "model": name, "width": 64, "stem": "imagenet", "image_size": 224, "channels": 3,
        "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
  for other in ["w.pth", "ckpt.pt"]:
    chex.assert_trees_all_equal(torchvision_import.load_torchvision_resnet(tmp_path / other), (name, variables))

  model = create_model(name, NUM_CLASSES)
  images = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
  init = model.init(jax.random.key(0), images.transpose(0, 2, 3, 1), train=False)
  assert jax.tree.structure(variables) == jax.tree.structure(init)
  chex.assert_trees_all_equal_shapes_and_dtypes(variables, init)

  logits = np.asarray(model.apply(variables, images.transpose(0, 2, 3, 1), train=False))
  with torch.no_grad():
    expected = torch_model(torch.from_numpy(images)).numpy()
  print(f"{name}: max |logits| {np.abs(expected).max():.3g}, max abs diff {np.abs(logits - expected).max():.3g}")
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", LAYERS)
def test_infer_resnet_depth(name):
  with torch.device("meta"):
    state_dict = resnet(*LAYERS[name]).state_dict()
  assert torchvision_import.infer_resnet_depth(state_dict) == name


def test_errors(tmp_path, monkeypatch):
  state_dict = {k: v.numpy() for k, v in random_torch_resnet("resnet18").state_dict().items()}
  with pytest.raises(ValueError, match=r"unsupported extension '\.ckpt'; expected one of \.safetensors, \.pth, \.pt"):
    torchvision_import.load_torchvision_state_dict(tmp_path / "w.ckpt")
  missing = {k: v for k, v in state_dict.items() if k != "layer3.1.bn2.running_var"}
  with pytest.raises(ValueError, match=r"lacks 'layer3\.1\.bn2\.running_var', expected in a torchvision resnet18"):
    torchvision_import.torchvision_to_flax(missing)
  with pytest.raises(ValueError, match=r"unknown key 'layer1\.0\.extra\.weight'"):
    torchvision_import.torchvision_to_flax({**state_dict, "layer1.0.extra.weight": np.zeros(1)})
  with pytest.raises(ValueError, match=r"blocks per layer \[2, 2, 2\]"):
    torchvision_import.infer_resnet_depth({k: v for k, v in state_dict.items() if not k.startswith("layer4")})
  monkeypatch.setitem(sys.modules, "torch", None)
  with pytest.raises(ImportError, match=r"needs `pip install torch`; a \.safetensors file does not"):
    torchvision_import.load_torchvision_state_dict(tmp_path / "w.pth")
