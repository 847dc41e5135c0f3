"""ftjax.data.text_sources: WordNet supersense glosses and labelled TSV/CSV/JSONL files as TextSources.

References are independent of the loaders: glosses, definitions and labels written here by hand for
hand-written wndb(5) lines; on the installed WordNet (Debian's `wordnet-base`), supersense counts taken
from the data files' lex_filenum fields directly, the lexicographer file names of the lexnames(5) manual
page, and synsets found through the index files and byte offsets."""

import collections
import gzip
import json
import logging
import os
import re

import numpy as np
import pytest

from ftjax import data
from ftjax.data import text_sources
from ftjax.data.text_sources import TextSource, WordnetSynset

WORDNET = "/usr/share/wordnet"
LEXNAMES_MANUAL = "/usr/share/man/man5/lexnames.5WN.gz"
needs_wordnet = pytest.mark.skipif(
  not os.path.isfile(os.path.join(WORDNET, "data.noun")),
  reason="WordNet 3.0 is not installed at /usr/share/wordnet (Debian package `wordnet-base`)",
)

LICENSE_HEADER = (
  "  1 This software and database is being provided to you, the LICENSEE, by  \n"
  "  2 Princeton University under the following license.  By obtaining, using  \n"
  "  3   \n"
)
# Hand-written lines in wndb(5) format (pointers and verb frames included), not in offset order.
NOUN_LINES = (
  "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 ~ 00002137 n 0000 ~ 04424418 n 0000 | that which is perceived "
  "or known or inferred to have its own distinct existence (living or nonliving)  \n"
  "00292507 04 n 01 stride 0 001 @ 00291873 n 0000 | significant progress (especially in the phrase "
  '"make strides"); "they made big strides in productivity"  \n'
  "02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 002 @ 02083346 n 0000 ~ 01322604 n 0000 | a member "
  'of the genus Canis; occurs in many breeds; "the dog barked all night"  \n'
  "02121620 05 n 02 cat 0 true_cat 0 001 @ 02120997 n 0000 | feline mammal usually having thick soft fur and no "
  'ability to roar: "domestic cats"; "wildcats"  \n'
  "03001627 06 n 01 chair 0 001 @ 04161981 n 0000 | a seat for one person, with a support for the back  \n"
  '02958343 06 n 02 car 0 auto 0 001 @ 03791235 n 0000 | a motor vehicle with four wheels, "he needs a car to '
  'get to work"  \n'
)
VERB_LINES = (
  "01835496 38 v 02 travel 0 go 0 001 @ 01831531 v 0000 01 + 01 00 | change location; move, travel, or proceed, "
  'also metaphorically; "How fast does your new car go?"  \n'
  "01926329 38 v 01 run 0 001 @ 01904930 v 0000 02 + 01 00 + 02 00 | move fast by using one's feet; "
  "\"Don't run--you'll be out of breath\"  \n"
  '01168486 34 v 01 eat 0 000 01 + 08 00 | take in solid food; "She was eating a banana"  \n'
)
# (pos, offset, supersense, definition, gloss) of each line above, in offset order, written by hand.
EXPECTED = (
  ("noun", 1740, "noun.Tops", "that which is perceived or known or inferred to have its own distinct existence "
   "(living or nonliving)", None),
  ("noun", 292507, "noun.act", 'significant progress (especially in the phrase "make strides")',
   'significant progress (especially in the phrase "make strides"); "they made big strides in productivity"'),
  ("noun", 2084071, "noun.animal", "a member of the genus Canis; occurs in many breeds",
   'a member of the genus Canis; occurs in many breeds; "the dog barked all night"'),
  ("noun", 2121620, "noun.animal", "feline mammal usually having thick soft fur and no ability to roar",
   'feline mammal usually having thick soft fur and no ability to roar: "domestic cats"; "wildcats"'),
  ("noun", 2958343, "noun.artifact", "a motor vehicle with four wheels",
   'a motor vehicle with four wheels, "he needs a car to get to work"'),
  ("noun", 3001627, "noun.artifact", "a seat for one person, with a support for the back", None),
  ("verb", 1168486, "verb.consumption", "take in solid food", 'take in solid food; "She was eating a banana"'),
  ("verb", 1835496, "verb.motion", "change location; move, travel, or proceed, also metaphorically",
   'change location; move, travel, or proceed, also metaphorically; "How fast does your new car go?"'),
  ("verb", 1926329, "verb.motion", "move fast by using one's feet",
   "move fast by using one's feet; \"Don't run--you'll be out of breath\""),
)  # fmt: skip


