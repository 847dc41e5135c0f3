"""Deterministic, resumable batches sharded over processes.

The global training batch at (epoch, step) is a pure function of (seed, epoch, step): the epoch's
permutation comes from `np.random.default_rng([seed, epoch])`, the batch is its slice
[step * B, (step + 1) * B) (the remainder is dropped), and augmentation is drawn for the whole
global batch from `np.random.default_rng([seed, epoch, step, 1])`. Each process then keeps its
contiguous slice, so the union over processes never depends on the process count.

Batches are made ahead of use: by one background thread (`workers=0`), or by `workers` worker processes of a grain
pipeline (batch k of an iterator by worker k % workers), which decode and augment images in parallel; either way
each batch is the same pure function of its step, so the values never depend on `workers`.

What a batch's inputs are is the `config`'s business (`BatchInputs`): the image `Preprocess` gives 'image', the
text `TextPreprocess` gives 'token_ids', 'attention_mask' (and 'token_type_ids' for sentence pairs) at one length
for the whole global batch; 'label', 'index' (and 'mask' in eval batches) are the same for both.
"""

import collections
import concurrent.futures
import dataclasses
import functools
import gc
import os
import signal
import threading
import time
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


@functools.lru_cache(maxsize=1)
def _cached_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """`epoch_permutation`, kept for the steps of one epoch (read-only: batches slice it)."""
  return epoch_permutation(num_examples, seed, epoch)


@dataclasses.dataclass(frozen=True)
class _TrainBatchAt:
  """(global_step, the `rows` of the global batch at global_step = epoch * steps_per_epoch + step); picklable,
  so that worker processes can make batches."""

  source: Source
  config: BatchInputs
  seed: int
  global_batch_size: int
  rows: slice

  def __call__(self, global_step: int) -> tuple[int, dict]:
    num_examples = len(self.source)
    epoch, step = divmod(global_step, steps_per_epoch(num_examples, self.global_batch_size))
    permutation = _cached_permutation(num_examples, self.seed, epoch)
    size, rows = self.global_batch_size, self.rows
    return global_step, _train_batch(self.source, self.config, permutation, self.seed, epoch, step, size, rows)


def _eval_batch_at(source: Source, config: BatchInputs, global_batch_size: int, rows: slice, start: int) -> dict:
  """The `rows` of the evaluation batch of examples start..start + global_batch_size - 1, the positions past the
  last example filled with it and masked out ('mask' float32 [B_local])."""
  positions = np.arange(start, start + global_batch_size)
  batch = _batch(source, config, np.minimum(positions, len(source) - 1), None, rows)
  batch["mask"] = (positions[rows] < len(source)).astype(np.float32)
  return batch


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


@dataclasses.dataclass(frozen=True)
class _EvalBatchOfPass:
  """Item k of consecutive evaluation passes: the `rows` of evaluation batch k % num_batches (`_eval_batch_at`);
  picklable, so that worker processes can make batches."""

  source: Source
  config: BatchInputs
  global_batch_size: int
  rows: slice
  num_batches: int

  def __call__(self, item: int) -> dict:
    start = (item % self.num_batches) * self.global_batch_size
    return _eval_batch_at(self.source, self.config, self.global_batch_size, self.rows, start)


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


def _start_worker(parent: int, worker_index: int, worker_count: int) -> None:
  """Run in each worker as it starts: it ignores SIGINT and SIGTERM (Ctrl-C and a signal to the process group stop a
  run through the training process's handlers, which close the workers), and a thread ends it once the process
  `parent` that started it has gone (killed without closing it)."""
  del worker_index, worker_count
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, signal.SIG_IGN)

  def end_with_parent() -> None:
    while os.getppid() == parent:
      time.sleep(1)
    os._exit(1)

  threading.Thread(target=end_with_parent, daemon=True).start()


def _made_in_workers(make: Callable, items: range, workers: int, prefetch: int) -> Iterator:
  """make(item) for each item, in order, computed in `workers` spawned processes (the k-th item by worker
  k % workers, as grain's `mp_prefetch` slices a dataset), each keeping up to max(prefetch, 1) results ahead.
  `make` and what it holds are pickled to the workers, results come back as plain numpy arrays; an exception raised
  by `make` is raised here; the workers end when the iterator is exhausted, closed or garbage collected."""
  import grain  # only runs with workers need it
  from absl import flags

  if not items:
    return
  if not flags.FLAGS.is_parsed():  # grain reads an absl flag of its own as it starts workers (unset: its default)
    flags.FLAGS.mark_as_parsed()
  options = grain.MultiprocessingOptions(num_workers=min(workers, len(items)), per_worker_buffer_size=max(prefetch, 1))
  dataset = (
    grain.MapDataset.range(items.start, items.stop, items.step)
    .map(make)
    .to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))  # each worker makes its items in turn
    .mp_prefetch(options, worker_init_fn=functools.partial(_start_worker, os.getpid()))
  )
  iterator, element = iter(dataset), None
  try:
    for element in iterator:  # arrays arrive in shared memory, released once copied out
      yield jax.tree.map(lambda x: np.array(x) if isinstance(x, np.ndarray) else x, element)
  finally:
    iterator.close()
    del iterator, element
    gc.collect()  # grain's prefetch threads keep their last elements in reference cycles: release their memory now


