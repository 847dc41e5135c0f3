"""Text classification sources read offline: WordNet synset definitions labelled by their supersense
(`load_wordnet_supersenses`) and labelled TSV/CSV/JSONL files (`load_text_files`; `load_text_folder` reads a
folder's SPLIT.tsv/.csv/.jsonl files, the registered dataset 'text_files').

A `TextSource` is the text counterpart of `ArraySource`: texts held in memory as Python str objects,
[n] for one text per example or [n, 2] for sentence pairs, with int32 `labels` [n] and `class_names`;
`texts_at(indices)` plays the part of `images(indices)` (a tokenizer goes in front of it), `take(indices)`
keeps a subset re-indexed 0..m-1, and an example's stable index is its position 0..n-1. Nothing is
downloaded.
"""

import csv
import dataclasses
import json
import logging
import os
import re
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np

from ftjax.data.splits import Labelled, Splits, SplitsWithValidation, split_per_class, splits_of

log = logging.getLogger(__name__)

WORDNET_DIR = "/usr/share/wordnet"  # where Debian's `wordnet-base` installs the WordNet 3.0 database
WORDNET_POS = ("noun", "verb", "adj", "adv")  # the data.POS files of the database
# Lexicographer file names by number (lex_filenum), as WordNet 3.0's lexnames(5) lists them; used when the
# database folder has no `lexnames` file (Debian's `wordnet-base` ships none).
WORDNET_LEXNAMES = (
  "adj.all",
  "adj.pert",
  "adv.all",
  "noun.Tops",
  "noun.act",
  "noun.animal",
  "noun.artifact",
  "noun.attribute",
  "noun.body",
  "noun.cognition",
  "noun.communication",
  "noun.event",
  "noun.feeling",
  "noun.food",
  "noun.group",
  "noun.location",
  "noun.motive",
  "noun.object",
  "noun.person",
  "noun.phenomenon",
  "noun.plant",
  "noun.possession",
  "noun.process",
  "noun.quantity",
  "noun.relation",
  "noun.shape",
  "noun.state",
  "noun.substance",
  "noun.time",
  "verb.body",
  "verb.change",
  "verb.cognition",
  "verb.communication",
  "verb.competition",
  "verb.consumption",
  "verb.contact",
  "verb.creation",
  "verb.emotion",
  "verb.motion",
  "verb.perception",
  "verb.possession",
  "verb.social",
  "verb.stative",
  "verb.weather",
  "adj.ppl",
)
TEXT_FILE_SUFFIXES = (".tsv", ".csv", ".jsonl")
_EXAMPLES_START = re.compile(r'\s*[;:,]\s*"')  # where a gloss's quoted usage examples begin
_INTEGER = re.compile(r"-?\d+")


@dataclasses.dataclass(frozen=True, eq=False)
class TextSource(Labelled):
  """Texts held in memory: str objects [n] (one text per example) or [n, 2] (sentence pairs), labels
  int32 [n]."""

  texts: np.ndarray
  labels: np.ndarray
  class_names: list[str]

  def texts_at(self, indices: np.ndarray) -> np.ndarray:
    return self.texts[indices]

  def take(self, indices: np.ndarray) -> "TextSource":
    return dataclasses.replace(self, texts=self.texts[indices], labels=self.labels[indices])


def text_array(rows: Sequence[Sequence[str]], columns: int) -> np.ndarray:
  """str objects [n] (one column) or [n, columns] from rows of `columns` strings."""
  texts = np.empty((len(rows), columns), dtype=object)
  texts[:] = rows
  return texts[:, 0] if columns == 1 else texts


class WordnetSynset(NamedTuple):
  """One synset of a WordNet data file: its part of speech, byte offset, supersense (lexicographer file
  name) and gloss (definition and quoted usage examples)."""

  pos: str
  offset: int
  supersense: str
  gloss: str


def _wordnet_root(root: str | None) -> str:
  root = WORDNET_DIR if root is None else root
  if not os.path.isdir(root):
    raise ValueError(
      f"WordNet directory {root!r} does not exist; Debian's `wordnet-base` package provides it at {WORDNET_DIR} "
      "(apt-get install wordnet-base), or pass a folder holding WordNet 3.0's data.noun, data.verb, ..."
    )
  return root


