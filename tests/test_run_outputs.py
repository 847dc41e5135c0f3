"""What a run leaves to watch and to rerun: test figures every epoch, curves.png, progress lines that
name what they measure, a finished workdir that a rerun leaves byte-identical, and a refused
config change that leaves config.json as it was."""

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from matplotlib import image

from experiments.configs import default
from ftjax import checkpoint_io, data, plots
from ftjax.config_validation import ConfigChangeError
from ftjax.metrics_writer import read_metrics
from ftjax.train import loop
from ftjax.train.steps import CompiledSteps
from tests.test_finetune import REPO, tiny_config

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def small_config(**overrides):
  """A 3-epoch regsl run of 3 steps per epoch (20 examples per class) under 40% symmetric label
  noise, correcting labels from epoch 1 on, evaluated every epoch."""
  config = tiny_config(
    **{
      "method": "regsl",
      "data__examples_per_class": 20,
      "optim__num_epochs": 3,
      "run__eval_every": 1,
      "run__log_every": 2,
      **overrides,
    }
  )
  config.noise.update(type="symmetric", rate=0.4, seed=3)
  config.correction.update(threshold=0.1, start_epoch=1)  # max p > 0.1 holds for any non-uniform p
  return config


def tree_digest(root: str) -> dict[str, str]:
  """{relative path: sha256 of its bytes} of every file under `root`, and every folder."""
  digest = {}
  for folder, dirs, files in os.walk(root):
    for name in dirs:
      digest[os.path.relpath(os.path.join(folder, name), root)] = "folder"
    for name in files:
      with open(os.path.join(folder, name), "rb") as f:
        digest[os.path.relpath(os.path.join(folder, name), root)] = hashlib.sha256(f.read()).hexdigest()
  return digest


class Messages(logging.Handler):
  """Keeps the message of every record it receives."""

  def __init__(self):
    super().__init__(logging.INFO)
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


@contextlib.contextmanager
def progress_lines():
  """The INFO messages of the 'ftjax' loggers (the progress lines) logged inside the block."""
  logger, handler = logging.getLogger("ftjax"), Messages()
  level = logger.level
  logger.addHandler(handler)
  logger.setLevel(logging.INFO)
  try:
    yield handler.messages
  finally:
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
  """(workdir, results, progress lines) of a finished `small_config` run."""
  workdir = str(tmp_path_factory.mktemp("small"))
  with progress_lines() as lines:
    results = loop.train_and_evaluate(small_config(), workdir)
  return workdir, results, lines


def test_test_figures_every_epoch_end_where_results_do(small_run):
  workdir, results, _ = small_run
  steps_per_epoch = results["steps"] // 3
  tested = [r for r in read_metrics(workdir) if "test/loss" in r]
  assert [r["step"] for r in tested] == [steps_per_epoch, 2 * steps_per_epoch, 3 * steps_per_epoch]
  assert (tested[-1]["test/loss"], tested[-1]["test/accuracy"]) == (results["test_loss"], results["test_accuracy"])
  # The reused evaluation is the final state's: evaluating the saved state afresh gives the same figures.
  exp = loop.build_experiment(small_config(), workdir)
  state = loop.restore_trained_state(exp, workdir)
  steps = CompiledSteps(
    exp.mesh, model=exp.model, method=exp.method, tx=exp.tx, steps_per_epoch=exp.steps_per_epoch, donate=False
  )
  batches = data.eval_batches(exp.splits.test, exp.eval_preprocess, exp.config.optim.eval_batch_size)
  fresh = loop.evaluate(steps, state, batches, exp.mesh)
  assert (fresh["loss"], fresh["accuracy"]) == (results["test_loss"], results["test_accuracy"])


def test_a_run_draws_its_curves_as_a_png(small_run):
  workdir, _, _ = small_run
  path = os.path.join(workdir, "curves.png")
  with open(path, "rb") as f:
    assert f.read(8) == PNG_SIGNATURE
  pixels = image.imread(path)
  assert pixels.shape == (round(3.8 * 110), round(3 * 4.6 * 110), 4)  # loss, accuracy, labels correct
  assert pixels[..., :3].std() > 0


def test_curves_without_label_noise_have_two_panels(tmp_path):
  records = [
    {"step": 2, "train/loss": 1.0, "train/accuracy": 0.5},
    {"step": 3, "test/loss": 0.9, "test/accuracy": 0.6, "labels/fraction_correct": 1.0},
  ]
  path = plots.plot_training_curves(records, str(tmp_path / "c.png"), "method: none   dataset: digits")
  with open(path, "rb") as f:
    assert f.read(8) == PNG_SIGNATURE
  assert image.imread(path).shape == (round(3.8 * 110), round(2 * 4.6 * 110), 4)


def test_the_label_panel_draws_the_worst_class_where_recorded(tmp_path, monkeypatch):
  figures = []

  class RecordedFigure(plots.Figure):
    def __init__(self, *args, **kwargs):
      super().__init__(*args, **kwargs)
      figures.append(self)

  monkeypatch.setattr(plots, "Figure", RecordedFigure)
  records = [
    {"step": 2, "train/loss": 1.0, "train/accuracy": 0.5},
    {"step": 4, "labels/fraction_correct": 0.8, "labels/worst_class_correct": 0.4, "labels/num_changed": 3},
    {"step": 8, "labels/fraction_correct": 0.7, "labels/worst_class_correct": 0.0, "labels/num_changed": 5},
  ]
  plots.plot_training_curves(records, str(tmp_path / "c.png"), "regsl", label_fraction=True)
  lines = {line.get_label(): line for line in figures[-1].axes[2].get_lines()}
  assert list(lines) == ["training labels", "worst class"]
  assert list(lines["worst class"].get_xdata()) == [4, 8] and list(lines["worst class"].get_ydata()) == [0.4, 0.0]
  assert list(lines["training labels"].get_ydata()) == [0.8, 0.7]
  plots.plot_training_curves(
    records[:1] + [{"step": 4, "labels/fraction_correct": 0.8}], str(tmp_path / "d.png"), "regsl", label_fraction=True
  )
  assert [line.get_label() for line in figures[-1].axes[2].get_lines()] == ["training labels"]


