"""The public API a notebook uses: after `import ftjax` every entry point the docs name resolves, the
docs name no others, and a dataset registered outside the package is valid and loadable by name."""

import inspect
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from ftjax import configs, data
from ftjax.config_validation import ConfigError
from ftjax.train import experiment
from tests.fields import set_fields

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# What README.md, docs/ and examples/quickstart.ipynb name, and the entry points of the issue (#14).
DOCUMENTED = (
  "ftjax.configs.default_config",
  "ftjax.configs.validate_config",
  "ftjax.data.load_dataset",
  "ftjax.data.register_dataset",
  "ftjax.data.DatasetLoader",
  "ftjax.data.DatasetRequest",
  "ftjax.data.ArraySource",
  "ftjax.data.Splits",
  "ftjax.data.eval_batches",
  "ftjax.data.labels_file",
  "ftjax.models.create_model",
  "ftjax.models.register",
  "ftjax.models.ModelFamily",
  "ftjax.models.ModelStructure",
  "ftjax.models.structure_of",
  "ftjax.models.structure",
  "ftjax.models.pretrained.save_variables",
  "ftjax.distance.projection",
  "ftjax.distance.distance_projection",
  "ftjax.distance.layer_distances",
  "ftjax.methods.regsl",
  "ftjax.methods.consistent",
  "ftjax.methods.constraint",
  "ftjax.methods.base",
  "ftjax.methods.Method",
  "ftjax.methods.MethodContext",
  "ftjax.methods.METHODS",
  "ftjax.methods.method_config",
  "ftjax.hessian.layer_traces",
  "ftjax.hessian.hvp",
  "ftjax.hessian.top_eigenvalues",
  "ftjax.hessian.hessian_spectrum",
  "ftjax.hessian.layer_spectra",
  "ftjax.generalization.hessian_bound",
  "ftjax.train.train_and_evaluate",
  "ftjax.train.loop",
  "ftjax.train.loop.train_and_evaluate",
  "ftjax.train.loop.build_experiment",
  "ftjax.train.loop.restore_trained_state",
  "ftjax.runs.run_with_stages",
  "ftjax.runs.stages.run_with_stages",
  "ftjax.runs.sweeps",
  "ftjax.runs.measure",
  "ftjax.layer_groups.network_order",
  "ftjax.label_noise",
  "ftjax.optim",
  "ftjax.progress_logging.show_progress",
  "ftjax.progress_logging.labelled",
)
RUN_AS_MODULES = ("ftjax.configs.reference",)  # named as `python -m ...`, not as attributes
DOC_FILES = (
  "README.md",
  "examples/quickstart.ipynb",
  *(os.path.join("docs", f) for f in sorted(os.listdir(os.path.join(REPO, "docs"))) if f.endswith(".md")),
)


def documented_names(text: str) -> set[str]:
  """Dotted `ftjax.X.Y` names in `text`, and `ftjax.X.Y` for each `from ftjax.X import Y` (Y an
  identifier, not a sketch's new module: those follow a `# ftjax/...` sketch header and are skipped)."""
  names = set(re.findall(r"(?<![\w/.-])ftjax(?:\.\w+)+", text))
  if "(a sketch)" not in text:
    for module, imported in re.findall(r"from (ftjax(?:\.\w+)*) import ([\w, ]+)", text):
      names.update(f"{module}.{name.strip()}" for name in imported.split(","))
  return names


def test_docs_name_only_documented_entry_points():
  for path in DOC_FILES:
    with open(os.path.join(REPO, path)) as f:
      text = f.read()
    if path.endswith(".ipynb"):
      text = "\n".join("".join(cell["source"]) for cell in json.loads(text)["cells"])
    unlisted = {
      name
      for name in documented_names(text) - set(RUN_AS_MODULES)
      if not any(listed == name or listed.startswith(name + ".") for listed in DOCUMENTED)
    }
    assert not unlisted, f"{path} names {sorted(unlisted)}: add them to DOCUMENTED (and export them)"


RESOLVE = """
import json, sys
import ftjax
missing = []
for name in json.loads(sys.argv[1]):
  target = ftjax
  for part in name.split(".")[1:]:
    target = getattr(target, part, None)
  if target is None:
    missing.append(name)
for package in (ftjax, *(getattr(ftjax, name) for name in ftjax.__all__ if hasattr(getattr(ftjax, name), "__all__"))):
  missing += [f"{package.__name__}.{name}" for name in getattr(package, "__all__", ()) if not hasattr(package, name)]
print(json.dumps(missing))
"""


