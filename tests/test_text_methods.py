"""BERT and RoBERTa encoders through the whole library: every method fine-tunes the tiny BERT of
tests/fixtures/text (a Hugging Face directory, its architecture and tokenizer taken by `model.name='auto'`) on a few
WordNet verb definitions a class, the constraint keeps every attention and feed-forward kernel within its radius,
DELTA weighs token positions by the attention mask, Hessian traces match `jax.hessian`, sentence pairs from text
files train RoBERTa, text and image inputs are never mixed up, and the shipped WordNet source model is described
and classifies WordNet's noun definitions."""

import json
import os
import pathlib
import subprocess
import sys

import chex
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import default, text as text_configs
from ftjax import configs, data, hessian, tree_paths
from ftjax.config_validation import ConfigError, check_fields
from ftjax.data import text_sources, tokenization
from ftjax.methods import delta
from ftjax.models import create_model, hf_import, pretrained, registry, text_encoder
from ftjax.train import experiment
from tests import method_runs
from tests.fields import set_fields
from tests.fixtures.text_batches import PAIRS, TEXTS
from tests.method_runs import run

REPO = pathlib.Path(__file__).parent.parent
TEXT_FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "text"
BERT_DIR = str(TEXT_FIXTURES / "bert_tiny")
ROBERTA_DIR = str(TEXT_FIXTURES / "roberta_tiny")
HAS_WORDNET = os.path.isfile(os.path.join(text_sources.WORDNET_DIR, "data.verb"))
needs_wordnet = pytest.mark.skipif(not HAS_WORDNET, reason="needs Debian's wordnet-base (/usr/share/wordnet)")


def text_config(**overrides):
  """1 epoch of AdamW on 4 WordNet verb definitions a class (14 classes, 3 steps of 16), the tiny BERT fixture's
  weights and tokenizer, 16 tokens an example."""
  config = default.get_config()
  set_fields(
    config,
    model__name="auto",
    model__pretrained=BERT_DIR,
    data__name="wordnet_verbs",
    data__examples_per_class=4,
    data__test_fraction=0.02,
    data__max_length=16,
    optim__name="adamw",
    optim__learning_rate=1e-2,
    optim__num_epochs=1,
    optim__batch_size=16,
    optim__eval_batch_size=128,
    run__checkpoint_every=100,
    run__log_every=100,
  )
  return set_fields(config, **overrides)


METHODS = method_runs.METHODS
# The depth schedule D·γ^(g-1) over the groups embeddings (no kernel), layer0, layer1, pooler; the head its own.
DEPTH_RADII = {"layer0/": 0.05 * 1.5, "layer1/": 0.05 * 1.5**2, "pooler/": 0.05 * 1.5**3, "head/": 0.5}


@needs_wordnet
@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_fine_tunes_the_tiny_bert(name, tmp_path):
  results = run(text_config(**METHODS[name]), tmp_path)
  assert results["steps"] == 3 and results["model"] == "bert_tiny" and results["num_train"] == 14 * 4
  for key in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
    assert np.isfinite(results[key]), (key, results[key])
  kernels = sorted(name for name in results["layer_distances"] if name.endswith("kernel"))
  assert len(kernels) == 2 * 6 + 2  # 4 attention and 2 feed-forward kernels a layer, the pooler, the head
  if "radii" in results:  # the constraint, alone or in regsl / consistent: every kernel within its radius
    norm = results["config"]["reg"]["norm"]
    assert sorted(results["radii"]) == kernels
    for kernel, radius in results["radii"].items():
      assert results["layer_distances"][kernel][norm] <= radius * (1 + 1e-5), (kernel, radius)
      assert radius == pytest.approx(next(r for prefix, r in DEPTH_RADII.items() if kernel.startswith(prefix)))
  if name == "delta":
    assert results["zeroed_modules"] == {"layer0": "layer0", "layer1": "layer1"}
    for layer in ("layer0", "layer1"):
      weights = np.asarray(results["channel_weights"][layer])
      assert weights.shape == (32,) and np.all(weights > 0)
      np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-5)


