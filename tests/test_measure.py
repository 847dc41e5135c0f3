"""experiments.measure on a tiny finished fine-tuning run: measures.json, plots, and refusals."""

import json
import math
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from experiments.configs import default
from ftjax import checkpoint_io, layer_groups
from ftjax.config_validation import ConfigError
from ftjax.methods import registry as method_registry
from ftjax.models import small_cnn
from ftjax.runs import measure, measure_reports
from ftjax.train import loop
from tests.test_finetune import REPO, tiny_config

SETTINGS = measure.MeasureSettings(
  num_probes=4, max_batches=2, batch_size=64, eigen_iterations=3, lanczos_steps=3, noise_draws=2, density_steps=4
)
LAYER_KEYS = {
  "trace",
  "trace_stderr",
  "top_eigenvalue",
  "top_eigenvalue_iterations",
  "distance_frobenius",
  "hessian_quantity",
  "noise_sigma",
  "noise_stability",
  "noise_stability_stderr",
}


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
  """(workdir, its measures) of a tiny finished run."""
  workdir = str(tmp_path_factory.mktemp("run"))
  loop.train_and_evaluate(tiny_config(optim__num_epochs=1), workdir)
  (measures,) = measure_reports.measure_workdirs([workdir], SETTINGS)
  return workdir, measures


def test_measures_json_holds_every_quantity(measured):
  workdir, returned = measured
  with open(os.path.join(workdir, "measures.json")) as f:
    measures = json.load(f)
  assert measures == json.loads(json.dumps(returned))
  for key in (
    "bound",
    "bound_authors_full_hvp",
    "generalization_gap",
    "train_loss",
    "test_loss",
    "max_train_loss",
    "num_probes",
    "wall_seconds",
    "pac_bayes",
    "network",
    "noise_stability_all_layers",
    "checkpoint_step",
    "method",
    "trivial_gap_bound",
    "bound_vacuous",
    "bound_authors_full_hvp_vacuous",
  ):
    assert key in measures, key
  assert measures["num_probes"] == 4 and measures["num_examples_measured"] == 128
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  assert (
    set(measures["layers"])
    == set(results["layer_distances"])
    == {"conv1/kernel", "conv2/kernel", "dense/kernel", "head/kernel"}
  )
  assert measures["checkpoint_step"] == results["steps"] and measures["method"] == results["method"] == "none"
  assert list(measures["layers"]) == layer_groups.network_order(results["layer_distances"], small_cnn.STRUCTURE.groups)
  for name, layer in measures["layers"].items():
    assert set(layer) == LAYER_KEYS
    assert set(layer["hessian_quantity"]) == {"paper_positive_part", "authors_full_hvp"}
    assert all(math.isfinite(v) for v in (layer["trace"], layer["top_eigenvalue"], layer["noise_stability"]))
    assert layer["distance_frobenius"] == pytest.approx(results["layer_distances"][name]["frobenius"], rel=1e-6)
    assert layer["hessian_quantity"]["paper_positive_part"] >= 0
  # The same checkpoint as results.json: its losses, up to the order of summation.
  assert measures["train_loss"] == pytest.approx(results["train_loss"], rel=1e-4)
  assert measures["test_loss"] == pytest.approx(results["test_loss"], rel=1e-4)
  assert measures["max_train_loss"] == pytest.approx(results["max_train_loss"], rel=1e-4)
  assert measures["generalization_gap"] == pytest.approx(measures["test_loss"] - measures["train_loss"])


