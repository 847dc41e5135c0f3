"""A minimal sweep end to end: two methods, one seed, a few steps; its summary and its resumption."""

import csv
import os

import ml_collections
import pytest

from ftjax import sweeps
from ftjax.config_validation import ConfigError
from tests.test_finetune import tiny_config


def sweep_config():
  config = tiny_config(num_epochs=1)
  config.sweep = ml_collections.ConfigDict()
  config.sweep.variants = {"plain": ("method=none",), "constraint": ("method=constraint", "reg.radius=0.01")}
  config.sweep.datasets = ("digits",)
  config.sweep.noise = ("symmetric:0.4",)
  config.sweep.seeds = (0,)
  return config


def test_sweep_runs_every_cell_and_summarises(tmp_path):
  root = str(tmp_path)
  rows = sweeps.run_sweep(sweep_config(), root)
  assert sorted(r["variant"] for r in rows) == ["constraint", "plain"]
  for row in rows:
    assert (row["dataset"], row["noise"], row["seeds"]) == ("digits", "symmetric:0.4", 1)
    assert row["test_accuracy_std"] == 0.0 and 0.0 <= row["test_accuracy_mean"] <= 1.0
  with open(os.path.join(root, "summary.csv")) as f:
    table = list(csv.DictReader(f))
  assert len(table) == 2 and {"variant", "noise", "test_accuracy_mean", "test_accuracy_std"} <= set(table[0])
  with open(os.path.join(root, "summary.md")) as f:
    lines = f.read().splitlines()
  assert len(lines) == 4 and lines[0].startswith("| variant |")
  assert os.path.getsize(os.path.join(root, "accuracy.png")) > 0
  run_dir = os.path.join(root, "constraint", "digits", "symmetric_0.4", "seed0")
  stamp = os.path.getmtime(os.path.join(run_dir, "results.json"))
  assert sweeps.run_sweep(sweep_config(), root) == rows  # finished runs are skipped, not retrained
  assert os.path.getmtime(os.path.join(run_dir, "results.json")) == stamp


@pytest.mark.parametrize("field, value, message", [
    ("noise", ("gaussian:0.2",), "sweep noise setting 'gaussian:0.2' is invalid"),
    ("variants", {"x": ("reg.no_such=1",)}, "sweep override 'reg.no_such=1' names no config field"),
    ("variants", {"x": ("method=nope",)}, "config.method='nope' is invalid"),
])
def test_a_bad_grid_is_refused_before_any_run(tmp_path, field, value, message):
  config = sweep_config()
  config.sweep[field] = value
  with pytest.raises(ConfigError) as error:
    sweeps.run_sweep(config, str(tmp_path))
  assert message in str(error.value)
  assert os.listdir(tmp_path) == []