def _wordnet_pos(pos: str | Sequence[str]) -> tuple[str, ...]:
  pos = (pos,) if isinstance(pos, str) else tuple(pos)
  if not pos or len(set(pos)) < len(pos) or any(p not in WORDNET_POS for p in pos):
    raise ValueError(f"pos={pos!r} is not valid; valid: distinct parts of speech among {', '.join(WORDNET_POS)}")
  return pos


def check_wordnet(root: str | None = None, pos: str | Sequence[str] = ("noun",)) -> None:
  """A one-line error unless `root` (None: WORDNET_DIR) holds the data file of every part of speech in
  `pos`; reads none."""
  root = _wordnet_root(root)
  for p in _wordnet_pos(pos):
    path = os.path.join(root, f"data.{p}")
    if not os.path.isfile(path):
      raise ValueError(
        f"WordNet data file {path} not found; Debian's `wordnet-base` package provides it in {WORDNET_DIR}"
      )


def read_wordnet_lexnames(root: str) -> tuple[str, ...]:
  """Lexicographer file names by number from root/lexnames (lines 'NN<tab>name<tab>category'), or
  WORDNET_LEXNAMES when the folder has no such file."""
  path = os.path.join(root, "lexnames")
  if not os.path.isfile(path):
    return WORDNET_LEXNAMES
  names = {}
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      fields = line.split()
      if len(fields) < 2 or not fields[0].isdigit():
        raise ValueError(f"{path}:{number}: not a lexnames line {line.strip()!r}; valid: 'NN<tab>name<tab>category'")
      names[int(fields[0])] = fields[1]
  return tuple(names.get(i, "") for i in range(max(names, default=-1) + 1))


def read_wordnet_synsets(root: str | None = None, pos: str = "noun") -> list[WordnetSynset]:
  """The synsets of root/data.POS (wndb(5) format; the license header's lines start with two spaces)
  in offset order: each data line is 'offset lex_filenum ss_type w_cnt word lex_id ... | gloss'."""
  root = _wordnet_root(root)
  (pos,) = _wordnet_pos(pos)
  check_wordnet(root, pos)
  lexnames = read_wordnet_lexnames(root)
  path = os.path.join(root, f"data.{pos}")
  synsets = []
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if line.startswith("  ") or not line.strip():
        continue
      fields, separator, gloss = line.partition(" | ")
      offset, lex_filenum = (fields.split() + ["", ""])[:2]
      if not separator or not offset.isdigit() or not lex_filenum.isdigit():
        raise ValueError(f"{path}:{number}: not a WordNet data line; valid: 'offset lex_filenum ... | gloss'")
      if int(lex_filenum) >= len(lexnames) or not lexnames[int(lex_filenum)]:
        raise ValueError(f"{path}:{number}: lex_filenum {lex_filenum} names no lexicographer file (lexnames)")
      synsets.append(WordnetSynset(pos, int(offset), lexnames[int(lex_filenum)], gloss.strip()))
  return sorted(synsets, key=lambda synset: synset.offset)


def gloss_definition(gloss: str) -> str:
  """The definition part of a WordNet gloss: the text before its first quoted usage example (a '"' that
  follows ';', ':' or ','), e.g. 'a domestic animal; "my dog"' -> 'a domestic animal'."""
  return _EXAMPLES_START.split(gloss, maxsplit=1)[0].strip()


