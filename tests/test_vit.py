"""The ViT family and its weight import: parameter layout, shapes, logits against timm's stored in tests/fixtures,
position-embedding resizing, structure, dropout and stochastic depth, one-line errors.

The fixtures (a timm state dict and a vit_jax-named .npz of the 'vit_tiny' shape with random weights, an input
batch, and what timm computes from them) are written by tests/fixtures/make_vit_fixtures.py;
tests/test_vit_parity_live.py compares against timm itself where torch and timm are installed. This module never
imports torch.
"""

import math
import pathlib
import sys

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

from ftjax import layer_groups, tree_paths
from ftjax.models import create_model, structure_of, vit, vit_import

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
TIMM_FILE = FIXTURES / "vit_timm_cls.safetensors"  # timm VisionTransformer, class token
NPZ_FILE = FIXTURES / "vit_jax_gap.npz"  # vit_jax names, global-average pooling
NUM_CLASSES = 10
TINY = vit.VARIANTS["vit_tiny"]


def timm_reference() -> dict[str, np.ndarray]:
  """'images' [2, 3, 40, 40] (NCHW) and timm's logits and resized position embeddings (make_vit_fixtures.py)."""
  return safetensors.numpy.load_file(FIXTURES / "vit_reference.safetensors")


def images(size: int) -> np.ndarray:
  """The fixture images' top-left size x size crop, NHWC float32."""
  return timm_reference()["images"][:, :, :size, :size].astype(np.float32).transpose(0, 2, 3, 1)


def head_of(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The checkpoint's own classifier ({'kernel', 'bias'}), which `load_vit` leaves out, for comparing logits."""
  if "head.weight" in arrays:
    return {"kernel": arrays["head.weight"].T, "bias": arrays["head.bias"]}
  return {"kernel": arrays["head/kernel"], "bias": arrays["head/bias"]}


def fixture_variables(path) -> dict:
  """{'params'} of the checkpoint at `path` for 28x28 images, its own head included (initialising a ViT compiles
  its random initialisers, which takes longer on a CPU than every test here that runs a ViT)."""
  params = vit_import.load_vit(path)["params"]
  return {"params": {**params, "head": head_of(vit_import.read_arrays(path))}}


def ftjax_logits(path, size: int, resize_method: str = "bilinear") -> np.ndarray:
  """ftjax's ViT holding the checkpoint at `path` (loaded for size x size images) and its own head, in eval mode on
  the fixture images, with exact GELU as timm computes (an .npz records vit_jax's tanh approximation)."""
  architecture = vit_import.architecture_of(path)
  variables = vit_import.load_vit(path, image_size=size, resize_method=resize_method)
  params = {**variables["params"], "head": head_of(vit_import.read_arrays(path))}
  fields = {field: architecture[field] for field in vit_import.MODULE_FIELDS}
  model = vit.ViT(NUM_CLASSES, **{**fields, "approximate_gelu": False})
  return np.asarray(model.apply({"params": params}, images(size)))


def save(arrays: dict[str, np.ndarray], path: pathlib.Path) -> pathlib.Path:
  """Writes `arrays` to `path` as an .npz or a .safetensors file (by its extension); returns `path`."""
  if path.suffix == ".npz":
    np.savez(path, **arrays)
  else:
    safetensors.numpy.save_file(arrays, path)
  return path


def assert_matches_timm(logits: np.ndarray, expected: np.ndarray) -> None:
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


def init_shapes(model: nn.Module, size: int = 28) -> dict[str, tuple[int, ...]]:
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))
  return {name: tuple(leaf.shape) for name, leaf in tree_paths.named_leaves(shapes["params"]).items()}


def test_parameter_layout_is_vit_jaxs():
  # The GAP model's parameters are exactly the .npz's arrays, named and shaped as vit_jax names them (the fixture
  # script restates them from vit_jax/models_vit.py); the class-token model adds 'cls' and one position.
  gap = init_shapes(vit.ViT(NUM_CLASSES, **TINY, pooling="gap"))
  with np.load(NPZ_FILE) as npz:
    assert gap == {key: npz[key].shape for key in npz.files}
  cls = init_shapes(vit.ViT(NUM_CLASSES, **TINY, pooling="cls"))
  posemb = "Transformer/posembed_input/pos_embedding"
  assert cls == {**gap, "cls": (1, 1, 32), posemb: (1, 50, 32)}
  assert len(gap) == 3 + 2 * 16 + 2 + 2  # embedding and posemb; 16 tensors a block; encoder_norm; head


