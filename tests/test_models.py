"""Models from the registry: parameter counts against torchvision's published ones, names, outputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ftjax import tree_paths
from ftjax.models import create_model

# torchvision.models.resnetXX(num_classes=1000): sum(p.numel() for p in model.parameters()).
TORCHVISION_PARAMETER_COUNTS = {
  "resnet18": 11_689_512,
  "resnet34": 21_797_672,
  "resnet50": 25_557_032,
  "resnet101": 44_549_160,
}


def _shapes(model, size=32, channels=3):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, channels)), train=False))


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMETER_COUNTS))
def test_resnet_parameter_counts_match_torchvision(name):
  params = _shapes(create_model(name, num_classes=1000))["params"]
  assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params)) == TORCHVISION_PARAMETER_COUNTS[name]


def test_resnet_names_group_into_stem_stages_head():
  params = _shapes(create_model("resnet50", num_classes=7))["params"]
  assert set(params) == {"stem", "stage1", "stage2", "stage3", "stage4", "head"}
  assert [len(params[f"stage{s}"]) for s in range(1, 5)] == [3, 4, 6, 3]
  names = tree_paths.named_leaves(params)
  assert names["head/kernel"].shape == (2048, 7)
  assert names["stage2/block0/downsample_conv/kernel"].shape == (1, 1, 256, 512)
  assert names["stem/conv/kernel"].shape == (7, 7, 3, 64)


@pytest.mark.parametrize("stem, size, final_side", [("imagenet", 64, 2), ("small", 16, 2)])
def test_forward_shapes_and_features(stem, size, final_side):
  model = create_model("resnet18", num_classes=5, width=4, stem=stem)
  x = jnp.ones((2, size, size, 1))
  variables = jax.jit(model.init)(jax.random.key(0), x)
  logits, features = jax.jit(lambda v, x: model.apply(v, x, return_features=True))(variables, x)
  assert logits.shape == (2, 5)
  assert features["stage4"].shape == (2, final_side, final_side, 32)
  assert features["penultimate"].shape == (2, 32)
  np.testing.assert_allclose(
    features["penultimate"] @ variables["params"]["head"]["kernel"] + variables["params"]["head"]["bias"],
    logits,
    rtol=1e-5,
    atol=1e-6,
  )


def test_train_mode_updates_batch_statistics_and_eval_mode_does_not():
  model = create_model("small_cnn", num_classes=3, width=4)
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1)) * 3 + 2
  variables = jax.jit(model.init)(jax.random.key(0), x)
  _, updates = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(variables, x)
  mean = updates["batch_stats"]["bn1"]["mean"]
  assert not np.allclose(mean, variables["batch_stats"]["bn1"]["mean"])
  conv = jax.lax.conv_general_dilated(
    x, variables["params"]["conv1"]["kernel"], (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  np.testing.assert_allclose(mean, 0.1 * conv.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)


def test_unknown_model_and_stem_are_named():
  with pytest.raises(ValueError, match="model='vgg16' is not a known model; valid: bert_base, .*resnet101"):
    create_model("vgg16", 10)
  with pytest.raises(ValueError, match="stem='tiny' is not a known stem; valid: imagenet, small"):
    create_model("resnet18", 10, stem="tiny")


def test_resnet_in_bfloat16_keeps_float32_parameters_statistics_and_outputs():
  x = jax.random.normal(jax.random.key(1), (4, 16, 16, 3))
  reference = create_model("resnet18", num_classes=5, width=4, stem="small")
  model = create_model("resnet18", num_classes=5, width=4, stem="small", dtype="bfloat16")
  variables = jax.jit(reference.init)(jax.random.key(0), x)
  assert jax.tree.map(lambda a: a.dtype, jax.eval_shape(model.init, jax.random.key(0), x)) == jax.tree.map(
    lambda a: a.dtype, variables
  )
  apply = lambda m: jax.jit(lambda v, x: m.apply(v, x, train=True, return_features=True, mutable=["batch_stats"]))
  (logits, features), updates = apply(model)(variables, x)
  (expected, _), expected_updates = apply(reference)(variables, x)
  assert logits.dtype == jnp.float32 and all(f.dtype == jnp.float32 for f in jax.tree.leaves(features))
  assert all(s.dtype == jnp.float32 for s in jax.tree.leaves(updates))
  np.testing.assert_allclose(logits, expected, rtol=0.05, atol=0.05 * float(jnp.abs(expected).max()))
  for s, e in zip(jax.tree.leaves(updates), jax.tree.leaves(expected_updates)):
    np.testing.assert_allclose(s, e, rtol=0.05, atol=0.05 * float(jnp.abs(e).max()))
  # The convolutions compute in bfloat16: their outputs differ from the float32 ones by bfloat16 rounding.
  assert not np.allclose(logits, expected, rtol=1e-6, atol=0)


def test_an_option_a_model_does_not_take_is_refused_unless_neutral():
  assert create_model("small_cnn", 3, width=4, dtype="float32", pooling="gap", stem="imagenet").width == 4
  with pytest.raises(ValueError, match=r"model 'small_cnn' takes no option dtype='bfloat16' \(its options: width\)"):
    create_model("small_cnn", 3, dtype="bfloat16")
  with pytest.raises(ValueError, match=r"model 'resnet18' takes no option dropout_rate=0.1 .*; valid: 0.0"):
    create_model("resnet18", 3, dropout_rate=0.1)
