"""Deterministic, resumable batches sharded over processes.

The global training batch at (epoch, step) is a pure function of (seed, epoch, step): the epoch's
permutation comes from `np.random.default_rng([seed, epoch])`, the batch is its slice
[step * B, (step + 1) * B) (the remainder is dropped), and augmentation is drawn for the whole
global batch from `np.random.default_rng([seed, epoch, step, 1])`. Each process then keeps its
contiguous slice, so the union over processes never depends on the process count.

What a batch's inputs are is the `config`'s business (`BatchInputs`): the image `Preprocess` gives 'image', the
text `TextPreprocess` gives 'token_ids', 'attention_mask' (and 'token_type_ids' for sentence pairs) at one length
for the whole global batch; 'label', 'index' (and 'mask' in eval batches) are the same for both.
"""

import collections
import concurrent.futures
import functools
from typing import Callable, Iterable, Iterator, Protocol

import jax
import numpy as np

from ftjax.data.splits import Source


class BatchInputs(Protocol):
  """How examples become model inputs: `Preprocess` (images) or `TextPreprocess` (token ids)."""

  def fit_source(self, source: Source) -> Source:
    """`source` with its per-example work done once (in-memory images fitted, texts tokenised)."""

  def batch_inputs(self, source: Source, indices: np.ndarray, rows: slice, rng: np.random.Generator | None) -> dict:
    """The inputs of the `rows` of the global batch of examples `indices`; `rng` draws augmentation for the whole
    global batch in training (None in evaluation)."""


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
  """Full global batches per epoch (the remainder is dropped)."""
  return num_examples // global_batch_size


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """int [num_examples]: the order examples are visited in during `epoch`."""
  return np.random.default_rng([seed, epoch]).permutation(num_examples)


def fitted_source(source: Source, config: BatchInputs) -> Source:
  """`source` prepared once for `config`: in-memory images resized and channel-converted, texts tokenised (a
  no-op when already done); lazily decoded image sources are returned as they are and fitted per batch."""
  return config.fit_source(source)


def _process_slice(global_batch_size: int, process_index: int | None, process_count: int | None) -> slice:
  """This process's contiguous rows of a global batch."""
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} must be in 0..{process_count - 1}")
  if global_batch_size % process_count:
    raise ValueError(f"global_batch_size={global_batch_size} is not divisible by process_count={process_count}")
  local = global_batch_size // process_count
  return slice(process_index * local, (process_index + 1) * local)


def _check_train_batch_size(num_examples: int, global_batch_size: int) -> None:
  if not 0 < global_batch_size <= num_examples:
    raise ValueError(
      f"global_batch_size={global_batch_size} must be in 1..{num_examples} (the number of training examples)"
    )


def _batch(
  source: Source, config: BatchInputs, indices: np.ndarray, rng: np.random.Generator | None, rows: slice
) -> dict:
  """The `rows` of the global batch of examples `indices`: their inputs, labels and indices."""
  local = indices[rows]
  return {
    **config.batch_inputs(source, indices, rows, rng),
    "label": source.labels[local].astype(np.int32),
    "index": local.astype(np.int32),
  }


def _train_batch(source, config, permutation, seed, epoch, step, global_batch_size, rows) -> dict:
  """The `rows` of global batch `step` of the epoch visiting examples in `permutation` order."""
  indices = permutation[step * global_batch_size : (step + 1) * global_batch_size]
  return _batch(source, config, indices, np.random.default_rng([seed, epoch, step, 1]), rows)


def train_batch(
  source: Source,
  config: BatchInputs,
  *,
  seed: int,
  epoch: int,
  step: int,
  global_batch_size: int,
  process_index: int | None = None,
  process_count: int | None = None,
) -> dict:
  """This process's slice of the augmented global batch at (epoch, step): the config's inputs ('image': float32
  [B_local, S, S, C], or token arrays int32 [B_local, L]), 'label': int32 [B_local] (from source.labels),
  'index': int32 [B_local]."""
  rows = _process_slice(global_batch_size, process_index, process_count)
  _check_train_batch_size(len(source), global_batch_size)
  num_steps = steps_per_epoch(len(source), global_batch_size)
  if not 0 <= step < num_steps:
    raise ValueError(f"step={step} must be in 0..{num_steps - 1} ({num_steps} steps per epoch)")
  permutation = epoch_permutation(len(source), seed, epoch)
  return _train_batch(source, config, permutation, seed, epoch, step, global_batch_size, rows)


def _prefetched(make: Callable, items: Iterable, prefetch: int) -> Iterator:
  """make(item) for each item, in order, with up to `prefetch` results computed ahead by one
  background thread (0: computed on demand)."""
  if prefetch <= 0:
    yield from map(make, items)
    return
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
  try:
    pending = collections.deque()
    for item in items:
      pending.append(pool.submit(make, item))
      if len(pending) > prefetch:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()
  finally:
    pool.shutdown(wait=False, cancel_futures=True)


def train_batches(
  source: Source,
  config: BatchInputs,
  *,
  seed: int,
  global_batch_size: int,
  num_steps: int,
  start_step: int = 0,
  process_index: int | None = None,
  process_count: int | None = None,
  prefetch: int = 2,
) -> Iterator[tuple[int, dict]]:
  """(global_step, train_batch(...)) for global_step in start_step..num_steps-1, where global_step =
  epoch * steps_per_epoch + step; `prefetch` batches are prepared ahead in a background thread,
  which changes no values. The source is fitted to `config` once, up front (`fitted_source`)."""
  rows = _process_slice(global_batch_size, process_index, process_count)
  _check_train_batch_size(len(source), global_batch_size)
  source = fitted_source(source, config)
  per_epoch = steps_per_epoch(len(source), global_batch_size)

  @functools.lru_cache(maxsize=1)
  def permutation(epoch: int) -> np.ndarray:
    return epoch_permutation(len(source), seed, epoch)

  def make(global_step: int) -> tuple[int, dict]:
    epoch, step = divmod(global_step, per_epoch)
    batch = _train_batch(source, config, permutation(epoch), seed, epoch, step, global_batch_size, rows)
    return global_step, batch

  return _prefetched(make, range(start_step, num_steps), prefetch)


def eval_batches(
  source: Source,
  config: BatchInputs,
  global_batch_size: int,
  process_index: int | None = None,
  process_count: int | None = None,
  prefetch: int = 2,
) -> Iterator[dict]:
  """Every example once, in order, without augmentation: this process's slices of global batches
  of `global_batch_size`; the last one is padded to full size by repeating the last example, with
  'mask' float32 [B_local] 1 for real examples and 0 for padding."""
  if global_batch_size < 1:
    raise ValueError(f"global_batch_size={global_batch_size} must be positive")
  rows = _process_slice(global_batch_size, process_index, process_count)
  source = fitted_source(source, config)
  num_examples = len(source)

  def make(start: int) -> dict:
    positions = np.arange(start, start + global_batch_size)
    batch = _batch(source, config, np.minimum(positions, num_examples - 1), None, rows)
    batch["mask"] = (positions[rows] < num_examples).astype(np.float32)
    return batch

  return _prefetched(make, range(0, num_examples, global_batch_size), prefetch)
