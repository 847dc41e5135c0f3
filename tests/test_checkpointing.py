"""Checkpoints that cannot be trusted: an interrupted save, a damaged step, another config's state."""

import hashlib
import json
import logging
import os
import shutil

import chex
import jax.numpy as jnp
import numpy as np
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


def _resume_with_warnings(copy, caplog):
  with caplog.at_level(logging.WARNING, logger="ftjax.train.checkpointing"):
    results = loop.train_and_evaluate(tiny_config(), copy)
  return results, [r.getMessage() for r in caplog.records if r.name == "ftjax.train.checkpointing"]


def test_an_unreadable_latest_checkpoint_is_set_aside_and_the_run_resumes_from_the_previous(
  finished_run, tmp_path, caplog
):
  workdir, finished = finished_run
  copy = _copy_without_results(workdir, tmp_path / "w")
  steps = sorted(int(d) for d in os.listdir(os.path.join(copy, "checkpoints")) if d.isdigit())
  assert steps[-1] == 44 and len(steps) == 2
  state_dir = os.path.join(copy, "checkpoints", "44", "state")
  for root, _, files in os.walk(state_dir):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:
        f.write(b"\0garbage")
  results, warnings = _resume_with_warnings(copy, caplog)
  assert len(warnings) == 1 and f"checkpoint {os.path.join(copy, 'checkpoints', '44')} is damaged" in warnings[0]
  assert results["resumed_from_step"] == steps[0]
  assert results["test_loss"] == finished["test_loss"] and results["train_loss"] == finished["train_loss"]
  with open(os.path.join(copy, "damaged_checkpoints", "44", "state", "_METADATA"), "rb") as f:
    assert f.read() == b"\0garbage"  # kept as it was, not deleted


def test_arrays_that_differ_from_their_checksums_are_a_damaged_checkpoint(finished_run, tmp_path, caplog):
  workdir, finished = finished_run
  copy = _copy_without_results(workdir, tmp_path / "w")
  path = os.path.join(copy, checkpointing.CHECKSUMS_FILE)
  with open(path) as f:
    recorded = json.load(f)
  manager = checkpointing.checkpoint_manager(os.path.join(copy, "checkpoints"))
  exp = loop.build_experiment(tiny_config(), copy)
  state = checkpointing.restore_latest(manager, exp.initial_state)
  manager.close()
  # The recorded sums are those of the restored arrays: an independent sha256 of one array's bytes.
  kernel = np.asarray(state.params["conv1"]["kernel"])
  expected = hashlib.sha256(f"{kernel.dtype} {kernel.shape} ".encode() + kernel.tobytes()).hexdigest()
  assert recorded["44"][".params['conv1']['kernel']"] == expected
  # A bit flipped on disk that orbax reads without error shows only as a checksum mismatch.
  recorded["44"][".params['conv1']['kernel']"] = hashlib.sha256(b"other bytes").hexdigest()
  with open(path, "w") as f:
    json.dump(recorded, f)
  results, warnings = _resume_with_warnings(copy, caplog)
  assert len(warnings) == 1 and "checksum mismatch in .params['conv1']['kernel']" in warnings[0]
  assert results["resumed_from_step"] < 44 and results["test_loss"] == finished["test_loss"]
  assert os.path.isdir(os.path.join(copy, "damaged_checkpoints", "44", "state"))


def test_another_configs_checkpoint_is_refused_even_when_changes_are_allowed(finished_run, tmp_path):
  workdir, _ = finished_run
  copy = _copy_without_results(workdir, tmp_path / "w")
  with pytest.raises(checkpointing.UnreadableCheckpointError) as error:
    loop.train_and_evaluate(tiny_config(model__width=8), copy, allow_config_change=True)
  # small_cnn's first BatchNorm has `width` channels: 4 in the finished run, 8 here.
  assert (
    "checkpoints/44 is damaged or was not written by this config (ValueError: tensor 'batch_stats/bn1/mean' "
    "has shape (4,) in the checkpoint, (8,) in this config)" in str(error.value)
  )
  variables, step = checkpointing.restore_model(os.path.join(copy, "checkpoints"))
  original, _ = checkpointing.restore_model(os.path.join(workdir, "checkpoints"))
  assert step == 44
  chex.assert_trees_all_equal(variables, original)


def test_the_pending_window_survives_with_its_exact_values_and_dtypes(tmp_path):
  rng = np.random.default_rng(0)
  pending = [{"loss": jnp.asarray(rng.random(), jnp.float32), "count": jnp.asarray(i, jnp.int32)} for i in range(3)]
  path = str(tmp_path / checkpointing.PENDING_METRICS_FILE)
  checkpointing.save_pending_metrics(path, 7, pending, keep_steps=[])
  checkpointing.save_pending_metrics(path, 9, pending[:1], keep_steps=[7])
  checkpointing.save_pending_metrics(path, 11, [], keep_steps=[9])
  restored = checkpointing.restore_pending_metrics(path, 9)
  assert checkpointing.restore_pending_metrics(path, 7) is None  # its checkpoint is gone
  assert checkpointing.restore_pending_metrics(path, 11) == []
  for got, want in zip(restored, pending[:1], strict=True):
    for name in want:
      assert got[name].dtype == want[name].dtype and got[name].tobytes() == np.asarray(want[name]).tobytes()
  both = checkpointing.restore_pending_metrics(path, 9) + pending[1:]
  assert loop.train_summary(both) == loop.train_summary(pending)