def one_line_error(excinfo, *fragments):
  message = str(excinfo.value)
  assert "\n" not in message, message
  for fragment in fragments:
    assert fragment in message, (fragment, message)


@pytest.fixture
def wordnet_dir(tmp_path):
  """A WordNet folder holding the hand-written data.noun and data.verb (no lexnames file)."""
  (tmp_path / "data.noun").write_text(LICENSE_HEADER + NOUN_LINES)
  (tmp_path / "data.verb").write_text(LICENSE_HEADER + VERB_LINES)
  return str(tmp_path)


def generated_wordnet(root, class_sizes):
  """data.noun with class_sizes[lex_filenum] synsets per lexicographer file, interleaved; synset k (offset
  100 + k) has the gloss 'synset k'."""
  numbers = [number for number, size in class_sizes.items() for _ in range(size)]
  order = np.random.default_rng(5).permutation(len(numbers))
  lines = [f"{100 + k:08d} {numbers[i]:02d} n 01 w{k} 0 000 | synset {k}  \n" for k, i in enumerate(order)]
  (root / "data.noun").write_text(LICENSE_HEADER + "".join(lines))
  return {f"synset {k}": text_sources.WORDNET_LEXNAMES[numbers[i]] for k, i in enumerate(order)}


def test_synsets_of_hand_written_data_lines(wordnet_dir):
  for pos in ("noun", "verb"):
    expected = [
      WordnetSynset(p, offset, supersense, gloss or definition)
      for p, offset, supersense, definition, gloss in EXPECTED
      if p == pos
    ]
    assert text_sources.read_wordnet_synsets(wordnet_dir, pos) == expected


def test_gloss_definition_drops_the_quoted_examples_only():
  for _, _, _, definition, gloss in EXPECTED:
    assert text_sources.gloss_definition(gloss or definition) == definition


def test_supersense_texts_labels_and_order_of_hand_written_lines(wordnet_dir):
  for with_examples in (False, True):
    splits = text_sources.load_wordnet_supersenses(
      wordnet_dir, ("noun", "verb"), test_fraction=0.5, min_examples=1, with_examples=with_examples
    )
    names = ["noun.Tops", "noun.act", "noun.animal", "noun.artifact", "verb.consumption", "verb.motion"]
    assert splits.train.class_names == splits.test.class_names == names
    expected = [
      (gloss or definition if with_examples else definition, name) for _, _, name, definition, gloss in EXPECTED
    ]
    found = {}
    for split in splits:
      assert isinstance(split, TextSource) and split.texts.shape == (len(split),) and split.labels.dtype == np.int32
      rows = [(text, names[label]) for text, label in zip(split.texts_at(np.arange(len(split))), split.labels)]
      positions = [expected.index(row) for row in rows]
      assert positions == sorted(positions)  # nouns then verbs, each in offset order
      found.update(zip(positions, rows))
    assert [found[i] for i in range(len(expected))] == expected
    # round(0.5 * n) of each class held out: 1 of each pair, none of a single synset (round half to even)
    np.testing.assert_array_equal(np.bincount(splits.test.labels, minlength=6), [0, 0, 1, 1, 0, 1])


