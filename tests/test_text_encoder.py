"""BERT and RoBERTa encoders, their Hugging Face import and tokenization against transformers' outputs stored in
tests/fixtures/text, plus structure, dropout, padding and one-line errors.

The fixtures (tiny BertForSequenceClassification / RobertaForSequenceClassification directories with random
weights and trained tokenizer.json files, transformers' token ids, logits and features) are written by
tests/fixtures/make_text_fixtures.py; tests/test_text_parity_live.py compares against transformers itself where
torch and transformers are installed. This module never imports either.
"""

import json
import pathlib
import shutil
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy

from ftjax import layer_groups, tree_paths
from ftjax.data import tokenization
from ftjax.models import hf_import, text_encoder
from tests.fixtures.text_batches import BATCHES, MAX_LENGTH, NUM_CLASSES

TEXT_FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "text"
FAMILIES = ("bert", "roberta")
# Parameter counts of transformers' BertModel (with pooler) / RobertaModel (without) of these sizes.
HF_ENCODER_PARAMETERS = {
  "bert_base": 109_482_240,
  "bert_large": 335_141_888,
  "roberta_base": 124_055_040,
  "roberta_large": 354_310_144,
}


def fixture_dir(family: str) -> pathlib.Path:
  return TEXT_FIXTURES / f"{family}_tiny"


def reference() -> dict[str, np.ndarray]:
  return safetensors.numpy.load_file(TEXT_FIXTURES / "reference.safetensors")


def fixture_state_dict(family: str) -> dict[str, np.ndarray]:
  return safetensors.numpy.load_file(fixture_dir(family) / "model.safetensors")


def batch_inputs(family: str, batch: str, ref: dict) -> tuple:
  """(token_ids, attention_mask, token_type_ids) of a fixture batch as transformers' model received them."""
  token_types = ref[f"{family}_{batch}_token_type_ids"] if family == "bert" else None
  return ref[f"{family}_{batch}_token_ids"], ref[f"{family}_{batch}_attention_mask"], token_types


def classifier_logits(family: str, state_dict: dict, inputs: tuple, **kwargs):
  """ftjax's encoder holding the whole fixture classifier `state_dict` (head included), applied to `inputs`."""
  variables = hf_import.hf_to_flax(state_dict, text_encoder.ARCHITECTURES[f"{family}_tiny"], include_head=True)
  module, _ = text_encoder.text_family(f"{family}_tiny")
  return module(num_classes=NUM_CLASSES).apply(variables, *inputs, **kwargs)


def assert_matches_transformers(actual, expected) -> None:
  np.testing.assert_allclose(np.asarray(actual), expected, rtol=1e-4, atol=1e-4)


def init_params(architecture, num_classes: int = NUM_CLASSES, length: int = 4) -> dict:
  module = text_encoder.TextEncoder(architecture, num_classes)
  tokens = jnp.ones((2, length), jnp.int32)
  return jax.eval_shape(lambda: module.init(jax.random.key(0), tokens, tokens))["params"]


@pytest.mark.parametrize("family", FAMILIES)
def test_fixture_directories_are_the_tiny_architectures(family):
  architecture = hf_import.architecture_of(fixture_dir(family))
  assert architecture == text_encoder.ARCHITECTURES[f"{family}_tiny"]
  assert tokenization.load_tokenizer(fixture_dir(family)).get_vocab_size() == architecture.vocab_size


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("batch", ["single", "pair"])
def test_logits_and_features_match_transformers(family, batch):
  ref = reference()
  inputs = batch_inputs(family, batch, ref)
  assert (inputs[1] == 0).any() and (inputs[1].sum(axis=1) < inputs[1].shape[1]).sum() >= 2  # unequal lengths
  logits, features = classifier_logits(family, fixture_state_dict(family), inputs, return_features=True)
  architecture = text_encoder.ARCHITECTURES[f"{family}_tiny"]
  n, length = inputs[0].shape
  assert sorted(features) == sorted([f"layer{i}" for i in range(architecture.num_layers)] + ["penultimate"])
  chex.assert_shape([features[f"layer{i}"] for i in range(architecture.num_layers)], (n, length, 32))
  chex.assert_shape(features["penultimate"], (n, 32))
  print(f"{family} {batch}: max |logits| {np.abs(ref[f'{family}_{batch}_logits']).max():.3g}")
  assert_matches_transformers(logits, ref[f"{family}_{batch}_logits"])
  if batch == "pair":
    assert_matches_transformers(features[f"layer{architecture.num_layers - 1}"], ref[f"{family}_pair_last_layer"])
    assert_matches_transformers(features["penultimate"], ref[f"{family}_pair_penultimate"])


