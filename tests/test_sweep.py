"""A minimal sweep end to end: two methods, one seed, a few steps; its summary and its resumption,
the variants chosen by `sweep.only`, labelled progress lines, and consistent cells reusing plain ones."""

import csv
import functools
import importlib
import io
import json
import logging
import os
import re

import ml_collections
import numpy as np
import pytest
import safetensors.numpy

from ftjax import plots, progress_logging
from ftjax.config_validation import ConfigError
from ftjax.data.sources import FASHION_MNIST_DIR
from ftjax.methods.consistent_loss import dual_t_estimate
from ftjax.metrics_writer import MetricsWriter
from ftjax.runs import measure, measure_reports, sweeps
from ftjax.train import loop, workdir_lock
from tests import tiny_tfds
from tests.test_finetune import tiny_config


def sweep_config():
  config = tiny_config(optim__num_epochs=1)
  config.sweep = ml_collections.ConfigDict()
  config.sweep.variants = {"plain": ("method=none",), "constraint": ("method=constraint", "reg.radius=0.01")}
  config.sweep.datasets = ("digits",)
  config.sweep.noise = ("symmetric:0.4",)
  config.sweep.seeds = (0,)
  config.sweep.order = ("plain",)  # then the rest by name
  config.sweep.only = ""
  return config


def test_sweep_runs_every_cell_and_summarises(tmp_path):
  root = str(tmp_path)
  rows = sweeps.run_sweep(sweep_config(), root)
  assert [r["variant"] for r in rows] == ["plain", "constraint"]
  for row in rows:
    assert (row["dataset"], row["noise"], row["seeds"]) == ("digits", "symmetric:0.4", 1)
    assert row["test_accuracy_std"] == 0.0 and 0.0 <= row["test_accuracy_mean"] <= 1.0
    with open(os.path.join(root, row["variant"], "digits", "symmetric_0.4", "seed0", "results.json")) as f:
      results = json.load(f)
    assert row["test_accuracy_mean"] == results["test_accuracy"]
    assert (row["labels_correct_start"], row["labels_correct_end"]) == (
      results["label_noise"]["fraction_correct_start"],
      results["label_noise"]["fraction_correct"],
    )
  with open(os.path.join(root, "summary.csv")) as f:
    table = list(csv.DictReader(f))
  assert len(table) == 2 and {"variant", "noise", "test_accuracy_mean", "test_accuracy_std"} <= set(table[0])
  with open(os.path.join(root, "summary.md")) as f:
    lines = f.read().splitlines()
  assert len(lines) == 6 and lines[0].startswith("| variant |") and "population std" in lines[-1]
  with open(os.path.join(root, "comparison.md")) as f:
    comparison = f.read().splitlines()
  assert comparison[0] == "| digits | symmetric:0.4 |" and comparison[1] == "| --- | --- |"
  best = max(rows, key=lambda r: r["test_accuracy_mean"])
  for line, row in zip(comparison[2:], rows, strict=True):
    text = f"{100 * row['test_accuracy_mean']:.2f} ± 0.00"
    assert line == f"| {row['variant']} | " + (f"**{text}**" if row is best else text) + " |"
  assert os.path.getsize(os.path.join(root, "accuracy.png")) > 0
  run_dir = os.path.join(root, "constraint", "digits", "symmetric_0.4", "seed0")
  stamp = os.path.getmtime(os.path.join(run_dir, "results.json"))
  assert sweeps.run_sweep(sweep_config(), root) == rows  # finished runs are skipped, not retrained
  assert os.path.getmtime(os.path.join(run_dir, "results.json")) == stamp


