"""SPEC §1 layer groups on real ResNet-18 and small-CNN params trees."""

import jax
import jax.numpy as jnp
import pytest

from ftjax import layer_groups
from ftjax.models import create_model


def _abstract_params(name: str, **kwargs):
  model = create_model(name, 10, **kwargs)
  init = lambda key: model.init(key, jnp.zeros((1, 28, 28, 1)), train=False)
  return jax.eval_shape(init, jax.random.key(0))["params"]


def test_resnet18_kernels_fall_in_their_top_level_module():
  params = _abstract_params("resnet18", width=4, stem="small")
  groups = layer_groups.assign_groups(params, layer_groups.default_group_patterns("resnet18"))
  kernels = [p for p in jax.tree_util.tree_flatten_with_path(params)[0] if p[0][-1].key == "kernel"]
  assert len(groups) == len(kernels) == 21
  assert all(group == path.split("/")[0] for path, group in groups.items())
  counts = {g: list(groups.values()).count(g) for g in set(groups.values())}
  assert counts == {"stem": 1, "stage1": 4, "stage2": 5, "stage3": 5, "stage4": 5, "head": 1}


def test_small_cnn_groups():
  params = _abstract_params("small_cnn", width=4)
  groups = layer_groups.assign_groups(params, layer_groups.default_group_patterns("small_cnn"))
  assert groups == {"conv1/kernel": "stage1", "conv2/kernel": "stage2", "dense/kernel": "stage3",
                    "head/kernel": "head"}


def test_first_matching_pattern_wins_and_only_weight_tensors_count():
  params = {"stage1": {"block0": {"conv1": {"kernel": jnp.zeros((3, 3, 2, 2))}, "bn1": {"scale": jnp.ones(2)}},
                       "block1": {"conv1": {"kernel": jnp.zeros((3, 3, 2, 2))}}},
            "head": {"kernel": jnp.zeros((2, 3)), "bias": jnp.zeros(3)}}
  patterns = [(r"stage1/block0/.*", "early"), (r"stage1/.*", "stage1"), (r".*", "head")]
  assert layer_groups.assign_groups(params, patterns) == {
      "head/kernel": "head", "stage1/block0/conv1/kernel": "early", "stage1/block1/conv1/kernel": "stage1"}


def test_unmatched_weight_tensor_is_a_one_line_error():
  params = {"stage1": {"conv": {"kernel": jnp.zeros((3, 3, 1, 2))}}, "head": {"kernel": jnp.zeros((2, 3))}}
  # fullmatch: 'stage1' alone does not match the path 'stage1/conv/kernel'.
  with pytest.raises(ValueError, match=r"'stage1/conv/kernel' matches no layer-group pattern.*'stage1'") as err:
    layer_groups.assign_groups(params, [("stage1", "stage1"), (r"head/.*", "head")])
  assert "\n" not in str(err.value)


def test_group_order_is_by_depth_with_the_head_last():
  assert layer_groups.group_order(layer_groups.RESNET_GROUPS) == ["stem", "stage1", "stage2", "stage3", "stage4",
                                                                   "head"]
  assert layer_groups.group_order([(r"head/.*", "head"), (r"a/.*", "a"), (r"b/.*", "b"), (r"a2/.*", "a")]) == [
      "a", "b", "head"]


def test_default_patterns_by_model_name():
  assert layer_groups.default_group_patterns("resnet50") is layer_groups.RESNET_GROUPS
  assert layer_groups.default_group_patterns("small_cnn") is layer_groups.SMALL_CNN_GROUPS
  with pytest.raises(ValueError, match="vit"):
    layer_groups.default_group_patterns("vit")
