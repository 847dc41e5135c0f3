"""Text batches from the data pipeline: token arrays against transformers' (tests/fixtures/text) and against
`tokenize` on the global batch's texts, order / padding / masks against the image pipeline's, process shards, the
disk cache of tokens, and the registered text datasets ('wordnet_nouns', 'wordnet_verbs', 'text_files')."""

import collections
import dataclasses
import logging
import os

import chex
import numpy as np
import pytest
import safetensors.numpy

from ftjax import data
from ftjax.data import text_preprocessing, text_sources, tokenization
from ftjax.models import text_encoder
from tests.fixtures.text_batches import BATCHES, MAX_LENGTH, TEXTS

TEXT_FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "text")
FAMILIES = ("bert", "roberta")
WORDNET = "/usr/share/wordnet"
needs_wordnet = pytest.mark.skipif(
  not os.path.isfile(os.path.join(WORDNET, "data.noun")),
  reason="WordNet 3.0 is not installed at /usr/share/wordnet (Debian package `wordnet-base`)",
)
WORDS = " ".join(TEXTS).split()


def one_line_error(excinfo, *fragments):
  message = str(excinfo.value)
  assert "\n" not in message, message
  for fragment in fragments:
    assert fragment in message, (fragment, message)


def text_preprocess(family: str, max_length: int = MAX_LENGTH, **kwargs) -> data.TextPreprocess:
  pad_id = text_encoder.ARCHITECTURES[f"{family}_tiny"].pad_token_id
  return data.TextPreprocess(os.path.join(TEXT_FIXTURES, f"{family}_tiny"), max_length, pad_id, **kwargs)


def text_array(rows) -> np.ndarray:
  """str objects [n] (rows of strings) or [n, 2] (rows of pairs)."""
  texts = np.empty((len(rows), 2) if isinstance(rows[0], tuple) else len(rows), object)
  texts[:] = rows
  return texts


def random_texts(num_examples: int, seed: int, pairs: bool = False, long_every: int = 1) -> np.ndarray:
  """Sentences of the fixture words: 1..3 words, and 1..40 words for every `long_every`-th example."""
  rng = np.random.default_rng(seed)

  def sentence(i):
    return " ".join(rng.choice(WORDS, rng.integers(1, 41 if i % long_every == 0 else 4)))

  return text_array([(sentence(i), sentence(i)) if pairs else sentence(i) for i in range(num_examples)])


def text_source(texts: np.ndarray, num_classes: int = 3) -> text_sources.TextSource:
  """Label i % num_classes, as tests/test_data.py's index_source."""
  labels = (np.arange(len(texts)) % num_classes).astype(np.int32)
  return text_sources.TextSource(texts, labels, [str(c) for c in range(num_classes)])


def expected_inputs(preprocess: data.TextPreprocess, texts: np.ndarray, rows: slice = slice(None)) -> dict:
  """`tokenize` on the global batch's `texts`, its `rows` kept (token types all zeros for single texts)."""
  tokenizer = tokenization.load_tokenizer(preprocess.tokenizer)
  pairs = list(texts[:, 1]) if texts.ndim == 2 else None
  first = list(texts[:, 0]) if texts.ndim == 2 else list(texts)
  tokens = tokenization.tokenize(tokenizer, first, pairs, max_length=preprocess.max_length, pad_id=preprocess.pad_id)
  return {key: getattr(tokens, key)[rows] for key in tokenization.TokenizedText._fields}


def inputs_of(batch: dict) -> dict:
  return {key: value for key, value in batch.items() if key not in ("label", "index", "mask")}


