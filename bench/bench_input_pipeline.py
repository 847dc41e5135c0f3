"""Images/s of the training input pipeline alone, in the training process and in worker processes (data.workers).

A JPEG image folder (--images images of 500x375 smooth random RGB content, quality 90, 10 classes) is written to a
temporary folder once; then `train_batches` makes batches of --batch_size as the default ViT-B/16 run would
(experiments/configs/vit.py: decode, resize to 224, random crop after 16 pixels of padding, random flip, normalise)
and nothing consumes them but this loop. Each round times --batches batches for each --workers value in turn
(interleaved, so drifting machine load hits all alike), after a first batch that also starts the workers and is timed
apart ('first batch'); shutting the workers down is not timed. The table reports the median over rounds.

  python bench/bench_input_pipeline.py [--workers 0,1,2] [--rounds 3] [--batches 8] [--batch_size 32]
"""

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository, for experiments/
from experiments.configs import vit  # noqa: E402
from ftjax import data  # noqa: E402
from ftjax.train.experiment import preprocess_configs  # noqa: E402

WIDTH, HEIGHT = 500, 375
CLASSES = 10


def write_jpeg_folder(root: str, num_images: int, seed: int = 0) -> None:
  """`num_images` JPEGs (quality 90) in root/class_k/, as many per class as fit: random 10x8 colour fields upscaled
  bicubically to WIDTH x HEIGHT plus mild noise, so they compress like photographs rather than like noise."""
  rng = np.random.default_rng(seed)
  for i in range(num_images):
    folder = os.path.join(root, f"class_{i % CLASSES}")
    os.makedirs(folder, exist_ok=True)
    coarse = Image.fromarray(rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)).resize((WIDTH, HEIGHT), Image.BICUBIC)
    pixels = np.asarray(coarse, np.int16) + rng.integers(-8, 9, (HEIGHT, WIDTH, 3), dtype=np.int16)
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(os.path.join(folder, f"{i:05d}.jpg"), quality=90)


def seconds_for_batches(source, preprocess, workers: int, batches: int, batch_size: int) -> tuple[float, float]:
  """(seconds to the first batch, which includes starting the workers; seconds for the next `batches` batches)
  of `train_batches` with `workers`; shutting the workers down afterwards is not timed."""
  start = time.perf_counter()
  iterator = data.train_batches(
    source,
    preprocess,
    seed=0,
    global_batch_size=batch_size,
    num_steps=batches + 1,
    process_index=0,
    process_count=1,
    workers=workers,
  )
  next(iterator)
  first = time.perf_counter()
  for _ in itertools.islice(iterator, batches):
    pass
  end = time.perf_counter()
  iterator.close()
  return first - start, end - first


def main(workers: list[int], rounds: int, batches: int, batch_size: int, num_images: int) -> None:
  config = vit.get_config()
  preprocess, _ = preprocess_configs(config)
  with tempfile.TemporaryDirectory(prefix="ftjax-bench-jpegs-") as root:
    start = time.perf_counter()
    write_jpeg_folder(root, num_images)
    print(f"wrote {num_images} JPEGs of {WIDTH}x{HEIGHT} in {time.perf_counter() - start:.1f} s", flush=True)
    source = data.load_dataset("image_folder", root, image_size=config.data.image_size, test_fraction=0.1).train
    first, times = {n: [] for n in workers}, {n: [] for n in workers}
    for r in range(rounds):
      for n in workers:
        seconds = seconds_for_batches(source, preprocess, n, batches, batch_size)
        first[n].append(seconds[0])
        times[n].append(seconds[1])
        print(f"round {r + 1}/{rounds}  workers {n}: {batches * batch_size / seconds[1]:.1f} images/s", flush=True)

  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  print(
    f"\n{cores} cores; {config.data.image_size}x{config.data.image_size} crops of {WIDTH}x{HEIGHT} JPEGs, batch "
    f"{batch_size}, {batches} batches per round after a first one, median of {rounds} rounds\n"
  )
  print("| data.workers | images/s | ms/batch | first batch (s) |")
  print("|---:|---:|---:|---:|")
  for n in workers:
    seconds, start = statistics.median(times[n]), statistics.median(first[n])
    print(f"| {n} | {batches * batch_size / seconds:.1f} | {seconds / batches * 1e3:.0f} | {start:.1f} |")


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workers", default="0,1,2", help="comma-separated worker counts")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--batches", type=int, default=8, help="timed batches per round and worker count")
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--images", type=int, default=512)
  args = parser.parse_args()
  main([int(n) for n in args.workers.split(",")], args.rounds, args.batches, args.batch_size, args.images)
