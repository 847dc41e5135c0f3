"""Batches made by worker processes (`workers=N`, grain) are those the training process makes itself (`workers=0`),
which are `train_batch` at each step; the workers end when the iterator does, and their errors surface as they are."""

import gc
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from ftjax import data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER = os.path.join(REPO, "ftjax", "pretrained_weights", "wordnet_nouns_bert_tiny.tokenizer.json")
SEED, BATCH, STEPS = 7, 4, 11  # 18 training images: 4 steps per epoch, so STEPS spans three epochs
PREPROCESS = data.Preprocess(
  image_size=16, channels=3, mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.25), crop_padding=3, flip=True
)


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
  """A JPEG image folder of random images of varied sizes, 3 classes of 8 (18 train, 6 test), decoded at 16x16."""
  root = tmp_path_factory.mktemp("jpegs")
  rng = np.random.default_rng(0)
  for c in range(3):
    os.makedirs(root / f"class_{c}")
    for i in range(8):
      pixels = rng.integers(0, 256, (20 + 3 * i, 24 + 2 * c, 3), dtype=np.uint8)
      Image.fromarray(pixels).save(root / f"class_{c}" / f"{i}.jpg", quality=90)
  return data.load_dataset("image_folder", str(root), image_size=16, test_fraction=0.25)


def assert_batches_equal(expected: dict, got: dict) -> None:
  assert sorted(expected) == sorted(got)
  for key in expected:
    assert type(got[key]) is np.ndarray and got[key].dtype == expected[key].dtype, (key, type(got[key]))
    np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def live_children() -> list:
  return multiprocessing.active_children()


def is_running(pid: int) -> bool:
  """Whether process `pid` exists and is no zombie."""
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except FileNotFoundError:
    return False


# Process 1 of 2 resuming at step 5 (process 0 from step 0 is the next-but-one test's); each worker start costs seconds
@pytest.mark.parametrize("process_index, start_step", [(1, 5)])
def test_train_batches_made_by_workers_are_those_made_in_process(splits, process_index, start_step):
  shard = dict(process_index=process_index, process_count=2)
  in_process = list(
    data.train_batches(splits.train, PREPROCESS, seed=SEED, global_batch_size=BATCH, num_steps=STEPS, **shard)
  )
  per_epoch = data.steps_per_epoch(len(splits.train), BATCH)
  for global_step, batch in in_process:
    epoch, step = divmod(global_step, per_epoch)
    assert_batches_equal(
      data.train_batch(splits.train, PREPROCESS, seed=SEED, epoch=epoch, step=step, global_batch_size=BATCH, **shard),
      batch,
    )
  by_workers = list(
    data.train_batches(
      splits.train,
      PREPROCESS,
      seed=SEED,
      global_batch_size=BATCH,
      num_steps=STEPS,
      start_step=start_step,
      workers=2,
      **shard,
    )
  )
  assert [step for step, _ in by_workers] == list(range(start_step, STEPS))
  for (_, expected), (_, got) in zip(in_process[start_step:], by_workers):
    assert_batches_equal(expected, got)
  assert not live_children()


@pytest.mark.parametrize("process_index", [1])
def test_eval_batches_made_by_workers_are_those_made_in_process(splits, process_index):
  shard = dict(process_index=process_index, process_count=2)
  eval_preprocess = data.Preprocess(image_size=16, channels=3, mean=(0.5,), std=(0.25,))
  in_process = list(data.eval_batches(splits.test, eval_preprocess, BATCH, **shard))
  by_workers = list(data.eval_batches(splits.test, eval_preprocess, BATCH, workers=2, **shard))
  assert len(in_process) == len(by_workers) == 2  # 6 test images: the second batch is half padding
  for expected, got in zip(in_process, by_workers):
    assert_batches_equal(expected, got)
  assert not live_children()


def test_eval_passes_reuse_their_workers_and_give_each_pass_the_in_process_batches(splits):
  eval_preprocess = data.Preprocess(image_size=16, channels=3, mean=(0.5,), std=(0.25,))
  expected = list(data.eval_batches(splits.train, eval_preprocess, 8))  # 18 images: 3 batches, the last padded
  with data.EvalPasses(splits.train, eval_preprocess, 8, workers=2) as passes:
    assert not live_children()  # nothing starts before the first pass
    for expected_batch, got in zip(expected, passes(), strict=True):
      assert_batches_equal(expected_batch, got)
    workers = sorted(child.pid for child in live_children())
    assert len(workers) == 2
    abandoned = passes()
    assert_batches_equal(expected[0], next(abandoned))  # a pass left after one batch
    for expected_batch, got in zip(expected, passes(), strict=True):  # the next one still starts at the first
      assert_batches_equal(expected_batch, got)
    assert sorted(child.pid for child in live_children()) == workers  # the same processes, not new ones
  assert not live_children()
  in_process = data.EvalPasses(splits.test, eval_preprocess, 4)  # workers=0: each pass is eval_batches itself
  for _ in range(2):
    for expected_batch, got in zip(data.eval_batches(splits.test, eval_preprocess, 4), in_process(), strict=True):
      assert_batches_equal(expected_batch, got)
  assert not live_children()


