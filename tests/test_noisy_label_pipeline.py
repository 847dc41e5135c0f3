"""Noisy-label fine-tuning in the pipeline (docs/methods.md §3): noise on the training split only, the
corrected labels carried through checkpoints, and the transition matrix of the consistent loss."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from ftjax.config_validation import ConfigError
from ftjax.methods import transition_estimation
from ftjax.methods.consistent_loss import dual_t_estimate
from ftjax.methods.label_correction import LabelCorrectionState
from ftjax.metrics_writer import read_metrics
from ftjax.runs import stages
from ftjax.train import experiment, loop
from tests.test_finetune import tiny_config


def noisy_config(**overrides):
  config = tiny_config(**overrides)
  config.noise.update(type="symmetric", rate=0.4, seed=3)
  return config


def test_noise_corrupts_only_the_training_split_reproducibly():
  config = noisy_config()
  splits, noise, num_classes = experiment.load_splits(config)
  clean_splits, clean, _ = experiment.load_splits(tiny_config())
  np.testing.assert_array_equal(noise.clean_labels, clean.clean_labels)
  np.testing.assert_array_equal(splits.test.labels, clean_splits.test.labels)
  flipped = np.mean(splits.train.labels != noise.clean_labels)
  assert abs(flipped - 0.4) < 4 * np.sqrt(0.4 * 0.6 / len(splits.train))
  np.testing.assert_allclose(noise.transition.sum(1), 1.0)
  again, _, _ = experiment.load_splits(config)
  np.testing.assert_array_equal(again.train.labels, splits.train.labels)


@pytest.fixture(scope="module")
def regsl_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("regsl"))
  config = noisy_config(method="regsl", optim__num_epochs=2)
  config.correction.update(threshold=0.1, start_epoch=1)  # max p > 0.1 holds for any non-uniform p
  config.reweighting.start_epoch = 1
  return workdir, config, loop.train_and_evaluate(config, workdir)


def _labels_in_checkpoint(workdir, config):
  exp = experiment.build_experiment(config, workdir)
  state = loop.restore_trained_state(exp, workdir)
  assert isinstance(state.method_state, LabelCorrectionState)
  return exp, np.asarray(jax.device_get(state.method_state.labels))


def test_regsl_reports_the_labels_it_corrected(regsl_run):
  workdir, config, results = regsl_run
  exp, labels = _labels_in_checkpoint(workdir, config)
  noisy, clean = np.asarray(exp.splits.train.labels), exp.label_noise.clean_labels
  report = results["label_noise"]
  assert report["type"] == "symmetric" and report["rate"] == 0.4
  assert report["fraction_correct_start"] == pytest.approx(np.mean(noisy == clean))
  assert report["fraction_correct"] == pytest.approx(np.mean(labels == clean))
  assert report["num_changed"] == np.sum(labels != noisy) > 0
  per_class = [np.mean(labels[clean == c] == c) for c in range(10)]  # digits: every class has training examples
  assert report["labels_correct_per_class"] == pytest.approx(per_class)
  assert report["worst_class_correct"] == pytest.approx(min(per_class))
  per_class_start = [np.mean(noisy[clean == c] == c) for c in range(10)]
  assert report["labels_correct_per_class_start"] == pytest.approx(per_class_start)
  assert report["worst_class_correct_start"] == pytest.approx(min(per_class_start))
  per_epoch = [r for r in read_metrics(workdir) if "labels/num_changed" in r]
  assert [r["step"] for r in per_epoch] == [22, 44]
  assert per_epoch[-1]["labels/num_changed"] == report["num_changed"]
  assert per_epoch[-1]["labels/worst_class_correct"] == report["worst_class_correct"]


def test_resumed_regsl_run_continues_with_the_corrected_labels(regsl_run, tmp_path):
  workdir, config, results = regsl_run
  resumed = str(tmp_path / "resumed")
  shutil.copytree(workdir, resumed)
  shutil.rmtree(os.path.join(resumed, "checkpoints", "44"))
  os.remove(os.path.join(resumed, "results.json"))
  again = loop.train_and_evaluate(config, resumed)
  assert again["resumed_from_step"] == 40
  _, labels = _labels_in_checkpoint(workdir, config)
  _, resumed_labels = _labels_in_checkpoint(resumed, config)
  np.testing.assert_array_equal(resumed_labels, labels)
  assert again["label_noise"] == results["label_noise"]


def test_consistent_with_the_true_matrix(tmp_path):
  config = noisy_config(method="consistent", optim__num_epochs=1)
  config.consistent.transition = "true"
  results = loop.train_and_evaluate(config, str(tmp_path))
  assert results["transition_max_abs_error"] == 0.0
  expected = 0.6 * np.eye(10) + 0.4 / 9 * (1 - np.eye(10))
  np.testing.assert_allclose(results["transition_matrix"], expected, atol=1e-12)


def test_consistent_estimates_the_matrix_once_per_workdir(tmp_path):
  config = noisy_config(method="consistent", optim__num_epochs=1)
  workdir = str(tmp_path)
  assert [(stage.label, stage.workdir) for stage in stages.stages(config, workdir)] == [
    ("transition estimator", os.path.join(workdir, "transition_estimator")),
    ("transition estimator", workdir),
    ("", workdir),
  ]
  results = stages.run_with_stages(config, workdir)
  with open(os.path.join(workdir, "transition_matrix.json")) as f:
    saved = json.load(f)
  assert saved["estimator"] == "dual_t" and saved["estimator_workdir"] == os.path.join(workdir, "transition_estimator")
  assert results["transition_matrix"] == saved["estimate"]  # the run trains with exactly what the stage wrote
  np.testing.assert_allclose(np.sum(saved["estimate"], axis=1), 1.0, atol=1e-5)
  # F is the dual-T estimate from the estimator run's checkpointed state, restored with its method.
  estimator_dir = os.path.join(workdir, "transition_estimator")
  exp = experiment.build_experiment(transition_estimation.estimator_config(config), estimator_dir)
  probs = loop.predict_probabilities(exp, loop.restore_trained_state(exp, estimator_dir), exp.splits.train)
  np.testing.assert_array_equal(saved["estimate"], dual_t_estimate(probs, exp.splits.train.labels, 97.0))
  assert [stage.label for stage in stages.stages(config, workdir)] == [""]  # finished: only the run, which is stored
  stamp = os.path.getmtime(os.path.join(workdir, "transition_matrix.json"))
  os.remove(os.path.join(workdir, "results.json"))
  assert [stage.label for stage in stages.stages(config, workdir)] == [""]  # F is written: no estimation stage
  again = stages.run_with_stages(config, workdir)
  assert os.path.getmtime(os.path.join(workdir, "transition_matrix.json")) == stamp
  assert again["transition_matrix"] == results["transition_matrix"]


def test_estimation_stages_reuse_the_finished_estimator_run(tmp_path):
  config = noisy_config(method="consistent", optim__num_epochs=1)
  workdir = str(tmp_path)
  first = stages.run_with_stages(config, workdir)
  estimator_results = os.path.join(workdir, "transition_estimator", "results.json")
  stamp = os.path.getmtime(estimator_results)
  for name in ("results.json", "transition_matrix.json", "config.json"):
    os.remove(os.path.join(workdir, name))
  shutil.rmtree(os.path.join(workdir, "checkpoints"))
  again = stages.run_with_stages(config, workdir)
  assert os.path.getmtime(estimator_results) == stamp  # the finished estimator stage was not trained again
  assert again["transition_matrix"] == first["transition_matrix"]
  assert again["test_loss"] == first["test_loss"]


def test_the_training_loop_refuses_a_consistent_run_without_its_estimate(tmp_path):
  config = noisy_config(method="consistent", optim__num_epochs=1)
  with pytest.raises(ConfigError) as error:
    loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert str(error.value) == (
    f"config.consistent.transition='estimate' needs F in {str(tmp_path / 'run' / 'transition_matrix.json')!r}, "
    "which the run's earlier stages write; valid: run the config through ftjax.runs.stages.run_with_stages (as "
    "python -m experiments.finetune does), or give F as 'true' or a .json/.npy path"
  )
  assert not os.path.exists(tmp_path / "run")


def test_consistent_refuses_an_estimator_workdir_of_another_config(tmp_path):
  config = noisy_config(method="consistent", optim__num_epochs=1)
  estimator_dir = str(tmp_path / "other")
  os.makedirs(estimator_dir)
  other = transition_estimation.estimator_config(config)
  other.run.seed, other.noise.rate = 1, 0.2
  with open(os.path.join(estimator_dir, "config.json"), "w") as f:
    json.dump(json.loads(other.to_json()), f)
  config.consistent.estimator_workdir = estimator_dir
  workdir = str(tmp_path / "run")
  with pytest.raises(ConfigError) as error:
    stages.run_with_stages(config, workdir)
  assert str(error.value) == (
    f"config.consistent.estimator_workdir={estimator_dir!r} holds a run of another config (fields noise.rate, run.seed "
    "differ from this config with method='none'); valid: the workdir of that plain run, or '' for a run of its own "
    "in WORKDIR/transition_estimator"
  )
  assert os.listdir(estimator_dir) == ["config.json"] and not os.path.exists(workdir)