def load_wordnet_supersenses(
  root: str | None = None,
  pos: str | Sequence[str] = ("noun",),
  test_fraction: float = 0.2,
  min_examples: int = 100,
  with_examples: bool = False,
) -> Splits:
  """WordNet synsets labelled by supersense (lexicographer file, e.g. noun.animal, verb.motion), as
  TextSources of str [n]. root: the WordNet 3.0 database folder (None: WORDNET_DIR); pos: parts of speech
  read, in that order, each file's synsets in offset order (an example's stable index). The text of a synset
  is its gloss's definition (`gloss_definition`; quoted usage examples dropped, as they mostly repeat the
  synset's words), or its whole gloss when `with_examples`. Class names are the supersenses, sorted;
  supersenses with fewer than `min_examples` synsets are dropped (logged; with the default 100, WordNet 3.0
  keeps 24 of 26 noun supersenses, dropping noun.Tops (51) and noun.motive (42), and 14 of 15 verb ones,
  dropping verb.weather (81)). round(test_fraction * n_c)
  synsets of each supersense go to test, drawn with the fixed SPLIT_SEED as an image folder's are; each split
  keeps offset order."""
  root = _wordnet_root(root)
  pos = _wordnet_pos(pos)
  if not 0 < test_fraction < 1:
    raise ValueError(f"test_fraction={test_fraction} is not valid; valid: a fraction strictly between 0 and 1")
  if isinstance(min_examples, bool) or not isinstance(min_examples, int) or min_examples < 1:
    raise ValueError(f"min_examples={min_examples!r} is not valid; valid: a positive integer")
  synsets = [synset for p in pos for synset in read_wordnet_synsets(root, p)]
  members = {}
  for index, synset in enumerate(synsets):
    members.setdefault(synset.supersense, []).append(index)
  dropped = {name: len(members.pop(name)) for name in sorted(members) if len(members[name]) < min_examples}
  if dropped:
    log.info(
      "WordNet %s: dropped %d supersenses with fewer than %d synsets: %s",
      "+".join(pos),
      len(dropped),
      min_examples,
      ", ".join(f"{name} ({count})" for name, count in dropped.items()),
    )
  class_names = sorted(members)
  if len(class_names) < 2:
    raise ValueError(
      f"WordNet {'+'.join(pos)}: {len(class_names)} supersense(s) with at least min_examples={min_examples} "
      "synsets, nothing to classify; valid: a lower min_examples"
    )
  train, test = split_per_class({name: members[name] for name in class_names}, test_fraction)
  untrained = [name for name in class_names if not train[name]]
  if untrained:
    raise ValueError(
      f"WordNet supersense {untrained[0]!r} has no training synset once test_fraction={test_fraction} of its "
      f"{len(test[untrained[0]])} are held out; valid: a lower test_fraction or a higher min_examples"
    )
  labels = np.full(len(synsets), -1, np.int32)
  for label, name in enumerate(class_names):
    labels[members[name]] = label
  text = (lambda gloss: gloss) if with_examples else gloss_definition
  source = TextSource(text_array([[text(synset.gloss)] for synset in synsets], 1), labels, class_names)
  return Splits(
    *(source.take(np.sort([i for indices in split.values() for i in indices]).astype(int)) for split in (train, test))
  )


def _missing_column(path: str, number: int, columns: Sequence[str], present) -> None:
  """A one-line error naming the file and line if a record lacks one of `columns`."""
  missing = [column for column in columns if column not in present]
  if missing:
    raise ValueError(f"{path}:{number}: no column {missing[0]!r}; columns: {', '.join(map(str, present))}")


def _delimited_records(
  path: str, columns: Sequence[str], delimiter: str, quoting: int
) -> Iterator[tuple[int, dict[str, str]]]:
  """(line number, {column: field}) per row of a delimited file whose first row names the columns, blank lines
  skipped; one-line errors for an empty file, a header without one of `columns`, a row with another number of
  fields than the header."""
  with open(path, encoding="utf-8-sig", newline="") as f:
    reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
    header = next(reader, None)
    if not header:
      raise ValueError(f"{path} is empty; valid: a header row naming the columns, then one example per row")
    _missing_column(path, reader.line_num, columns, header)
    for row in reader:
      if not row:
        continue
      if len(row) != len(header):
        raise ValueError(
          f"{path}:{reader.line_num}: {len(row)} fields where the header has {len(header)}; valid: one field per "
          f"column ({', '.join(header)})"
        )
      yield reader.line_num, dict(zip(header, row))


