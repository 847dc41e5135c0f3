"""Text as the int32 inputs of a BERT or RoBERTa encoder: a Hugging Face tokenizer.json read offline by the
`tokenizers` library, its post-processor adding the special tokens as transformers' tokenizers do
(BERT: [CLS] a [SEP] b [SEP] with token types 0 for [CLS] a [SEP] and 1 for b [SEP]; RoBERTa:
<s> a </s></s> b </s>, token types 0), pairs truncated longest-first to `max_length`, the batch padded to a
bucketed length so that few distinct shapes reach the compiler.
"""

import os
from typing import NamedTuple, Sequence

import numpy as np

MIN_BUCKET = 16  # the shortest padded length


class TokenizedText(NamedTuple):
  """token_ids, attention_mask (1 for a token, 0 for a pad), token_type_ids: int32 [N, L] each."""

  token_ids: np.ndarray
  attention_mask: np.ndarray
  token_type_ids: np.ndarray


def tokenizer_file(path: str | os.PathLike) -> str:
  """The tokenizer.json that `path` names: `path` itself, or path/tokenizer.json when `path` is a directory."""
  path = os.fspath(path)
  return os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path


def load_tokenizer(path: str | os.PathLike):
  """The `tokenizers.Tokenizer` in `path` (a tokenizer.json file, or a model directory holding one); a one-line
  ValueError for a missing or unreadable file, or one without a post-processor (it would add no special tokens)."""
  from tokenizers import Tokenizer

  file = tokenizer_file(path)
  if not os.path.isfile(file):
    raise ValueError(f"tokenizer file {file!r} does not exist; valid: a Hugging Face tokenizer.json or its directory")
  try:
    tokenizer = Tokenizer.from_file(file)
  except Exception as e:  # tokenizers raises a bare Exception for malformed JSON or an unknown component
    detail = " ".join(str(e).split())[:160]
    raise ValueError(f"tokenizer file {file!r} is not a readable tokenizer.json ({detail})") from e
  if tokenizer.post_processor is None:
    raise ValueError(
      f"tokenizer file {file!r} has no post_processor, so it adds no [CLS]/[SEP] or <s>/</s>; valid: the "
      "tokenizer.json of a BERT or RoBERTa model"
    )
  return tokenizer


def bucket_length(longest: int, max_length: int) -> int:
  """The padded length for a batch whose longest sequence has `longest` tokens: the smallest power of two that
  is at least max(longest, MIN_BUCKET), at most `max_length`."""
  bucket = MIN_BUCKET
  while bucket < longest:
    bucket *= 2
  return min(bucket, max_length)


def tokenize(
  tokenizer, texts: Sequence[str], pairs: Sequence[str] | None = None, *, max_length: int, pad_id: int
) -> TokenizedText:
  """`texts` (or the pairs (texts[i], pairs[i])) as [N, bucket_length(longest, max_length)] int32 arrays: special
  tokens added by the tokenizer's post-processor, each sequence truncated longest-first to `max_length` tokens
  (special tokens included), pads of id `pad_id` (the model's pad_token_id) with mask 0 and token type 0.
  Sets `tokenizer`'s truncation to `max_length` and turns its own padding off."""
  if pairs is not None and len(pairs) != len(texts):
    raise ValueError(f"pairs has {len(pairs)} texts but texts has {len(texts)}; valid: one pair text per text")
  tokenizer.enable_truncation(max_length, strategy="longest_first")
  tokenizer.no_padding()
  inputs = list(texts) if pairs is None else list(zip(texts, pairs))
  try:
    encodings = tokenizer.encode_batch(inputs)
  except Exception as e:  # tokenizers raises a bare Exception, e.g. when max_length leaves no room for the text
    detail = " ".join(str(e).split())[:160]
    raise ValueError(f"tokenizing with max_length={max_length} failed ({detail}); valid: a longer max_length") from e
  length = bucket_length(max((len(e.ids) for e in encodings), default=0), max_length)
  token_ids = np.full((len(encodings), length), pad_id, np.int32)
  attention_mask = np.zeros((len(encodings), length), np.int32)
  token_type_ids = np.zeros((len(encodings), length), np.int32)
  for row, encoding in enumerate(encodings):
    n = len(encoding.ids)
    token_ids[row, :n] = encoding.ids
    attention_mask[row, :n] = encoding.attention_mask
    token_type_ids[row, :n] = encoding.type_ids
  return TokenizedText(token_ids, attention_mask, token_type_ids)
