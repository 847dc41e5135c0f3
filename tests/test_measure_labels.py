"""Measuring runs whose method changes the labels or the loss: regsl's final labels, consistent's corrected loss."""

import json
import os

import numpy as np
import pytest

from ftjax.config_validation import ConfigError
from ftjax.metrics_writer import read_metrics
from ftjax.runs import measure, measure_reports
from ftjax.train import loop, selection
from tests.test_finetune import tiny_config

SETTINGS = measure.MeasureSettings(
  num_probes=2, max_batches=1, batch_size=64, eigen_iterations=2, lanczos_steps=2, noise_draws=2, density_runs=0
)


def noisy(method: str, **overrides):
  config = tiny_config(method=method, **{"optim__num_epochs": 2, **overrides})
  config.noise.update(type="symmetric", rate=0.4, seed=3)
  return config


def probabilities(workdir: str, labels: str = "given", loss: str = "cross_entropy"):
  """(the run as measure restores it, softmax probabilities of its training split)."""
  run = measure.load_finished_run(workdir, 64, labels=labels, loss=loss)
  return run, loop.predict_probabilities(run.setup, run.trained, run.setup.splits.train)


@pytest.fixture(scope="module")
def regsl_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("regsl"))
  config = noisy("regsl")
  config.correction.update(threshold=0.1, start_epoch=1)  # corrects labels in the second epoch
  return workdir, loop.train_and_evaluate(config, workdir)


def test_regsl_keeps_its_final_labels_and_measure_can_use_them(regsl_run):
  workdir, results = regsl_run
  final = np.load(os.path.join(workdir, loop.FINAL_LABELS_FILE))
  run, probs = probabilities(workdir, labels="final")
  given = np.asarray(probabilities(workdir)[0].setup.splits.train.labels)
  assert np.sum(final != given) == results["label_noise"]["num_changed"] > 0
  assert np.array_equal(run.setup.splits.train.labels, final)
  (measures,) = measure_reports.measure_workdirs([workdir], SETTINGS._replace(labels="final"))
  expected = -np.log(probs[np.arange(len(final)), final])  # cross-entropy on the final labels, by numpy
  assert measures["train_loss"] == pytest.approx(expected.mean(), rel=1e-4)
  assert measures["max_train_loss"] == pytest.approx(expected.max(), rel=1e-4)
  assert measures["train_labels"] == "final" and "ended training on" in measures["train_labels_note"]
  # the gap's test labels are drawn as the final labels are from the clean ones: F̂[y, k] counted by numpy
  clean, num_classes = np.asarray(run.setup.label_noise.clean_labels), probs.shape[1]
  drawn = np.array([[np.mean(final[clean == y] == k) for k in range(num_classes)] for y in range(num_classes)])
  test_probs = loop.predict_probabilities(run.setup, run.trained, run.setup.splits.test)
  test_labels = np.asarray(run.setup.splits.test.labels)
  test_loss = np.mean(-np.sum(drawn[test_labels] * np.log(np.asarray(test_probs, np.float64)), axis=1))
  assert measures["test_loss_noisy_labels"] == pytest.approx(test_loss, rel=1e-6)
  assert measure.matched_gap(measures) == measures["test_loss_noisy_labels"] - measures["train_loss"]
  with open(os.path.join(workdir, "measures_final_labels.json")) as f:
    assert json.load(f)["train_loss"] == measures["train_loss"]
  assert not os.path.exists(os.path.join(workdir, "measures.json"))


def test_the_selected_model_is_measured_on_the_labels_it_was_trained_on(tmp_path):
  workdir = str(tmp_path / "regsl")
  config = noisy("regsl", optim__num_epochs=4, run__eval_every=1, data__validation_fraction=0.2)
  config.correction.update(threshold=0.1, start_epoch=1)
  results = loop.train_and_evaluate(config, workdir)
  step, kept = selection.read_selected(workdir)["step"], selection.read_selected_labels(workdir)
  given = np.asarray(measure.load_finished_run(workdir, 64).setup.splits.train.labels)
  changed = {r["step"]: r["labels/num_changed"] for r in read_metrics(workdir) if "labels/num_changed" in r}
  assert np.sum(kept != given) == changed[step]  # the labels of the selected step, as its epoch logged them
  run = measure.load_finished_run(workdir, 64, checkpoint="selected", labels="final")
  np.testing.assert_array_equal(run.setup.splits.train.labels, kept)
  assert run.trained.step == step <= results["steps"]
  os.remove(os.path.join(workdir, selection.SELECTED_DIR, selection.LABELS_FILE))  # as a run made before they were
  with pytest.raises(ConfigError, match="valid: --checkpoint=final with --labels=final, or --labels=given") as error:
    measure.load_finished_run(workdir, 64, checkpoint="selected", labels="final")
  assert "\n" not in str(error.value)


def test_consistent_is_measured_on_the_loss_it_trained_with(tmp_path):
  workdir = str(tmp_path / "consistent")
  loop.train_and_evaluate(noisy("consistent", consistent__transition="true", optim__num_epochs=1), workdir)
  run, probs = probabilities(workdir, loss="forward_corrected")
  transition = run.setup.label_noise.transition
  np.testing.assert_array_equal(run.transition, transition)
  labels = np.asarray(run.setup.splits.train.labels)
  expected = -np.log((probs @ transition)[np.arange(len(labels)), labels])  # −log (p F)_ỹ, by numpy
  (measures,) = measure_reports.measure_workdirs([workdir], SETTINGS._replace(loss="forward_corrected"))
  assert measures["train_loss"] == pytest.approx(expected.mean(), rel=1e-4)
  assert measures["train_loss_kind"] == "forward_corrected"
  gap = measures["generalization_gap_forward_corrected"]
  assert measure.matched_gap(measures) == gap == measures["test_loss_forward_corrected"] - measures["train_loss"]


def test_labels_or_loss_a_run_does_not_have_are_refused_in_one_line(tmp_path):
  workdir = str(tmp_path / "plain")
  loop.train_and_evaluate(tiny_config(optim__num_epochs=1), workdir)
  with pytest.raises(ConfigError, match="holds no final_labels.npy .* valid: --labels=given"):
    measure_reports.measure_workdirs([workdir], SETTINGS._replace(labels="final"))
  with pytest.raises(ConfigError, match="measures the consistent loss, but .* method 'none'"):
    measure_reports.measure_workdirs([workdir], SETTINGS._replace(loss="forward_corrected"))
  with pytest.raises(ConfigError, match=r"--labels='noisy'; valid: 'given', 'final'"):
    measure.check_settings(SETTINGS._replace(labels="noisy"))
