"""Model selection on the validation split: the model whose evaluation was best so far, kept beside the latest
checkpoint in `workdir/selected/` (`model.msgpack`, a source `config.model.pretrained` can name, `selected.json`:
the step and its validation and test figures, and for a method that changes the training labels `labels.npy`, those
it was training on then).

A resumed run re-evaluates the same steps with the same results, and only a strictly better evaluation replaces the
kept one (the earliest of equals stays), so the selection of a resumed run is that of an uninterrupted one.
"""

import json
import os

import flax.serialization
import jax
import numpy as np

from ftjax.train import checkpointing

SELECTED_DIR = "selected"
RECORD_FILE = "selected.json"
MODEL_FILE = "model.msgpack"
LABELS_FILE = "labels.npy"


def selected_dir(workdir: str) -> str:
  return os.path.join(workdir, SELECTED_DIR)


def read_selected(workdir: str) -> dict | None:
  """The record of the model selected so far in `workdir` ({'step', 'validation_accuracy', ...}), or None."""
  path = os.path.join(selected_dir(workdir), RECORD_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def is_better(record: dict, best: dict | None, select_by: str) -> bool:
  """Whether the evaluation `record` beats `best` on `select_by` ('validation_accuracy' higher, 'validation_loss'
  lower is better); any record beats None."""
  if best is None:
    return True
  if select_by == "validation_loss":
    return record["validation_loss"] < best["validation_loss"]
  return record["validation_accuracy"] > best["validation_accuracy"]


def read_selected_labels(workdir: str) -> np.ndarray | None:
  """The training labels the selected model of `workdir` was trained on, for a method that changes them; else None."""
  path = os.path.join(selected_dir(workdir), LABELS_FILE)
  return np.load(path) if os.path.exists(path) else None


def keep(workdir: str, record: dict, params, batch_stats, labels: np.ndarray | None = None) -> None:
  """Writes the model variables, the training `labels` of a method that changes them, and `record` as the
  selected model of `workdir` (each file replaced atomically, the record last, so it never names a model that was
  not written)."""
  directory = selected_dir(workdir)
  os.makedirs(directory, exist_ok=True)
  if labels is not None:
    checkpointing.write_array_atomically(os.path.join(directory, LABELS_FILE), np.asarray(labels))
  variables = jax.device_get({"params": params, "batch_stats": batch_stats})
  checkpointing.write_bytes_atomically(
    os.path.join(directory, MODEL_FILE), flax.serialization.msgpack_serialize(variables)
  )
  checkpointing.write_json_atomically(os.path.join(directory, RECORD_FILE), record, indent=2)