def test_a_noisy_run_measures_the_gap_under_its_label_noise(tmp_path):
  workdir = str(tmp_path / "noisy")
  loop.train_and_evaluate(tiny_config(optim__num_epochs=1, noise=dict(type="pairflip", rate=0.3)), workdir)
  settings = SETTINGS._replace(num_probes=2, eigen_iterations=1, lanczos_steps=1, max_batches=1)
  (measures,) = measure_reports.measure_workdirs([workdir], settings)
  run = measure.load_finished_run(workdir, settings.batch_size)
  probabilities = loop.predict_probabilities(run.setup, run.trained, run.setup.splits.test)
  test_labels, transition = run.setup.splits.test.labels, run.setup.label_noise.transition
  written_out = np.mean([-np.dot(transition[y], np.log(p)) for p, y in zip(probabilities, test_labels)])
  clean = np.mean([-np.log(p[y]) for p, y in zip(probabilities, test_labels)])
  assert measures["test_loss"] == pytest.approx(clean, rel=1e-4)
  assert measures["test_loss_noisy_labels"] == pytest.approx(written_out, rel=1e-4)
  assert (
    measure.matched_gap(measures)
    == measures["generalization_gap_noisy_labels"]
    == pytest.approx(written_out - measures["train_loss"], rel=1e-4)
  )


def test_measuring_restores_the_checkpoint_without_building_the_method_and_writes_nothing(measured, monkeypatch):
  workdir, written = measured

  def no_method(*args, **kwargs):
    raise AssertionError("measuring built the run's method")

  monkeypatch.setattr(method_registry, "build_method", no_method)
  monkeypatch.setattr(method_registry, "check_method", no_method)
  before = {name: os.path.getmtime(os.path.join(workdir, name)) for name in os.listdir(workdir)}
  run = measure.load_finished_run(workdir, SETTINGS.batch_size)
  saved, step = checkpoint_io.restore_model(os.path.join(workdir, "checkpoints"))
  assert run.trained.step == step == run.results["steps"]
  for restored, raw in zip(jax.tree.leaves(jax.device_get(run.trained.params)), jax.tree.leaves(saved["params"])):
    np.testing.assert_array_equal(restored, raw)
  again = measure.measure(run, SETTINGS)
  assert again == {key: value for key, value in written.items() if key != "wall_seconds"}  # deterministic
  assert {name: os.path.getmtime(os.path.join(workdir, name)) for name in os.listdir(workdir)} == before


def test_bounds_follow_from_the_per_layer_quantities(measured):
  _, measures = measured
  layers, n, c = measures["layers"], measures["num_train"], measures["max_train_loss"]
  for key, variant in (("bound", "paper_positive_part"), ("bound_authors_full_hvp", "authors_full_hvp")):
    expected = sum(math.sqrt(c * max(layer["hessian_quantity"][variant], 0.0) / n) for layer in layers.values())
    assert measures[key] == pytest.approx(expected, rel=1e-9)
  pac = measures["pac_bayes"]
  kl = sum(layer["distance_frobenius"] ** 2 / (2 * layer["noise_sigma"] ** 2) for layer in layers.values())
  assert pac["kl"] == pytest.approx(kl, rel=1e-9)
  assert pac["expected_perturbed_train_loss"] == pytest.approx(
    measures["train_loss"] + measures["noise_stability_all_layers"]["estimate"]
  )
  assert pac["bound"] == pytest.approx(
    pac["expected_perturbed_train_loss"] + math.sqrt((kl + math.log(2 * math.sqrt(n) / pac["delta"])) / (2 * n))
  )


def test_vacuous_flags_follow_the_bounds(measured):
  _, measures = measured
  pac = measures["pac_bayes"]
  assert pac["vacuous"] is (pac["bound"] >= 1.0)  # a risk of a loss in [0, 1] is at most 1
  trivial = measures["max_train_loss"] - measures["train_loss"]  # a gap of a loss in [0, C] is at most C - train
  assert measures["trivial_gap_bound"] == pytest.approx(trivial)
  for key in ("bound", "bound_authors_full_hvp"):
    assert measures[f"{key}_vacuous"] is (measures[key] >= trivial)


def test_bound_text_says_when_a_bound_is_vacuous():
  assert measure.bound_text(18.674, True, "at least 1") == "18.67 (vacuous: at least 1)"
  assert measure.bound_text(0.008712, False, "at least 1") == "0.008712"