def test_a_measured_sweep_reports_the_mean_bound_of_the_measured_seeds_and_plots_them(tmp_path):
  root = str(tmp_path)
  config = sweep_config()
  config.sweep.variants = {"constraint": config.sweep.variants["constraint"]}
  config.sweep.order = ()
  config.sweep.seeds = (0, 1)
  config.sweep.measure = True
  config.sweep.measure_seeds = (1,)
  config.sweep.measure_settings = {
    "num_probes": 2,
    "max_batches": 1,
    "batch_size": 64,
    "eigen_iterations": 2,
    "lanczos_steps": 2,
    "noise_draws": 2,
    "density_runs": 0,
  }
  settings = sweeps.measure_settings(config.sweep)
  assert (settings.num_probes, settings.noise_scale) == (2, measure.DEFAULTS.noise_scale)
  (row,) = sweeps.run_sweep(config, root, functools.partial(measure_reports.measure_run, settings=settings))
  cell = os.path.join(root, "constraint", "digits", "symmetric_0.4")
  assert not os.path.exists(os.path.join(cell, "seed0", "measures.json"))
  with open(os.path.join(cell, "seed1", "measures.json")) as f:
    measured = json.load(f)
  assert (row["seeds"], row["measured_seeds"]) == (2, 1)
  assert row["bound_mean"] == measured["bound"] > 0
  # Under 40% symmetric noise the gap is the one under the training labels' noise.
  assert row["generalization_gap_mean"] == measured["generalization_gap_noisy_labels"]
  assert row["network_trace_mean"] == measured["network"]["trace"]
  with open(os.path.join(root, "summary.md")) as f:
    lines = f.read().splitlines()
  assert "Hessian bound" in lines[0] and lines[1].count("---") == lines[0].count(" |")
  assert os.path.getsize(os.path.join(root, "bound_vs_gap.png")) > 0
  # Measuring another checkpoint writes another file: the summary reads it, and a measured run is not measured again.
  config.sweep.measure_settings = {**config.sweep.measure_settings, "checkpoint": "selected"}
  assert sweeps.measures_file(config.sweep) == "measures_selected.json"
  os.rename(os.path.join(cell, "seed1", "measures.json"), os.path.join(cell, "seed1", "measures_selected.json"))

  def measured_again(workdir):
    raise AssertionError(f"{workdir} was measured again")

  (again,) = sweeps.run_sweep(config, root, measured_again)
  assert (again["measured_seeds"], again["bound_mean"]) == (1, measured["bound"])


def test_unknown_measure_settings_are_refused():
  config = sweep_config()
  config.sweep.measure = True
  config.sweep.measure_settings = {"num_probez": 3}
  with pytest.raises(ConfigError, match="config.sweep.measure_settings.num_probez is unknown; valid: num_probes"):
    sweeps.measure_settings(config.sweep)
  config.sweep.measure_settings = {"num_probes": 1}
  with pytest.raises(
    ConfigError,
    match=r"^config.sweep.measure_settings.num_probes=1 with "
    r"config.sweep.measure_settings.trace_method=hutchinson; valid: an integer >= 2$",
  ):
    sweeps.measure_settings(config.sweep)
  config.sweep.measure = False
  assert sweeps.measure_settings(config.sweep) is None


def test_comparison_table_bolds_each_columns_best_and_names_unfinished_cells(tmp_path):
  def row(variant, noise, mean, std, seeds):
    return {
      "variant": variant,
      "dataset": "digits",
      "noise": noise,
      "seeds": seeds,
      "test_accuracy_mean": mean,
      "test_accuracy_std": std,
    }

  rows = [
    row("plain", "symmetric:0.2", 0.9, 0.01, 3),
    row("plain", "pairflip:0.2", 0.8, 0.02, 3),
    row("regsl", "symmetric:0.2", 0.95, 0.005, 2),
  ]
  sweeps.write_comparison(rows, str(tmp_path))
  assert (tmp_path / "comparison.md").read_text().splitlines() == [
    "| digits | symmetric:0.2 | pairflip:0.2 |",
    "| --- | --- | --- |",
    "| plain | 90.00 ± 1.00 | **80.00 ± 2.00** |",
    "| regsl | **95.00 ± 0.50** (2 of 3 seeds) |  |",
  ]


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  return tiny_tfds.prepare(str(tmp_path_factory.mktemp("tfds")))


