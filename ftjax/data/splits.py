"""What a dataset split is: the `Source` protocol the pipeline and the methods read, `Splits` (train, test;
`SplitsWithValidation` with the dataset's own validation split when asked for), and the fixed-seed per-class split
that datasets without a test split are divided by."""

from typing import NamedTuple, Protocol

import numpy as np

SPLIT_SEED = 0  # train/test splits made here never depend on the run seed


class Source(Protocol):
  """What the pipeline and the methods read from a dataset split (a text source,
  `ftjax.data.text_sources.TextSource`, gives `texts_at(indices)` in place of `images(indices)`)."""

  labels: np.ndarray
  class_names: list[str]

  @property
  def num_classes(self) -> int: ...

  def __len__(self) -> int: ...

  def images(self, indices: np.ndarray) -> np.ndarray: ...

  def take(self, indices: np.ndarray) -> "Source": ...


class Splits(NamedTuple):
  train: Source
  test: Source


class SplitsWithValidation(NamedTuple):
  """The splits of a dataset whose own validation split was asked for (a third split name)."""

  train: Source
  test: Source
  validation: Source


def splits_of(*sources: Source) -> Splits | SplitsWithValidation:
  """(train, test) as `Splits`, (train, test, validation) as `SplitsWithValidation`."""
  return (Splits if len(sources) == 2 else SplitsWithValidation)(*sources)


class Labelled:
  """`len` and `num_classes` from the `labels` and `class_names` fields."""

  def __len__(self) -> int:
    return len(self.labels)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def split_per_class(files: dict[str, list], test_fraction: float) -> tuple[dict, dict]:
  """({class: its training members}, {class: its test members}) of `files` ({class: members, e.g. file paths}):
  round(test_fraction * n_c) members of each class go to test, drawn with the fixed SPLIT_SEED."""
  rng = np.random.default_rng(SPLIT_SEED)
  train, test = {}, {}
  for c, paths in files.items():
    is_test = np.zeros(len(paths), bool)
    is_test[rng.permutation(len(paths))[: round(test_fraction * len(paths))]] = True
    train[c] = [p for p, t in zip(paths, is_test) if not t]
    test[c] = [p for p, t in zip(paths, is_test) if t]
  return train, test
