"""One run per workdir: a live holder's lock refuses a second run in one line, a dead holder's is taken over."""

import logging
import os
import socket
import subprocess
import sys

import pytest

from ftjax.train import loop, workdir_lock
from tests.test_finetune import tiny_config


def _lock_text(workdir):
  with open(os.path.join(workdir, workdir_lock.LOCK_FILE)) as f:
    return f.read()


def test_the_lock_names_its_holder_and_is_removed_at_exit(tmp_path):
  with workdir_lock.held(str(tmp_path)):
    assert _lock_text(tmp_path) == f"{os.getpid()} {socket.gethostname()}\n"
  assert os.listdir(tmp_path) == []


def test_a_live_holder_refuses_a_second_run_in_one_line(tmp_path):
  with workdir_lock.held(str(tmp_path)):
    with pytest.raises(workdir_lock.WorkdirBusyError) as error:
      workdir_lock.acquire(str(tmp_path))
    message = str(error.value)
    assert f"in use by process {os.getpid()} on host {socket.gethostname()}" in message and "\n" not in message
    assert _lock_text(tmp_path) == f"{os.getpid()} {socket.gethostname()}\n"


def test_a_refused_run_writes_nothing(tmp_path):
  with workdir_lock.held(str(tmp_path)):
    before = {name: os.stat(tmp_path / name).st_mtime_ns for name in os.listdir(tmp_path)}
    with pytest.raises(workdir_lock.WorkdirBusyError):
      loop.train_and_evaluate(tiny_config(), str(tmp_path))
    assert {name: os.stat(tmp_path / name).st_mtime_ns for name in os.listdir(tmp_path)} == before


def test_the_lock_is_released_when_the_run_fails(tmp_path):
  with pytest.raises(RuntimeError), workdir_lock.held(str(tmp_path)):
    raise RuntimeError("a failing run")
  assert os.listdir(tmp_path) == []


def test_a_dead_holders_lock_is_taken_over_with_a_warning(tmp_path, caplog):
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
  pid = int(dead.stdout)
  with open(tmp_path / workdir_lock.LOCK_FILE, "w") as f:
    f.write(f"{pid} {socket.gethostname()}\n")
  with caplog.at_level(logging.WARNING, logger="ftjax.train.workdir_lock"), workdir_lock.held(str(tmp_path)):
    assert _lock_text(tmp_path) == f"{os.getpid()} {socket.gethostname()}\n"
  warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
  assert len(warnings) == 1 and f"process {pid} on host {socket.gethostname()}" in warnings[0]
  assert os.listdir(tmp_path) == []


def test_another_hosts_lock_is_never_taken(tmp_path):
  with open(tmp_path / workdir_lock.LOCK_FILE, "w") as f:
    f.write("1234 some-other-host\n")
  with pytest.raises(workdir_lock.WorkdirBusyError) as error:
    workdir_lock.acquire(str(tmp_path))
  assert "process 1234 on host some-other-host" in str(error.value)
  assert _lock_text(tmp_path) == "1234 some-other-host\n"


def test_live_holder_names_a_live_lock_only(tmp_path):
  workdir = str(tmp_path)
  assert workdir_lock.live_holder(workdir) is None  # no lock
  with workdir_lock.held(workdir):
    assert workdir_lock.live_holder(workdir) == f"process {os.getpid()} on host {socket.gethostname()}"
    assert workdir_lock.live_holder(workdir) is not None  # asking did not take it
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
  with open(tmp_path / workdir_lock.LOCK_FILE, "w") as f:
    f.write(f"{int(dead.stdout)} {socket.gethostname()}\n")
  assert workdir_lock.live_holder(workdir) is None  # a dead holder's lock, which acquire takes over
  with open(tmp_path / workdir_lock.LOCK_FILE, "w") as f:
    f.write("1234 some-other-host\n")
  assert workdir_lock.live_holder(workdir) == "process 1234 on host some-other-host"


def test_a_new_lock_another_process_took_first_is_refused(tmp_path, monkeypatch):
  monkeypatch.setattr(workdir_lock, "_try_flock", lambda fd: False)  # as if taken over before this process flocked it
  with pytest.raises(workdir_lock.WorkdirBusyError, match="in use by another process") as error:
    workdir_lock.acquire(str(tmp_path))
  assert "\n" not in str(error.value)


def test_a_run_another_process_finished_meanwhile_is_not_trained_again(tmp_path, monkeypatch):
  workdir = str(tmp_path)
  config = tiny_config(optim__num_epochs=1)
  results = loop.train_and_evaluate(config, workdir)
  stamp = os.stat(os.path.join(workdir, "results.json")).st_mtime_ns
  stored, calls = loop.stored_results, []

  def finished_after_the_first_look(*args):  # the first look sees no results: another process finishes meanwhile
    calls.append(args)
    return None if len(calls) == 1 else stored(*args)

  monkeypatch.setattr(loop, "stored_results", finished_after_the_first_look)
  assert loop.train_and_evaluate(config, workdir) == results and len(calls) == 2
  assert os.stat(os.path.join(workdir, "results.json")).st_mtime_ns == stamp
