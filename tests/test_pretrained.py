"""Source weights: merging into a fresh model, shape checks, and the .msgpack round trip."""

import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from ftjax.distance import anchors
from ftjax.models import create_model, pretrained, structure_of
from tests.test_finetune import REPO

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


@pytest.mark.parametrize(
  "name, content, fragment",
  [
    ("garbage.safetensors", b"no header" * 4, "is not a readable .safetensors file (SafetensorError"),
    ("empty.safetensors", b"", "is not a readable .safetensors file (SafetensorError"),
    ("garbage.msgpack", b"\x01\x02 not msgpack", "is not readable msgpack (ExtraData"),
    ("empty.msgpack", b"", "is not readable msgpack"),
    ("list.msgpack", b"\x92\x01\x02", "holds no 'params' tree"),  # msgpack of [1, 2]
  ],
)
def test_damaged_source_files_are_named_in_one_line_before_any_weight_is_used(tmp_path, name, content, fragment):
  path = tmp_path / name
  path.write_bytes(content)
  calls = [pretrained.check_spec, pretrained.load_source]
  if name.endswith(".safetensors"):
    calls.append(pretrained.source_architecture)  # model='auto' reads the header
  for call in calls:
    with pytest.raises(ValueError) as excinfo:
      call(str(path))
    message = str(excinfo.value)
    assert "\n" not in message and f"pretrained file {str(path)!r} {fragment}" in message, message
    assert "valid: " in message


def test_pth_files_that_hold_no_state_dict_are_named(tmp_path):
  torch = pytest.importorskip("torch")
  cases = {
    "garbage.pth": (b"not a pickle" * 8, "is not a readable .pth/.pt file"),
    "tensor.pth": (torch.zeros(3), "holds a Tensor, not a state dict"),
    "list.pth": ([torch.zeros(3)], "holds a list, not a state dict"),
    "ints.pth": ({"conv1.weight": 3}, "entry 'conv1.weight' is a int, not a tensor"),
  }
  for name, (content, fragment) in cases.items():
    path = str(tmp_path / name)
    if isinstance(content, bytes):
      (tmp_path / name).write_bytes(content)
    else:
      torch.save(content, path)
    for call in (pretrained.check_spec, pretrained.load_source, pretrained.source_architecture):
      with pytest.raises(ValueError) as excinfo:
        call(path)
      assert "\n" not in str(excinfo.value) and f"pretrained file {path!r}" in str(excinfo.value)
      assert fragment in str(excinfo.value), str(excinfo.value)


def test_a_source_file_is_read_once_and_again_when_it_changes(tmp_path):
  path = str(tmp_path / "source.msgpack")
  first, second = _variables(num_classes=10, seed=0), _variables(num_classes=10, seed=1)
  pretrained.save_variables(path, first, {})
  pretrained.check_spec(path)
  assert pretrained.load_source(path) is pretrained.load_source(path)  # the check's read, reused
  pretrained.save_variables(path, second, {"model": "small_cnn"})
  os.utime(path, ns=(1, 1))  # a new stamp even within the file system's time resolution
  chex.assert_trees_all_equal(pretrained.load_source(path).variables, second)


def test_a_workdir_whose_checkpoint_is_damaged_is_named_in_one_line(tmp_path):
  import orbax.checkpoint as ocp

  from ftjax import checkpoint_io

  variables = _variables(num_classes=3, seed=0)
  manager = checkpoint_io.checkpoint_manager(str(tmp_path / "checkpoints"))
  items = {"state": ocp.args.StandardSave({"step": np.int32(7)}), "model": ocp.args.StandardSave(variables)}
  manager.save(7, args=ocp.args.Composite(**items))
  manager.wait_until_finished()
  manager.close()
  loaded = pretrained.load_source(str(tmp_path))
  chex.assert_trees_all_equal(loaded.variables, variables)
  assert loaded.info == {"step": 7}
  data_dir = tmp_path / "checkpoints" / "7" / "model" / "d"
  for name in os.listdir(data_dir):
    (data_dir / name).write_bytes(b"damaged")
  os.utime(tmp_path / "checkpoints", ns=(1, 1))  # a new stamp: not the read above
  # In a process of its own: orbax's failed read leaves a TensorStore callback for its closed event loop,
  # which reports itself on stderr whenever it is collected.
  script = (
    "import sys\nfrom ftjax.models import pretrained\n"
    "try:\n  pretrained.load_source(sys.argv[1])\nexcept ValueError as e:\n  print(e)\n"
  )
  process = subprocess.run(
    [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, cwd=REPO, timeout=300
  )
  message = process.stdout.strip()
  assert process.returncode == 0, process.stderr
  assert "\n" not in message and f"checkpoint {tmp_path / 'checkpoints' / '7'} cannot be read" in message, message
  (tmp_path / "config.json").write_text('{"model": "small_')
  with pytest.raises(ValueError, match=r"config.json' is not valid JSON"):
    pretrained.check_spec(str(tmp_path))


def test_head_anchor_is_zero_or_init():
  params = _variables(num_classes=3, seed=0)["params"]
  zero = anchors.anchor_params(params, "zero", HEAD)
  init = anchors.anchor_params(params, "init", HEAD)
  assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(zero["head"]))
  chex.assert_trees_all_equal(init, params)
  chex.assert_trees_all_equal(zero["conv1"], params["conv1"])


FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.mark.parametrize(
  "name, kind, model",
  [
    ("vit_timm_cls.safetensors", "timm", "vit_tiny"),
    ("vit_jax_gap.npz", "vit_jax", "vit_tiny"),
    ("torchvision_resnet18.safetensors", "torchvision", "resnet18"),
  ],
)
def test_a_source_file_is_told_apart_by_its_keys(name, kind, model):
  path = os.path.join(FIXTURES, name)
  pretrained.check_spec(path)
  if kind != "vit_jax":
    assert pretrained.state_dict_kind(path) == kind
  assert pretrained.source_architecture(path)["model"] == model


def test_a_state_dict_of_neither_kind_and_a_vit_of_no_variant_are_named_in_one_line(tmp_path):
  import safetensors.numpy

  other = str(tmp_path / "bert.safetensors")
  safetensors.numpy.save_file({"embeddings.word.weight": np.zeros((4, 2), np.float32)}, other)
  for call in (pretrained.check_spec, pretrained.load_source, pretrained.source_architecture):
    with pytest.raises(ValueError) as excinfo:
      call(other)
    message = str(excinfo.value)
    assert "\n" not in message and message.startswith(f"pretrained file {other!r} holds neither a torchvision ResNet")
    assert "['embeddings.word.weight']" in message
  # A timm ViT of width 32 and an MLP of 48: no registered variant has that shape.
  arrays = safetensors.numpy.load_file(os.path.join(FIXTURES, "vit_timm_cls.safetensors"))
  for i in (0, 1):
    arrays[f"blocks.{i}.mlp.fc1.weight"] = arrays[f"blocks.{i}.mlp.fc1.weight"][:48]
    arrays[f"blocks.{i}.mlp.fc1.bias"] = arrays[f"blocks.{i}.mlp.fc1.bias"][:48]
    arrays[f"blocks.{i}.mlp.fc2.weight"] = arrays[f"blocks.{i}.mlp.fc2.weight"][:, :48]
  odd = str(tmp_path / "odd.safetensors")
  safetensors.numpy.save_file(arrays, odd)
  with pytest.raises(ValueError, match=r"holds a ViT of width 32, depth 2, mlp_dim 48, patch_size 4, the shape of no"):
    pretrained.source_architecture(odd)