def test_model_auto_takes_a_hugging_face_directorys_architecture_weights_and_tokenizer():
  resolved = experiment.checked_config(text_config(data__name="digits"))
  assert (resolved.model.name, resolved.model.vocab_size) == ("bert_tiny", 128)
  assert resolved.data.tokenizer == os.path.join(BERT_DIR, "tokenizer.json")
  # A text model on images is refused once the data is read; the source's tensors fit the model it resolves to.
  with pytest.raises(ConfigError, match="dataset 'digits' holds images, but model 'bert_tiny' takes token ids"):
    experiment.build_run_setup(resolved)
  model = create_model("bert_tiny", 3, vocab_size=resolved.model.vocab_size)
  variables, anchor = experiment.initial_variables(resolved, model, registry.structure_of("bert_tiny"))
  _, loaded = hf_import.load_hf_encoder(BERT_DIR)
  chex.assert_trees_all_equal({k: v for k, v in variables["params"].items() if k != "head"}, loaded["params"])
  assert np.all(np.asarray(anchor["head"]["out_proj"]["kernel"]) == 0)  # the head's reference point is zero


@needs_wordnet
@pytest.mark.parametrize("name, pad_id", [("bert_tiny", 0), ("roberta_tiny", 1), ("roberta_base", 1)])
def test_text_preprocessing_pads_with_the_models_pad_id(name, pad_id):
  config = text_config(model__name=name, model__pretrained="none", data__tokenizer=ROBERTA_DIR, model__vocab_size=300)
  train, evaluation = experiment.preprocess_configs(experiment.checked_config(config))
  assert train == evaluation == data.TextPreprocess(os.path.join(ROBERTA_DIR), 16, pad_id, None)
  assert registry.token_format(name).pad_id == text_encoder.ARCHITECTURES[name].pad_token_id == pad_id


def test_the_vocab_size_option_sets_the_word_embedding_rows_and_image_models_refuse_it():
  tokens = jnp.zeros((1, 16), jnp.int32)
  for name in ("bert_tiny", "roberta_base"):
    module = create_model(name, 3, vocab_size=4000)
    params = jax.eval_shape(lambda m=module: m.init(jax.random.key(0), tokens, tokens))["params"]
    hidden = text_encoder.ARCHITECTURES[name].hidden_size
    assert params["embeddings"]["word"]["embedding"].shape == (4000, hidden)
    assert registry.token_format(name, 4000).vocab_size == 4000
  assert registry.token_format("resnet18") is None and "resnet18" not in registry.text_models()
  with pytest.raises(ValueError, match=r"model 'resnet18' takes no option vocab_size=4000 .*valid: 0"):
    create_model("resnet18", 3, vocab_size=4000)


def write_pairs(folder: pathlib.Path, name: str, rows: int, seed: int) -> None:
  """A GLUE MRPC-like TSV file of `rows` sentence pairs with random 0/1 labels."""
  rng = np.random.default_rng(seed)
  sentences = TEXTS + [a for a, _ in PAIRS] + [b for _, b in PAIRS]
  lines = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
  for i in range(rows):
    a, b = rng.choice(len(sentences), 2, replace=False)
    lines.append(f"{rng.integers(2)}\t{2 * i}\t{2 * i + 1}\t{sentences[a]}\t{sentences[b]}")
  (folder / f"{name}.tsv").write_text("\n".join(lines) + "\n")


