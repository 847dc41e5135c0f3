"""Long runs that stop early: preemption signals, SIGKILL and resume, non-finite values."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import chex
import jax
import ml_collections
import numpy as np
import pytest

from ftjax import checkpoint_io
from ftjax.metrics_writer import read_metrics
from ftjax.train import interruptions, loop
from tests.test_finetune import REPO, tiny_config

# A small noisy-label regsl run, so that params, corrected labels and metrics all have to survive.
FLAGS = [
  "--config.model.name=small_cnn",
  "--config.model.width=4",
  "--config.model.pretrained=none",
  "--config.data.image_size=8",
  "--config.optim.eval_batch_size=128",
  "--config.optim.num_epochs=6",
  "--config.run.checkpoint_every=20",
  "--config.run.log_every=5",
  "--config.method=regsl",
  "--config.noise.type=symmetric",
  "--config.noise.rate=0.4",
  "--config.correction.threshold=0.1",
  "--config.correction.start_epoch=1",
  "--config.reweighting.start_epoch=1",
]


def start(workdir, *extra):
  return subprocess.Popen(
    [sys.executable, "-m", "experiments.finetune", f"--workdir={workdir}", *FLAGS, *extra],
    cwd=REPO,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def wait_for(predicate, process, timeout=180):
  deadline = time.time() + timeout
  while not predicate():
    assert process.poll() is None, process.communicate()
    assert time.time() < deadline, "timed out"
    time.sleep(0.05)


def saved_steps(workdir):
  directory = os.path.join(workdir, "checkpoints")
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit()) if os.path.isdir(directory) else []


def final_state(workdir):
  variables, step = checkpoint_io.restore_model(os.path.join(workdir, "checkpoints"))
  return variables, step


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("uninterrupted"))
  process = start(workdir)
  _, err = process.communicate(timeout=600)
  assert process.returncode == 0, err
  return workdir


def _labels(workdir):
  """The per-example labels regsl kept in the latest checkpoint of `workdir`."""
  with open(os.path.join(workdir, "config.json")) as f:
    config = ml_collections.ConfigDict(json.load(f))
  exp = loop.build_experiment(config, workdir)
  return np.asarray(jax.device_get(loop.restore_trained_state(exp, workdir).method_state.labels))


def metrics_bytes(workdir):
  with open(os.path.join(workdir, "metrics.jsonl"), "rb") as f:
    return f.read()


def test_sigkill_mid_epoch_then_resume_is_bitwise_equal(uninterrupted, tmp_path):
  # Checkpoints every 22 steps, logs every 5: the checkpoint of step 44 holds 4 steps not yet logged.
  workdir = str(tmp_path / "killed")
  process = start(workdir, "--config.run.checkpoint_every=22")
  wait_for(lambda: 44 in saved_steps(workdir) and any(r["step"] >= 50 for r in read_metrics(workdir)), process)
  process.kill()
  process.wait()
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  resumed = start(workdir, "--config.run.checkpoint_every=22")
  _, err = resumed.communicate(timeout=600)
  assert resumed.returncode == 0, err
  assert "resuming from step" in err and "taking over the lock" in err
  (original, step), (again, step_again) = final_state(uninterrupted), final_state(workdir)
  assert step == step_again == 132
  chex.assert_trees_all_equal(original, again)
  np.testing.assert_array_equal(_labels(workdir), _labels(uninterrupted))
  assert metrics_bytes(workdir) == metrics_bytes(uninterrupted)
  assert not os.path.exists(os.path.join(workdir, ".lock"))


def test_flipped_bytes_in_the_latest_checkpoint_fall_back_to_the_previous_one(uninterrupted, tmp_path):
  workdir = str(tmp_path / "flipped")
  shutil.copytree(uninterrupted, workdir)
  os.remove(os.path.join(workdir, "results.json"))
  latest = os.path.join(workdir, "checkpoints", str(saved_steps(workdir)[-1]))
  files = [os.path.join(root, name) for root, _, names in os.walk(latest) for name in names]
  largest = max(files, key=os.path.getsize)
  with open(largest, "r+b") as f:  # 64 bytes flipped in the middle of the checkpoint's largest data file
    f.seek(os.path.getsize(largest) // 2)
    data = f.read(64)
    f.seek(-len(data), os.SEEK_CUR)
    f.write(bytes(b ^ 0xFF for b in data))
  process = start(workdir)
  _, err = process.communicate(timeout=600)
  assert process.returncode == 0, err
  assert "Traceback" not in err
  [warning] = [line for line in err.splitlines() if "is damaged" in line]
  assert latest in warning and "resuming from the newest intact one" in warning
  assert os.path.exists(os.path.join(workdir, "damaged_checkpoints", os.path.basename(latest)))
  with open(os.path.join(workdir, "results.json")) as f, open(os.path.join(uninterrupted, "results.json")) as g:
    resumed, original = json.load(f), json.load(g)
  assert 0 < resumed["resumed_from_step"] < original["steps"]
  for key in ("test_loss", "test_accuracy", "train_loss", "train_accuracy"):
    assert resumed[key] == original[key]
  assert metrics_bytes(workdir) == metrics_bytes(uninterrupted)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_saves_the_current_step_and_exits_cleanly(uninterrupted, tmp_path, stop_signal):
  workdir = str(tmp_path / "preempted")
  process = start(workdir, "--config.run.checkpoint_every=1000")
  wait_for(lambda: any(r["step"] >= 10 for r in read_metrics(workdir)), process)
  process.send_signal(stop_signal)
  _, err = process.communicate(timeout=120)
  assert process.returncode == 128 + stop_signal, err
  assert "Traceback" not in err
  message = [line for line in err.splitlines() if f"stopped by {signal.Signals(stop_signal).name}" in line]
  assert len(message) == 1, err
  step = int(message[0].split("at step ")[1].split()[0])
  assert saved_steps(workdir) == [step] and 10 <= step < 132
  resumed = start(workdir, "--config.run.checkpoint_every=1000", "--config.optim.num_epochs=6")
  _, err = resumed.communicate(timeout=600)
  assert resumed.returncode == 0, err
  assert f"resuming from step {step}" in err
  assert metrics_bytes(workdir) == metrics_bytes(uninterrupted)


def test_a_second_run_on_a_live_runs_workdir_is_refused_in_one_line(tmp_path):
  workdir = str(tmp_path / "busy")
  process = start(workdir)
  wait_for(lambda: any(r["step"] >= 5 for r in read_metrics(workdir)), process)
  process.send_signal(signal.SIGSTOP)  # the holder lives (and holds its lock) but cannot finish meanwhile
  before = metrics_bytes(workdir)
  second = start(workdir)
  _, err = second.communicate(timeout=300)
  after = metrics_bytes(workdir)  # read before the holder continues (it may log the step it was stopped in)
  process.send_signal(signal.SIGCONT)
  process.send_signal(signal.SIGTERM)
  process.communicate(timeout=120)
  assert second.returncode == 2, err
  assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: workdir ")
  assert f"in use by process {process.pid} on host " in err
  assert after == before
  assert not os.path.exists(os.path.join(workdir, ".lock"))


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  config = tiny_config(optim__num_epochs=3, optim__learning_rate=1e4, run__checkpoint_every=2, optim__name="sgd")
  with pytest.raises(interruptions.NonFiniteError) as error:
    loop.train_and_evaluate(config, str(tmp_path))
  message = str(error.value)
  failing_step = int(message.split("step ")[1].split(":")[0])
  assert any(f"{name} is " in message for name in ("loss", "grad_norm")) and "\n" not in message
  variables, step = final_state(str(tmp_path))
  assert step < failing_step and f"checkpoint of step {step} is kept" in message
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(variables))
  assert not os.path.exists(tmp_path / "results.json")


def restored_checkpoints(workdir):
  """{step: every array of that checkpoint (both items), restored without a target} of each saved step."""
  manager = checkpoint_io.checkpoint_manager(os.path.join(workdir, "checkpoints"), create=False)
  try:
    restored = {step: manager.restore(step) for step in manager.all_steps()}
    return {step: jax.tree.leaves({item: items[item] for item in items.keys()}) for step, items in restored.items()}
  finally:
    manager.close()


def test_state_check_names_each_part_holding_a_non_finite_value():
  state = loop.TrainState(
    step=np.int32(3),
    params={"w": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)},
    batch_stats={"mean": np.zeros(3, np.float32)},
    opt_state=(np.zeros((2, 3), np.float32),),
    method_state={"labels": np.arange(4)},
    rng=jax.random.key(0),
  )
  interruptions.check_state_finite(3, state, last_checkpoint=2)  # all finite: no error
  params = {**state.params, "b": np.array([0.0, np.inf, 0.0], np.float32)}
  opt_state = (np.full((2, 3), np.nan, np.float32),)
  with pytest.raises(interruptions.NonFiniteError) as error:
    interruptions.check_state_finite(3, state.replace(params=params, opt_state=opt_state), last_checkpoint=2)
  message = str(error.value)
  assert message.startswith("step 3: the train state's params, opt_state hold non-finite values")
  assert "checkpoint of step 2 is kept" in message and "batch_stats" not in message


def test_non_finite_params_from_a_finite_step_are_never_saved(tmp_path):
  # Warm-up makes the first step's learning rate 0 (a finite checkpoint at step 1); the second step's huge
  # learning rate times the weight decay overflows the params although its loss and gradient are finite.
  config = tiny_config(
    optim__num_epochs=1,
    run__checkpoint_every=1,
    optim__warmup_epochs=0.5,
    optim__learning_rate=1e10,
    optim__weight_decay=1e38,
  )
  with pytest.raises(interruptions.NonFiniteError) as error:
    loop.train_and_evaluate(config, str(tmp_path))
  message = str(error.value)
  assert message.startswith("step 2: the train state's params") and "checkpoint of step 1 is kept" in message
  checkpoints = restored_checkpoints(str(tmp_path))
  assert list(checkpoints) == [1]
  for leaves in checkpoints.values():
    floats = [np.asarray(x) for x in leaves if jax.numpy.issubdtype(x.dtype, jax.numpy.inexact)]
    assert len(floats) > 10 and all(np.all(np.isfinite(x)) for x in floats)
  assert not os.path.exists(tmp_path / "results.json")
