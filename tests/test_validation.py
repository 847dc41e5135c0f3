"""Validation splits, model selection on them, training labels given as a file, and measuring the selected model."""

import csv
import json
import os

import jax
import numpy as np
import pytest

from ftjax import data
from ftjax.config_validation import ConfigError
from ftjax.data import holdout, labels_file
from ftjax.metrics_writer import read_metrics
from ftjax.runs import measure, measure_reports
from ftjax.train import experiment, loop, selection
from tests.test_finetune import tiny_config

SETTINGS = measure.MeasureSettings(
  num_probes=2,
  max_batches=1,
  batch_size=64,
  eigen_iterations=2,
  lanczos_steps=2,
  noise_draws=2,
  density_runs=1,
  density_steps=4,
)


def test_the_holdout_partitions_each_class_by_the_fraction_whatever_the_run_seed():
  labels = np.repeat(np.arange(4), [10, 21, 2, 1])
  kept, held = holdout.stratified_holdout(labels, 0.2)
  assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(len(labels)))
  counts = {c: int(np.sum(labels[held] == c)) for c in range(4)}
  assert counts == {0: 2, 1: 4, 2: 1, 3: 0}  # round(0.2 n_c); one of a pair; never a class's only example
  again_kept, again_held = holdout.stratified_holdout(labels, 0.2)
  assert np.array_equal(again_held, held) and np.array_equal(again_kept, kept)
  _, other = holdout.stratified_holdout(labels, 0.2, seed=1)
  assert not np.array_equal(other, held)


def test_validation_is_disjoint_stable_and_noisy_unless_asked_clean():
  config = tiny_config(data__validation_fraction=0.25)
  config.noise.update(type="symmetric", rate=0.5, seed=3)
  splits, noise, _ = experiment.load_splits(config)
  plain, plain_noise, _ = experiment.load_splits(tiny_config())
  # The held-out and kept examples partition the training split (pixels identify the examples of digits).
  whole = {p.tobytes() for p in plain.train.pixels}
  kept, held = {p.tobytes() for p in splits.train.pixels}, {p.tobytes() for p in splits.validation.pixels}
  assert kept | held == whole and not kept & held and len(held) == round(0.25 * len(whole))
  assert not held & {p.tobytes() for p in splits.test.pixels}
  # Same examples with another run seed or noise setting; noisy labels there unless data.clean_validation.
  reseeded, _, _ = experiment.load_splits(tiny_config(data__validation_fraction=0.25, run__seed=7))
  assert np.array_equal(reseeded.validation.pixels, splits.validation.pixels)
  position = {p.tobytes(): i for i, p in enumerate(plain.train.pixels)}
  held_at = np.asarray([position[p.tobytes()] for p in splits.validation.pixels])
  clean = plain_noise.clean_labels[held_at]
  assert 0.3 < np.mean(splits.validation.labels != clean) < 0.7
  config.data.clean_validation = True
  cleaned, cleaned_noise, _ = experiment.load_splits(config)
  assert np.array_equal(cleaned.validation.labels, clean)
  np.testing.assert_array_equal(
    cleaned_noise.clean_labels, plain_noise.clean_labels[np.sort(list(set(range(len(whole))) - set(held_at)))]
  )


HELD_OUT_IN_A_FRESH_PROCESS = """
import hashlib, sys
from ftjax.train import experiment
from tests.test_finetune import tiny_config
splits, _, _ = experiment.load_splits(tiny_config(data__validation_fraction=0.25))
print(hashlib.sha256(splits.validation.pixels.tobytes() + splits.validation.labels.tobytes()).hexdigest())
"""


def test_the_validation_split_is_the_same_in_another_process():
  import hashlib
  import subprocess
  import sys

  splits, _, _ = experiment.load_splits(tiny_config(data__validation_fraction=0.25))
  here = hashlib.sha256(splits.validation.pixels.tobytes() + splits.validation.labels.tobytes()).hexdigest()
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {**os.environ, "PYTHONHASHSEED": "123"}  # another hash seed: nothing may depend on it
  there = subprocess.run(
    [sys.executable, "-c", HELD_OUT_IN_A_FRESH_PROCESS], cwd=root, env=env, capture_output=True, text=True, timeout=300
  )
  assert there.returncode == 0, there.stderr[-2000:]
  assert there.stdout.split()[-1] == here


def text_folder_with_dev(folder) -> str:
  """A 'text_files' folder: train.tsv (40 sentences), test.tsv (10) and dev.tsv (400), two classes alternating."""
  rows = {"train": 40, "test": 10, "dev": 400}
  for stem, count in rows.items():
    lines = ["sentence\tlabel"] + [f"{stem} sentence {i}\t{i % 2}" for i in range(count)]
    (folder / f"{stem}.tsv").write_text("\n".join(lines) + "\n")
  return str(folder)


def text_files_config(data_dir: str, **fields):
  from tests.fields import untrained_bert_tiny_config

  return untrained_bert_tiny_config(**{"data__name": "text_files", "data__dir": data_dir, **fields})