def test_rerunning_a_finished_run_changes_nothing_and_returns_its_results(small_run, monkeypatch):
  workdir, results, run_lines = small_run
  before = tree_digest(workdir)

  def no_build(*args, **kwargs):
    raise AssertionError("a finished run was built again")

  monkeypatch.setattr(loop, "build_experiment", no_build)
  with progress_lines() as lines:
    again = loop.train_and_evaluate(small_config(), workdir)
  assert tree_digest(workdir) == before
  assert again == json.loads(json.dumps(results))
  first_line = [line for line in run_lines if line.startswith("test loss")]
  assert lines == [
    f"stored result of the finished run in {workdir}: {first_line[0]}",
    f"results: {workdir}/results.json  curves: {workdir}/curves.png",
  ]


def test_a_refused_config_change_leaves_the_workdir_untouched(small_run):
  workdir, _, _ = small_run
  before = tree_digest(workdir)
  with pytest.raises(ConfigChangeError) as error:
    loop.train_and_evaluate(small_config(optim__learning_rate=0.5), workdir)
  message = str(error.value)
  assert "fields optim.learning_rate differ" in message and message.endswith("or allow_config_change=True")
  assert "--allow_config_change" in error.value.for_command_line()
  assert tree_digest(workdir) == before


def test_an_unreadable_checkpoint_under_an_allowed_change_keeps_config_json(small_run, tmp_path):
  workdir, _, _ = small_run
  copy = str(tmp_path / "w")
  shutil.copytree(workdir, copy)
  os.remove(os.path.join(copy, "results.json"))
  with open(os.path.join(copy, "config.json"), "rb") as f:
    recorded = f.read()
  with pytest.raises(checkpoint_io.UnreadableCheckpointError):
    loop.train_and_evaluate(small_config(model__width=8), copy, allow_config_change=True)
  with open(os.path.join(copy, "config.json"), "rb") as f:
    assert f.read() == recorded


def test_the_command_line_names_the_flag(tmp_path):
  workdir = tmp_path / "w"
  workdir.mkdir()
  started = json.loads(default.get_config().to_json())
  started["optim"]["learning_rate"] *= 2
  (workdir / "config.json").write_text(json.dumps(started))
  proc = subprocess.run(
    [sys.executable, "-m", "experiments.finetune", f"--workdir={workdir}"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 2, proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and errors[0].endswith("or --allow_config_change"), proc.stderr
  assert os.listdir(workdir) == ["config.json"] and json.loads((workdir / "config.json").read_text()) == started


def test_progress_lines_name_what_they_measure(small_run):
  workdir, results, lines = small_run
  train_lines = [line for line in lines if line.startswith("step ") and "train loss" in line]
  assert train_lines and all(
    re.search(
      r"train loss [\d.]+ \(vs current labels\)  train accuracy [\d.]+ "
      r"\(vs noisy labels\)",
      line,
    )
    for line in train_lines
  )
  label_lines = [line for line in lines if "training labels correct" in line]
  per_epoch = [r for r in read_metrics(workdir) if "labels/fraction_correct" in r]
  assert len(label_lines) == len(per_epoch) == 3
  for line, record in zip(label_lines, per_epoch):
    assert f"correct {record['labels/fraction_correct']:.4f} (" in line
    assert f"; {int(record['labels/num_changed'])} changed)" in line
    assert line.endswith(f"; worst class {record['labels/worst_class_correct']:.4f}")
  assert per_epoch[-1]["labels/num_changed"] == results["label_noise"]["num_changed"] > 0
  test_lines = [line for line in lines if line.startswith("step ") and "test loss" in line]
  assert len(test_lines) == 3 and all(
    re.search(r"test loss [\d.]+  test accuracy [\d.]+$", line) for line in test_lines
  )
  assert lines[-2].startswith(f"test loss {results['test_loss']:.4f}  test accuracy {results['test_accuracy']:.4f}")
  assert "train accuracy" in lines[-2] and "(vs noisy labels)" in lines[-2]
  assert lines[-1] == f"results: {workdir}/results.json  curves: {workdir}/curves.png"


def test_curves_draw_a_non_finite_value_logged_as_null_as_a_gap(tmp_path):
  records = [
    {"step": 1, "train/loss": 1.0, "train/accuracy": 0.5},
    {"step": 2, "train/loss": None, "train/accuracy": 0.5},
    {"step": 3, "train/loss": 0.5, "train/accuracy": 0.7, "test/loss": 0.9, "test/accuracy": 0.6},
  ]
  assert plots._series(records, "train/loss")[0] == [1, 2, 3]
  assert np.isnan(plots._series(records, "train/loss")[1][1])
  path = plots.plot_training_curves(records, str(tmp_path / "c.png"), "method: none   dataset: digits")
  with open(path, "rb") as f:
    assert f.read(8) == PNG_SIGNATURE
