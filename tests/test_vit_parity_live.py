"""ViT weights -> ftjax against timm itself (runs only where torch and timm are installed): fresh random ViT-Ti/16s
of both poolings through .safetensors, .pth, .pt and .npz files, at the checkpoint's image size and another; the
fixtures' reference; timm's key names and shapes for every named variant."""

import importlib.util

import chex
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the live timm comparisons need torch and timm")
if importlib.util.find_spec("timm") is None:
  pytest.skip("the live timm comparisons need timm (pip install timm)", allow_module_level=True)
import safetensors.torch  # noqa: E402 (after the skip: safetensors.torch imports torch)

from ftjax.models import vit, vit_import  # noqa: E402
from tests import test_vit as fixtures  # noqa: E402
from tests.fixtures import make_vit_fixtures as script  # noqa: E402

script.import_timm()
from timm.models.vision_transformer import _load_weights, checkpoint_filter_fn  # noqa: E402

NUM_CLASSES = script.NUM_CLASSES
TI16 = vit.VARIANTS["vit_ti16"]
TIMM_SHAPE = dict(
  embed_dim=TI16["width"],
  depth=TI16["depth"],
  num_heads=TI16["num_heads"],
  mlp_ratio=TI16["mlp_dim"] / TI16["width"],
  patch_size=TI16["patch_size"],
)
SIZE, LARGE_SIZE = 64, 96  # 4x4 and 6x6 grids of 16x16 patches


def timm_logits(model, images: np.ndarray) -> np.ndarray:
  """timm's eval-mode logits on NHWC `images`."""
  return script.timm_logits(model, np.ascontiguousarray(images.transpose(0, 3, 1, 2)))


def ftjax_logits(path, images: np.ndarray, head: dict, resize_method: str = "bilinear") -> np.ndarray:
  """ftjax's ViT of `architecture_of(path)` (exact GELU, as timm) holding the checkpoint loaded for `images`' size
  and the classifier `head`."""
  architecture = vit_import.architecture_of(path)
  fields = {field: architecture[field] for field in vit_import.MODULE_FIELDS}
  params = vit_import.load_vit(path, image_size=images.shape[1], resize_method=resize_method)["params"]
  model = vit.ViT(NUM_CLASSES, **{**fields, "approximate_gelu": False})
  return np.asarray(model.apply({"params": {**params, "head": head}}, images))


def random_images(size: int) -> np.ndarray:
  return np.random.default_rng(1).normal(size=(2, size, size, 3)).astype(np.float32)


def test_fixtures_hold_what_timm_computes():
  reference = fixtures.timm_reference()
  model = script.timm_vit("cls")
  model.load_state_dict(safetensors.torch.load_file(fixtures.TIMM_FILE))
  np.testing.assert_allclose(timm_logits(model, fixtures.images(28)), reference["timm_cls"], rtol=1e-5, atol=1e-6)
  for name, size in (("npz_gap", 28), ("npz_gap_40", 40)):
    model = script.timm_vit("gap", image_size=size)
    with torch.no_grad():
      _load_weights(model, str(fixtures.NPZ_FILE))
    np.testing.assert_allclose(timm_logits(model, fixtures.images(size)), reference[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pooling", ["cls", "gap"])
def test_state_dict_logits_match_timm(pooling, tmp_path):
  model = script.randomize(script.timm_vit(pooling, image_size=SIZE, **TIMM_SHAPE), seed=1)
  state_dict = model.state_dict()
  safetensors.torch.save_file(state_dict, tmp_path / "w.safetensors")
  torch.save(state_dict, tmp_path / "w.pth")
  torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in state_dict.items()}}, tmp_path / "ckpt.pt")

  expected = dict(model="vit_ti16", **TI16, pooling=pooling, approximate_gelu=False, image_size=SIZE, channels=3)
  variables = vit_import.load_vit(tmp_path / "w.safetensors")
  for path in ("w.safetensors", "w.pth", "ckpt.pt"):
    assert vit_import.architecture_of(tmp_path / path) == expected
    chex.assert_trees_all_equal(vit_import.load_vit(tmp_path / path), variables)

  head = {"kernel": state_dict["head.weight"].numpy().T, "bias": state_dict["head.bias"].numpy()}
  images = random_images(SIZE)
  logits = ftjax_logits(tmp_path / "w.safetensors", images, head)
  np.testing.assert_allclose(logits, timm_logits(model, images), rtol=1e-4, atol=1e-4)
  if pooling == "cls":
    return  # the fixtures hold the class-token model's resize; the grid alone is resized here

  large = script.timm_vit(pooling, image_size=LARGE_SIZE, **TIMM_SHAPE)
  large.load_state_dict(checkpoint_filter_fn(dict(state_dict), large))  # timm resizes bicubically, antialiased
  images = random_images(LARGE_SIZE)
  logits = ftjax_logits(tmp_path / "w.safetensors", images, head, resize_method="bicubic")
  np.testing.assert_allclose(logits, timm_logits(large, images), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pooling", ["cls", "gap"])
def test_npz_logits_match_timm(pooling, tmp_path):
  shape = dict(width=TI16["width"], depth=TI16["depth"], heads=TI16["num_heads"], mlp_dim=TI16["mlp_dim"])
  arrays = script.jax_vit_arrays(np.random.default_rng(1), SIZE // 16, pooling == "cls", patch=16, **shape)
  np.savez(tmp_path / "w.npz", **arrays)
  expected = dict(model="vit_ti16", **TI16, pooling=pooling, approximate_gelu=True, image_size=SIZE, channels=3)
  assert vit_import.architecture_of(tmp_path / "w.npz") == {**expected, **vit_import.JAX_VIT_NORMALIZATION}

  head = {"kernel": arrays["head/kernel"], "bias": arrays["head/bias"]}
  # timm's .npz loader resizes bilinearly; the fixtures hold the GAP model's resize, the class token's is here
  for size in (SIZE, LARGE_SIZE) if pooling == "cls" else (SIZE,):
    model = script.timm_vit(pooling, image_size=size, **TIMM_SHAPE)
    with torch.no_grad():
      _load_weights(model, str(tmp_path / "w.npz"))
    images = random_images(size)
    logits = ftjax_logits(tmp_path / "w.npz", images, head)
    np.testing.assert_allclose(logits, timm_logits(model, images), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", list(vit.VARIANTS))
@pytest.mark.parametrize("pooling", ["cls", "gap"])
def test_restated_shapes_are_timms(name, pooling):
  shape = vit.VARIANTS[name]
  timm_shape = dict(
    embed_dim=shape["width"],
    depth=shape["depth"],
    num_heads=shape["num_heads"],
    mlp_ratio=shape["mlp_dim"] / shape["width"],
    patch_size=shape["patch_size"],
  )
  with torch.device("meta"):
    state_dict = script.timm_vit(pooling, image_size=224, **timm_shape).state_dict()
  shapes = {key: tuple(value.shape) for key, value in state_dict.items() if not key.startswith("head.")}
  architecture = vit_import.infer_architecture(shapes, "timm")
  assert architecture == dict(model=name, **shape, pooling=pooling, approximate_gelu=False, image_size=224, channels=3)
  assert vit_import.timm_shapes(architecture) == shapes