def test_supersense_split_is_stratified_disjoint_ordered_and_deterministic(tmp_path):
  sizes = {5: 30, 6: 17, 18: 9, 29: 44}
  supersense_of = generated_wordnet(tmp_path, sizes)
  splits = text_sources.load_wordnet_supersenses(str(tmp_path), "noun", test_fraction=0.3, min_examples=1)
  again = text_sources.load_wordnet_supersenses(str(tmp_path), "noun", test_fraction=0.3, min_examples=1)
  names = sorted(text_sources.WORDNET_LEXNAMES[n] for n in sizes)
  offsets = {}
  for split, repeat in zip(splits, again):
    np.testing.assert_array_equal(split.texts, repeat.texts)
    np.testing.assert_array_equal(split.labels, repeat.labels)
    assert [names[label] for label in split.labels] == [supersense_of[text] for text in split.texts]
    offsets[split] = np.array([int(text.split()[1]) for text in split.texts])
    assert np.all(np.diff(offsets[split]) > 0)
  np.testing.assert_array_equal(np.sort(np.concatenate(list(offsets.values()))), np.arange(sum(sizes.values())))
  expected_test = [round(0.3 * sizes[text_sources.WORDNET_LEXNAMES.index(name)]) for name in names]
  np.testing.assert_array_equal(np.bincount(splits.test.labels, minlength=len(names)), expected_test)


def test_supersenses_with_fewer_than_min_examples_are_dropped_and_logged(tmp_path, caplog):
  generated_wordnet(tmp_path, {5: 12, 6: 3, 18: 10, 16: 2})
  with caplog.at_level(logging.INFO, logger="ftjax.data.text_sources"):
    splits = text_sources.load_wordnet_supersenses(str(tmp_path), "noun", min_examples=10)
  assert splits.train.class_names == ["noun.animal", "noun.person"]
  assert len(splits.train) + len(splits.test) == 22
  assert "dropped 2 supersenses with fewer than 10 synsets: noun.artifact (3), noun.motive (2)" in caplog.text


def test_lexnames_file_of_the_database_names_the_supersenses(wordnet_dir):
  lexnames = "".join(f"{n:02d}\t{name}\t1\n" for n, name in enumerate(text_sources.WORDNET_LEXNAMES))
  with open(os.path.join(wordnet_dir, "lexnames"), "w") as f:
    f.write(lexnames.replace("noun.animal", "noun.beast"))
  assert [s.supersense for s in text_sources.read_wordnet_synsets(wordnet_dir, "noun")] == [
    "noun.Tops", "noun.act", "noun.beast", "noun.beast", "noun.artifact", "noun.artifact"
  ]  # fmt: skip


@pytest.mark.skipif(not os.path.isfile(LEXNAMES_MANUAL), reason="lexnames(5) manual page of `wordnet-base` absent")
def test_built_in_lexnames_are_those_of_the_lexnames_manual_page():
  with gzip.open(LEXNAMES_MANUAL, "rt") as f:
    table = re.findall(r"^(\d\d)\t(\S+)\s*\t", f.read(), re.M)
  assert [int(number) for number, _ in table] == list(range(45))
  assert tuple(name for _, name in table) == text_sources.WORDNET_LEXNAMES


def test_text_source_takes_rows_like_an_array_source():
  texts = np.empty((4, 2), object)
  texts[:] = [["a", "b"], ["c", "d"], ["e", "f"], ["g", "h"]]
  source = TextSource(texts, np.array([0, 1, 1, 0], np.int32), ["no", "yes"])
  assert len(source) == 4 and source.num_classes == 2
  np.testing.assert_array_equal(source.texts_at(np.array([2, 0])), [["e", "f"], ["a", "b"]])
  subset = source.take(np.array([3, 1]))
  np.testing.assert_array_equal(subset.texts_at(np.arange(2)), [["g", "h"], ["c", "d"]])
  np.testing.assert_array_equal(subset.labels, [0, 1])