@pytest.mark.parametrize(
  "family, key",
  [
    ("bert", "bert.embeddings.word_embeddings.weight"),
    ("bert", "bert.embeddings.position_embeddings.weight"),
    ("bert", "bert.embeddings.token_type_embeddings.weight"),
    ("bert", "bert.encoder.layer.0.attention.self.key.weight"),
    ("bert", "bert.encoder.layer.1.attention.output.LayerNorm.weight"),
    ("bert", "bert.encoder.layer.1.intermediate.dense.bias"),
    ("bert", "bert.pooler.dense.weight"),
    ("bert", "classifier.weight"),
    ("roberta", "roberta.embeddings.position_embeddings.weight"),
    ("roberta", "roberta.embeddings.LayerNorm.bias"),
    ("roberta", "roberta.encoder.layer.0.attention.self.query.weight"),
    ("roberta", "roberta.encoder.layer.1.output.dense.weight"),
    ("roberta", "classifier.dense.weight"),
  ],
)
def test_a_changed_tensor_fails_the_comparison(family, key):
  ref = reference()
  state_dict = fixture_state_dict(family)
  noise = np.random.default_rng(0).normal(0.0, 0.5, state_dict[key].shape)  # not a constant: LayerNorm removes one
  state_dict[key] = state_dict[key] + noise.astype(state_dict[key].dtype)
  with pytest.raises(AssertionError):
    assert_matches_transformers(
      classifier_logits(family, state_dict, batch_inputs(family, "pair", ref)), ref[f"{family}_pair_logits"]
    )


def test_roberta_positions_skip_pads_and_start_after_the_pad_id():
  roberta = text_encoder.ARCHITECTURES["roberta_tiny"]  # pad id 1
  token_ids = jnp.array([[0, 7, 8, 2, 1, 1], [0, 9, 2, 1, 1, 1]])
  np.testing.assert_array_equal(text_encoder.position_ids(roberta, token_ids), [[2, 3, 4, 5, 1, 1], [2, 3, 4, 1, 1, 1]])
  bert = text_encoder.ARCHITECTURES["bert_tiny"]
  np.testing.assert_array_equal(text_encoder.position_ids(bert, token_ids), [list(range(6))] * 2)


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_do_not_depend_on_the_padded_length(family):
  ref = reference()
  token_ids, mask, token_types = batch_inputs(family, "pair", ref)
  pad = text_encoder.ARCHITECTURES[f"{family}_tiny"].pad_token_id
  widen = lambda x, value: np.pad(x, ((0, 0), (0, 16)), constant_values=value)
  longer = (widen(token_ids, pad), widen(mask, 0), None if token_types is None else widen(token_types, 0))
  state_dict = fixture_state_dict(family)
  assert_matches_transformers(classifier_logits(family, state_dict, longer), ref[f"{family}_pair_logits"])


@pytest.mark.parametrize("family", FAMILIES)
def test_encoder_import_leaves_the_head_fresh(family):
  architecture, variables = hf_import.load_hf_encoder(fixture_dir(family))
  init = init_params(architecture)
  assert "head" not in variables["params"]
  expected = {name: leaf for name, leaf in tree_paths.named_leaves(init).items() if not name.startswith("head/")}
  loaded = tree_paths.named_leaves(variables["params"])
  assert list(loaded) == list(expected)
  for name, leaf in loaded.items():
    assert leaf.shape == expected[name].shape and leaf.dtype == np.float32, name
  np.testing.assert_array_equal(
    loaded["layer1/attention/query/kernel"],
    fixture_state_dict(family)[f"{family}.encoder.layer.1.attention.self.query.weight"].astype(np.float32).T,
  )


@pytest.mark.parametrize("family", FAMILIES)
def test_older_layer_norm_names_and_a_bare_encoder_load_alike(family):
  state_dict = fixture_state_dict(family)
  renamed = {
    key.removeprefix(f"{family}.")
    .replace("LayerNorm.weight", "LayerNorm.gamma")
    .replace("LayerNorm.bias", "LayerNorm.beta"): value
    for key, value in state_dict.items()
    if key.startswith(f"{family}.")
  }
  architecture = text_encoder.ARCHITECTURES[f"{family}_tiny"]
  chex.assert_trees_all_equal(
    hf_import.hf_to_flax(renamed, architecture), hf_import.hf_to_flax(state_dict, architecture)
  )


