"""BERT and RoBERTa encoders with a sequence-classification head, computing what Hugging Face transformers'
BertForSequenceClassification / RobertaForSequenceClassification compute.

token_ids, attention_mask [N, L] int32 -> logits [N, num_classes]. Post-LN Transformer: embeddings (word +
position + token type, LayerNorm, dropout), then per layer self-attention with an additive mask over the padded
keys, residual + LayerNorm, a GELU (erf) feed-forward layer, residual + LayerNorm. BERT reads the [CLS] state
through its pretrained pooler (dense + tanh) and a fresh linear head; RoBERTa reads the <s> state through a fresh
head of dense + tanh + linear (transformers' RobertaClassificationHead). RoBERTa's positions count the non-pad
tokens from pad_token_id + 1 and give pads position pad_token_id.

Parameter paths: 'embeddings/{word,position,token_type}/embedding', 'embeddings/norm/{scale,bias}',
'layer{i}/attention/{query,key,value,output}/{kernel,bias}', 'layer{i}/attention_norm/{scale,bias}',
'layer{i}/{intermediate,output}/{kernel,bias}', 'layer{i}/output_norm/{scale,bias}', BERT's 'pooler/{kernel,bias}',
and the head: 'head/out_proj/{kernel,bias}' (RoBERTa also 'head/dense/{kernel,bias}').
"""

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from ftjax.models.structure import ModelStructure

FAMILIES = ("bert", "roberta")
INPUTS = ("token_ids", "attention_mask")
# (regex, role) over parameter paths: the radii the official code gives each kind of pretrained layer. BERT's
# pooler (pretrained, dense + tanh outside attention) counts as feedforward; embeddings and norms have no role.
ROLES = (
  (r"layer\d+/attention/(query|key|value|output)/.*", "attention"),
  (r"layer\d+/(intermediate|output)/.*", "feedforward"),
  (r"pooler/.*", "feedforward"),
  (r"head/.*", "predictor"),
)
_INIT = nn.initializers.normal(0.02)  # transformers' initializer_range for weights and embeddings


class TextArchitecture(NamedTuple):
  """The sizes of a BERT or RoBERTa encoder (transformers' config.json names in brackets): family 'bert' or
  'roberta' (model_type), vocab_size, hidden_size, num_layers (num_hidden_layers), num_heads
  (num_attention_heads), intermediate_size, max_positions (max_position_embeddings), type_vocab_size,
  pad_token_id, layer_norm_eps."""

  family: str
  vocab_size: int
  hidden_size: int
  num_layers: int
  num_heads: int
  intermediate_size: int
  max_positions: int
  type_vocab_size: int
  pad_token_id: int
  layer_norm_eps: float

  @property
  def max_length(self) -> int:
    """The longest token sequence the position table covers (RoBERTa's positions start at pad_token_id + 1)."""
    return self.max_positions - (self.pad_token_id + 1 if self.family == "roberta" else 0)


def _bert(vocab_size, hidden_size, num_layers, num_heads, intermediate_size, max_positions=512) -> TextArchitecture:
  return TextArchitecture(
    "bert", vocab_size, hidden_size, num_layers, num_heads, intermediate_size, max_positions, 2, 0, 1e-12
  )


def _roberta(vocab_size, hidden_size, num_layers, num_heads, intermediate_size, max_positions=514) -> TextArchitecture:
  return TextArchitecture(
    "roberta", vocab_size, hidden_size, num_layers, num_heads, intermediate_size, max_positions, 1, 1, 1e-5
  )


# The sizes of bert-base/large-uncased and roberta-base/large, and tiny ones whose vocabularies are those of the
# test tokenizers in tests/fixtures/text.
ARCHITECTURES = {
  "bert_base": _bert(30522, 768, 12, 12, 3072),
  "bert_large": _bert(30522, 1024, 24, 16, 4096),
  "roberta_base": _roberta(50265, 768, 12, 12, 3072),
  "roberta_large": _roberta(50265, 1024, 24, 16, 4096),
  "bert_tiny": _bert(128, 32, 2, 2, 64, max_positions=64),
  "roberta_tiny": _roberta(300, 32, 2, 2, 64, max_positions=66),
}