def _jsonl_records(path: str, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, Any]]]:
  """(line number, object) per non-blank line of a JSON Lines file; one-line errors for a line that is no JSON
  object or lacks one of `columns`."""
  with open(path, encoding="utf-8-sig") as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
      except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{number}: not JSON ({e.msg}); valid: one JSON object per line") from None
      if not isinstance(record, dict):
        raise ValueError(f"{path}:{number}: a JSON {type(record).__name__}, not an object; valid: one object per line")
      _missing_column(path, number, columns, record)
      yield number, record


def _records(path: str, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, Any]]]:
  """(line number, record) per example of a .tsv (GLUE-style: tab-separated, quoting off, so '"' is text),
  .csv (comma-separated, '"' quotes a field) or .jsonl file (one object per line); every record has `columns`."""
  suffix = os.path.splitext(path)[1].lower()
  if suffix not in TEXT_FILE_SUFFIXES:
    raise ValueError(f"text file {path} has an unknown suffix {suffix!r}; valid: {', '.join(TEXT_FILE_SUFFIXES)}")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"text file {path} not found")
  if suffix == ".jsonl":
    return _jsonl_records(path, columns)
  if suffix == ".tsv":
    return _delimited_records(path, columns, "\t", csv.QUOTE_NONE)
  return _delimited_records(path, columns, ",", csv.QUOTE_MINIMAL)


def read_text_file(
  path: str, text_columns: Sequence[str], label_column: str
) -> tuple[list[list[str]], list[tuple[int, Any]]]:
  """([the text_columns of each example], [(line number, raw label)]) of a labelled .tsv, .csv or .jsonl
  file (`_records`); one-line errors naming the file (and line) for a missing column, a short row, a text that
  is no string, a file without examples."""
  texts, labels = [], []
  for number, record in _records(path, (*text_columns, label_column)):
    row = [record[column] for column in text_columns]
    not_text = [column for column, value in zip(text_columns, row) if not isinstance(value, str)]
    if not_text:
      raise ValueError(f"{path}:{number}: column {not_text[0]!r} holds {record[not_text[0]]!r}, not a string")
    texts.append(row)
    labels.append((number, record[label_column]))
  if not texts:
    raise ValueError(f"{path} holds no examples; valid: a header row naming the columns, then one example per row")
  return texts, labels


def _integer(label: Any) -> int | None:
  """A raw label as an integer (a JSON int, or a string of digits with an optional '-'), else None."""
  if isinstance(label, int) and not isinstance(label, bool):
    return label
  if isinstance(label, str) and _INTEGER.fullmatch(label.strip()):
    return int(label)
  return None


def _class_names(path: str, labels: list[tuple[int, Any]]) -> list[str]:
  """The classes of a training file's raw labels: '0'..str(max) when every label is an integer, otherwise the
  sorted distinct (stripped) strings; a one-line error naming the line of a label that can be neither."""
  integers = [_integer(label) for _, label in labels]
  if None not in integers:
    for (number, label), integer in zip(labels, integers):
      if integer < 0:
        raise ValueError(f"{path}:{number}: label {label!r} is not valid; valid: a class id 0, 1, ... or a class name")
    return [str(c) for c in range(max(integers) + 1)]
  for number, label in labels:
    if not isinstance(label, str) or not label.strip():
      raise ValueError(
        f"{path}:{number}: label {label!r} is not valid; valid: class names (non-empty strings) on every line, "
        "or class ids 0, 1, ... on every line"
      )
  return sorted({label.strip() for _, label in labels})


def _label_ids(path: str, labels: list[tuple[int, Any]], class_names: list[str]) -> np.ndarray:
  """int32 class ids [n] of raw labels (an integer label is its own id when class_names are '0'..'K-1');
  a one-line error naming the file and line of a label that names no class."""
  by_integer = class_names == [str(c) for c in range(len(class_names))]
  ids = {i if by_integer else name: i for i, name in enumerate(class_names)}
  found = []
  for number, label in labels:
    key = _integer(label) if by_integer else label.strip() if isinstance(label, str) else None
    if key not in ids:
      valid = f"an integer 0..{len(class_names) - 1}" if by_integer else f"one of {', '.join(class_names)}"
      raise ValueError(f"{path}:{number}: label {label!r} is not valid; valid: {valid} (the training file's classes)")
    found.append(ids[key])
  return np.asarray(found, np.int32)


