"""Checkpoints that cannot be trusted: an interrupted save, a damaged step, another config's state."""

import os
import shutil

import chex
import pytest

from ftjax.train import checkpointing, loop
from tests.test_finetune import finished_run, tiny_config  # noqa: F401 (fixture)

# A restore that fails partway leaves orbax's TensorStore reads pending on a closed event loop, which
# Python reports as 'Exception ignored' dumps; refused checkpoints must fail before any array is read.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


def _copy_without_results(workdir, target):
  shutil.copytree(workdir, target)
  os.remove(os.path.join(target, "results.json"))
  return str(target)


def test_an_interrupted_save_leaves_the_previous_checkpoint_readable(finished_run, tmp_path):
  workdir, _ = finished_run
  copy = _copy_without_results(workdir, tmp_path / "w")
  partial = os.path.join(copy, "checkpoints", "50.orbax-checkpoint-tmp-1234", "state")
  os.makedirs(partial)
  with open(os.path.join(partial, "_METADATA"), "w") as f:
    f.write("{ half-written")
  manager = checkpointing.checkpoint_manager(os.path.join(copy, "checkpoints"))
  assert manager.latest_step() == 44
  manager.close()
  again = loop.train_and_evaluate(tiny_config(), copy)
  assert again["resumed_from_step"] == 44


def test_a_damaged_checkpoint_is_reported_not_a_traceback(finished_run, tmp_path):
  workdir, _ = finished_run
  copy = _copy_without_results(workdir, tmp_path / "w")
  state_dir = os.path.join(copy, "checkpoints", "44", "state")
  for root, _, files in os.walk(state_dir):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"\0garbage")
  before = sorted(os.listdir(copy))
  with pytest.raises(checkpointing.UnreadableCheckpointError) as error:
    loop.train_and_evaluate(tiny_config(), copy)
  assert "checkpoints/44 is damaged or was not written by this config" in str(error.value)
  assert "\n" not in str(error.value)
  assert sorted(os.listdir(copy)) == before and os.path.isdir(state_dir)


def test_another_configs_checkpoint_is_refused_even_when_changes_are_allowed(finished_run, tmp_path):
  workdir, _ = finished_run
  copy = _copy_without_results(workdir, tmp_path / "w")
  with pytest.raises(checkpointing.UnreadableCheckpointError) as error:
    loop.train_and_evaluate(tiny_config(width=8), copy, allow_config_change=True)
  # small_cnn's first BatchNorm has `width` channels: 4 in the finished run, 8 here.
  assert (
    "checkpoints/44 is damaged or was not written by this config (ValueError: tensor 'batch_stats/bn1/mean' "
    "has shape (4,) in the checkpoint, (8,) in this config)" in str(error.value)
  )
  variables, step = checkpointing.restore_model(os.path.join(copy, "checkpoints"))
  original, _ = checkpointing.restore_model(os.path.join(workdir, "checkpoints"))
  assert step == 44
  chex.assert_trees_all_equal(variables, original)