@pytest.mark.parametrize(
  "name",
  [
    pytest.param(
      "sweep_distance",
      marks=pytest.mark.skipif(
        not os.path.isdir(FASHION_MNIST_DIR),
        reason=("its grid reads Fashion-MNIST: dataset-fashion-mnist not installed"),
      ),
    ),
    "sweep_noisy_digits",
  ],
)
def test_claim_configs_take_a_torchvision_resnet50_and_a_tfds_dataset_with_one_field_each(tmp_path, tfds_dir, name):
  # A ResNet-50 state dict's keys (the values do not matter: model='auto' reads only the keys).
  from tests.test_torchvision_import import torchvision_keys

  keys = torchvision_keys("resnet50")
  path = str(tmp_path / "resnet50.safetensors")
  safetensors.numpy.save_file({key: np.zeros(1, np.float32) for key in keys}, path)
  module = importlib.import_module(f"experiments.configs.{name}")
  config = module.get_config()
  shipped = {run.config.model.name for run in sweeps.grid(config)}
  config.model.pretrained = path
  config.sweep.datasets = ("tfds:ftjax_tiny_images",)
  config.data.dir = tfds_dir  # only because the test's data is not in tfds' default directory
  runs = sweeps.grid(config)
  assert shipped == {"resnet18"} and runs
  for run in runs:
    assert run.dataset == run.config.data.name == "tfds:ftjax_tiny_images"
    assert (
      run.config.model.name,
      run.config.model.width,
      run.config.model.stem,
      run.config.data.image_size,
      run.config.data.channels,
      run.config.data.mean,
    ) == ("resnet50", 64, "imagenet", 224, 3, (0.485, 0.456, 0.406))


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("noise", ("gaussian:0.2",), "sweep noise setting 'gaussian:0.2' is invalid"),
    ("variants", {"x": ("reg.no_such=1",)}, "sweep override 'reg.no_such=1' names no config field"),
    ("variants", {"x": ("method=nope",)}, "config.method='nope' is invalid"),
    (
      "order",
      ("plain", "nope"),
      "config.sweep.order names 'nope', which is no variant; valid: names among "
      "config.sweep.variants (constraint, plain)",
    ),
    ("measure_seeds", (0, 3), "config.sweep.measure_seeds=(0, 3) holds seed 3, which the sweep does not run"),
    (
      "only",
      "plain, nope",
      "config.sweep.only='plain, nope' names 'nope', which is no variant; valid: "
      "comma-separated names among plain, constraint, or '' for every variant",
    ),
  ],
)
def test_a_bad_grid_is_refused_before_any_run(tmp_path, field, value, message):
  config = sweep_config()
  if field == "variants":
    config.sweep.order = ()
  config.sweep[field] = value
  with pytest.raises(ConfigError) as error:
    sweeps.run_sweep(config, str(tmp_path))
  assert message in str(error.value) and "\n" not in str(error.value)
  assert os.listdir(tmp_path) == []


def test_runs_another_process_is_training_are_left_to_it(tmp_path, progress_lines):
  root, config = str(tmp_path), sweep_config()
  config.sweep.variants = {**config.sweep.variants, "consistent": ("method=consistent",)}
  cell = lambda variant: os.path.join(root, variant, "digits", "symmetric_0.4", "seed0")
  os.makedirs(cell("plain"))
  holding = workdir_lock.acquire(cell("plain"))  # as a second sweep process training that run holds it
  try:
    rows = sweeps.run_sweep(config, root)
  finally:
    workdir_lock.release(holding, cell("plain"))
  assert [r["variant"] for r in rows] == ["constraint"]  # the consistent cell waits for its plain cell too
  assert not os.listdir(cell("plain")) and not os.path.exists(cell("consistent"))
  left = [line for line in progress_lines() if f"left to process {os.getpid()} on host" in line]
  assert [re.search(r"\[\d/3 (\w+)/", line).group(1) for line in left] == ["plain", "consistent"]
  assert any(line.endswith(" 3 runs: 0 finished earlier, 3 to train") for line in progress_lines())
  assert any(
    "/3 constraint/" in line and "] 1 of 1 runs trained, about 0 h 00 min left" in line for line in progress_lines()
  )
  assert [r["variant"] for r in sweeps.run_sweep(config, root)] == ["plain", "consistent", "constraint"]