def test_a_datasets_own_validation_split_is_read_and_noisy_unless_asked_clean(tmp_path):
  data_dir = text_folder_with_dev(tmp_path)
  noise = dict(type="symmetric", rate=0.4, seed=3)
  splits, _, _ = experiment.load_splits(text_files_config(data_dir, data__splits=("train", "test", "dev"), noise=noise))
  two_splits, _, _ = experiment.load_splits(text_files_config(data_dir, noise=noise))
  assert [str(t) for t in splits.validation.texts] == [f"dev sentence {i}" for i in range(400)]
  np.testing.assert_array_equal(splits.train.labels, two_splits.train.labels)  # the same training noise
  assert len(splits.test) == 10 and np.array_equal(splits.test.labels, np.arange(10) % 2)  # the test split clean
  flipped = np.mean(splits.validation.labels != np.arange(400) % 2)  # two classes: a flip w.p. 0.4
  assert abs(flipped - 0.4) < 4 * np.sqrt(0.4 * 0.6 / 400), flipped
  again, _, _ = experiment.load_splits(text_files_config(data_dir, data__splits=("train", "test", "dev"), noise=noise))
  np.testing.assert_array_equal(again.validation.labels, splits.validation.labels)
  clean_config = text_files_config(
    data_dir, data__splits=("train", "test", "dev"), data__clean_validation=True, noise=noise
  )
  clean, _, _ = experiment.load_splits(clean_config)
  np.testing.assert_array_equal(clean.validation.labels, np.arange(400) % 2)


def test_an_image_folders_val_subfolder_is_the_runs_noisy_validation_split(tmp_path):
  from tests.test_data import write_class_folders

  for split, count in (("train", 6), ("test", 2), ("val", 100)):
    write_class_folders(tmp_path / split, {"b_zebra": count, "a_cat": count})
  rgb = dict(data__channels=3, data__mean=(0.5,) * 3, data__std=(0.5,) * 3, optim__batch_size=4)
  config = tiny_config(data__name="image_folder", data__dir=str(tmp_path), data__splits=("train", "test", "val"), **rgb)
  config.noise.update(type="symmetric", rate=0.4, seed=3)
  splits, _, _ = experiment.load_splits(config)
  assert sorted(splits.validation.paths) == sorted(str(p) for p in (tmp_path / "val").glob("*/*.png"))
  flipped = np.mean(splits.validation.labels != np.repeat([0, 1], 100))  # two classes: a flip w.p. 0.4
  assert abs(flipped - 0.4) < 4 * np.sqrt(0.4 * 0.6 / 200), flipped


@pytest.mark.parametrize(
  "fields,problem",
  [
    (dict(data__splits=("train", "test", "validation")), "dataset 'digits' has no named splits"),
    (
      dict(data__name="text_files", data__splits=("train", "test", "dev"), data__validation_fraction=0.1),
      "names a validation split and config.data.validation_fraction=0.1 holds one out",
    ),
  ],
)
def test_a_validation_split_that_cannot_be_used_is_one_line(tmp_path, fields, problem):
  from ftjax.configs import validation
  from tests.fields import set_fields

  config = set_fields(tiny_config(), data__dir="", **fields)
  if config.data.name == "text_files":
    config = text_files_config(text_folder_with_dev(tmp_path), **fields)
  with pytest.raises(ConfigError, match=problem) as error:
    validation.validate_config(config)
  assert "\n" not in str(error.value)


@pytest.fixture(scope="module")
def selected_run(tmp_path_factory):
  """A 4-epoch run with a validation split, evaluated every epoch: (workdir, results)."""
  workdir = str(tmp_path_factory.mktemp("selected"))
  config = tiny_config(data__validation_fraction=0.2, optim__num_epochs=4, run__eval_every=1)
  return workdir, loop.train_and_evaluate(config, workdir)


def test_the_selected_model_is_the_best_logged_validation_accuracy(selected_run):
  workdir, results = selected_run
  evaluations = [r for r in read_metrics(workdir) if "validation/accuracy" in r]
  assert len(evaluations) == 4
  best = max(r["validation/accuracy"] for r in evaluations)
  first_best = next(r for r in evaluations if r["validation/accuracy"] == best)  # the earliest of equals
  chosen = results["selected"]
  assert chosen["step"] == first_best["step"] and chosen["validation_accuracy"] == best
  assert chosen["test_accuracy"] == first_best["test/accuracy"] and chosen["test_loss"] == first_best["test/loss"]
  assert results["validation_accuracy"] == evaluations[-1]["validation/accuracy"]
  assert results["num_validation"] + results["num_train"] == 1437
  # The kept model is that step's: evaluated again it gives the logged test figures.
  setup = experiment.build_run_setup(tiny_config(data__validation_fraction=0.2, optim__num_epochs=4))
  model = loop.restore_selected_model(setup, workdir)
  steps = loop.eval_steps(setup.mesh, setup.model)
  again = loop.evaluate(steps, model, data.eval_batches(setup.splits.test, setup.eval_preprocess, 128), setup.mesh)
  assert again["accuracy"] == chosen["test_accuracy"] and np.isclose(again["loss"], chosen["test_loss"], rtol=1e-6)