@pytest.mark.parametrize("pooling, tokens", [("cls", 50), ("gap", 49)])
def test_shapes(pooling, tokens):
  model = vit.ViT(NUM_CLASSES, **TINY, pooling=pooling)
  variables = fixture_variables(TIMM_FILE if pooling == "cls" else NPZ_FILE)
  logits, features = model.apply(variables, images(28), return_features=True)
  chex.assert_shape(logits, (2, NUM_CLASSES))
  assert sorted(features) == ["block0", "block1", "penultimate"]
  chex.assert_shape([features["block0"], features["block1"]], (2, tokens, 32))
  chex.assert_shape(features["penultimate"], (2, 32))
  np.testing.assert_array_equal(logits, model.apply(variables, images(28)))


@pytest.mark.parametrize(
  "path, size, resize_method, expected",
  [
    (TIMM_FILE, 28, "bilinear", "timm_cls"),
    (TIMM_FILE, 40, "bicubic", "timm_cls_40_bicubic"),
    (NPZ_FILE, 28, "bilinear", "npz_gap"),
    (NPZ_FILE, 40, "bilinear", "npz_gap_40"),
  ],
)
def test_logits_match_timm(path, size, resize_method, expected):
  reference = timm_reference()[expected]
  logits = ftjax_logits(path, size, resize_method)
  print(f"{expected}: max |logits| {np.abs(reference).max():.3g}, max abs diff {np.abs(logits - reference).max():.3g}")
  assert_matches_timm(logits, reference)


@pytest.mark.parametrize(
  "path, key",
  [
    (TIMM_FILE, "blocks.1.attn.qkv.weight"),  # query and key thirds swapped
    (TIMM_FILE, "pos_embed"),
    (NPZ_FILE, "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/out/kernel"),
    (NPZ_FILE, "Transformer/encoderblock_1/MlpBlock_3/Dense_0/kernel"),
  ],
)
def test_a_changed_tensor_fails_the_comparison(path, key, tmp_path):
  arrays = vit_import.read_arrays(path)
  if key.endswith("qkv.weight"):
    query, key_, value = np.split(arrays[key], 3)
    arrays[key] = np.concatenate([key_, query, value])
  else:
    arrays[key] = arrays[key] * np.float32(1.5)  # not a shift: a shift along the width is what LayerNorm removes
  changed = save(arrays, tmp_path / path.name)
  expected = "timm_cls" if path == TIMM_FILE else "npz_gap"
  with pytest.raises(AssertionError):
    assert_matches_timm(ftjax_logits(changed, 28), timm_reference()[expected])


def triangle_weights(in_size: int, out_size: int) -> np.ndarray:
  """[out, in]: bilinear interpolation weights with half-pixel centres c_i = (i + 0.5) in/out - 0.5, the triangle
  widened by the shrink factor s = max(in/out, 1) (antialiasing): w_ij = max(0, 1 - |j - c_i| / s), each row
  normalised to sum 1 (so positions beyond the border drop out)."""
  shrink = max(in_size / out_size, 1.0)
  centres = (np.arange(out_size) + 0.5) * in_size / out_size - 0.5
  weights = np.maximum(0.0, 1.0 - np.abs(np.arange(in_size)[None, :] - centres[:, None]) / shrink)
  return weights / weights.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("has_class_token", [True, False])