def test_time_left_is_the_runs_still_to_train_at_the_mean_of_those_trained():
  assert sweeps.time_left([30.0, 90.0], 12) == "2 of 12 runs trained, about 0 h 10 min left (their mean: 60 s a run)"
  assert sweeps.time_left([3000.0], 4) == "1 of 4 runs trained, about 2 h 30 min left (their mean: 3000 s a run)"


def test_only_runs_and_summarises_the_chosen_variants_in_config_order(tmp_path):
  config = sweep_config()
  config.sweep.variants = {**config.sweep.variants, "l2": ("method=l2",)}
  config.sweep.only = "l2,plain"
  assert sweeps.selected_variants(config.sweep) == ("plain", "l2")  # `order`, then the rest by name
  config.sweep.only = ""
  assert sweeps.selected_variants(config.sweep) == ("plain", "constraint", "l2")
  config.sweep.only = " constraint "
  rows = sweeps.run_sweep(config, str(tmp_path))
  assert [r["variant"] for r in rows] == ["constraint"]
  assert [name for name in os.listdir(tmp_path) if os.path.isdir(tmp_path / name)] == ["constraint"]
  with open(tmp_path / "summary.csv") as f:
    assert [r["variant"] for r in csv.DictReader(f)] == ["constraint"]


@pytest.fixture
def progress_lines():
  """The lines the progress handler prints while the test runs (the 'ftjax' loggers at INFO)."""
  stream, logger = io.StringIO(), logging.getLogger("ftjax")
  handler, level = progress_logging.progress_handler(stream), logger.level
  logger.addHandler(handler)
  logger.setLevel(logging.INFO)
  yield lambda: stream.getvalue().splitlines()
  logger.removeHandler(handler)
  logger.setLevel(level)


def test_a_consistent_cell_reuses_the_plain_cell_and_every_progress_line_names_its_cell(tmp_path, progress_lines):
  root = str(tmp_path)
  config = sweep_config()
  config.sweep.variants = {"plain": ("method=none",), "consistent": ("method=consistent",)}
  config.sweep.order = ("consistent", "plain")  # the plain cell must still train first
  rows = sweeps.run_sweep(config, root)
  assert [r["variant"] for r in rows] == ["consistent", "plain"]  # tables keep the config's order

  plain_dir = os.path.join(root, "plain", "digits", "symmetric_0.4", "seed0")
  consistent_dir = os.path.join(root, "consistent", "digits", "symmetric_0.4", "seed0")
  assert not os.path.exists(os.path.join(consistent_dir, "transition_estimator"))  # no second plain run
  with open(os.path.join(consistent_dir, "transition_matrix.json")) as f:
    saved = json.load(f)
  assert saved["estimator_workdir"] == plain_dir
  with open(os.path.join(consistent_dir, "config.json")) as f:
    assert json.load(f)["consistent"]["estimator_workdir"] == plain_dir
  # F is the dual-T estimate from the plain cell's checkpoint, rebuilt from the plain cell's own config.json.
  with open(os.path.join(plain_dir, "config.json")) as f:
    plain_config = ml_collections.ConfigDict(json.load(f))
  exp = loop.build_experiment(plain_config, plain_dir)
  probs = loop.predict_probabilities(exp, loop.restore_trained_state(exp, plain_dir), exp.splits.train)
  expected = dual_t_estimate(probs, np.asarray(exp.splits.train.labels), config.consistent.anchor_percentile)
  np.testing.assert_allclose(saved["estimate"], expected, rtol=1e-6, atol=1e-9)

  cell = re.compile(r"^\d\d:\d\d:\d\d \[(\d)/2 (\w+)/digits/symmetric_0.4/seed0( › transition estimator)?\] ")
  sweep_lines = ("summary in " + os.path.join(root, "summary.md"), " 2 runs: 0 finished earlier, 2 to train")
  lines = [line for line in progress_lines() if not line.endswith(sweep_lines)]
  labels = [cell.match(line) for line in lines]
  assert all(labels), [line for line, label in zip(lines, labels) if not label]
  steps = [label.groups() for label, line in zip(labels, lines) if " step 5/22 " in line]
  assert steps == [("1", "plain", None), ("2", "consistent", None)]  # plain first; the estimator trained nothing
  assert {label.groups() for label in labels} == {
    ("1", "plain", None),
    ("2", "consistent", None),
    ("2", "consistent", " › transition estimator"),
  }