def test_import_ftjax_resolves_every_documented_name_in_a_fresh_process():
  result = subprocess.run(
    [sys.executable, "-c", RESOLVE, json.dumps(DOCUMENTED)], cwd=REPO, capture_output=True, text=True, timeout=120
  )
  assert result.returncode == 0, result.stderr[-2000:]
  assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_documented_names_are_what_they_say():
  import ftjax

  projection = ftjax.distance.projection
  assert inspect.ismodule(projection) and projection.__name__ == "ftjax.distance.projection"
  assert ftjax.methods.regsl.__module__ == "ftjax.methods.noisy_labels"
  assert ftjax.train.train_and_evaluate is ftjax.train.loop.train_and_evaluate
  assert ftjax.runs.run_with_stages is ftjax.runs.stages.run_with_stages
  assert ftjax.hessian.layer_traces.__module__ == "ftjax.hessian.trace"
  assert ftjax.__version__ == "0.1.0"


TOY_PIXELS = np.random.default_rng(3).integers(0, 256, (2, 30, 8, 8, 1), dtype=np.uint8)
TOY_LABELS = np.tile(np.arange(3, dtype=np.int32), (2, 10))
REQUESTS = []


def load_toy(request: data.DatasetRequest) -> data.Splits:
  """30 random 8x8 grey images per split, labels 0, 1, 2, 0, ..."""
  REQUESTS.append(request)
  return data.Splits(*(data.ArraySource(TOY_PIXELS[i], TOY_LABELS[i], ["a", "b", "c"]) for i in range(2)))


def check_toy(request: data.DatasetRequest) -> None:
  if request.data_dir == "/no/toy/here":
    raise FileNotFoundError(f"my_toy: {request.data_dir} not found; valid: '' (the toy needs no files)")


@pytest.fixture
def my_toy():
  data.register_dataset("my_toy", data.DatasetLoader(load_toy, check_toy))
  REQUESTS.clear()
  yield
  del data.DATASETS["my_toy"]


def toy_config(**overrides):
  config = configs.default_config()
  set_fields(
    config,
    data__name="my_toy",
    data__image_size=8,
    model__name="small_cnn",
    model__width=4,
    model__pretrained="none",
    optim__batch_size=8,
  )
  return set_fields(config, **overrides)


def test_a_registered_dataset_is_valid_and_loads_through_the_config(my_toy):
  config = toy_config(data__test_fraction=0.25)
  configs.validate_config(config)
  splits, noise, num_classes = experiment.load_splits(config)
  assert num_classes == 3 and noise.transition is None
  for split, pixels, labels in zip(splits, TOY_PIXELS, TOY_LABELS):
    np.testing.assert_array_equal(split.labels, labels)
    np.testing.assert_array_equal(split.images(np.arange(len(split))), pixels)
  assert REQUESTS[-1] == data.DatasetRequest("my_toy", None, 8, 0.25)
  few = experiment.load_splits(toy_config(data__examples_per_class=4))[0].train
  assert np.bincount(few.labels).tolist() == [4, 4, 4]
  chosen = [
    int(np.flatnonzero((TOY_PIXELS[0] == image).all(axis=(1, 2, 3)))[0]) for image in few.images(np.arange(len(few)))
  ]
  assert chosen == sorted(chosen) and TOY_LABELS[0][chosen].tolist() == few.labels.tolist()


def test_a_registered_dataset_is_checked_by_validation_and_unknown_names_fail(my_toy):
  with pytest.raises(ConfigError, match="my_toy: /no/toy/here not found"):
    configs.validate_config(toy_config(data__dir="/no/toy/here"))
  with pytest.raises(ConfigError, match="config.data.name='my_toy2' is not a known dataset"):
    configs.validate_config(toy_config(data__name="my_toy2"))
  with pytest.raises(
    ValueError,
    match="valid: digits, fashion_mnist, mnist, image_folder, wordnet_nouns, wordnet_verbs, text_files, my_toy or "
    "'tfds:NAME'",
  ):
    data.load_dataset("my_toy2")
  with pytest.raises(TypeError, match="DatasetLoader"):
    data.register_dataset("other", load_toy)
  with pytest.raises(ValueError, match="'tfds:x'"):
    data.register_dataset("tfds:x", data.DatasetLoader(load_toy))
