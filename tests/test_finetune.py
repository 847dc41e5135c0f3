"""The fine-tuning pipeline end to end on digits: results, resume, and bad input."""

import json
import os
import shutil
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from experiments.configs import default
from ftjax import checkpoint_io
from ftjax.config_validation import ConfigError
from ftjax.metrics_writer import read_metrics
from ftjax.models import create_model, pretrained
from ftjax.train import experiment, loop
from tests.fields import set_fields

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**overrides):
  config = default.get_config()
  set_fields(
    config,
    model__name="small_cnn",
    model__width=4,
    model__pretrained="none",
    data__image_size=8,
    optim__num_epochs=2,
    optim__batch_size=64,
    optim__eval_batch_size=128,
    run__checkpoint_every=10,
    run__log_every=5,
  )
  return set_fields(config, **overrides)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run"))
  return workdir, loop.train_and_evaluate(tiny_config(), workdir)


def test_results_hold_the_promised_fields(finished_run):
  workdir, results = finished_run
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f) == json.loads(json.dumps(results))
  for key in (
    "test_accuracy",
    "test_loss",
    "train_accuracy",
    "train_loss",
    "steps",
    "epochs",
    "wall_seconds",
    "num_devices",
    "method",
    "dataset",
    "model",
    "config",
    "layer_distances",
  ):
    assert key in results, key
  assert results["num_devices"] == jax.device_count() == 8
  assert results["steps"] == 2 * (1437 // 64)
  assert (results["num_train"], results["num_test"]) == (1437, 360)
  assert results["config"]["model"]["name"] == "small_cnn"
  assert 0.0 <= results["test_accuracy"] <= 1.0 and results["train_loss"] > 0
  # Distances of every weight tensor from the start point (init: pretrained='none'), both norms.
  assert set(results["layer_distances"]) == {"conv1/kernel", "conv2/kernel", "dense/kernel", "head/kernel"}
  assert all(d["frobenius"] > 0 and d["mars"] > 0 for d in results["layer_distances"].values())
  records = read_metrics(workdir)
  logged = [r for r in records if "train/loss" in r]
  assert [r["step"] for r in logged] == list(range(5, 44, 5)) + [44]
  assert all(np.isfinite(r["train/loss"]) for r in logged)
  assert [r["step"] for r in records if "labels/fraction_correct" in r] == [22, 44]
  assert all(r["labels/fraction_correct"] == 1.0 for r in records if "labels/fraction_correct" in r)
  assert results["label_noise"] == {
    "type": "none",
    "rate": 0.0,
    "fraction_correct_start": 1.0,
    "fraction_correct": 1.0,
    "num_changed": 0,
    "worst_class_correct_start": 1.0,
    "worst_class_correct": 1.0,
    "labels_correct_per_class_start": [1.0] * 10,
    "labels_correct_per_class": [1.0] * 10,
  }
  assert os.listdir(os.path.join(workdir, "tensorboard"))


def test_rerun_resumes_from_the_latest_checkpoint_to_the_same_result(finished_run, tmp_path):
  workdir, results = finished_run
  resumed = str(tmp_path / "resumed")
  shutil.copytree(workdir, resumed)
  shutil.rmtree(os.path.join(resumed, "checkpoints", "44"))
  os.remove(os.path.join(resumed, "results.json"))
  again = loop.train_and_evaluate(tiny_config(), resumed)
  assert again["resumed_from_step"] == 40
  original, step = checkpoint_io.restore_model(os.path.join(workdir, "checkpoints"))
  restored, resumed_step = checkpoint_io.restore_model(os.path.join(resumed, "checkpoints"))
  assert step == resumed_step == 44
  chex.assert_trees_all_equal(original, restored)
  assert again["test_accuracy"] == results["test_accuracy"]
  assert read_metrics(resumed) == read_metrics(workdir)


def test_a_finished_workdir_is_a_pretrained_source(finished_run):
  workdir, _ = finished_run
  source = pretrained.load_source(workdir)
  saved, _ = checkpoint_io.restore_model(os.path.join(workdir, "checkpoints"))
  chex.assert_trees_all_equal(source.variables, saved)
  assert source.info["model"]["name"] == "small_cnn" and source.info["step"] == 44


def test_model_auto_takes_the_sources_architecture(finished_run, tmp_path):
  source_dir, _ = finished_run
  config = tiny_config(
    model__name="auto",
    model__width=16,
    data__image_size=28,
    data__mean=(0.1,),
    optim__num_epochs=1,
    model__pretrained=source_dir,
  )
  workdir = str(tmp_path / "auto")
  results = loop.train_and_evaluate(config, workdir)
  with open(os.path.join(source_dir, "config.json")) as f:
    source_config = json.load(f)
  with open(os.path.join(workdir, "config.json")) as f:
    recorded = json.load(f)
  for path in pretrained.ARCHITECTURE_FIELDS.values():
    section, field = path.split(".")
    assert recorded[section][field] == results["config"][section][field] == source_config[section][field], path
  architecture = (recorded["model"]["name"], recorded["model"]["width"], recorded["data"]["image_size"])
  assert architecture + (recorded["data"]["mean"],) == ("small_cnn", 4, 8, [0.5])
  # Started from the source: the first step's distance is measured from the source's weights.
  exp = experiment.build_experiment(config)
  source, _ = checkpoint_io.restore_model(os.path.join(source_dir, "checkpoints"))
  chex.assert_trees_all_equal(exp.initial_state.params["conv1"], source["params"]["conv1"])
  # The recorded (resolved) config is the run's own: rerunning it returns the stored results.
  assert loop.train_and_evaluate(config, workdir) == json.loads(json.dumps(results))


def _misfit_source(tmp_path) -> str:
  path = str(tmp_path / "wide.msgpack")
  model = create_model("small_cnn", 10, width=8)
  pretrained.save_variables(path, model.init(jax.random.key(0), np.zeros((1, 8, 8, 1), np.float32)), {})
  return path


@pytest.mark.parametrize(
  "overrides, message",
  [
    (dict(data__name="cifar7"), "config.data.name='cifar7' is not a known dataset; valid: digits"),
    (dict(model__name="resnet7"), "config.model.name='resnet7' is invalid; valid: one of 'resnet18'"),
    (dict(data__name="fashion_mnist", data__dir="/no/such/dir"), "/no/such/dir"),
    (dict(data__num_classes=7), "config.data.num_classes=7 does not fit dataset 'digits', which has 10 classes"),
    (dict(optim__batch_size=3000), "config.optim.batch_size=3000 exceeds the 1437 training examples"),
    (dict(model__pretrained="MISFIT"), "'params/bn1/bias' has shape (8,) but the model expects (4,)"),
    (dict(optim__learning_rate=-1.0), "config.optim.learning_rate=-1.0 is invalid"),
    (dict(data__std=(0.0,)), "config.data.std=(0.0,) is invalid"),
    (
      dict(model__name="auto"),
      "config.model.name='auto' takes the architecture from the pretrained source, but config.model.pretrained='none'",
    ),
    (dict(model__name="auto", model__pretrained="MISFIT"), "records no architecture"),
  ],
)
def test_bad_input_stops_before_training_and_keeps_the_workdir(tmp_path, overrides, message):
  if overrides.get("model__pretrained") == "MISFIT":
    overrides["model__pretrained"] = _misfit_source(tmp_path)
  workdir = tmp_path / "workdir"
  workdir.mkdir()
  (workdir / "results.json").write_text("earlier results")
  with pytest.raises(ConfigError) as error:
    loop.train_and_evaluate(tiny_config(**overrides), str(workdir))
  assert message in str(error.value) and "\n" not in str(error.value)
  assert os.listdir(workdir) == ["results.json"]
  assert (workdir / "results.json").read_text() == "earlier results"


@pytest.mark.parametrize(
  "flag, message",
  [
    ("--config.model.name=resnet7", "config.model.name='resnet7' is invalid"),
    ("--config.no_such_field=1", "unknown config field (no_such_field)"),
    ("--config=experiments/configs/missing.py", "missing.py"),
  ],
)
def test_command_line_bad_input_is_one_line_and_exit_code_2(tmp_path, flag, message):
  proc = subprocess.run(
    [sys.executable, "-m", "experiments.finetune", f"--workdir={tmp_path / 'w'}", flag],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 2
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and message in errors[0], proc.stderr
  assert "Traceback" not in proc.stderr
  assert not (tmp_path / "w").exists()