def test_a_registered_wordnet_dataset_loads_with_examples_per_class(tmp_path, monkeypatch):
  generated_wordnet(tmp_path, {5: 12, 6: 15, 18: 10})
  loader = data.DatasetLoader(
    lambda request: text_sources.load_wordnet_supersenses(request.data_dir, "noun", request.test_fraction, 1),
    lambda request: text_sources.check_wordnet(request.data_dir, "noun"),
  )
  monkeypatch.setitem(data.DATASETS, "tiny_wordnet", loader)
  data.check_dataset("tiny_wordnet", str(tmp_path))
  splits = data.load_dataset("tiny_wordnet", str(tmp_path), examples_per_class=4, seed=3)
  np.testing.assert_array_equal(np.bincount(splits.train.labels), [4, 4, 4])
  assert len(splits.test) == round(0.2 * 12) + round(0.2 * 15) + round(0.2 * 10)


@pytest.mark.parametrize(
  "call, fragments",
  [
    (lambda root: text_sources.load_wordnet_supersenses(root + "/absent"), ["/absent", "wordnet-base"]),
    (lambda root: text_sources.check_wordnet(root, ("noun", "adv")), ["data.adv", "wordnet-base"]),
    (lambda root: text_sources.load_wordnet_supersenses(root, ("noun", "nouns")), ["'nouns'", "noun, verb, adj"]),
    (lambda root: text_sources.load_wordnet_supersenses(root, test_fraction=1.0), ["test_fraction=1.0"]),
    (lambda root: text_sources.load_wordnet_supersenses(root, min_examples=0), ["min_examples=0"]),
    (lambda root: text_sources.load_wordnet_supersenses(root, min_examples=3), ["nothing to classify"]),
    (
      lambda root: text_sources.load_wordnet_supersenses(root, "verb", test_fraction=0.9, min_examples=1),
      ["'verb.consumption' has no training synset", "test_fraction=0.9"],
    ),
  ],
)
def test_wordnet_errors_are_one_line(wordnet_dir, call, fragments):
  with pytest.raises(ValueError) as excinfo:
    call(wordnet_dir)
  one_line_error(excinfo, *fragments)


def test_a_malformed_data_line_names_its_file_and_line(wordnet_dir):
  with open(os.path.join(wordnet_dir, "data.noun"), "a") as f:
    f.write("03001627 06 n 01 stool 0 000 a seat without a gloss separator\n")
  with pytest.raises(ValueError) as excinfo:
    text_sources.read_wordnet_synsets(wordnet_dir, "noun")
  one_line_error(excinfo, "data.noun:10:", "not a WordNet data line")


@pytest.fixture(scope="module")
def installed_wordnet():
  """{pos: (Splits with every supersense kept, {supersense: synsets counted from lex_filenum fields})}."""
  found = {}
  for pos in ("noun", "verb"):
    with open(os.path.join(WORDNET, f"data.{pos}")) as f:
      numbers = collections.Counter(line.split(" ")[1] for line in f if not line.startswith("  "))
    counts = {text_sources.WORDNET_LEXNAMES[int(number)]: count for number, count in numbers.items()}
    found[pos] = text_sources.load_wordnet_supersenses(WORDNET, pos, min_examples=1, with_examples=True), counts
  return found


@needs_wordnet
@pytest.mark.parametrize("pos, num_supersenses", [("noun", 26), ("verb", 15)])
def test_installed_wordnet_counts_per_supersense_match_its_lex_filenum_fields(installed_wordnet, pos, num_supersenses):
  splits, counts = installed_wordnet[pos]
  assert splits.train.class_names == sorted(counts) and len(counts) == num_supersenses
  per_class = np.bincount(splits.train.labels) + np.bincount(splits.test.labels)
  assert dict(zip(splits.train.class_names, per_class.tolist())) == counts
  np.testing.assert_array_equal(np.bincount(splits.test.labels), [round(0.2 * counts[c]) for c in sorted(counts)])
  kept = text_sources.load_wordnet_supersenses(WORDNET, pos).train.class_names
  assert kept == sorted(name for name, count in counts.items() if count >= 100)