def test_selection_by_loss_keeps_the_lowest_validation_loss():
  records = [{"validation_loss": 0.5, "validation_accuracy": 0.8}, {"validation_loss": 0.4, "validation_accuracy": 0.7}]
  assert selection.is_better(records[1], records[0], "validation_loss")
  assert not selection.is_better(records[1], records[0], "validation_accuracy")
  assert not selection.is_better(records[0], records[0], "validation_accuracy")  # equals keep the earlier


def test_measure_can_measure_the_selected_model_with_its_hessian_density(selected_run):
  workdir, results = selected_run
  (measures,) = measure_reports.measure_workdirs([workdir], SETTINGS._replace(checkpoint="selected"))
  assert measures["checkpoint"] == "selected" and measures["checkpoint_step"] == results["selected"]["step"]
  assert np.isclose(measures["test_loss"], results["selected"]["test_loss"], rtol=1e-5)
  for name in ("measures_selected.json", "hessian_density_selected.png", "layer_traces_selected.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  assert not os.path.exists(os.path.join(workdir, "measures.json"))  # the final model's files are its own
  density = measures["hessian_density"]["network"]
  weights = np.asarray(density["weights"])
  assert weights.shape == (SETTINGS.density_runs, 4) and np.allclose(weights.sum(1), 1.0, atol=1e-4)


def test_a_run_without_validation_has_no_selected_model_to_measure(tmp_path):
  workdir = str(tmp_path / "plain")
  results = loop.train_and_evaluate(tiny_config(optim__num_epochs=1), workdir)
  assert "selected" not in results and not os.path.exists(selection.selected_dir(workdir))
  with pytest.raises(ConfigError, match="holds no selected model .* valid: --checkpoint=final"):
    measure_reports.measure_workdirs([workdir], SETTINGS._replace(checkpoint="selected"))


@pytest.fixture(scope="module")
def digits_train():
  splits, _, _ = experiment.load_splits(tiny_config())
  return splits.train


def test_a_labels_file_is_read_in_each_format(digits_train, tmp_path):
  n = len(digits_train)
  given = (np.asarray(digits_train.labels) + 1) % 10
  np.save(tmp_path / "l.npy", given)
  (tmp_path / "list.json").write_text(json.dumps(given.tolist()))
  (tmp_path / "keyed.json").write_text(json.dumps({str(i): int(v) for i, v in reversed(list(enumerate(given)))}))
  names = digits_train.class_names
  with open(tmp_path / "l.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["index", "label"])
    writer.writerows((i, names[v]) for i, v in enumerate(given))  # class names are labels too
  for name in ("l.npy", "list.json", "keyed.json", "l.csv"):
    read = labels_file.read_labels_file(str(tmp_path / name), digits_train)
    assert read.dtype == np.int32 and np.array_equal(read, given), name
  assert n == len(given)


@pytest.mark.parametrize(
  "name, content, problem",
  [
    ("short.json", "[1, 2]", "holds 2 labels for the 1437 training examples"),
    ("unknown.json", '{"99999": 1}', "names example '99999', which the training split does not hold"),
    ("bad.json", "[" + ", ".join(["1"] * 1436) + ', "cat"]', "gives example 1436 the label 'cat'"),
    ("cols.csv", "id,target\n0,1\n", "has columns ['id', 'target']"),
    ("missing.csv", "id,label\n0,1\n", "has no label for 1436 of the 1437 training examples"),
    ("twice.csv", "id,label\n0,1\n0,2\n", "labels example '0' twice"),
    ("floats.npy", None, "holds a float64 array of shape (1437,)"),
    ("l.txt", "1", "has an unknown suffix"),
  ],
)
def test_a_bad_labels_file_is_one_line_naming_it(digits_train, tmp_path, name, content, problem):
  path = tmp_path / name
  if content is None:
    np.save(path, np.zeros(len(digits_train)))
  else:
    path.write_text(content)
  with pytest.raises(ValueError) as error:
    labels_file.read_labels_file(str(path), digits_train)
  message = str(error.value)
  assert message.startswith(f"labels_file {str(path)!r} {problem}") and "\n" not in message, message


def test_a_run_trains_on_the_given_labels_and_reports_agreement_with_the_datasets(digits_train, tmp_path):
  given = np.asarray(digits_train.labels).copy()
  flipped = np.arange(0, len(given), 4)
  given[flipped] = (given[flipped] + 1) % 10  # a quarter of the labels wrong
  np.save(tmp_path / "given.npy", given)
  config = tiny_config(data__labels_file=str(tmp_path / "given.npy"), optim__num_epochs=1)
  splits, noise, _ = experiment.load_splits(config)
  assert np.array_equal(splits.train.labels, given) and np.array_equal(noise.clean_labels, digits_train.labels)
  results = loop.train_and_evaluate(config, str(tmp_path / "run"))
  assert results["label_noise"]["fraction_correct_start"] == pytest.approx(1 - len(flipped) / len(given))
  assert jax.device_count() == 8
