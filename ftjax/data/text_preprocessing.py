"""Text sources as encoder inputs: `TextPreprocess`, the text side of the pipeline's inputs protocol (`fit_source`,
`batch_inputs`; the image side is `Preprocess`).

A TextSource is tokenised once (`fit_source`: kept in memory as a `TokenizedSource`, and on disk under `cache_dir`
when one is given, keyed by a hash of the tokenizer file, the settings and the texts). A batch then takes its rows
of the token arrays, cut to `bucket_length` of the longest example of the whole global batch, so that every process
gets one length and its rows equal `tokenize` applied to the global batch's texts.
"""

import dataclasses
import hashlib
import json
import logging
import os
import zipfile

import numpy as np

from ftjax.data.text_sources import TextSource
from ftjax.data.tokenization import TokenizedText, bucket_length, load_tokenizer, tokenize, tokenizer_file

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # part of every cache key: raise it when what a cache file holds changes


@dataclasses.dataclass(frozen=True)
class TextPreprocess:
  """tokenizer: a Hugging Face tokenizer.json, or the model directory holding one; max_length: tokens per example,
  special tokens included (longer examples truncated longest-first); pad_id: the model's pad_token_id;
  cache_dir: where tokenised sources are kept between runs (None: in memory only)."""

  tokenizer: str
  max_length: int
  pad_id: int
  cache_dir: str | None = None

  def __post_init__(self):
    for field, low in (("max_length", 1), ("pad_id", 0)):
      value = getattr(self, field)
      if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{field}={value!r} is not valid; valid: an integer >= {low}")

  def tokenize_texts(self, texts: np.ndarray) -> TokenizedText:
    """str texts [n] (or sentence pairs [n, 2]) as `tokenize` gives them: int32 [n, bucket_length(longest)]."""
    pairs = texts.ndim == 2
    return tokenize(
      load_tokenizer(self.tokenizer),
      list(texts[:, 0] if pairs else texts),
      list(texts[:, 1]) if pairs else None,
      max_length=self.max_length,
      pad_id=self.pad_id,
    )

  def fit_source(self, source: TextSource) -> "TokenizedSource":
    """`source` with its texts tokenised (read from `cache_dir` when stored there); a source already tokenised by
    this preprocess is returned as it is."""
    if isinstance(source, TokenizedSource) and source.preprocess == self:
      return source
    if not isinstance(source, TextSource):
      raise ValueError(
        f"text preprocessing (tokenizer={self.tokenizer!r}) got a {type(source).__name__}; valid: a text dataset's "
        "TextSource (an image dataset takes the image Preprocess)"
      )
    tokens = self.tokenize_texts(source.texts) if self.cache_dir is None else cached_tokens(self, source.texts)
    return TokenizedSource(source.texts, source.labels, source.class_names, tokens, self)

  def batch_inputs(self, source: TextSource, indices: np.ndarray, rows: slice, rng=None) -> dict:
    """{'token_ids', 'attention_mask', 'token_type_ids' (all zeros for single texts): int32 [k, L]} of the `rows` of the
    global batch of examples `indices`, L the `bucket_length` of the global batch's longest example (one L on every
    process); a source not tokenised by this preprocess has the global batch's texts tokenised here. `rng` is
    unused: text has no augmentation."""
    if isinstance(source, TokenizedSource) and source.preprocess == self:
      length = bucket_length(int(source.tokens.attention_mask[indices].sum(axis=1).max()), self.max_length)
      tokens = TokenizedText(*(array[indices[rows], :length] for array in source.tokens))
    else:
      tokens = TokenizedText(*(array[rows] for array in self.tokenize_texts(source.texts_at(indices))))
    return tokens._asdict()


@dataclasses.dataclass(frozen=True, eq=False)
class TokenizedSource(TextSource):
  """A TextSource with its texts tokenised by `preprocess`: `tokens` int32 [n, L] each (L the bucketed length of
  the longest example)."""

  tokens: TokenizedText
  preprocess: TextPreprocess

  def take(self, indices: np.ndarray) -> "TokenizedSource":
    return dataclasses.replace(super().take(indices), tokens=TokenizedText(*(array[indices] for array in self.tokens)))


def tokens_cache_key(preprocess: TextPreprocess, texts: np.ndarray) -> str:
  """sha256 (hex) of the tokenizer file, the `tokenizers` version, max_length, pad_id and the texts (shape and
  every text, each prefixed by its length)."""
  import tokenizers

  digest = hashlib.sha256()
  with open(tokenizer_file(preprocess.tokenizer), "rb") as f:
    digest.update(f.read())
  settings = [CACHE_FORMAT, tokenizers.__version__, preprocess.max_length, preprocess.pad_id, list(texts.shape)]
  digest.update(json.dumps(settings).encode())
  for text in texts.ravel():
    encoded = text.encode("utf-8")
    digest.update(len(encoded).to_bytes(8, "little") + encoded)
  return digest.hexdigest()


def cached_tokens(preprocess: TextPreprocess, texts: np.ndarray) -> TokenizedText:
  """`preprocess.tokenize_texts(texts)`, read from cache_dir/tokens-KEY.npz (KEY: `tokens_cache_key`) when it holds
  them, else computed and written there (atomically; a cache that cannot be read or written is logged and
  bypassed)."""
  load_tokenizer(preprocess.tokenizer)  # its one-line error for a missing or unreadable tokenizer, before hashing
  path = os.path.join(preprocess.cache_dir, f"tokens-{tokens_cache_key(preprocess, texts)}.npz")
  if os.path.isfile(path):
    try:
      with np.load(path) as stored:
        tokens = TokenizedText(*(stored[field] for field in TokenizedText._fields))
      if all(array.dtype == np.int32 and len(array) == len(texts) for array in tokens):
        return tokens
      log.warning("token cache %s does not fit its %d texts; tokenising again", path, len(texts))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
      log.warning("token cache %s cannot be read (%s: %s); tokenising again", path, type(e).__name__, e)
  tokens = preprocess.tokenize_texts(texts)
  partial = f"{path}.{os.getpid()}.partial"
  try:
    os.makedirs(preprocess.cache_dir, exist_ok=True)
    with open(partial, "wb") as f:
      np.savez(f, **tokens._asdict())
    os.replace(partial, path)
  except OSError as e:
    log.warning("token cache %s cannot be written (%s: %s); keeping the tokens in memory", path, type(e).__name__, e)
    if os.path.exists(partial):
      os.remove(partial)
  return tokens