def test_a_tuned_sweep_reports_each_variants_setting_best_on_validation(tmp_path):
  config = sweep_config()
  config.data.validation_fraction = 0.2
  config.sweep.seeds = (0, 1)
  config.sweep.noise = ("none",)
  config.sweep.tune = {"constraint": (("reg.radius", (0.01, 3.0)), ("reg.norm", ("frobenius",)))}
  root = str(tmp_path)
  rows = {r["variant"]: r for r in sweeps.run_sweep(config, root)}
  # Brute force over every run's results.json: the setting with the best mean selected validation accuracy.
  found = {}
  for radius in (0.01, 3.0):
    setting = f"reg.norm=frobenius,reg.radius={radius}"
    results = []
    for seed in (0, 1):
      with open(os.path.join(root, "constraint", setting, "digits", "none", f"seed{seed}", "results.json")) as f:
        results.append(json.load(f))
    assert all(r["config"]["reg"]["radius"] == radius for r in results)
    found[setting] = (
      np.mean([r["selected"]["validation_accuracy"] for r in results]),
      [r["selected"]["test_accuracy"] for r in results],
    )
  best = max(found, key=lambda s: (found[s][0], -list(found).index(s)))
  row = rows["constraint"]
  assert (row["setting"], row["settings_tried"], row["model"]) == (best, 2, "selected")
  assert row["validation_accuracy_mean"] == found[best][0]
  assert row["test_accuracy_mean"] == pytest.approx(np.mean(found[best][1]), abs=0)
  assert row["test_accuracy_seeds"] == " ".join(f"{100 * a:.2f}" for a in found[best][1])
  assert (rows["plain"]["setting"], rows["plain"]["settings_tried"]) == ("", 1)
  with open(os.path.join(root, "summary.md")) as f:
    text = f.read()
  assert f"| {best} | 2 |" in text and "| (not tuned) | 1 |" in text


def test_tuning_needs_a_validation_split_and_known_variants():
  config = sweep_config()
  config.sweep.tune = {"constraint": (("reg.radius", (0.1, 1.0)),)}
  with pytest.raises(ConfigError, match="config.data.validation_fraction=0; valid: a fraction in"):
    sweeps.grid(config)
  config.data.validation_fraction = 0.1
  config.sweep.tune = {"regsl": (("reg.radius", (0.1,)),)}
  with pytest.raises(ConfigError, match="config.sweep.tune names 'regsl', which is no variant"):
    sweeps.grid(config)
  config.sweep.tune = {"constraint": (("reg.radius", ()),)}
  with pytest.raises(ConfigError, match=r"config.sweep.tune.constraint.reg.radius=\(\); valid: a non-empty tuple"):
    sweeps.grid(config)


