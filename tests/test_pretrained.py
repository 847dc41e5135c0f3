"""Source weights: merging into a fresh model, shape checks, and the .msgpack round trip."""

import chex
import jax
import numpy as np
import pytest

from ftjax.distance import anchors
from ftjax.models import create_model, pretrained, structure_of

HEAD = structure_of("small_cnn").head_pattern


def _variables(num_classes, seed, width=4):
  model = create_model("small_cnn", num_classes, width=width)
  return jax.device_get(model.init(jax.random.key(seed), np.zeros((1, 8, 8, 1), np.float32)))


def test_merge_keeps_fresh_head_and_takes_everything_else():
  source = _variables(num_classes=10, seed=0)
  fresh = _variables(num_classes=3, seed=1)
  merged = pretrained.merge_into(fresh, source, HEAD)
  chex.assert_trees_all_equal(merged["params"]["head"], fresh["params"]["head"])
  for name in ("conv1", "conv2", "dense", "bn1"):
    chex.assert_trees_all_equal(merged["params"][name], source["params"][name])
  chex.assert_trees_all_equal(merged["batch_stats"], source["batch_stats"])


def test_misfit_shapes_are_named():
  source = _variables(num_classes=10, seed=0, width=8)
  fresh = _variables(num_classes=3, seed=1, width=4)
  with pytest.raises(ValueError, match=r"'params/bn1/bias' has shape \(8,\) but the model expects \(4,\)"):
    pretrained.merge_into(fresh, source, HEAD)


def test_missing_tensor_is_named():
  source = _variables(num_classes=10, seed=0)
  del source["params"]["dense"]
  with pytest.raises(ValueError, match="lack tensor 'params/dense/bias'"):
    pretrained.check_fits(source, _variables(num_classes=3, seed=1), HEAD)


def test_msgpack_round_trip(tmp_path):
  variables = _variables(num_classes=10, seed=0)
  path = str(tmp_path / "source.msgpack")
  pretrained.save_variables(path, variables, {"model": "small_cnn"})
  loaded = pretrained.load_source(path)
  chex.assert_trees_all_equal(loaded.variables, variables)
  assert loaded.info == {"model": "small_cnn"}


def test_bad_specs_fail_in_one_line(tmp_path):
  with pytest.raises(FileNotFoundError, match="pretrained='/nope.msgpack' does not exist"):
    pretrained.check_spec("/nope.msgpack")
  other = tmp_path / "weights.h5"
  other.write_text("x")
  with pytest.raises(ValueError, match="unknown file type"):
    pretrained.check_spec(str(other))


def test_head_anchor_is_zero_or_init():
  params = _variables(num_classes=3, seed=0)["params"]
  zero = anchors.anchor_params(params, "zero", HEAD)
  init = anchors.anchor_params(params, "init", HEAD)
  assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(zero["head"]))
  chex.assert_trees_all_equal(init, params)
  chex.assert_trees_all_equal(zero["conv1"], params["conv1"])