@pytest.mark.parametrize("family", FAMILIES)
def test_eval_batches_equal_transformers_token_arrays(family):
  reference = safetensors.numpy.load_file(os.path.join(TEXT_FIXTURES, "reference.safetensors"))
  single, short = BATCHES["single"][0], BATCHES["short"][0]
  preprocess = text_preprocess(family)
  source = text_source(text_array(single + short))  # two global batches of 6: single, then short and 3 pads
  for process_count in (1, 2):
    shards = [list(data.eval_batches(source, preprocess, 6, p, process_count)) for p in range(process_count)]
    batches = [{key: np.concatenate([shard[b][key] for shard in shards]) for key in shards[0][b]} for b in range(2)]
    assert set(batches[0]) == {"token_ids", "attention_mask", "token_type_ids", "label", "index", "mask"}
    assert not batches[0]["token_type_ids"].any()  # one segment: all zeros, as transformers gives single texts
    for key in ("token_ids", "attention_mask"):
      np.testing.assert_array_equal(batches[0][key], reference[f"{family}_single_{key}"], err_msg=key)
      np.testing.assert_array_equal(batches[1][key][:3], reference[f"{family}_short_{key}"], err_msg=key)
      assert batches[1][key].dtype == np.int32
    np.testing.assert_array_equal(batches[1]["mask"], [1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(batches[1]["index"], [6, 7, 8, 8, 8, 8])
  pairs = text_source(text_array(list(zip(*BATCHES["pair"]))))
  (batch,) = data.eval_batches(pairs, preprocess, 6, 0, 1)
  for key in tokenization.TokenizedText._fields:
    np.testing.assert_array_equal(batch[key], reference[f"{family}_pair_{key}"], err_msg=key)


@pytest.mark.parametrize("family, pairs", [("bert", False), ("bert", True), ("roberta", True)])
def test_train_and_eval_batches_equal_tokenize_on_the_global_batch_texts(family, pairs):
  texts = random_texts(45, seed=1, pairs=pairs, long_every=7)
  source = text_source(texts)
  preprocess = text_preprocess(family, max_length=64)
  global_batch_size, process_count = 8, 2
  lengths = set()
  for process_index in range(process_count):
    rows = slice(4 * process_index, 4 * process_index + 4)
    run = data.train_batches(
      source, preprocess, seed=2, global_batch_size=8, num_steps=12, process_index=process_index, process_count=2
    )
    for global_step, batch in run:
      epoch, step = divmod(global_step, data.steps_per_epoch(45, global_batch_size))
      indices = data.epoch_permutation(45, 2, epoch)[step * global_batch_size : (step + 1) * global_batch_size]
      chex.assert_trees_all_equal(inputs_of(batch), expected_inputs(preprocess, texts[indices], rows))
      np.testing.assert_array_equal(batch["index"], indices[rows])
      single = data.train_batch(
        source, preprocess, seed=2, epoch=epoch, step=step, global_batch_size=8, process_index=process_index,
        process_count=process_count,
      )  # fmt: skip
      chex.assert_trees_all_equal(single, batch)  # a source not yet tokenised: the global batch tokenised alone
      lengths.add(batch["token_ids"].shape[1])
    for start, batch in zip(range(0, 45, 8), data.eval_batches(source, preprocess, 8, process_index, process_count)):
      positions = np.minimum(np.arange(start, start + 8), 44)
      chex.assert_trees_all_equal(inputs_of(batch), expected_inputs(preprocess, texts[positions], rows))
  assert len(lengths) > 1  # the batches have several bucketed lengths


def test_order_padding_and_masks_match_the_image_pipeline():
  source = text_source(random_texts(21, seed=3))
  images = data.ArraySource(np.zeros((21, 2, 2, 1), np.uint8), source.labels, source.class_names)
  preprocess, plain = text_preprocess("bert"), data.Preprocess(channels=1)
  for process_index, process_count in ((0, 1), (0, 2), (1, 2)):
    kwargs = dict(seed=5, global_batch_size=4, num_steps=11, process_index=process_index, process_count=process_count)
    for (text_step, text), (image_step, image) in zip(
      data.train_batches(source, preprocess, **kwargs), data.train_batches(images, plain, **kwargs), strict=True
    ):
      assert text_step == image_step
      chex.assert_trees_all_equal({k: text[k] for k in ("label", "index")}, {k: image[k] for k in ("label", "index")})
    for text, image in zip(
      data.eval_batches(source, preprocess, 8, process_index, process_count),
      data.eval_batches(images, plain, 8, process_index, process_count),
      strict=True,
    ):
      keys = ("label", "index", "mask")
      chex.assert_trees_all_equal({k: text[k] for k in keys}, {k: image[k] for k in keys})


def test_process_shards_partition_the_global_batch_and_share_one_length():
  texts = random_texts(64, seed=4, long_every=16)  # few long texts: a shard often lacks the batch's longest
  source = text_source(texts)
  preprocess = text_preprocess("roberta", max_length=64)
  fitted = data.fitted_source(source, preprocess)
  local_lengths_differ = False
  for step in range(4):
    kwargs = dict(seed=0, epoch=1, step=step, global_batch_size=16)
    whole = data.train_batch(fitted, preprocess, process_index=0, process_count=1, **kwargs)
    longest = int(whole["attention_mask"].sum(axis=1).max())
    assert whole["token_ids"].shape == (16, tokenization.bucket_length(longest, 64))
    for process_count in (2, 4):
      shards = [data.train_batch(fitted, preprocess, process_index=p, process_count=process_count, **kwargs)
                for p in range(process_count)]  # fmt: skip
      chex.assert_trees_all_equal(whole, {key: np.concatenate([shard[key] for shard in shards]) for key in whole})
      local = {tokenization.bucket_length(int(shard["attention_mask"].sum(axis=1).max()), 64) for shard in shards}
      local_lengths_differ |= len(local) > 1
  assert local_lengths_differ  # the shared length is not each shard's own


def test_tokenized_source_is_fitted_once_takes_rows_and_relabels():
  source = text_source(random_texts(30, seed=6, pairs=True))
  preprocess = text_preprocess("bert")
  fitted = data.fitted_source(source, preprocess)
  assert isinstance(fitted, data.TokenizedSource) and isinstance(fitted, data.TextSource)
  assert data.fitted_source(fitted, preprocess) is fitted
  chex.assert_trees_all_equal(fitted.tokens._asdict(), expected_inputs(preprocess, source.texts))
  subset = fitted.take(np.array([7, 2, 19]))
  np.testing.assert_array_equal(subset.texts, source.texts[[7, 2, 19]])
  chex.assert_trees_all_equal(subset.tokens._asdict(), {k: v[[7, 2, 19]] for k, v in fitted.tokens._asdict().items()})
  relabelled = dataclasses.replace(fitted, labels=(fitted.labels + 1) % 3)
  batch = next(data.eval_batches(relabelled, preprocess, 8, 0, 1))
  np.testing.assert_array_equal(batch["label"], (np.arange(8) + 1) % 3)
  shorter = dataclasses.replace(preprocess, max_length=16)
  refitted = data.fitted_source(fitted, shorter)  # another preprocess tokenises the texts again
  chex.assert_trees_all_equal(refitted.tokens._asdict(), expected_inputs(shorter, source.texts))


def test_tokens_are_cached_on_disk_by_tokenizer_settings_and_texts(tmp_path, monkeypatch, caplog):
  source = text_source(random_texts(40, seed=7))
  cache = tmp_path / "cache"
  preprocess = text_preprocess("bert", cache_dir=str(cache))
  reference = text_preprocess("bert").fit_source(source).tokens
  chex.assert_trees_all_equal(preprocess.fit_source(source).tokens, reference)
  (stored,) = cache.iterdir()

  def no_tokenizing(*args, **kwargs):
    raise AssertionError("tokenized although cached")

  with monkeypatch.context() as patch:
    patch.setattr(text_preprocessing, "tokenize", no_tokenizing)
    chex.assert_trees_all_equal(text_preprocess("bert", cache_dir=str(cache)).fit_source(source).tokens, reference)
  preprocess.fit_source(source.take(np.arange(39)))
  dataclasses.replace(preprocess, max_length=16).fit_source(source)
  dataclasses.replace(preprocess, pad_id=1).fit_source(source)
  text_preprocess("roberta", cache_dir=str(cache)).fit_source(source)
  assert len(list(cache.iterdir())) == 5  # one file per (tokenizer, max_length, pad_id, texts)
  stored.write_bytes(stored.read_bytes()[:100])
  with caplog.at_level(logging.WARNING, logger="ftjax.data.text_preprocessing"):
    chex.assert_trees_all_equal(preprocess.fit_source(source).tokens, reference)
  assert "cannot be read" in caplog.text
  with monkeypatch.context() as patch:
    patch.setattr(text_preprocessing, "tokenize", no_tokenizing)
    chex.assert_trees_all_equal(preprocess.fit_source(source).tokens, reference)  # rewritten whole
  (tmp_path / "a_file").write_text("")
  with caplog.at_level(logging.WARNING, logger="ftjax.data.text_preprocessing"):
    unwritable = text_preprocess("bert", cache_dir=str(tmp_path / "a_file"))
    chex.assert_trees_all_equal(unwritable.fit_source(source).tokens, reference)
  assert "cannot be written" in caplog.text


def test_text_preprocess_errors_are_one_line(tmp_path):
  for kwargs, fragment in ((dict(max_length=0), "max_length=0"), (dict(pad_id=-1), "pad_id=-1")):
    with pytest.raises(ValueError) as excinfo:
      data.TextPreprocess(**{"tokenizer": "t.json", "max_length": 8, "pad_id": 0, **kwargs})
    one_line_error(excinfo, fragment, "valid")
  images = data.ArraySource(np.zeros((4, 2, 2, 1), np.uint8), np.zeros(4, np.int32), ["a"])
  with pytest.raises(ValueError) as excinfo:
    data.fitted_source(images, text_preprocess("bert"))
  one_line_error(excinfo, "ArraySource", "TextSource")
  for cache_dir in (None, str(tmp_path)):
    missing = data.TextPreprocess(str(tmp_path / "tokenizer.json"), 8, 0, cache_dir)
    with pytest.raises(ValueError) as excinfo:
      data.fitted_source(text_source(random_texts(4, seed=0)), missing)
    one_line_error(excinfo, "tokenizer.json", "does not exist")


def write_lines(path, lines):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(line + "\n" for line in lines))


def test_text_files_dataset_reads_a_folder_of_split_files(tmp_path):
  write_lines(tmp_path / "train.tsv", ["sentence1\tsentence2\tlabel", 'A "fox".\tThe dog.\t1', "Loss\tLabels.\t0"])
  write_lines(tmp_path / "dev.tsv", ["sentence1\tsentence2\tlabel", "Pairs\tagain\t0"])
  write_lines(tmp_path / "test.tsv", ["sentence1\tsentence2", "no\tlabels"])  # GLUE's test files are unlabelled
  kwargs = dict(splits=("train", "dev"), text_keys=("sentence1", "sentence2"))
  data.check_dataset("text_files", str(tmp_path), splits=("train", "dev"))
  splits = data.load_dataset("text_files", str(tmp_path), **kwargs)
  assert isinstance(splits.train, data.TextSource) and splits.train.class_names == ["0", "1"]
  np.testing.assert_array_equal(splits.train.texts, [['A "fox".', "The dog."], ["Loss", "Labels."]])
  np.testing.assert_array_equal(splits.train.labels, [1, 0])
  np.testing.assert_array_equal(splits.test.texts, [["Pairs", "again"]])
  np.testing.assert_array_equal(splits.test.labels, [0])
  write_lines(tmp_path / "sst" / "train.jsonl", ['{"text": "good", "label": "pos"}', '{"text": "bad", "label": "neg"}'])
  write_lines(tmp_path / "sst" / "test.csv", ["text,label", '"fine, really",pos'])
  sst = data.load_dataset("text_files", str(tmp_path / "sst"), text_keys=("text",))
  np.testing.assert_array_equal(sst.train.texts, ["good", "bad"])
  np.testing.assert_array_equal(sst.test.texts, ["fine, really"])
  np.testing.assert_array_equal(sst.test.labels, [1])  # classes sorted: neg, pos


def test_text_files_errors_are_one_line(tmp_path):
  write_lines(tmp_path / "train.tsv", ["sentence\tlabel", "a\t0", "b\t1"])
  write_lines(tmp_path / "dev.tsv", ["sentence\tlabel", "c\t0"])
  write_lines(tmp_path / "both" / "train.tsv", ["sentence\tlabel", "a\t0"])
  write_lines(tmp_path / "both" / "train.csv", ["sentence,label", "a,0"])
  cases = [
    (lambda: data.check_dataset("text_files"), ["needs data_dir", "SPLIT.tsv"]),
    (lambda: data.check_dataset("text_files", str(tmp_path / "absent")), ["absent", "does not exist"]),
    (lambda: data.check_dataset("text_files", str(tmp_path)), ["split 'test'", "test.tsv or test.csv or test.jsonl"]),
    (
      lambda: data.check_dataset("text_files", str(tmp_path / "both"), splits=("train", "dev")),
      ["train.tsv and train.csv", "split 'train'"],
    ),
    (lambda: data.load_dataset("text_files", str(tmp_path), splits=("dev",) * 4), ["(train, test, validation)"]),
    (
      lambda: data.load_dataset("text_files", str(tmp_path), splits=("dev", "train"), text_keys=("text",)),
      ["dev.tsv", "no column 'text'"],
    ),
  ]
  for call, fragments in cases:
    with pytest.raises((ValueError, FileNotFoundError)) as excinfo:
      call()
    one_line_error(excinfo, *fragments)


def test_wordnet_datasets_without_the_database_name_its_package(tmp_path):
  for name in ("wordnet_nouns", "wordnet_verbs"):
    for call in (data.check_dataset, data.load_dataset):
      with pytest.raises(ValueError) as excinfo:
        call(name, str(tmp_path / "absent"))
      one_line_error(excinfo, "absent", "wordnet-base")


@needs_wordnet
@pytest.mark.parametrize("name, pos", [("wordnet_nouns", "noun"), ("wordnet_verbs", "verb")])
def test_registered_wordnet_datasets_load_by_name_and_batch(name, pos):
  data.check_dataset(name)
  splits = data.load_dataset(name)
  with open(os.path.join(WORDNET, f"data.{pos}"), encoding="utf-8") as f:
    counts = collections.Counter(int(line.split()[1]) for line in f if not line.startswith("  "))
  kept = {text_sources.WORDNET_LEXNAMES[number]: count for number, count in counts.items() if count >= 100}
  assert splits.train.class_names == splits.test.class_names == sorted(kept)
  labels = np.concatenate([splits.train.labels, splits.test.labels])
  np.testing.assert_array_equal(np.bincount(labels), [kept[supersense] for supersense in sorted(kept)])
  sample = splits.train.take(np.arange(0, len(splits.train), 20))
  preprocess = text_preprocess("bert", max_length=64)
  batch = next(data.train_batches(sample, preprocess, seed=0, global_batch_size=32, num_steps=1))[1]
  chex.assert_trees_all_equal(inputs_of(batch), expected_inputs(preprocess, sample.texts[batch["index"]]))