def test_sub_grids_and_labelled_datasets_make_the_union_of_their_cells():
  config = sweep_config()
  config.sweep.variants = {**config.sweep.variants, "regsl": ("method=regsl",)}
  few = ("few_digits", ("data.name=digits", "data.examples_per_class=5"))
  config.sweep.datasets = ("digits",)
  config.sweep.grids = (
    {"noise": ("none",), "variants": ("plain", "constraint"), "datasets": ("digits", few)},
    {"noise": ("symmetric:0.4",), "variants": ("plain", "regsl")},
    {"noise": ("none",), "variants": ("plain",)},  # a cell of the first grid again: listed once
  )
  runs = sweeps.grid(config)
  expected = [
    ("plain", "digits", "none"),
    ("plain", "few_digits", "none"),
    ("constraint", "digits", "none"),
    ("constraint", "few_digits", "none"),
    ("plain", "digits", "symmetric:0.4"),
    ("regsl", "digits", "symmetric:0.4"),
  ]
  assert [(r.variant, r.dataset, r.noise) for r in runs] == expected
  few_run = runs[1]
  assert (few_run.config.data.name, few_run.config.data.examples_per_class) == ("digits", 5)
  assert few_run.name == os.path.join("plain", "few_digits", "none", "seed0")
  config.sweep.grids = ({"variants": ("plain", "bss")},)
  with pytest.raises(ConfigError, match=r"config.sweep.grids\[0\].variants names 'bss', which is no variant"):
    sweeps.grid(config)
  config.sweep.grids = ({"seed": (1,)},)
  with pytest.raises(ConfigError, match=r"config.sweep.grids\[0\] has 'seed'; valid: a dict of variants"):
    sweeps.grid(config)
  config.sweep.grids, config.sweep.datasets = (), (("x",),)
  with pytest.raises(ConfigError, match=r"config.sweep.datasets holds \('x',\); valid: a dataset name, or"):
    sweeps.grid(config)


STEPS_PER_EPOCH = 5


def fake_run(root, run, fractions, worsts, changed, validation=None):
  """A finished cell as a run leaves it: per-epoch label records written by MetricsWriter (epoch k at step
  k * STEPS_PER_EPOCH) and a results.json; `worsts` None for a run from before the worst class was recorded."""
  workdir = run.workdir(root)
  writer = MetricsWriter(workdir, enabled=True)
  for epoch in range(1, len(fractions)):
    record = {"labels/fraction_correct": fractions[epoch], "labels/num_changed": changed[epoch - 1]}
    if worsts is not None:
      record["labels/worst_class_correct"] = worsts[epoch]
    writer.write(epoch * STEPS_PER_EPOCH, record)
  writer.close()
  noise = {"fraction_correct_start": fractions[0], "fraction_correct": fractions[-1]}
  if worsts is not None:
    noise.update(worst_class_correct_start=worsts[0], worst_class_correct=worsts[-1])
  results = {
    "test_accuracy": 0.5,
    "wall_seconds": 1.0,
    "steps": STEPS_PER_EPOCH * (len(fractions) - 1),
    "epochs": len(fractions) - 1,
    "label_noise": noise,
  }
  if validation is not None:
    results["validation_accuracy"] = validation
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(results, f)
  return run


def fake_sweep(root):
  """A plain cell that changes no label (results from before the worst class was recorded) and a regsl cell
  tuned over two thresholds whose seeds change labels, 0.9 the setting best on validation."""
  config = ml_collections.ConfigDict()
  plain = [
    fake_run(root, sweeps.Run("plain", "digits", "pairflip:0.2", seed, config), [0.8] * 3, None, [0, 0])
    for seed in (0, 1)
  ]
  trajectories = {  # (setting, seed): (fraction correct, worst class correct) at epochs 0, 1, 2
    ("correction.threshold=0.5", 0): ([0.8, 0.6, 0.5], [0.7, 0.3, 0.0]),
    ("correction.threshold=0.9", 0): ([0.8, 0.85, 0.9], [0.7, 0.75, 0.8]),
    ("correction.threshold=0.9", 1): ([0.8, 0.7, 0.72], [0.7, 0.1, 0.05]),
  }
  regsl = [
    fake_run(
      root,
      sweeps.Run("regsl", "digits", "pairflip:0.2", seed, config, setting),
      *values,
      changed=[3, 4],
      validation=0.9 if setting.endswith("0.9") else 0.8,
    )
    for (setting, seed), values in trajectories.items()
  ]
  return plain + regsl, trajectories


