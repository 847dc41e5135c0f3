"""docs/methods.md §2.4 radius / weight schedules against hand-written tables."""

import jax
import jax.numpy as jnp
import pytest

from ftjax import layer_groups
from ftjax.distance import radii
from ftjax.models import create_model, resnet, small_cnn

RESNET_ORDER = layer_groups.group_order(resnet.STRUCTURE.groups, "head")
SMALL_CNN_ORDER = layer_groups.group_order(small_cnn.STRUCTURE.groups, "head")


@pytest.mark.parametrize(
  "schedule, order, table",
  [
    ("depth", RESNET_ORDER, {"stem": 1, "stage1": 2, "stage2": 4, "stage3": 8, "stage4": 16, "head": 10}),
    ("authors", RESNET_ORDER, {"stem": 1, "stage1": 1, "stage2": 1, "stage3": 2, "stage4": 4, "head": 10}),
    ("depth", SMALL_CNN_ORDER, {"stage1": 1, "stage2": 2, "stage3": 4, "head": 10}),
    ("authors", SMALL_CNN_ORDER, {"stage1": 1, "stage2": 1, "stage3": 2, "head": 10}),
  ],
)
def test_schedules_match_tables(schedule, order, table):
  assert radii.group_values(order, 1.0, 2.0, 10.0, schedule, head="head") == table


def test_scaling_and_overrides():
  values = radii.group_values(
    RESNET_ORDER, 0.5, 3.0, 7.0, "depth", overrides={"stage2": 0.25, "head": 1.0}, head="head"
  )
  assert values == {"stem": 0.5, "stage1": 1.5, "stage2": 0.25, "stage3": 13.5, "stage4": 40.5, "head": 1.0}
  with pytest.raises(ValueError, match="unknown groups.*stage9"):
    radii.group_values(RESNET_ORDER, 1.0, 2.0, 1.0, overrides={"stage9": 1.0}, head="head")
  with pytest.raises(ValueError, match="schedule='linear'"):
    radii.group_values(RESNET_ORDER, 1.0, 2.0, 1.0, "linear", head="head")
  # The head is whichever group the model names: here 'stage4' takes head_value and the schedule walks the rest.
  assert radii.group_values(RESNET_ORDER, 1.0, 2.0, 10.0, head="stage4") == {
    "stem": 1,
    "stage1": 2,
    "stage2": 4,
    "stage3": 8,
    "stage4": 10,
    "head": 16,
  }


def test_layer_values_follow_each_layers_group():
  model = create_model("resnet18", 10, width=4, stem="small")
  params = jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, 28, 28, 1)), train=False), jax.random.key(0))["params"]
  groups = layer_groups.assign_groups(params, resnet.STRUCTURE.groups)
  table = {"stem": 1, "stage1": 1, "stage2": 1, "stage3": 2, "stage4": 4, "head": 10}
  values = radii.layer_values(groups, radii.group_values(RESNET_ORDER, 1.0, 2.0, 10.0, "authors", head="head"))
  assert values == {path: table[path.split("/")[0]] for path in groups}
  with pytest.raises(ValueError, match="no value for groups.*head"):
    radii.layer_values(groups, {g: 1.0 for g in RESNET_ORDER if g != "head"})