@needs_wordnet
@pytest.mark.parametrize(
  "lemma, pos, supersense",
  [("dog", "noun", "noun.animal"), ("car", "noun", "noun.artifact"), ("run", "verb", "verb.motion"),
   ("eat", "verb", "verb.consumption")],
)  # fmt: skip
def test_installed_wordnet_first_senses_have_their_known_supersenses(installed_wordnet, lemma, pos, supersense):
  with open(os.path.join(WORDNET, f"index.{pos}")) as f:
    fields = next(line.split() for line in f if line.startswith(f"{lemma} {pos[0]} "))
  first_offset = int(fields[4 + int(fields[3]) + 2])  # lemma pos synset_cnt p_cnt [ptr]*p_cnt sense_cnt tagsense_cnt
  with open(os.path.join(WORDNET, f"data.{pos}"), "rb") as f:
    f.seek(first_offset)
    gloss = f.readline().decode().split(" | ")[1].strip()
  splits, _ = installed_wordnet[pos]
  labels = [
    split.class_names[label] for split in splits for text, label in zip(split.texts, split.labels) if text == gloss
  ]
  assert labels == [supersense]


GLUE_TSV = (
  "sentence\tlabel\n"
  "hide new secretions from the parental units \t0\n"
  "the \" quote stays , and so does 'this' \t1\n"
  '"starts with an unmatched quote\t1\n'
)


def write(path, text):
  path.write_text(text, encoding="utf-8")
  return str(path)


def test_glue_tsv_keeps_quotes_as_text_and_integer_labels(tmp_path):
  train = write(tmp_path / "train.tsv", GLUE_TSV)
  dev = write(tmp_path / "dev.tsv", 'sentence\tlabel\na "dev" sentence\t1\n\nanother one\t0\n')
  splits = text_sources.load_text_files(train, test=dev)
  assert list(splits) == ["train", "test"]
  assert splits["train"].texts.tolist() == [
    "hide new secretions from the parental units ",
    "the \" quote stays , and so does 'this' ",
    '"starts with an unmatched quote',
  ]
  np.testing.assert_array_equal(splits["train"].labels, [0, 1, 1])
  assert splits["test"].texts.tolist() == ['a "dev" sentence', "another one"]
  np.testing.assert_array_equal(splits["test"].labels, [1, 0])
  assert splits["train"].class_names == splits["test"].class_names == ["0", "1"]


def test_csv_with_quoted_fields_and_string_labels_mapped_to_sorted_classes(tmp_path):
  train = write(
    tmp_path / "train.csv",
    'id,text,label\n1,"commas, and ""quotes""",positive\n2,"two\nlines",negative\n3,plain,neutral\n4,again,positive\n',
  )
  validation = write(tmp_path / "val.csv", "id,text,label\n7,fine,neutral\n8,bad,negative\n")
  splits = text_sources.load_text_files(train, validation=validation, text_columns="text")
  assert splits["train"].class_names == ["negative", "neutral", "positive"]
  assert splits["train"].texts.tolist() == ['commas, and "quotes"', "two\nlines", "plain", "again"]
  np.testing.assert_array_equal(splits["train"].labels, [2, 0, 1, 2])
  np.testing.assert_array_equal(splits["validation"].labels, [1, 0])


