"""docs/methods.md §1 layer groups on real ResNet-18 and small-CNN params trees."""

import jax
import jax.numpy as jnp
import pytest

from ftjax import layer_groups
from ftjax.models import create_model, resnet, small_cnn, structure_of

RESNET_GROUPS = resnet.STRUCTURE.groups


def _abstract_params(name: str, **kwargs):
  model = create_model(name, 10, **kwargs)
  init = lambda key: model.init(key, jnp.zeros((1, 28, 28, 1)), train=False)
  return jax.eval_shape(init, jax.random.key(0))["params"]


def test_resnet18_kernels_fall_in_their_top_level_module():
  params = _abstract_params("resnet18", width=4, stem="small")
  groups = layer_groups.assign_groups(params, structure_of("resnet18").groups)
  kernels = [p for p in jax.tree_util.tree_flatten_with_path(params)[0] if p[0][-1].key == "kernel"]
  assert len(groups) == len(kernels) == 21
  assert all(group == path.split("/")[0] for path, group in groups.items())
  counts = {g: list(groups.values()).count(g) for g in set(groups.values())}
  assert counts == {"stem": 1, "stage1": 4, "stage2": 5, "stage3": 5, "stage4": 5, "head": 1}


def test_small_cnn_groups():
  params = _abstract_params("small_cnn", width=4)
  groups = layer_groups.assign_groups(params, structure_of("small_cnn").groups)
  assert groups == {"conv1/kernel": "stage1", "conv2/kernel": "stage2", "dense/kernel": "stage3", "head/kernel": "head"}


def test_first_matching_pattern_wins_and_only_weight_tensors_count():
  params = {
    "stage1": {
      "block0": {"conv1": {"kernel": jnp.zeros((3, 3, 2, 2))}, "bn1": {"scale": jnp.ones(2)}},
      "block1": {"conv1": {"kernel": jnp.zeros((3, 3, 2, 2))}},
    },
    "head": {"kernel": jnp.zeros((2, 3)), "bias": jnp.zeros(3)},
  }
  patterns = [(r"stage1/block0/.*", "early"), (r"stage1/.*", "stage1"), (r".*", "head")]
  assert layer_groups.assign_groups(params, patterns) == {
    "head/kernel": "head",
    "stage1/block0/conv1/kernel": "early",
    "stage1/block1/conv1/kernel": "stage1",
  }


def test_unmatched_weight_tensor_is_a_one_line_error():
  params = {"stage1": {"conv": {"kernel": jnp.zeros((3, 3, 1, 2))}}, "head": {"kernel": jnp.zeros((2, 3))}}
  # fullmatch: 'stage1' alone does not match the path 'stage1/conv/kernel'.
  with pytest.raises(ValueError, match=r"'stage1/conv/kernel' matches no layer-group pattern.*'stage1'") as err:
    layer_groups.assign_groups(params, [("stage1", "stage1"), (r"head/.*", "head")])
  assert "\n" not in str(err.value)


def test_group_order_is_by_depth_with_the_head_last():
  assert layer_groups.group_order(RESNET_GROUPS, "head") == ["stem", "stage1", "stage2", "stage3", "stage4", "head"]
  patterns = [(r"top/.*", "top"), (r"a/.*", "a"), (r"b/.*", "b"), (r"a2/.*", "a")]
  assert layer_groups.group_order(patterns, head="top") == ["a", "b", "top"]
  assert layer_groups.group_order(patterns) == ["top", "a", "b"]  # no head: order of first appearance


def test_each_family_declares_its_structure():
  assert structure_of("resnet50") is structure_of("resnet18") is resnet.STRUCTURE
  assert structure_of("small_cnn") is small_cnn.STRUCTURE
  assert resnet.STRUCTURE.groups[-1][1] == resnet.STRUCTURE.head  # network order: the head last
  with pytest.raises(ValueError, match="model='vit' is not a known model"):
    structure_of("vit")


def expected_resnet_order(stage_sizes, bottleneck: bool) -> list[str]:
  """ResNet kernel paths from the input to the output, written out from the architecture: the stem,
  each stage's blocks in turn (conv1, conv2[, conv3], then the first block's downsample_conv where
  the shape changes), the head."""
  names = ["stem/conv/kernel"]
  for stage, blocks in enumerate(stage_sizes, start=1):
    for block in range(blocks):
      convs = ["conv1", "conv2", "conv3"] if bottleneck else ["conv1", "conv2"]
      if block == 0 and (stage > 1 or bottleneck):
        convs.append("downsample_conv")
      names += [f"stage{stage}/block{block}/{conv}/kernel" for conv in convs]
  return names + ["head/kernel"]


@pytest.mark.parametrize(
  "model,stage_sizes,bottleneck", [("resnet18", (2, 2, 2, 2), False), ("resnet101", (3, 4, 23, 3), True)]
)
def test_network_order_of_resnet_kernels_runs_from_stem_to_head(model, stage_sizes, bottleneck):
  params = _abstract_params(model, width=4, stem="small")
  tree_order = list(layer_groups.assign_groups(params, RESNET_GROUPS))
  assert tree_order[0] == "head/kernel" and tree_order[-1] == "stem/conv/kernel"  # what a sort by name gives
  ordered = layer_groups.network_order(tree_order, structure_of(model).groups)
  assert ordered == expected_resnet_order(stage_sizes, bottleneck)
  if model == "resnet101":  # 23 blocks in stage 3: block10 after block9, not after block1
    assert ordered.index("stage3/block9/conv1/kernel") < ordered.index("stage3/block10/conv1/kernel")
    assert ordered.index("stage3/block2/conv3/kernel") < ordered.index("stage3/block10/conv1/kernel")


def test_network_order_sorts_digit_runs_as_numbers_and_puts_unmatched_paths_last():
  patterns = [(r"head/.*", "head"), (r"late/.*", "late"), (r"early/.*", "early")]
  names = [
    "head/kernel",
    "other/kernel",
    "early/block10/kernel",
    "late/kernel",
    "early/block2/kernel",
    "early/block1/kernel",
    "early/block2/conv10/kernel",
    "early/block2/conv9/kernel",
  ]
  assert layer_groups.network_order(names, patterns, head="head") == [
    "late/kernel",
    "early/block1/kernel",
    "early/block2/conv9/kernel",
    "early/block2/conv10/kernel",
    "early/block2/kernel",
    "early/block10/kernel",
    "head/kernel",
    "other/kernel",
  ]
  assert sorted(names, key=layer_groups.natural_key)[:2] == ["early/block1/kernel", "early/block2/conv9/kernel"]