def test_roberta_fine_tunes_on_sentence_pairs_from_text_files(tmp_path):
  folder = tmp_path / "mrpc"
  folder.mkdir()
  write_pairs(folder, "train", 48, seed=0)
  write_pairs(folder, "dev", 20, seed=1)
  config = text_config(
    model__pretrained=ROBERTA_DIR,
    data__name="text_files",
    data__dir=str(folder),
    data__examples_per_class=0,
    data__splits=("train", "dev"),
    data__text_columns=("#1 String", "#2 String"),
    data__label_column="Quality",
  )
  results = run(config, tmp_path / "run")
  assert (results["model"], results["num_train"], results["num_test"], results["steps"]) == ("roberta_tiny", 48, 20, 3)
  assert np.isfinite(results["train_loss"]) and np.isfinite(results["test_loss"])
  assert results["config"]["data"]["tokenizer"] == os.path.join(ROBERTA_DIR, "tokenizer.json")


def test_the_delta_probe_replaces_the_dense_layer_that_reads_the_penultimate_features():
  module = create_model("roberta_tiny", 3)
  tokens = jnp.ones((1, 16), jnp.int32)
  shapes = jax.eval_shape(lambda: module.init(jax.random.key(0), tokens, tokens))["params"]
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda leaf: rng.normal(size=leaf.shape).astype(np.float32), shapes)
  probe = {"kernel": np.full((32, 3), 2.0, np.float32), "bias": np.full(3, 3.0, np.float32)}
  replaced = delta.with_head_replaced(params, registry.structure_of("roberta_tiny").head_pattern, probe)
  chex.assert_trees_all_equal(replaced["head"]["out_proj"], probe)
  chex.assert_trees_all_equal(replaced["head"]["dense"], params["head"]["dense"])
  chex.assert_trees_all_equal(
    {k: v for k, v in replaced.items() if k != "head"}, {k: v for k, v in params.items() if k != "head"}
  )
  with pytest.raises(ValueError, match="need the head to end in one Dense layer"):
    delta.with_head_replaced(
      params, registry.structure_of("roberta_tiny").head_pattern, {**probe, "kernel": probe["kernel"][:8]}
    )


@pytest.mark.parametrize("normalization", delta.NORMALIZATIONS)
def test_delta_weighs_token_positions_by_the_attention_mask(normalization):
  rng = np.random.default_rng(0)
  batch, length, channels = 3, 6, 4
  mask = np.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]], np.int32)
  features = {"layer0": rng.normal(size=(batch, length, channels)).astype(np.float32)}
  source = {"layer0": rng.normal(size=(batch, length, channels)).astype(np.float32)}
  weights = {"layer0": rng.dirichlet(np.ones(channels)).astype(np.float32)}
  expected = 0.0
  for b in range(batch):
    tokens = mask[b].sum()
    for j in range(channels):
      squared = np.sum((features["layer0"][b, :tokens, j] - source["layer0"][b, :tokens, j]) ** 2)
      if normalization == "paper":
        expected += weights["layer0"][j] * squared / batch
      else:
        expected += 0.5 * channels * weights["layer0"][j] * squared / tokens
  value = delta.feature_map_distance(features, source, weights, normalization, jnp.asarray(mask))
  np.testing.assert_allclose(value, expected, rtol=1e-5)
  # What a pad position holds changes nothing; without a mask every position counts.
  changed = {"layer0": np.where(mask[..., None] > 0, features["layer0"], 100.0).astype(np.float32)}
  np.testing.assert_allclose(
    delta.feature_map_distance(changed, source, weights, normalization, jnp.asarray(mask)), value, rtol=1e-6
  )
  unmasked = delta.feature_map_distance(features, source, weights, normalization)
  all_tokens = delta.feature_map_distance(features, source, weights, normalization, jnp.ones_like(mask))
  np.testing.assert_allclose(all_tokens, unmasked, rtol=1e-6)
  assert not np.isclose(unmasked, value)


