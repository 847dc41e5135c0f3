"""Training labels given as data: per-example labels from a file (programmatic or weak-supervision labels, or a
dataset whose labels are noisy by nature) that replace a training split's own.

Formats, by suffix:
- `.npy`: an integer array [n] in the split's example order;
- `.json`: a list of n labels in example order, or an object {example id: label};
- `.csv`: a header row naming an id column (`id`, `index` or `path`) and a `label` column, one row per example.
An example id is its position in the split (0 … n−1) or, for a split read from image files, its path (absolute, or
relative to the dataset's folder). A label is a class index or a class name. Every example needs one label.
"""

import csv
import json
import os

import numpy as np

SUFFIXES = (".npy", ".json", ".csv")
ID_COLUMNS = ("id", "index", "path")


def _fail(path: str, problem: str) -> ValueError:
  return ValueError(
    f"labels_file {path!r} {problem}; valid: {', '.join(SUFFIXES)} with one label per training example "
    "(ftjax.data.labels_file)"
  )


def _class_index(path: str, label, class_names: list[str], where: str) -> int:
  """The class index of `label` (an index or a class name)."""
  if isinstance(label, str) and label in class_names:
    return class_names.index(label)
  try:
    index = int(label)
  except (TypeError, ValueError):
    index = None
  if index is None or str(index) != str(label).strip() or not 0 <= index < len(class_names):
    raise _fail(path, f"gives {where} the label {label!r}, no class index in [0, {len(class_names)}) or class name")
  return index


def _example_ids(source, data_dir: str | None) -> dict[str, int]:
  """{id: position} for every example of `source`: its position, and its path (absolute and relative to
  `data_dir`) when it is read from files."""
  ids = {str(i): i for i in range(len(source))}
  for i, file in enumerate(getattr(source, "paths", ())):
    file = str(file)
    ids[os.path.abspath(file)] = i
    if data_dir:
      ids[os.path.relpath(os.path.abspath(file), os.path.abspath(data_dir))] = i
  return ids


def _keyed_labels(path: str, pairs: list[tuple[str, object]], source, data_dir: str | None) -> np.ndarray:
  """Labels [n] in example order from (id, label) pairs covering every example once."""
  ids = _example_ids(source, data_dir)
  labels = np.full(len(source), -1, np.int64)
  for key, label in pairs:
    text = str(key).strip()
    position = ids.get(text, ids.get(os.path.abspath(text)) if os.path.isabs(text) else ids.get(text))
    if position is None:
      raise _fail(path, f"names example {key!r}, which the training split does not hold")
    if labels[position] >= 0:
      raise _fail(path, f"labels example {key!r} twice")
    labels[position] = _class_index(path, label, source.class_names, f"example {key!r}")
  missing = np.flatnonzero(labels < 0)
  if len(missing):
    raise _fail(path, f"has no label for {len(missing)} of the {len(source)} training examples (e.g. {missing[0]})")
  return labels


def read_labels_file(path: str, source, data_dir: str | None = None) -> np.ndarray:
  """int32 [len(source)]: the labels `path` gives the examples of `source` (a training split), in its order; a
  one-line ValueError naming the file for a wrong length, an unknown or repeated id, or a label that is no class."""
  if not path.endswith(SUFFIXES):
    raise _fail(path, "has an unknown suffix")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"labels_file {path!r} does not exist; valid: a {', '.join(SUFFIXES)} file")
  n = len(source)
  try:
    if path.endswith(".npy"):
      labels = np.load(path, allow_pickle=False)
      if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise _fail(path, f"holds a {labels.dtype} array of shape {labels.shape}, not integers [{n}]")
      ordered = [(str(i), int(label)) for i, label in enumerate(labels)]
    elif path.endswith(".json"):
      with open(path) as f:
        content = json.load(f)
      if isinstance(content, dict):
        return _keyed_labels(path, list(content.items()), source, data_dir).astype(np.int32)
      if not isinstance(content, list):
        raise _fail(path, f"holds a JSON {type(content).__name__}, not a list or an object")
      ordered = [(str(i), label) for i, label in enumerate(content)]
    else:
      with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
      columns = list(rows[0]) if rows else []
      id_column = next((c for c in ID_COLUMNS if c in columns), None)
      if id_column is None or "label" not in columns:
        raise _fail(path, f"has columns {columns}; it needs one of {', '.join(ID_COLUMNS)} and 'label'")
      return _keyed_labels(path, [(r[id_column], r["label"]) for r in rows], source, data_dir).astype(np.int32)
  except (OSError, ValueError, UnicodeDecodeError) as e:
    if str(e).startswith(f"labels_file {path!r}"):
      raise
    raise _fail(path, f"is unreadable ({type(e).__name__}: {' '.join(str(e).split())[:100]})") from e
  if len(ordered) != n:
    raise _fail(path, f"holds {len(ordered)} labels for the {n} training examples")
  return np.asarray([_class_index(path, label, source.class_names, f"example {i}") for i, label in ordered], np.int32)