def _layer_norm(architecture: TextArchitecture, name: str) -> nn.LayerNorm:
  """transformers' LayerNorm: the variance as the mean squared deviation (not E[x^2] - E[x]^2)."""
  return nn.LayerNorm(epsilon=architecture.layer_norm_eps, use_fast_variance=False, name=name)


def position_ids(architecture: TextArchitecture, token_ids: jax.Array) -> jax.Array:
  """[N, L] positions: BERT 0..L-1; RoBERTa pad_token_id + (the count of non-pad tokens up to and including
  this one) for a non-pad token and pad_token_id for a pad."""
  if architecture.family == "bert":
    return jnp.broadcast_to(jnp.arange(token_ids.shape[1]), token_ids.shape)
  not_pad = (token_ids != architecture.pad_token_id).astype(jnp.int32)
  return jnp.cumsum(not_pad, axis=1) * not_pad + architecture.pad_token_id


class Embeddings(nn.Module):
  """token_ids, token_type_ids [N, L] -> [N, L, hidden]: LayerNorm(word + token type + position) with dropout."""

  architecture: TextArchitecture
  dropout_rate: float

  @nn.compact
  def __call__(self, token_ids, token_type_ids, train: bool):
    a = self.architecture
    embed = functools.partial(nn.Embed, features=a.hidden_size, embedding_init=_INIT)
    x = embed(a.vocab_size, name="word")(token_ids) + embed(a.type_vocab_size, name="token_type")(token_type_ids)
    x = x + embed(a.max_positions, name="position")(position_ids(a, token_ids))
    return nn.Dropout(self.dropout_rate)(_layer_norm(a, "norm")(x), deterministic=not train)


class SelfAttention(nn.Module):
  """x [N, L, D], mask_bias [N, 1, 1, L] -> [N, L, D]: softmax(q k^T / sqrt(D / heads) + mask_bias) v per head,
  the heads concatenated and projected by 'output'."""

  num_heads: int
  dropout_rate: float

  @nn.compact
  def __call__(self, x, mask_bias, train: bool):
    n, length, width = x.shape
    head_width = width // self.num_heads
    dense = functools.partial(nn.Dense, width, kernel_init=_INIT)
    q, k, v = (dense(name=name)(x).reshape(n, length, self.num_heads, head_width) for name in ("query", "key", "value"))
    scores = jnp.einsum("nqhd,nkhd->nhqk", q, k) * head_width**-0.5 + mask_bias
    weights = nn.Dropout(self.dropout_rate)(jax.nn.softmax(scores, axis=-1), deterministic=not train)
    attended = jnp.einsum("nhqk,nkhd->nqhd", weights, v).reshape(n, length, width)
    return dense(name="output")(attended)


class EncoderLayer(nn.Module):
  """x [N, L, D] -> [N, L, D]: y = LN(x + drop(attention(x))); LN(y + drop(output(gelu(intermediate(y)))))."""

  architecture: TextArchitecture
  dropout_rate: float

  @nn.compact
  def __call__(self, x, mask_bias, train: bool):
    a = self.architecture
    dropout = functools.partial(nn.Dropout(self.dropout_rate), deterministic=not train)
    attended = SelfAttention(a.num_heads, self.dropout_rate, name="attention")(x, mask_bias, train)
    x = _layer_norm(a, "attention_norm")(x + dropout(attended))
    hidden = jax.nn.gelu(nn.Dense(a.intermediate_size, kernel_init=_INIT, name="intermediate")(x), approximate=False)
    return _layer_norm(a, "output_norm")(x + dropout(nn.Dense(a.hidden_size, kernel_init=_INIT, name="output")(hidden)))