@pytest.mark.parametrize("name", ["bert_tiny", "roberta_tiny", "bert_base", "roberta_large"])
def test_structure_groups_and_roles(name):
  module, structure = text_encoder.text_family(name)
  architecture = text_encoder.ARCHITECTURES[name]
  assert module(num_classes=NUM_CLASSES).architecture == architecture
  params = init_params(architecture)
  layers = [f"layer{i}" for i in range(architecture.num_layers)]
  pooler = ["pooler"] if architecture.family == "bert" else []
  assert layer_groups.group_order(structure.groups, structure.head) == ["embeddings", *layers, *pooler, "head"]
  assert structure.feature_maps == tuple(layers) and structure.penultimate == "penultimate"
  segments = ("token_type_ids",) if architecture.family == "bert" else ()  # BERT reads sentence pairs' segments
  assert structure.inputs == ("token_ids", "attention_mask", *segments)
  groups = layer_groups.assign_groups(params, structure.groups)
  names = tree_paths.named_leaves(params)
  assert all(layer_groups.group_of(name, layer_groups.compile_patterns(structure.groups)) for name in names)
  head_kernels = {path for path, group in groups.items() if group == "head"}
  assert head_kernels == (
    {"head/out_proj/kernel"} | ({"head/dense/kernel"} if architecture.family == "roberta" else set())
  )

  roles = layer_groups.compile_patterns(text_encoder.ROLES)
  counts = {}
  for path in groups:
    role = layer_groups.group_of(path, roles)
    counts[role] = counts.get(role, 0) + 1
  # per layer: query, key, value, attention output; intermediate, output; BERT's pooler; the head's kernels
  assert counts == {
    "attention": 4 * architecture.num_layers,
    "feedforward": 2 * architecture.num_layers + len(pooler),
    "predictor": len(head_kernels),
  }


@pytest.mark.parametrize("name", HF_ENCODER_PARAMETERS)
def test_named_sizes_are_transformers(name):
  params = init_params(text_encoder.ARCHITECTURES[name])
  encoder = {path: leaf for path, leaf in tree_paths.named_leaves(params).items() if not path.startswith("head/")}
  assert sum(int(np.prod(leaf.shape)) for leaf in encoder.values()) == HF_ENCODER_PARAMETERS[name]


