"""A run that meets a full disk: one line naming the file and the bytes, the last finished checkpoint intact, and
the same command resumes once space is freed. The disk is a small tmpfs mounted in a private mount namespace
(`unshare -m`, as root); where that is not permitted the test is skipped."""

import os
import shutil
import subprocess
import sys

import chex
import pytest

from ftjax import checkpoint_io
from tests.test_finetune import REPO

FLAGS = [
  "--config.model.name=small_cnn",
  "--config.model.width=4",
  "--config.model.pretrained=none",
  "--config.data.image_size=8",
  "--config.optim.num_epochs=2",
  "--config.run.checkpoint_every=10",
  "--config.run.log_every=5",
]

# In the namespace: mount a tmpfs, fill it but for FREE bytes, run, keep a copy of the workdir, free the space,
# run the same command again, keep a copy.
SCENARIO = """
set -u
mount -t tmpfs -o size=8m tmpfs "$MNT" || exit 97
avail=$(df -B1 --output=avail "$MNT" | tail -1)
fallocate -l $((avail - FREE)) "$MNT/filler" || exit 98
"$PYTHON" -m experiments.finetune --workdir="$MNT/run" $FLAGS > "$OUT/out1" 2> "$OUT/err1"; echo $? > "$OUT/rc1"
cp -a "$MNT/run" "$OUT/after_full"
rm "$MNT/filler"
"$PYTHON" -m experiments.finetune --workdir="$MNT/run" $FLAGS > "$OUT/out2" 2> "$OUT/err2"; echo $? > "$OUT/rc2"
cp -a "$MNT/run" "$OUT/after_resume"
"""


def can_mount_tmpfs(directory) -> str | None:
  """None if a tmpfs can be mounted in a private mount namespace here, else why not."""
  if shutil.which("unshare") is None or shutil.which("fallocate") is None:
    return "unshare or fallocate is not installed"
  os.makedirs(directory, exist_ok=True)
  probe = subprocess.run(
    ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs '{directory}'"], capture_output=True, text=True
  )
  return None if probe.returncode == 0 else f"cannot mount a tmpfs ({probe.stderr.strip() or probe.returncode})"


def run_finetune(workdir):
  process = subprocess.run(
    [sys.executable, "-m", "experiments.finetune", f"--workdir={workdir}", *FLAGS],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert process.returncode == 0, process.stderr


def disk_bytes(folder) -> int:
  return sum(os.stat(os.path.join(d, f)).st_blocks * 512 for d, _, files in os.walk(folder) for f in files)


def read(path) -> str:
  with open(path) as f:
    return f.read()


def test_a_full_disk_stops_in_one_line_keeps_the_last_checkpoint_and_resumes(tmp_path):
  mount_point = str(tmp_path / "mnt")
  reason = can_mount_tmpfs(mount_point)
  if reason:
    pytest.skip(reason)
  reference = str(tmp_path / "reference")
  run_finetune(reference)  # uninterrupted, on a disk with room
  # Room for the first checkpoint (step 10) and the small files beside it, not for a second checkpoint.
  checkpoint = disk_bytes(os.path.join(reference, "checkpoints", "40"))
  free = int(1.5 * checkpoint) + 64 * 1024
  out = str(tmp_path / "out")
  os.makedirs(out)
  env = {**os.environ, "MNT": mount_point, "FREE": str(free), "OUT": out, "PYTHON": sys.executable}
  env["FLAGS"] = " ".join(FLAGS)
  scenario = subprocess.run(["unshare", "-m", "bash", "-c", SCENARIO], cwd=REPO, env=env, timeout=1200)
  assert scenario.returncode == 0

  err = read(os.path.join(out, "err1"))
  assert read(os.path.join(out, "rc1")).strip() == "4", err
  assert "Traceback" not in err and "Exception" not in err, err
  errors = [line for line in err.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and err.rstrip().endswith(errors[0]), err
  message = errors[0]
  assert message.startswith(f"error: no space left on device writing {mount_point}/run/"), message
  needed = int(message.split("the checkpoint of step 10 takes ")[1].split(" bytes")[0].replace(",", ""))
  assert 0.5 * checkpoint <= needed <= 2 * checkpoint
  assert "the checkpoint of step 10 is kept" in message and "rerun the same command to resume" in message

  kept = os.path.join(out, "after_full", "checkpoints")
  assert sorted(d for d in os.listdir(kept) if d.isdigit()) == ["10"]
  _, step = checkpoint_io.restore_model(kept)
  assert step == 10

  err = read(os.path.join(out, "err2"))
  assert read(os.path.join(out, "rc2")).strip() == "0", err
  assert "resuming from step 10" in err and "damaged" not in err and "Traceback" not in err
  resumed = os.path.join(out, "after_resume")
  assert read(os.path.join(resumed, "metrics.jsonl")) == read(os.path.join(reference, "metrics.jsonl"))
  (original, step), (again, step_again) = (
    checkpoint_io.restore_model(os.path.join(run, "checkpoints")) for run in (reference, resumed)
  )
  assert step == step_again == 44
  chex.assert_trees_all_equal(original, again)