def test_layer_traces_of_a_text_encoder_match_exact_block_traces():
  # An encoder of bert_tiny's form at width 8 (1 layer of 2 heads) on 12 tokenised texts, its kernels drawn with
  # variance 1/fan-in (transformers' 0.02 would leave most blocks of the Hessian near zero).
  architecture = text_encoder.ARCHITECTURES["bert_tiny"]._replace(hidden_size=8, intermediate_size=16, num_layers=1)
  model = text_encoder.TextEncoder(architecture, num_classes=3, dropout_rate=0.0)
  texts = TEXTS + [a for a, _ in PAIRS]
  tokens = tokenization.tokenize(tokenization.load_tokenizer(BERT_DIR), texts, max_length=16, pad_id=0)
  inputs = (jnp.asarray(tokens.token_ids), jnp.asarray(tokens.attention_mask))
  labels = jnp.arange(len(texts)) % 3
  keys = iter(jax.random.split(jax.random.key(1), 64))
  params = tree_paths.map_with_names(
    lambda name, leaf: (
      jax.random.normal(next(keys), leaf.shape) / np.sqrt(leaf.shape[0]) if name.endswith("kernel") else leaf
    ),
    model.init(jax.random.key(0), *inputs)["params"],
  )
  loss_fn = lambda p: jnp.mean(
    optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, *inputs), labels)
  )
  traces = hessian.layer_traces(loss_fn, params, jax.random.key(2), 4000, probes_per_batch=100)
  exact = exact_kernel_traces(loss_fn, params)
  assert sorted(traces) == sorted(exact) and len(exact) == 6 + 2
  for name in exact:
    assert abs(traces[name].estimate - exact[name]) <= 3 * traces[name].stderr + 1e-6, (name, traces[name], exact)


def exact_kernel_traces(loss_fn, params) -> dict[str, float]:
  """{kernel path: tr(H_ii)}: the sums of each kernel's part of the diagonal of the Hessian in all kernels at once
  (the other leaves held fixed), from `jax.hessian`."""
  leaves = tree_paths.named_leaves(params)
  kernels = {name: leaf for name, leaf in leaves.items() if name.endswith("kernel")}
  flat, unravel = jax.flatten_util.ravel_pytree(kernels)

  def in_kernels(f):
    values = unravel(f)
    return loss_fn(tree_paths.map_with_names(lambda name, leaf: values.get(name, leaf), params))

  diagonal = unravel(jnp.diagonal(jax.jit(jax.hessian(in_kernels))(flat)))
  return {name: float(np.sum(np.asarray(d, np.float64))) for name, d in diagonal.items()}