def load_text_files(
  train: str,
  test: str | None = None,
  validation: str | None = None,
  *,
  text_columns: Sequence[str] = ("sentence",),
  label_column: str = "label",
) -> dict[str, TextSource]:
  """{'train', then 'validation' and 'test' where given: TextSource} of labelled text files, read by suffix:
  .tsv (GLUE-style: a header row, tab-separated, quoting off), .csv (a header row, '"' quoting) or .jsonl (one
  JSON object per line). text_columns: one column (texts [n]) or two (sentence pairs, texts [n, 2]);
  label_column: integer labels (class names '0'..str(max over train)) or strings (class names the training
  file's distinct labels, sorted). Examples keep file order. One-line errors name the file and line of a
  missing column, a short row, a label that is no training class, and a file without examples."""
  text_columns = (text_columns,) if isinstance(text_columns, str) else tuple(text_columns)
  if len(text_columns) not in (1, 2) or label_column in text_columns:
    raise ValueError(
      f"text_columns={text_columns!r}, label_column={label_column!r} are not valid; valid: one text column or two "
      "(sentence pairs), none of them the label column"
    )
  paths = {name: path for name, path in (("train", train), ("validation", validation), ("test", test)) if path}
  read = {name: read_text_file(path, text_columns, label_column) for name, path in paths.items()}
  class_names = _class_names(train, read["train"][1])
  return {
    name: TextSource(text_array(texts, len(text_columns)), _label_ids(paths[name], labels, class_names), class_names)
    for name, (texts, labels) in read.items()
  }


def text_folder_files(data_dir: str | None, splits: Sequence[str] = ("train", "test")) -> list[str]:
  """The file of each split in `data_dir`: data_dir/SPLIT.tsv, .csv or .jsonl, whichever exists; a one-line error
  for a missing folder, a split without a file, or a split with several."""
  valid = f"a folder holding SPLIT.tsv, SPLIT.csv or SPLIT.jsonl for each split ({', '.join(splits)})"
  if not data_dir:
    raise ValueError(f"dataset 'text_files' needs data_dir: {valid}")
  if not os.path.isdir(data_dir):
    raise FileNotFoundError(f"text folder data_dir={data_dir!r} does not exist; valid: {valid}")
  paths = []
  for split in splits:
    names = [split + suffix for suffix in TEXT_FILE_SUFFIXES]
    found = [name for name in names if os.path.isfile(os.path.join(data_dir, name))]
    if not found:
      raise FileNotFoundError(f"text folder {data_dir!r} has no file of split {split!r}; valid: {' or '.join(names)}")
    if len(found) > 1:
      raise ValueError(f"text folder {data_dir!r} has {' and '.join(found)} for split {split!r}; valid: one of them")
    paths.append(os.path.join(data_dir, found[0]))
  return paths


def load_text_folder(
  data_dir: str | None,
  splits: Sequence[str] = ("train", "test"),
  text_columns: Sequence[str] = ("sentence",),
  label_column: str = "label",
) -> Splits | SplitsWithValidation:
  """Splits(train, test[, validation]) of the labelled text files data_dir/SPLIT.tsv, .csv or .jsonl
  (`text_folder_files`), `splits` naming the files' stems (GLUE: ('train', 'dev'), its test files having no
  labels), read by `load_text_files` with `text_columns` and `label_column`."""
  if len(splits) not in (2, 3):
    raise ValueError(
      f"splits={tuple(splits)!r} is not valid; valid: two file stems (train, test), e.g. ('train', 'dev'), or "
      "three (train, test, validation)"
    )
  train, test, *validation = text_folder_files(data_dir, splits)
  loaded = load_text_files(train, test, *validation, text_columns=text_columns, label_column=label_column)
  return splits_of(*(loaded[name] for name in ("train", "test", "validation") if name in loaded))
