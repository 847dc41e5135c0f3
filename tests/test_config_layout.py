"""A recorded config's sections: a workdir written when the config was flat is read in today's layout."""

import json
import os
import shutil

from ftjax import config_layout, configs
from ftjax.runs import measure
from ftjax.train import loop
from tests.test_finetune import finished_run, tiny_config  # noqa: F401 (fixture)


def flattened(recorded: dict) -> dict:
  """`recorded` in the flat layout of ftjax before sections: the fields `FLAT_FIELDS` maps moved back to the top."""
  nested = json.loads(json.dumps(recorded))
  values = {}
  for key, path in config_layout.FLAT_FIELDS.items():
    section, field = path.split(".")
    values[key] = nested[section].pop(field)
  return {**{k: v for k, v in nested.items() if v != {}}, **values}  # emptied sections go


def test_a_flat_record_moves_into_its_sections_and_misses_only_new_fields():
  nested = json.loads(configs.default_config().to_json())
  flat = flattened(nested)
  assert (flat["dataset"], flat["model"], flat["batch_size"], flat["seed"]) == ("digits", "resnet18", 64, 0)
  assert config_layout.completed(config_layout.in_sections(flat), nested) == nested
  assert config_layout.in_sections(nested) is nested  # a sectioned record is kept as it is
  older = json.loads(json.dumps(nested))
  del older["data"]["validation_fraction"], older["run"]["select_by"]
  assert config_layout.completed(older, nested) == nested
  assert config_layout.differing_fields(older, nested) == ["data.validation_fraction", "run.select_by"]


def test_a_workdir_recorded_flat_is_finished_resumable_and_measurable(finished_run, tmp_path):  # noqa: F811
  workdir, results = finished_run
  old = str(tmp_path / "old")
  shutil.copytree(workdir, old)
  with open(os.path.join(old, "config.json")) as f:
    recorded = json.load(f)
  with open(os.path.join(old, "config.json"), "w") as f:
    json.dump(flattened(recorded), f)
  assert loop.recorded_config(old) == recorded
  assert loop.train_and_evaluate(tiny_config(), old) == json.loads(json.dumps(results))  # its stored results
  run = measure.load_finished_run(old, 64, defaults=configs.default_config())
  assert run.setup.config.model.name == "small_cnn" and run.trained.step == results["steps"]


def test_a_field_that_changes_no_value_does_not_make_another_run():
  recorded = {"data": {"name": "digits", "workers": 0}, "optim": {"learning_rate": 0.1}}
  assert config_layout.differing_run_fields(recorded, {**recorded, "data": {"name": "digits", "workers": 4}}) == []
  changed = {"data": {"name": "mnist", "workers": 4}, "optim": {"learning_rate": 0.2}}
  assert config_layout.differing_fields(recorded, changed) == ["data.name", "data.workers", "optim.learning_rate"]
  assert config_layout.differing_run_fields(recorded, changed) == ["data.name", "optim.learning_rate"]