def unsupported_directory(tmp_path) -> str:
  """A Hugging Face directory of a 3-layer BERT: none of ftjax's named sizes."""
  folder = tmp_path / "bert_3_layers"
  folder.mkdir()
  config = json.loads((TEXT_FIXTURES / "bert_tiny" / "config.json").read_text())
  (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
  (folder / "model.safetensors").write_bytes(b"")
  return str(folder)


@needs_wordnet
@pytest.mark.parametrize(
  "overrides, message",
  [
    (
      dict(model__name="bert_tiny", model__pretrained="none"),
      "config.data.tokenizer='' but text model 'bert_tiny' needs one, and config.model.pretrained='none' has none",
    ),
    (dict(data__max_length=65), "config.data.max_length=65 exceeds the 64 token positions of model 'bert_tiny'; valid"),
    (
      dict(data__tokenizer=ROBERTA_DIR),
      "roberta_tiny' has 300 tokens, more than the 128 rows of the word embedding of model 'bert_tiny'; valid: a "
      "tokenizer of at most 128 tokens, or config.model.vocab_size=300",
    ),
    (
      dict(model__name="resnet18", model__pretrained="none", data__tokenizer=BERT_DIR),
      "is for text models, but model 'resnet18' takes images; valid: '', or a text model (bert_base",
    ),
    (dict(model__pretrained="UNSUPPORTED"), "has the sizes of none of ftjax's text models; valid: a directory of"),
  ],
)
def test_text_settings_that_cannot_work_are_one_line_errors(tmp_path, overrides, message):
  if overrides.get("model__pretrained") == "UNSUPPORTED":
    overrides["model__pretrained"] = unsupported_directory(tmp_path)
  with pytest.raises(ConfigError) as error:
    experiment.checked_config(text_config(**overrides))
  assert message in str(error.value) and "\n" not in str(error.value)


@needs_wordnet
def test_texts_for_an_image_model_are_refused_in_one_line_by_the_command(tmp_path):
  command = [sys.executable, "-m", "experiments.finetune", "--workdir", str(tmp_path / "run")]
  command += ["--config.data.name=wordnet_verbs", "--config.model.pretrained=none", "--config.data.crop_padding=0"]
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 2, done.stderr
  lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
  assert lines == [
    "error: dataset 'wordnet_verbs' holds texts, but model 'resnet18' takes images; valid: a text model "
    f"({', '.join(registry.text_models())}) with config.data.tokenizer"
  ], done.stderr


@pytest.mark.parametrize("variant", text_configs.VARIANTS)
def test_the_text_configs_pass_the_field_checks(variant):
  config = text_configs.get_config(variant)
  check_fields(config, configs.field_checks())
  assert config.model.dropout_rate == 0.1 and config.optim.name == "adamw"


SHIPPED = text_configs.WORDNET_SOURCE


@needs_wordnet
def test_the_shipped_wordnet_model_is_small_described_and_the_wordnet_configs_source():
  files = [os.path.join(pretrained.WEIGHTS_DIR, SHIPPED + suffix) for suffix in (".msgpack", ".tokenizer.json")]
  assert sum(os.path.getsize(path) for path in files) < 2**21
  assert pretrained.source_tokenizer(SHIPPED) == text_configs.WORDNET_TOKENIZER == files[1]
  info = pretrained.load_source(SHIPPED).info
  assert (info["model"], info["vocab_size"], info["dataset"]) == ("bert_tiny", 4000, "wordnet_nouns")
  assert "text.py:pretrain_wordnet" in info["command"] and len(info["class_names"]) == 24
  assert tokenization.load_tokenizer(files[1]).get_vocab_size() == info["vocab_size"]
  config = text_configs.get_config("wordnet")
  assert config.model.pretrained == SHIPPED and config.model.name == "auto" and config.data.tokenizer == ""
  resolved = experiment.checked_config(config)
  assert (resolved.model.name, resolved.model.vocab_size, resolved.data.tokenizer) == ("bert_tiny", 4000, files[1])


@needs_wordnet
def test_the_wordnet_config_starts_from_the_shipped_encoder_with_a_fresh_head():
  setup = experiment.build_run_setup(text_configs.get_config("wordnet"))
  source = pretrained.load_source(SHIPPED).variables["params"]
  chex.assert_trees_all_equal(
    {k: v for k, v in setup.variables["params"].items() if k != "head"},
    {k: v for k, v in source.items() if k != "head"},
  )
  assert setup.num_classes == 14 and setup.eval_preprocess.pad_id == 0


@needs_wordnet
def test_the_shipped_wordnet_model_classifies_wordnet_nouns():
  source = pretrained.load_source(SHIPPED)
  test = data.load_dataset("wordnet_nouns").test
  preprocess = data.TextPreprocess(pretrained.source_tokenizer(SHIPPED), 64, 0)
  model = create_model("bert_tiny", len(source.info["class_names"]), vocab_size=source.info["vocab_size"])
  apply = jax.jit(model.apply)
  correct = 0
  for batch in data.eval_batches(test.take(np.arange(2000)), preprocess, 500, process_index=0, process_count=1):
    logits = apply(source.variables, batch["token_ids"], batch["attention_mask"])
    correct += int(np.sum((np.argmax(logits, -1) == batch["label"]) * batch["mask"]))
  assert correct / 2000 > source.info["test_accuracy"] - 0.03, correct / 2000
