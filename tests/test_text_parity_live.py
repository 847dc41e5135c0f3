"""BERT and RoBERTa encoders, their import and tokenization against transformers itself (runs only where torch and
transformers are installed): the fixtures' references, larger random models saved as model.safetensors (float32
and bfloat16) and pytorch_model.bin, the named sizes, and tokenization of further texts and lengths."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the live comparisons need torch")
transformers = pytest.importorskip("transformers", reason="the live comparisons need transformers")

from ftjax.data import tokenization  # noqa: E402
from ftjax.models import hf_import, text_encoder  # noqa: E402
from tests import test_text_encoder as fixtures  # noqa: E402
from tests.fixtures import make_text_fixtures  # noqa: E402
from tests.fixtures.text_batches import BATCHES  # noqa: E402

FAMILIES = ("bert", "roberta")


def hf_model(family: str, **sizes) -> torch.nn.Module:
  """`family`'s sequence classifier of `sizes` (transformers' config names) in eval mode, random weights (seed 1)
  as make_text_fixtures draws them."""
  config_class = transformers.BertConfig if family == "bert" else transformers.RobertaConfig
  model_class = (
    transformers.BertForSequenceClassification if family == "bert" else transformers.RobertaForSequenceClassification
  )
  torch.manual_seed(1)
  model = model_class(config_class(num_labels=4, **sizes))
  with torch.no_grad():
    for name, parameter in model.named_parameters():
      parameter.copy_(
        torch.empty_like(parameter).uniform_(0.5, 1.5)
        if "LayerNorm.weight" in name
        else torch.randn_like(parameter) * (0.1 if name.endswith("bias") else 0.15)
      )
  return model.eval()


def random_batch(vocab_size: int, pad_id: int, lengths: list[int], width: int, seed: int = 0) -> tuple:
  """(token_ids, attention_mask, token_type_ids) [len(lengths), width]: random non-pad tokens, then pads; token type
  1 on the second half of each sequence."""
  rng = np.random.default_rng(seed)
  token_ids = np.full((len(lengths), width), pad_id, np.int32)
  mask = np.zeros_like(token_ids)
  token_types = np.zeros_like(token_ids)
  for row, length in enumerate(lengths):
    token_ids[row, :length] = rng.choice([i for i in range(vocab_size) if i != pad_id], length)
    mask[row, :length] = 1
    token_types[row, length // 2 : length] = 1
  return token_ids, mask, token_types


@pytest.mark.parametrize("family", FAMILIES)
def test_fixtures_hold_what_transformers_computes(family):
  ref = fixtures.reference()
  model = transformers.AutoModelForSequenceClassification.from_pretrained(
    fixtures.fixture_dir(family), dtype=torch.float32
  ).eval()
  tokenizer = make_text_fixtures.transformers_tokenizer(family, fixtures.fixture_dir(family) / "tokenizer.json")
  for batch, (texts, pairs) in BATCHES.items():
    encoded = make_text_fixtures.tokenized(tokenizer, texts, pairs)
    for field, key in (
      ("token_ids", "input_ids"),
      ("attention_mask", "attention_mask"),
      ("token_type_ids", "token_type_ids"),
    ):
      np.testing.assert_array_equal(encoded[key], ref[f"{family}_{batch}_{field}"])
  for batch in ("single", "pair"):
    token_ids, mask, token_types = fixtures.batch_inputs(family, batch, ref)
    inputs = {"input_ids": torch.from_numpy(token_ids).long(), "attention_mask": torch.from_numpy(mask).long()}
    if token_types is not None:
      inputs["token_type_ids"] = torch.from_numpy(token_types).long()
    with torch.no_grad():
      logits = model(**inputs).logits.numpy()
    np.testing.assert_allclose(logits, ref[f"{family}_{batch}_logits"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_transformers_from_every_weights_file(family, tmp_path):
  sizes = dict(
    vocab_size=300,
    hidden_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    intermediate_size=96,
    max_position_embeddings=80 if family == "roberta" else 64,
    layer_norm_eps=1e-5,
  )
  model = hf_model(family, **sizes)
  model.save_pretrained(tmp_path / "safetensors")
  model.save_pretrained(tmp_path / "bin")
  (tmp_path / "bin" / "model.safetensors").unlink()
  torch.save(model.state_dict(), tmp_path / "bin" / "pytorch_model.bin")
  architecture = hf_import.architecture_of(tmp_path / "safetensors")
  assert architecture == hf_import.architecture_of(tmp_path / "bin")
  assert (architecture.family, architecture.num_layers, architecture.max_positions) == (
    family,
    3,
    sizes["max_position_embeddings"],
  )

  token_ids, mask, token_types = random_batch(300, architecture.pad_token_id, [64, 40, 17, 3], 64)
  inputs = {"input_ids": torch.from_numpy(token_ids).long(), "attention_mask": torch.from_numpy(mask).long()}
  if family == "bert":
    inputs["token_type_ids"] = torch.from_numpy(token_types).long()
  with torch.no_grad():
    outputs = getattr(model, family)(**inputs)
    expected = model(**inputs).logits.numpy()

  module, _ = text_encoder.text_family(architecture)
  for directory in ("safetensors", "bin"):
    path = hf_import.weights_file(tmp_path / directory)
    variables = hf_import.hf_to_flax(hf_import.read_state_dict(path), architecture, include_head=True)
    logits, features = module(num_classes=4).apply(
      variables, token_ids, mask, token_types if family == "bert" else None, return_features=True
    )
    print(
      f"{family} {directory}: max |logits| {np.abs(expected).max():.3g}, diff {np.abs(logits - expected).max():.3g}"
    )
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(features["layer2"], outputs.last_hidden_state.numpy(), rtol=1e-4, atol=1e-4)

  model.to(torch.bfloat16).save_pretrained(tmp_path / "bfloat16")
  _, encoder = hf_import.load_hf_encoder(tmp_path / "bfloat16")
  query = model.state_dict()[f"{family}.encoder.layer.1.attention.self.query.weight"].float().numpy().T
  np.testing.assert_array_equal(encoder["params"]["layer1"]["attention"]["query"]["kernel"], query)


@pytest.mark.parametrize("name", ["bert_base", "bert_large", "roberta_base", "roberta_large"])
def test_named_sizes_are_transformers_defaults(name):
  architecture = text_encoder.ARCHITECTURES[name]
  config_class = transformers.BertConfig if architecture.family == "bert" else transformers.RobertaConfig
  config = config_class(
    hidden_size=architecture.hidden_size,
    num_hidden_layers=architecture.num_layers,
    num_attention_heads=architecture.num_heads,
    intermediate_size=architecture.intermediate_size,
  )
  if architecture.family == "roberta":  # roberta-base's config.json differs from RobertaConfig's defaults here
    config.update(dict(max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5))
  assert (config.vocab_size, config.max_position_embeddings, config.type_vocab_size) == (
    architecture.vocab_size,
    architecture.max_positions,
    architecture.type_vocab_size,
  )
  assert (config.pad_token_id, config.layer_norm_eps) == (architecture.pad_token_id, architecture.layer_norm_eps)
  model_class = transformers.BertModel if architecture.family == "bert" else transformers.RobertaModel
  with torch.device("meta"):
    model = model_class(config, add_pooling_layer=architecture.family == "bert")
  assert sum(p.numel() for p in model.parameters()) == fixtures.HF_ENCODER_PARAMETERS[name]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("max_length", [8, 16, 20, 64])
def test_tokenization_matches_transformers(family, max_length):
  tokenizer_file = fixtures.fixture_dir(family) / "tokenizer.json"
  reference = make_text_fixtures.transformers_tokenizer(family, tokenizer_file)
  tokenizer = tokenization.load_tokenizer(tokenizer_file)
  texts = make_text_fixtures.CORPUS + BATCHES["single"][0]
  pad_id = text_encoder.ARCHITECTURES[f"{family}_tiny"].pad_token_id
  for pairs in (None, texts[::-1]):
    ours = tokenization.tokenize(tokenizer, texts, pairs, max_length=max_length, pad_id=pad_id)
    encoded = reference(
      texts,
      pairs,
      truncation=True,
      max_length=max_length,
      padding="max_length",
      return_token_type_ids=True,
      return_tensors="np",
    )
    length = ours.token_ids.shape[1]
    assert length == tokenization.bucket_length(int(encoded["attention_mask"].sum(axis=1).max()), max_length)
    np.testing.assert_array_equal(ours.token_ids, encoded["input_ids"][:, :length])
    np.testing.assert_array_equal(ours.attention_mask, encoded["attention_mask"][:, :length])
    np.testing.assert_array_equal(ours.token_type_ids, encoded["token_type_ids"][:, :length])
    assert (encoded["attention_mask"][:, length:] == 0).all()