def test_a_concurrency_below_one_is_refused_in_one_line():
  with pytest.raises(ConfigError, match=r"^--concurrency=0; valid: an integer >= 1$"):
    measure.check_settings(SETTINGS._replace(concurrency=0))
  measure.check_settings(SETTINGS._replace(concurrency=1))


def test_plots_are_titled_pngs(measured, tmp_path):
  workdir, measures = measured
  run = os.path.basename(workdir)
  for name in ("layer_traces.png", "layer_distances.png"):
    with Image.open(os.path.join(workdir, name)) as image:
      image.verify()
    with Image.open(os.path.join(workdir, name)) as image:
      image.load()
      assert image.format == "PNG" and image.size[1] >= 0.28 * len(measures["layers"]) * 100
      assert image.text["Title"].startswith(f"{run} (method none): ")
  assert not os.path.exists(os.path.join(workdir, "bound_vs_gap.png"))  # only with several runs
  other = {**measures, "workdir": "other", "bound": 2 * measures["bound"]}
  assert measure_reports.plot_bound_vs_gap([measures, other], str(tmp_path)) == str(tmp_path / "bound_vs_gap.png")
  assert os.path.getsize(tmp_path / "bound_vs_gap.png") > 0


def test_bar_plot_grows_with_the_layers_and_labels_them_readably(tmp_path):
  heights = {}
  for count in (4, 21):
    names = [f"stage{i}/conv/kernel" for i in range(count)]
    fig = measure_reports.bar_plot(
      str(tmp_path / f"{count}.png"),
      names,
      [("a", list(range(count)), None), ("b", list(range(count)), [0.1] * count)],
      "t",
    )
    labels = fig.axes[0].get_yticklabels()
    assert [label.get_text() for label in labels] == names
    assert all(label.get_fontsize() >= 8 for ax in fig.axes for label in ax.get_xticklabels() + ax.get_yticklabels())
    assert fig.axes[0].get_ylim()[0] > fig.axes[0].get_ylim()[1]  # the first layer at the top
    with Image.open(tmp_path / f"{count}.png") as image:
      heights[count] = image.size[1]
  # At least a 9-point line (12.5 pixels at 100 dpi) per extra layer.
  assert heights[21] - heights[4] >= 17 * 9 / 72 * 100


def test_a_run_without_results_is_refused_before_anything_is_written(measured, tmp_path):
  workdir = str(tmp_path / "unfinished")
  shutil.copytree(measured[0], workdir)
  for name in ("results.json", "measures.json", "layer_traces.png", "layer_distances.png"):
    os.remove(os.path.join(workdir, name))
  before = sorted(os.listdir(workdir))
  with pytest.raises(ConfigError, match="unfinished"):
    measure_reports.measure_workdirs([measured[0], workdir], SETTINGS)
  assert sorted(os.listdir(workdir)) == before


def test_a_run_recorded_before_a_field_existed_takes_its_default(measured, tmp_path):
  workdir = str(tmp_path / "older")
  shutil.copytree(measured[0], workdir)
  with open(os.path.join(workdir, "config.json")) as f:
    recorded = json.load(f)
  del recorded["consistent"]["estimator"]
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump(recorded, f)
  with pytest.raises(ConfigError, match="config.consistent.estimator is missing"):
    measure.load_finished_run(workdir, SETTINGS.batch_size)
  config = measure.recorded_config(workdir, tiny_config(model__name="resnet34"))
  assert config.consistent.estimator == default.get_config().consistent.estimator
  assert config.model.name == "small_cnn" and config.data.mean == (0.5,)  # recorded fields win over the defaults
  run = measure.load_finished_run(workdir, SETTINGS.batch_size, default.get_config())
  assert run.setup.config.consistent.estimator == "dual_t" and run.trained.step == run.results["steps"]


def test_command_line_refuses_a_workdir_without_a_run(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  proc = subprocess.run(
    [sys.executable, "-m", "experiments.measure", f"--workdir={empty}"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 2
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and str(empty) in errors[0], proc.stderr
  assert "Traceback" not in proc.stderr
  assert os.listdir(empty) == []
