"""Two JAX processes of 4 CPU devices each (a localhost coordinator, gloo collectives) train to
the same result as one process of 8 devices: the stand-in for a TPU pod job."""

import json
import os
import socket
import subprocess
import sys

import chex

from ftjax import checkpoint_io
from tests.test_finetune import REPO

FLAGS = [
  "--config.model.name=small_cnn",
  "--config.model.width=4",
  "--config.model.pretrained=none",
  "--config.data.image_size=8",
  "--config.optim.eval_batch_size=128",
  "--config.optim.num_epochs=1",
  "--config.run.checkpoint_every=10",
  "--config.run.log_every=5",
]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def command(workdir, *extra):
  return [sys.executable, "-m", "experiments.finetune", f"--workdir={workdir}", *FLAGS, *extra]


def env_with_devices(count: int) -> dict:
  return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={count}"}


def test_two_processes_match_one_process_of_eight_devices(tmp_path):
  single, multi = str(tmp_path / "single"), str(tmp_path / "multi")
  port = free_port()
  workers = [
    subprocess.Popen(
      command(
        multi, "--distributed", f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={i}"
      ),
      cwd=REPO,
      env=env_with_devices(4),
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  reference = subprocess.run(
    command(single), cwd=REPO, env=env_with_devices(8), capture_output=True, text=True, timeout=600
  )
  outputs = [w.communicate(timeout=600) for w in workers]
  assert reference.returncode == 0, reference.stderr
  for worker, (_, err) in zip(workers, outputs):
    assert worker.returncode == 0, err
  assert "JAX process 1 of 2, 4 local / 8 global devices" in outputs[1][1]
  with open(os.path.join(multi, "results.json")) as f:
    multi_results = json.load(f)
  with open(os.path.join(single, "results.json")) as f:
    single_results = json.load(f)
  assert (multi_results["num_processes"], multi_results["num_devices"]) == (2, 8)
  assert (single_results["num_processes"], single_results["num_devices"]) == (1, 8)
  (multi_vars, multi_step), (single_vars, single_step) = (
    checkpoint_io.restore_model(os.path.join(d, "checkpoints")) for d in (multi, single)
  )
  assert multi_step == single_step == 22
  chex.assert_trees_all_close(multi_vars, single_vars, atol=1e-5, rtol=1e-5)
  assert abs(multi_results["test_accuracy"] - single_results["test_accuracy"]) <= 1 / 360