def test_jsonl_and_tsv_sentence_pairs(tmp_path):
  records = [
    {"sentence1": "A man sleeps.", "sentence2": "A person rests.", "label": "entailment", "idx": 0},
    {"sentence1": "A cat.", "sentence2": "No animal.", "label": "contradiction", "idx": 1},
  ]
  train = write(tmp_path / "train.jsonl", "\n".join(json.dumps(r) for r in records) + "\n\n")
  test = write(tmp_path / "test.tsv", "index\tsentence1\tsentence2\tlabel\n0\tx y\tz\tentailment\n")
  splits = text_sources.load_text_files(train, test, text_columns=("sentence1", "sentence2"))
  assert splits["train"].texts.shape == (2, 2)
  assert splits["train"].texts.tolist() == [["A man sleeps.", "A person rests."], ["A cat.", "No animal."]]
  assert splits["train"].class_names == ["contradiction", "entailment"]
  np.testing.assert_array_equal(splits["train"].labels, [1, 0])
  assert splits["test"].texts.tolist() == [["x y", "z"]] and splits["test"].labels.tolist() == [1]


def test_jsonl_integer_labels(tmp_path):
  train = write(tmp_path / "train.jsonl", '{"sentence": "a", "label": 2}\n{"sentence": "b", "label": 0}\n')
  splits = text_sources.load_text_files(train)
  assert splits["train"].class_names == ["0", "1", "2"] and splits["train"].labels.tolist() == [2, 0]


@pytest.mark.parametrize(
  "name, train, test, fragments",
  [
    ("train.tsv", "text\tlabel\na\t0\n", None, ["train.tsv:1:", "no column 'sentence'", "columns: text, label"]),
    ("train.tsv", "sentence\tlabel\na\t0\nb\n", None, ["train.tsv:3:", "1 fields where the header has 2"]),
    ("train.tsv", "sentence\tlabel\na\t0\nb\t1\t1\n", None, ["train.tsv:3:", "3 fields"]),
    ("train.tsv", "", None, ["train.tsv is empty"]),
    ("train.tsv", "sentence\tlabel\n", None, ["train.tsv holds no examples"]),
    ("train.tsv", "sentence\tlabel\na\t0\nb\t-1\n", None, ["train.tsv:3:", "label '-1'"]),
    ("train.csv", "sentence,label\na,pos\nb,\n", None, ["train.csv:3:", "label ''"]),
    ("train.csv", "sentence,label\na,pos\nb,neg\n", "sentence,label\nc,neutral\n", ["test.csv:2:", "'neutral'"]),
    ("train.csv", "sentence,label\na,0\nb,1\n", "sentence,label\nc,2\n", ["test.csv:2:", "0..1"]),
    ("train.jsonl", '{"sentence": "a", "label": 1.5}\n', None, ["train.jsonl:1:", "label 1.5"]),
    ("train.jsonl", '{"sentence": "a", "label": 1}\n\n{"sentence": "b"}\n', None, ["train.jsonl:3:", "'label'"]),
    ("train.jsonl", '{"sentence": "a", "label": 1}\n{"sentence": 3, "label": 0}\n', None, ["train.jsonl:2:", "3"]),
    ("train.jsonl", '{"sentence": "a", "label": 1}\nnot json\n', None, ["train.jsonl:2:", "not JSON"]),
    ("train.jsonl", "[1, 2]\n", None, ["train.jsonl:1:", "not an object"]),
    ("train.jsonl", "\n", None, ["train.jsonl holds no examples"]),
    ("train.txt", "sentence\tlabel\n", None, ["train.txt", "'.txt'", ".tsv, .csv, .jsonl"]),
  ],
)
def test_text_file_errors_name_the_file_and_line(tmp_path, name, train, test, fragments):
  test_path = write(tmp_path / f"test{os.path.splitext(name)[1]}", test) if test is not None else None
  with pytest.raises(ValueError) as excinfo:
    text_sources.load_text_files(write(tmp_path / name, train), test_path)
  one_line_error(excinfo, *fragments)


def test_missing_text_file_and_bad_columns_are_one_line_errors(tmp_path):
  with pytest.raises(FileNotFoundError) as excinfo:
    text_sources.load_text_files(str(tmp_path / "absent.tsv"))
  one_line_error(excinfo, "absent.tsv not found")
  train = write(tmp_path / "train.tsv", GLUE_TSV)
  for columns in (("a", "b", "c"), (), ("label",)):
    with pytest.raises(ValueError) as excinfo:
      text_sources.load_text_files(train, text_columns=columns)
    one_line_error(excinfo, "text_columns=", "one text column or two")


