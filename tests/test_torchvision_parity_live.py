"""torchvision ResNet weights -> ftjax against PyTorch itself (runs only where torch is installed: the
`[parity]` extra): full-width ResNets' logits, .pth/.pt checkpoints, the fixtures' reference logits, key names."""

import chex
import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the live PyTorch comparisons need torch (the [parity] extra)")
import safetensors.torch  # noqa: E402 (after the skip: safetensors.torch imports torch)

from ftjax.models import torchvision_import  # noqa: E402
from ftjax.models.registry import create_model  # noqa: E402
from tests import test_torchvision_import as fixtures  # noqa: E402
from tests.fixtures.make_torchvision_fixture import LAYERS, WIDTH, random_torch_resnet, resnet  # noqa: E402

NUM_CLASSES = 10


def test_reference_keys_are_torchvisions():
  keys = list(resnet("resnet18").state_dict())
  # torchvision resnet18 has 122 entries: 'conv1.weight', 'bn1.{weight,bias,running_mean,running_var,
  # num_batches_tracked}', 'layer{1..4}.{0,1}.{conv1,bn1,conv2,bn2}.*', 'layer{2,3,4}.0.downsample.{0,1}.*', 'fc.*'.
  assert len(keys) == 122 and len(resnet("resnet50").state_dict()) == 320
  for key in [
    "conv1.weight",
    "bn1.running_var",
    "bn1.num_batches_tracked",
    "layer1.0.conv1.weight",
    "layer2.0.downsample.0.weight",
    "layer4.1.bn2.running_mean",
    "fc.weight",
    "fc.bias",
  ]:
    assert key in keys


@pytest.mark.parametrize("name", LAYERS)
def test_restated_keys_are_torchvisions(name):
  with torch.device("meta"):
    assert list(resnet(name).state_dict()) == fixtures.torchvision_keys(name)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_fixtures_hold_what_torch_computes(name):
  reference = fixtures.torch_reference()
  model = random_torch_resnet(name, width=WIDTH)
  model.load_state_dict(
    {
      k: v.float() if v.is_floating_point() else v
      for k, v in safetensors.torch.load_file(fixtures.fixture_path(name)).items()
    }
  )
  with torch.no_grad():
    logits = model(torch.from_numpy(reference["images"])).numpy()
  np.testing.assert_allclose(logits, reference[name], rtol=1e-5, atol=1e-6)


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
      "model": name,
      "width": 64,
      "stem": "imagenet",
      "image_size": 224,
      "channels": 3,
      "mean": (0.485, 0.456, 0.406),
      "std": (0.229, 0.224, 0.225),
    }
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
    state_dict = resnet(name).state_dict()
  assert torchvision_import.infer_resnet_depth(state_dict) == name