def _made(make: Callable, items: range, prefetch: int, workers: int) -> Iterator:
  """make(item) for each item, in order: in `workers` worker processes, or (workers=0) in this process with
  `prefetch` results computed ahead by a background thread."""
  if workers < 0:
    raise ValueError(f"workers={workers} must be >= 0")
  return _made_in_workers(make, items, workers, prefetch) if workers else _prefetched(make, items, prefetch)


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
  workers: int = 0,
) -> Iterator[tuple[int, dict]]:
  """(global_step, train_batch(...)) for global_step in start_step..num_steps-1, where global_step =
  epoch * steps_per_epoch + step. Batches are prepared ahead, which changes no values: `prefetch` of them by a
  background thread (workers=0), or by `workers` worker processes, each up to max(prefetch, 1) ahead. The source
  is fitted to `config` once, up front (`fitted_source`)."""
  rows = _process_slice(global_batch_size, process_index, process_count)
  _check_train_batch_size(len(source), global_batch_size)
  make = _TrainBatchAt(fitted_source(source, config), config, seed, global_batch_size, rows)
  return _made(make, range(start_step, num_steps), prefetch, workers)


def eval_batches(
  source: Source,
  config: BatchInputs,
  global_batch_size: int,
  process_index: int | None = None,
  process_count: int | None = None,
  prefetch: int = 2,
  workers: int = 0,
) -> Iterator[dict]:
  """Every example once, in order, without augmentation: this process's slices of global batches
  of `global_batch_size`; the last one is padded to full size by repeating the last example, with
  'mask' float32 [B_local] 1 for real examples and 0 for padding. `prefetch` and `workers` as in `train_batches`."""
  make = _eval_batch_maker(source, config, global_batch_size, process_index, process_count)
  return _made(make, range(make.num_batches), prefetch, workers)


def _eval_batch_maker(
  source: Source, config: BatchInputs, global_batch_size: int, process_index: int | None, process_count: int | None
) -> "_EvalBatchOfPass":
  """Item k -> this process's slice of evaluation batch k % num_batches of `source`."""
  if global_batch_size < 1:
    raise ValueError(f"global_batch_size={global_batch_size} must be positive")
  rows = _process_slice(global_batch_size, process_index, process_count)
  fitted = fitted_source(source, config)
  return _EvalBatchOfPass(fitted, config, global_batch_size, rows, len(range(0, len(fitted), global_batch_size)))


class EvalPasses:
  """Evaluation passes over one source (each as `eval_batches` yields it), whose batches `workers` processes make
  from the first pass until `close()`, instead of processes started for every pass; between passes they make the
  next pass's first batches. Without workers each pass is `eval_batches` itself."""

  MAX_PASSES = 10**6

  def __init__(
    self,
    source: Source,
    config: BatchInputs,
    global_batch_size: int,
    *,
    process_index: int | None = None,
    process_count: int | None = None,
    prefetch: int = 2,
    workers: int = 0,
  ):
    self._make = _eval_batch_maker(source, config, global_batch_size, process_index, process_count)
    self._prefetch, self._num_batches, self._taken = prefetch, self._make.num_batches, 0
    every_pass = range(self._num_batches * self.MAX_PASSES)
    self._batches = _made(self._make, every_pass, prefetch, workers) if workers else None

  def __call__(self) -> Iterator[dict]:
    """The next pass: every example once, in order, in batches as `eval_batches` makes them."""
    if self._batches is None:
      yield from _made(self._make, range(self._num_batches), self._prefetch, workers=0)
      return
    for _ in range(-self._taken % max(self._num_batches, 1)):  # the rest of a pass its reader left unfinished
      next(self._batches)
      self._taken += 1
    for _ in range(self._num_batches):
      self._taken += 1
      yield next(self._batches)

  def close(self) -> None:
    """Ends the worker processes (if any)."""
    if self._batches is not None:
      self._batches.close()

  def __enter__(self) -> "EvalPasses":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()