@pytest.mark.parametrize("new_grid", [10, 5, (9, 4), 7])
def test_bilinear_resize_matches_numpy(new_grid, has_class_token):
  posemb = np.random.default_rng(0).normal(size=(1, 49 + has_class_token, 6)).astype(np.float32)
  height, width = (new_grid, new_grid) if isinstance(new_grid, int) else new_grid
  grid = posemb[0, int(has_class_token) :].reshape(7, 7, 6)
  expected = np.einsum("ia,jb,abd->ijd", triangle_weights(7, height), triangle_weights(7, width), grid)
  expected = np.concatenate([posemb[:, : int(has_class_token)], expected.reshape(1, -1, 6)], axis=1)
  resized = vit.resize_position_embedding(posemb, new_grid, has_class_token)
  chex.assert_shape(resized, (1, has_class_token + height * width, 6))
  np.testing.assert_allclose(resized, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("grid", [10, 5])
def test_bicubic_resize_matches_timm(grid):
  posemb = vit_import.read_arrays(TIMM_FILE)["pos_embed"]
  resized = vit.resize_position_embedding(posemb, grid, has_class_token=True, method="bicubic")
  np.testing.assert_allclose(resized, timm_reference()[f"posemb_bicubic_{grid}"], rtol=1e-5, atol=1e-5)


def test_load_keeps_the_position_embedding_for_the_same_grid():
  posemb = vit_import.read_arrays(TIMM_FILE)["pos_embed"]
  for size in (None, 28, 31):  # 31 // 4 = 7: the same 7x7 grid
    loaded = vit_import.load_vit(TIMM_FILE, image_size=size)["params"]["Transformer"]["posembed_input"]
    np.testing.assert_array_equal(loaded["pos_embedding"], posemb)
  loaded = vit_import.load_vit(TIMM_FILE, image_size=40)["params"]
  np.testing.assert_array_equal(
    loaded["Transformer"]["posembed_input"]["pos_embedding"], vit.resize_position_embedding(posemb, 10, True)
  )
  assert "head" not in loaded


def test_npz_representation_layer_and_head_are_left_out(tmp_path):
  # vit_jax's ImageNet-21k checkpoints carry a 'pre_logits' Dense layer that vit_jax drops for fine-tuning.
  arrays = vit_import.read_arrays(NPZ_FILE)
  extra = {"pre_logits/kernel": np.ones((32, 32), np.float32), "pre_logits/bias": np.ones(32, np.float32)}
  with_pre_logits = vit_import.load_vit(save({**arrays, **extra}, tmp_path / "i21k.npz"))
  chex.assert_trees_all_equal(with_pre_logits, vit_import.load_vit(NPZ_FILE))
  assert sorted(with_pre_logits["params"]) == ["Transformer", "embedding"]


def test_loaded_tree_is_the_models_backbone():
  for path in (TIMM_FILE, NPZ_FILE):
    architecture = vit_import.architecture_of(path)
    model = vit.ViT(NUM_CLASSES, **{field: architecture[field] for field in vit_import.MODULE_FIELDS})
    init = jax.eval_shape(model.init, jax.random.key(0), images(28))["params"]
    loaded = vit_import.load_vit(path)["params"]
    chex.assert_trees_all_equal_shapes_and_dtypes(loaded, {k: v for k, v in init.items() if k != "head"})


def test_architecture_of_fixtures():
  tiny = dict(model="vit_tiny", **TINY, image_size=28, channels=3)
  assert vit_import.architecture_of(TIMM_FILE) == {**tiny, "pooling": "cls", "approximate_gelu": False}
  assert vit_import.architecture_of(NPZ_FILE) == {
    **tiny,
    "pooling": "gap",
    "approximate_gelu": True,
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
  }


@pytest.mark.parametrize("name", list(vit.VARIANTS))
def test_infer_architecture_of_each_variant(name):
  architecture = dict(**vit.VARIANTS[name], pooling="cls", image_size=224, channels=3)
  module = {field: architecture[field] for field in vit_import.MODULE_FIELDS if field != "approximate_gelu"}
  inferred = vit_import.infer_architecture(vit_import.timm_shapes(architecture), "timm")
  assert inferred == {"model": name, **module, "approximate_gelu": False, "image_size": 224, "channels": 3}
  assert vit_import.NUM_HEADS_BY_WIDTH[architecture["width"]] == architecture["num_heads"]
  if name in ("vit_tiny", "vit_b32"):  # the npz route traces the model: the small ones suffice
    shapes = vit_import.param_shapes({**architecture, "approximate_gelu": True})
    assert vit_import.infer_architecture(shapes, "npz")["model"] == name


def test_structure_groups_and_roles():
  params = jax.eval_shape(vit.ViT(NUM_CLASSES, **TINY).init, jax.random.key(0), images(28))["params"]
  structure = vit.structure(TINY["depth"])
  groups = layer_groups.assign_groups(params, structure.groups)
  assert groups["embedding/kernel"] == "embedding" and groups["head/kernel"] == "head"
  for name, group in groups.items():
    if name.startswith("Transformer/encoderblock_"):
      assert group == "block" + name.split("/")[1].removeprefix("encoderblock_")
  assert len(groups) == 1 + 2 * 6 + 1  # patch embedding, 6 kernels a block, head
  assert layer_groups.group_order(structure.groups, structure.head) == ["embedding", "block0", "block1", "head"]
  other = {"cls": "embedding", "Transformer/posembed_input/pos_embedding": "embedding"}
  compiled = layer_groups.compile_patterns(structure.groups)
  for name, group in {**other, "Transformer/encoder_norm/scale": "block1"}.items():
    assert layer_groups.group_of(name, compiled) == group
  assert structure.head_pattern == "(?:head/.*)"

  roles = layer_groups.assign_groups({k: v for k, v in params.items() if k == "Transformer"}, vit.ROLES)
  expected = {
    f"Transformer/encoderblock_{i}/{layer}/kernel": role
    for i in range(2)
    for layer, role in [
      *((f"MultiHeadDotProductAttention_1/{n}", "attention") for n in ("query", "key", "value", "out")),
      ("MlpBlock_3/Dense_0", "mlp"),
      ("MlpBlock_3/Dense_1", "mlp"),
    ]
  }
  assert roles == expected


def test_block_modules_return_the_feature_maps():
  # DELTA zeroes a feature map's channel by replacing the output of the module whose __call__ returns it.
  model = vit.ViT(NUM_CLASSES, **TINY)
  variables = fixture_variables(TIMM_FILE)
  returned = {}

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    returned.setdefault(context.module.path, out)
    return out

  with nn.intercept_methods(record):
    _, features = model.apply(variables, images(28), return_features=True)
  for name in vit.structure(TINY["depth"]).feature_maps:
    assert returned[("Transformer", "encoderblock_" + name.removeprefix("block"))] is features[name]


def test_vit_family():
  constructor, structure = vit.vit_family("vit_b32")
  model = constructor(num_classes=7, **dict(zip(vit.OPTIONS, ("gap", 0.1, 0.1, True))))
  assert (model.width, model.depth, model.patch_size, model.num_classes, model.pooling) == (768, 12, 32, 7, "gap")
  assert structure == vit.structure(12) and structure.feature_maps[-1] == "block11"
  with pytest.raises(ValueError, match=r"^variant='vit_x' is not a ViT variant; valid: vit_tiny, vit_ti16"):
    vit.vit_family("vit_x")


def test_registry_builds_each_variant_with_the_options_it_takes():
  for name, shape in vit.VARIANTS.items():
    model = create_model(name, 7, pooling="gap", dropout_rate=0.1, stochastic_depth_rate=0.2, dtype="bfloat16", width=3)
    assert {field: getattr(model, field) for field in shape} == shape  # width is the variant's, not the option's
    assert (model.num_classes, model.pooling, model.dropout_rate, model.stochastic_depth_rate) == (7, "gap", 0.1, 0.2)
    assert model.dtype == "bfloat16" and structure_of(name) == vit.structure(shape["depth"])


def test_bfloat16_computes_in_bfloat16_with_float32_parameters_and_outputs():
  x = images(28)
  variables = fixture_variables(TIMM_FILE)
  expected, expected_features = vit.ViT(NUM_CLASSES, **TINY).apply(variables, x, return_features=True)
  model = vit.ViT(NUM_CLASSES, **TINY, dtype="bfloat16")
  params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
  assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
  outputs = {}

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if isinstance(context.module, (nn.Conv, nn.Dense, nn.DenseGeneral, nn.LayerNorm)):
      outputs[context.module.path] = out.dtype
    return out

  with nn.intercept_methods(record):
    logits, features = model.apply(variables, x, return_features=True)
  # Patch embedding; per block 2 LayerNorms, query, key, value, out and 2 MLP layers; final LayerNorm; head.
  assert len(outputs) == 1 + 8 * TINY["depth"] + 2 and set(outputs.values()) == {jnp.dtype(jnp.bfloat16)}
  assert {leaf.dtype for leaf in jax.tree.leaves((logits, features))} == {jnp.dtype(jnp.float32)}
  scale = float(np.abs(expected).max())
  np.testing.assert_allclose(logits, expected, rtol=0.05, atol=0.05 * scale)
  assert not np.allclose(logits, expected, rtol=1e-6, atol=0)
  chex.assert_trees_all_equal_shapes(features, expected_features)


def test_dropout_and_stochastic_depth():
  x = images(28)
  plain = vit.ViT(NUM_CLASSES, **TINY)
  variables = fixture_variables(TIMM_FILE)
  _, eval_features = plain.apply(variables, x, return_features=True)
  chex.assert_trees_all_equal(plain.apply(variables, x, train=True), plain.apply(variables, x))  # rates 0: no rng

  dropout = vit.ViT(NUM_CLASSES, **TINY, dropout_rate=0.5)
  train = lambda key: dropout.apply(variables, x, train=True, rngs={"dropout": jax.random.key(key)})
  chex.assert_trees_all_equal(train(1), train(1))
  assert not np.allclose(train(1), train(2)) and not np.allclose(train(1), dropout.apply(variables, x))
  chex.assert_trees_all_equal(dropout.apply(variables, x), plain.apply(variables, x))

  # Stochastic depth rises linearly over the blocks: rate 1 at the last drops both its branches, rate 0 at the first.
  deep = vit.ViT(NUM_CLASSES, **TINY, stochastic_depth_rate=1.0)
  _, features = deep.apply(variables, x, train=True, return_features=True, rngs={"dropout": jax.random.key(0)})
  np.testing.assert_array_equal(features["block1"], features["block0"])
  np.testing.assert_allclose(features["block0"], eval_features["block0"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("approximate", [False, True])
def test_mlp_gelu_matches_numpy(approximate):
  x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype(np.float32)
  block = vit.MlpBlock(16, approximate_gelu=approximate)
  rng = np.random.default_rng(1)
  params = {
    "Dense_0": {"kernel": rng.normal(size=(8, 16)).astype(np.float32), "bias": rng.normal(size=16).astype(np.float32)},
    "Dense_1": {"kernel": rng.normal(size=(16, 8)).astype(np.float32), "bias": rng.normal(size=8).astype(np.float32)},
  }
  chex.assert_trees_all_equal_shapes(jax.eval_shape(block.init, jax.random.key(0), x, True)["params"], params)
  hidden = x @ np.asarray(params["Dense_0"]["kernel"], np.float64) + np.asarray(params["Dense_0"]["bias"])
  if approximate:  # vit_jax's tanh form
    gelu = 0.5 * hidden * (1 + np.tanh(math.sqrt(2 / math.pi) * (hidden + 0.044715 * hidden**3)))
  else:  # the exact form, x Phi(x)
    gelu = 0.5 * hidden * (1 + np.vectorize(math.erf)(hidden / math.sqrt(2)))
  expected = gelu @ np.asarray(params["Dense_1"]["kernel"]) + np.asarray(params["Dense_1"]["bias"])
  np.testing.assert_allclose(block.apply({"params": params}, x, deterministic=True), expected, rtol=1e-5, atol=1e-5)


def one_line_error(error_type, pattern: str, fn, *args, **kwargs) -> None:
  with pytest.raises(error_type, match=pattern) as info:
    fn(*args, **kwargs)
  assert "\n" not in str(info.value)


def test_errors(tmp_path, monkeypatch):
  state_dict = vit_import.read_arrays(TIMM_FILE)
  npz = vit_import.read_arrays(NPZ_FILE)
  saved = lambda arrays, name: save(arrays, tmp_path / name)

  one_line_error(
    ValueError, r"unsupported extension '\.ckpt'; expected one of \.npz, \.safetensors", vit_import.load_vit, "w.ckpt"
  )
  narrow = {**state_dict, "blocks.1.attn.qkv.weight": state_dict["blocks.1.attn.qkv.weight"][:90]}
  one_line_error(
    ValueError,
    r"^'blocks\.1\.attn\.qkv\.weight' has shape \(90, 32\) where a ViT with width 32, depth 2, mlp_dim 64, "
    r"patch_size 4 expects \(96, 32\)$",
    vit_import.load_vit,
    saved(narrow, "narrow.safetensors"),
  )
  missing = {k: v for k, v in state_dict.items() if k != "blocks.1.norm2.bias"}
  one_line_error(
    ValueError,
    r"timm state dict lacks 'blocks\.1\.norm2\.bias' of shape \(32,\)",
    vit_import.load_vit,
    saved(missing, "missing.safetensors"),
  )
  extra = {**state_dict, "blocks.0.ls1.gamma": np.ones(32, np.float32)}
  one_line_error(
    ValueError,
    r"unknown key 'blocks\.0\.ls1\.gamma' in a timm state dict",
    vit_import.load_vit,
    saved(extra, "ls.safetensors"),
  )
  fc_norm = {**state_dict, "fc_norm.weight": np.ones(32, np.float32)}
  one_line_error(
    ValueError,
    r"^'fc_norm\.weight': this timm ViT normalises after pooling",
    vit_import.architecture_of,
    saved(fc_norm, "fc.safetensors"),
  )
  wide = {"patch_embed.proj.weight": (40, 3, 4, 4), "blocks.0.mlp.fc1.weight": (80, 40), "pos_embed": (1, 50, 40)}
  one_line_error(
    ValueError,
    r"gives width 40, whose head count .* known widths: 32, 192",
    vit_import.infer_architecture,
    wide,
    "timm",
  )
  one_line_error(
    ValueError,
    r"checkpoint lacks 'patch_embed\.proj\.weight', expected in a timm VisionTransformer",
    vit_import.infer_architecture,
    {"conv1.weight": (64, 3, 7, 7)},
    "timm",
  )

  dense = "Transformer/encoderblock_1/MlpBlock_3/Dense_1/kernel"
  one_line_error(
    ValueError,
    rf"^'{dense}' has shape \(64, 30\) where a ViT .* expects \(64, 32\)$",
    vit_import.load_vit,
    saved({**npz, dense: npz[dense][:, :30]}, "dense.npz"),
  )
  one_line_error(
    ValueError,
    r"vit_jax \.npz lacks 'Transformer/encoder_norm/scale'",
    vit_import.load_vit,
    saved({k: v for k, v in npz.items() if k != "Transformer/encoder_norm/scale"}, "norm.npz"),
  )
  one_line_error(
    ValueError,
    r"unknown key 'Transformer/encoderblock_0/extra/kernel' in a vit_jax \.npz",
    vit_import.load_vit,
    saved({**npz, "Transformer/encoderblock_0/extra/kernel": np.ones((2, 2), np.float32)}, "extra.npz"),
  )
  posemb = "Transformer/posembed_input/pos_embedding"
  one_line_error(
    ValueError,
    r"has shape \(1, 48, 32\): 48 patch positions, not a square grid",
    vit_import.architecture_of,
    saved({**npz, posemb: npz[posemb][:, :48]}, "posemb.npz"),
  )
  (tmp_path / "damaged.npz").write_bytes(b"not a zip file")
  one_line_error(
    ValueError, r"'.*damaged\.npz' is not readable \(BadZipFile", vit_import.architecture_of, tmp_path / "damaged.npz"
  )
  one_line_error(
    ValueError,
    r"image_size=3 is not valid; valid: an integer of at least the patch size 4",
    vit_import.load_vit,
    NPZ_FILE,
    image_size=3,
  )
  one_line_error(
    ValueError,
    r"method='nearest' is not a position-embedding resize method; valid: bilinear, bicubic",
    vit.resize_position_embedding,
    npz[posemb],
    9,
    False,
    "nearest",
  )
  one_line_error(
    ValueError,
    r"pooling='map' is not a ViT pooling; valid: cls, gap",
    vit.ViT(NUM_CLASSES, **TINY, pooling="map").init,
    jax.random.key(0),
    images(28),
  )
  monkeypatch.setitem(sys.modules, "torch", None)
  one_line_error(
    ImportError, r"needs `pip install torch`; a \.safetensors file does not", vit_import.load_vit, tmp_path / "w.pth"
  )