def test_tfds_text_dataset_in_glue_shape_loads_sentence_pairs_and_refuses_unlabelled_split(tmp_path):
  from tests import tiny_tfds

  tfds_dir = tiny_tfds.prepare_glue(str(tmp_path))
  name, pairs = "tfds:ftjax_tiny_glue/mrpc", ("sentence1", "sentence2")
  splits = data.load_dataset(name, tfds_dir, text_keys=pairs, splits=("train", "validation"))
  assert isinstance(splits.train, TextSource) and splits.train.texts.shape == (10, 2)
  # tfds stores examples in its own (hashed) order: example i is recognised by its number
  numbers = [int(first.split()[1]) for first, _ in splits.train.texts]
  assert sorted(numbers) == list(range(10))
  assert splits.train.texts.tolist() == [[f"first {i}", f"second {i} ü"] for i in numbers]
  np.testing.assert_array_equal(splits.train.labels, np.asarray(numbers) % 2)
  np.testing.assert_array_equal(splits.test.labels, [int(first.split()[1]) % 2 for first, _ in splits.test.texts])
  assert splits.train.class_names == ["not_equivalent", "equivalent"]
  single = data.load_dataset(name, tfds_dir, text_keys=("sentence2",), splits=("train", "validation[:2]"))
  assert single.train.texts.tolist() == [second for _, second in splits.train.texts]
  assert single.test.texts.tolist() == [second for _, second in splits.test.texts[:2]]
  assert type(splits) is data.Splits  # two splits named: no validation split of the dataset's own
  three = data.load_dataset(name, tfds_dir, text_keys=pairs, splits=("train[:6]", "train[6:]", "validation"))
  assert (len(three.train), len(three.test)) == (6, 4)
  assert three.validation.texts.tolist() == splits.test.texts.tolist()  # the dataset's validation split, whole
  np.testing.assert_array_equal(three.validation.labels, splits.test.labels)
  with pytest.raises(ValueError, match=r"split 'test' of tfds dataset 'ftjax_tiny_glue/mrpc' has unlabelled .*"):
    data.load_dataset(name, tfds_dir, text_keys=pairs, splits=("train", "test"))
  with pytest.raises(ValueError, match=r"no feature 'image' \(images\) nor 'sentence' \(texts\); features: sentence1,"):
    data.load_dataset(name, tfds_dir)


def test_tfds_text_dataset_is_tokenized_for_a_run_as_the_tokenizer_encodes_it(tmp_path):
  import tokenizers

  from experiments.configs import text
  from ftjax.train import experiment
  from tests import tiny_tfds
  from tests.fields import untrained_bert_tiny_config

  config = untrained_bert_tiny_config(
    data__name="tfds:ftjax_tiny_glue/mrpc",
    data__dir=tiny_tfds.prepare_glue(str(tmp_path)),
    data__text_columns=("sentence1", "sentence2"),
    data__splits=("train", "validation"),
  )
  splits, _, num_classes = experiment.load_splits(config)
  assert num_classes == 2 and len(splits.train) == 10 and len(splits.test) == 4
  encoded = tokenizers.Tokenizer.from_file(text.WORDNET_TOKENIZER).encode("first 3", "second 3 ü")
  row = splits.train.texts.tolist().index(["first 3", "second 3 ü"])
  np.testing.assert_array_equal(splits.train.tokens.token_ids[row][: len(encoded.ids)], encoded.ids)
  np.testing.assert_array_equal(splits.train.tokens.token_type_ids[row][: len(encoded.ids)], encoded.type_ids)
  assert splits.train.tokens.attention_mask[row].sum() == len(encoded.ids)