class ClassificationHead(nn.Module):
  """pooled [N, D] -> (logits [N, num_classes], the features out_proj reads [N, D]); with `with_dense` (RoBERTa)
  first tanh(dense(drop(pooled))), then out_proj(drop(.))."""

  num_classes: int
  dropout_rate: float
  with_dense: bool

  @nn.compact
  def __call__(self, x, train: bool):
    dropout = functools.partial(nn.Dropout(self.dropout_rate), deterministic=not train)
    if self.with_dense:
      x = jnp.tanh(nn.Dense(x.shape[-1], kernel_init=_INIT, name="dense")(dropout(x)))
    return nn.Dense(self.num_classes, kernel_init=_INIT, name="out_proj")(dropout(x)), x


class TextEncoder(nn.Module):
  """token_ids, attention_mask (1 for a token, 0 for a pad) [N, L] int32 -> logits [N, num_classes]; with
  `return_features`, also {'layer{i}': layer i's output [N, L, D], 'penultimate': what out_proj reads [N, D]}
  (before the head's dropout). token_type_ids [N, L] (BERT's sentence-pair segments) default to zeros.
  dropout_rate applies where transformers' hidden, attention and classifier dropout do (rng 'dropout')."""

  architecture: TextArchitecture
  num_classes: int
  dropout_rate: float = 0.1

  @nn.compact
  def __call__(self, token_ids, attention_mask, token_type_ids=None, *, train=False, return_features=False):
    a = self.architecture
    if token_ids.shape[1] > a.max_length:
      raise ValueError(f"token sequences of length {token_ids.shape[1]} exceed {a.family}'s {a.max_length} positions")
    if token_type_ids is None:
      token_type_ids = jnp.zeros_like(token_ids)
    x = Embeddings(a, self.dropout_rate, name="embeddings")(token_ids, token_type_ids, train)
    mask_bias = jnp.where(attention_mask[:, None, None, :] > 0, 0.0, jnp.finfo(x.dtype).min).astype(x.dtype)
    features = {}
    for i in range(a.num_layers):
      x = EncoderLayer(a, self.dropout_rate, name=f"layer{i}")(x, mask_bias, train)
      features[f"layer{i}"] = x
    pooled = x[:, 0]
    if a.family == "bert":
      pooled = jnp.tanh(nn.Dense(a.hidden_size, kernel_init=_INIT, name="pooler")(pooled))
    head = ClassificationHead(self.num_classes, self.dropout_rate, with_dense=a.family == "roberta", name="head")
    logits, features["penultimate"] = head(pooled, train)
    return (logits, features) if return_features else logits


def text_structure(architecture: TextArchitecture) -> ModelStructure:
  """The groups of `architecture` in network order: 'embeddings', 'layer0'..'layer{L-1}', BERT's 'pooler'
  (pretrained, so anchored to the source like a layer), 'head' (the fresh part: BERT's out_proj, RoBERTa's dense
  and out_proj); each layer's output is a feature map."""
  layers = tuple(f"layer{i}" for i in range(architecture.num_layers))
  pooler = ((r"pooler/.*", "pooler"),) if architecture.family == "bert" else ()
  return ModelStructure(
    groups=(
      (r"embeddings/.*", "embeddings"),
      *((rf"{layer}/.*", layer) for layer in layers),
      *pooler,
      (r"head/.*", "head"),
    ),
    head="head",
    feature_maps=layers,
    penultimate="penultimate",
    inputs=INPUTS + (("token_type_ids",) if architecture.family == "bert" else ()),  # BERT's segments of pairs
    roles=ROLES,
  )


def check_architecture_name(name: str) -> None:
  if name not in ARCHITECTURES:
    raise ValueError(f"text model {name!r} is not known; valid: {', '.join(ARCHITECTURES)}")


def text_family(architecture: str | TextArchitecture) -> tuple[functools.partial, ModelStructure]:
  """(constructor `module(num_classes=..., dropout_rate=...)`, structure) of a named architecture (a key of
  ARCHITECTURES) or of a `TextArchitecture` (e.g. `hf_import.architecture_of(directory)`)."""
  if isinstance(architecture, str):
    check_architecture_name(architecture)
    architecture = ARCHITECTURES[architecture]
  return functools.partial(TextEncoder, architecture=architecture), text_structure(architecture)