def test_dropout_is_active_only_in_training():
  ref = reference()
  module, _ = text_encoder.text_family("bert_tiny")
  inputs = batch_inputs("bert", "pair", ref)
  variables = hf_import.hf_to_flax(
    fixture_state_dict("bert"), text_encoder.ARCHITECTURES["bert_tiny"], include_head=True
  )
  rngs = {"dropout": jax.random.key(1)}
  evaluated = module(num_classes=NUM_CLASSES).apply(variables, *inputs)
  trained = module(num_classes=NUM_CLASSES).apply(variables, *inputs, train=True, rngs=rngs)
  assert np.abs(np.asarray(trained) - np.asarray(evaluated)).max() > 1e-3
  no_dropout = module(num_classes=NUM_CLASSES, dropout_rate=0.0).apply(variables, *inputs, train=True, rngs=rngs)
  np.testing.assert_allclose(no_dropout, evaluated, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("batch", ["single", "pair", "short"])
def test_tokenization_matches_transformers(family, batch):
  ref = reference()
  tokenizer = tokenization.load_tokenizer(fixture_dir(family) / "tokenizer.json")
  texts, pairs = BATCHES[batch]
  pad_id = text_encoder.ARCHITECTURES[f"{family}_tiny"].pad_token_id
  tokenized = tokenization.tokenize(tokenizer, texts, pairs, max_length=MAX_LENGTH, pad_id=pad_id)
  for field in tokenization.TokenizedText._fields:
    assert tokenized._asdict()[field].dtype == np.int32
    np.testing.assert_array_equal(tokenized._asdict()[field], ref[f"{family}_{batch}_{field}"], err_msg=field)


def test_bucket_length():
  for max_length in (8, 32, 128, 384, 512):
    for longest in range(0, max_length + 1):
      expected = min(max(16, 2 ** int(np.ceil(np.log2(max(longest, 1))))), max_length)
      assert tokenization.bucket_length(longest, max_length) == expected, (longest, max_length)


def copy_fixture(family: str, tmp_path: pathlib.Path) -> pathlib.Path:
  directory = tmp_path / family
  shutil.copytree(fixture_dir(family), directory)
  return directory


def edit_config(directory: pathlib.Path, **changes) -> None:
  config = json.loads((directory / "config.json").read_text())
  (directory / "config.json").write_text(json.dumps({**config, **changes}))


def assert_one_line_error(call, pattern: str) -> None:
  with pytest.raises(ValueError, match=pattern) as error:
    call()
  assert "\n" not in str(error.value), str(error.value)


def test_import_errors_are_one_line(tmp_path, monkeypatch):
  bert = copy_fixture("bert", tmp_path)
  architecture = text_encoder.ARCHITECTURES["bert_tiny"]
  state_dict = fixture_state_dict("bert")
  assert_one_line_error(lambda: hf_import.architecture_of(tmp_path / "absent"), r"absent/config\.json' does not exist")
  (tmp_path / "empty").mkdir()
  assert_one_line_error(
    lambda: hf_import.weights_file(tmp_path / "empty"), r"neither model\.safetensors nor pytorch_model\.bin"
  )

  missing = {k: v for k, v in state_dict.items() if k != "bert.encoder.layer.1.output.LayerNorm.weight"}
  assert_one_line_error(
    lambda: hf_import.hf_to_flax(missing, architecture, source="w.safetensors"),
    r"'w\.safetensors' lacks 'bert\.encoder\.layer\.1\.output\.LayerNorm\.weight', expected in a bert with 2 "
    r"layers \(for ftjax 'layer1/output_norm/scale'\)",
  )
  narrow = {**state_dict, "bert.encoder.layer.0.intermediate.dense.weight": np.zeros((48, 32), np.float16)}
  assert_one_line_error(
    lambda: hf_import.hf_to_flax(narrow, architecture),
    r"'bert\.encoder\.layer\.0\.intermediate\.dense\.weight' has shape \(48, 32\), expected \(64, 32\)",
  )
  deeper = {**state_dict, "bert.encoder.layer.2.output.dense.weight": np.zeros((32, 64), np.float16)}
  assert_one_line_error(
    lambda: hf_import.hf_to_flax(deeper, architecture), r"holds 'bert\.encoder\.layer\.2\.output\.dense\.weight'"
  )
  unlabelled = {k: v for k, v in state_dict.items() if not k.startswith("classifier.")}
  hf_import.hf_to_flax(unlabelled, architecture)  # a pretraining checkpoint has no classifier: fine for the encoder
  assert_one_line_error(
    lambda: hf_import.hf_to_flax(unlabelled, architecture, include_head=True),
    r"lacks the classifier 'classifier\.weight'",
  )

  (bert / "model.safetensors").rename(bert / "pytorch_model.bin")
  monkeypatch.setitem(sys.modules, "torch", None)
  with pytest.raises(
    ImportError, match=r"pytorch_model\.bin' needs `pip install torch`; a model\.safetensors does not"
  ):
    hf_import.load_hf_encoder(bert)
  (bert / "model.safetensors").write_bytes(b"not a safetensors file")
  assert_one_line_error(lambda: hf_import.load_hf_encoder(bert), r"model\.safetensors' is not readable")
  edit_config(bert, model_type="gpt2")
  assert_one_line_error(lambda: hf_import.architecture_of(bert), r"model_type 'gpt2'; valid: bert, roberta")
  edit_config(bert, model_type="bert", hidden_act="relu")
  assert_one_line_error(
    lambda: hf_import.architecture_of(bert), r"hidden_act='relu'; ftjax's bert encoder computes only 'gelu'"
  )
  (bert / "config.json").write_text("{not json")
  assert_one_line_error(lambda: hf_import.architecture_of(bert), r"config\.json' is not valid JSON")


def test_architecture_fills_transformers_defaults(tmp_path):
  roberta = copy_fixture("roberta", tmp_path)
  config = json.loads((roberta / "config.json").read_text())
  for key in ("type_vocab_size", "pad_token_id", "layer_norm_eps", "max_position_embeddings"):
    del config[key]
  (roberta / "config.json").write_text(json.dumps(config))
  architecture = hf_import.architecture_of(roberta)  # RobertaConfig's defaults
  assert (architecture.type_vocab_size, architecture.pad_token_id, architecture.layer_norm_eps) == (2, 1, 1e-12)
  assert architecture.max_positions == 512 and architecture.max_length == 510


def test_tokenizer_and_model_input_errors_are_one_line(tmp_path):
  assert_one_line_error(lambda: tokenization.load_tokenizer(tmp_path / "tokenizer.json"), r"does not exist")
  (tmp_path / "bad.json").write_text("{}")
  assert_one_line_error(lambda: tokenization.load_tokenizer(tmp_path / "bad.json"), r"not a readable tokenizer\.json")
  tokenizer_json = json.loads((fixture_dir("bert") / "tokenizer.json").read_text())
  (tmp_path / "bare.json").write_text(json.dumps({**tokenizer_json, "post_processor": None}))
  assert_one_line_error(lambda: tokenization.load_tokenizer(tmp_path / "bare.json"), r"has no post_processor")
  tokenizer = tokenization.load_tokenizer(fixture_dir("bert"))
  assert_one_line_error(
    lambda: tokenization.tokenize(tokenizer, ["a", "b"], ["c"], max_length=8, pad_id=0), r"pairs has 1 texts"
  )
  module, _ = text_encoder.text_family("bert_tiny")
  too_long = jnp.ones((1, 65), jnp.int32)
  assert_one_line_error(
    lambda: module(num_classes=2).init(jax.random.key(0), too_long, too_long), r"length 65 exceed bert's 64 positions"
  )
  assert_one_line_error(lambda: text_encoder.text_family("bert_huge"), r"'bert_huge' is not known; valid: bert_base")