def test_label_trajectories_plot_each_seed_of_the_cells_that_change_labels(tmp_path, monkeypatch):
  root = str(tmp_path)
  runs, trajectories = fake_sweep(root)
  drawn, draw = {}, plots.plot_label_trajectories

  def plot(panels, path):
    drawn.update(panels)
    return draw(panels, path)

  monkeypatch.setattr(sweeps.plots, "plot_label_trajectories", plot)
  path = sweeps.plot_label_trajectories(runs, root)
  assert path == os.path.join(root, "label_trajectories.png")
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  # Only the cell that changes labels, and of the tuned variant only the setting best on validation.
  assert list(drawn) == ["regsl · digits · pairflip:0.2"]
  expected = [(seed, values) for (setting, seed), values in trajectories.items() if setting.endswith("0.9")]
  for trajectory, (seed, (fractions, worsts)) in zip(drawn["regsl · digits · pairflip:0.2"], expected, strict=True):
    assert trajectory == plots.LabelTrajectory(seed, [0.0, 1.0, 2.0], fractions, worsts)


def test_label_trajectories_are_not_plotted_when_no_run_changes_labels(tmp_path):
  root = str(tmp_path)
  runs = fake_sweep(root)[0][:2]
  assert sweeps.plot_label_trajectories(runs, root) is None
  assert not os.path.exists(os.path.join(root, "label_trajectories.png"))


def test_summary_reports_the_mean_worst_class_correct_at_the_end_blank_where_not_recorded(tmp_path):
  root = str(tmp_path)
  runs, trajectories = fake_sweep(root)
  rows = sweeps.write_outputs(runs, root)
  worst_end = np.mean([worsts[-1] for (setting, _), (_, worsts) in trajectories.items() if setting.endswith("0.9")])
  assert [(r["variant"], r["worst_class_correct_end"]) for r in rows] == [("plain", None), ("regsl", worst_end)]
  with open(os.path.join(root, "summary.csv")) as f:
    assert [r["worst_class_correct_end"] for r in csv.DictReader(f)] == ["", str(worst_end)]
  with open(os.path.join(root, "summary.md")) as f:
    header, _, *lines = f.read().splitlines()
  columns = [cell.strip() for cell in header.strip("|").split("|")]
  cells = [dict(zip(columns, (cell.strip() for cell in line.strip("|").split("|")), strict=True)) for line in lines[:2]]
  assert [c["worst class correct at end"] for c in cells] == ["", f"{worst_end:.3f}"]
  assert [c["labels correct at end"] for c in cells] == ["0.800", f"{np.mean([0.9, 0.72]):.3f}"]
  assert os.path.exists(os.path.join(root, "label_trajectories.png"))


def test_processes_sharing_a_sweep_write_its_summary_one_at_a_time(tmp_path):
  import fcntl
  import threading

  root = str(tmp_path)
  runs, _ = fake_sweep(root)
  with open(os.path.join(root, ".summary.lock"), "a") as other:  # another process writing the summary
    fcntl.flock(other, fcntl.LOCK_EX)
    writer = threading.Thread(target=sweeps.write_outputs, args=(runs, root))
    writer.start()
    writer.join(timeout=2.0)
    assert writer.is_alive() and not os.path.exists(os.path.join(root, "summary.md"))  # it waits its turn
  writer.join()
  assert os.path.exists(os.path.join(root, "summary.md")) and os.path.exists(os.path.join(root, "accuracy.png"))