def test_workers_outlive_stop_signals_and_end_when_the_iterator_is_closed_or_collected_early(splits):
  """SIGINT and SIGTERM stop a run through the training process (which then closes its batches), never a worker."""
  kwargs = dict(seed=SEED, global_batch_size=BATCH, num_steps=STEPS, process_index=0, process_count=1)
  expected = [
    data.train_batch(splits.train, PREPROCESS, seed=SEED, epoch=0, step=step, global_batch_size=BATCH)
    for step in range(3)
  ]
  closed = data.train_batches(splits.train, PREPROCESS, workers=2, **kwargs)
  for step in range(2):  # a batch from each worker: both have started
    assert_batches_equal(expected[step], next(closed)[1])
  children = live_children()
  assert len(children) == 2
  for child in children:
    os.kill(child.pid, signal.SIGINT)
    os.kill(child.pid, signal.SIGTERM)
  assert_batches_equal(expected[2], next(closed)[1])
  assert all(child.is_alive() for child in children)
  closed.close()
  assert not live_children()
  dropped = data.train_batches(splits.train, PREPROCESS, workers=1, **kwargs)
  assert_batches_equal(expected[0], next(dropped)[1])
  assert len(live_children()) == 1
  del dropped
  gc.collect()
  assert not live_children()


KILLED_PARENT = """
import os, signal, sys
import numpy as np
from ftjax import data
source = data.ArraySource(np.zeros((8, 4, 4, 1), np.uint8), np.zeros(8, np.int32), ["a", "b"])
batches = data.train_batches(source, data.Preprocess(channels=1), seed=0, global_batch_size=2, num_steps=4, workers=1)
next(batches)
import multiprocessing
print(multiprocessing.active_children()[0].pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_workers_end_when_the_training_process_is_killed():
  result = subprocess.run([sys.executable, "-c", KILLED_PARENT], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == -signal.SIGKILL, result.stderr
  worker = int(result.stdout)
  deadline = time.monotonic() + 10
  while is_running(worker) and time.monotonic() < deadline:
    time.sleep(0.2)
  assert not is_running(worker)


def test_an_error_in_a_worker_is_raised_as_it_is(splits):
  missing = str(splits.train.paths[5]) + ".gone.jpg"
  paths = np.array([missing if i == 5 else path for i, path in enumerate(splits.train.paths)])
  source = data.ImageFolderSource(paths, splits.train.labels, splits.train.class_names, 16)
  batches = data.train_batches(
    source, PREPROCESS, seed=SEED, global_batch_size=BATCH, num_steps=STEPS, process_index=0, process_count=1, workers=2
  )
  with pytest.raises(FileNotFoundError, match=missing):
    list(batches)
  assert not live_children()
  with pytest.raises(ValueError, match="workers=-1 must be >= 0"):
    data.eval_batches(splits.test, PREPROCESS, BATCH, workers=-1)


def test_what_workers_receive_pickles_to_the_same_batches(splits):
  """Sources and preprocessing configs reach the workers pickled: an unpickled copy makes the same batches."""
  texts = data.TextSource(
    np.array(["a dog", "the cat sat", "birds", "a red fox ran"], object), np.arange(4) % 2, ["x", "y"]
  )
  text = data.TextPreprocess(TOKENIZER, max_length=8, pad_id=0)
  digits = data.load_dataset("digits")
  cases = [
    (splits.train, PREPROCESS),
    (digits.train.take(np.arange(12)), data.Preprocess(image_size=6, channels=1, crop_padding=1, flip=True)),
    (texts, text),
    (text.fit_source(texts), text),
  ]
  for source, config in cases:
    copy_source, copy_config = pickle.loads(pickle.dumps((source, config)))
    kwargs = dict(seed=SEED, epoch=1, step=0, global_batch_size=2, process_index=0, process_count=1)
    assert_batches_equal(
      data.train_batch(source, config, **kwargs), data.train_batch(copy_source, copy_config, **kwargs)
    )


def test_finetune_refuses_negative_workers_in_one_line(tmp_path):
  command = [sys.executable, "-m", "experiments.finetune", f"--workdir={tmp_path}/run", "--config.data.workers=-1"]
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert result.returncode == 2, result.stderr
  assert len(lines) == 1 and lines[0].startswith("error: ") and "config.data.workers=-1" in lines[0], result.stderr
  assert "[0, 256]" in lines[0]
  assert not os.path.exists(tmp_path / "run")


def test_a_run_with_workers_trains_and_evaluates_as_one_without(tmp_path):
  """Training batches and every evaluation pass (test and validation each epoch) from worker processes."""
  from ftjax.metrics_writer import read_metrics
  from ftjax.train import loop
  from tests.test_finetune import tiny_config

  fields = dict(data__validation_fraction=0.2, data__examples_per_class=20, optim__num_epochs=2, run__eval_every=1)
  results, records = {}, {}
  for workers in (0, 2):
    workdir = str(tmp_path / f"workers{workers}")
    results[workers] = loop.train_and_evaluate(tiny_config(data__workers=workers, **fields), workdir)
    records[workers] = read_metrics(workdir)
  assert not live_children()
  assert records[2] == records[0] and any("validation/accuracy" in record for record in records[0])
  for key in ("test_accuracy", "test_loss", "train_loss", "validation_accuracy", "selected"):
    assert results[2][key] == results[0][key], key
