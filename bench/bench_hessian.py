"""Time of a gradient, an HVP, and Hessian traces per layer vs for the whole network (docs/methods.md §4.1–4.2).

ResNet-18 (width 16, small stem), batch 64 of 28x28x1 images, one device, eval-mode loss. Every
variant is compiled first; then `--rounds` rounds run each in turn (interleaved, so drifting machine
load hits all alike) and the table reports the median over rounds, with ratios to the gradient and
to the whole-network trace. The traces use `--probes` HVPs each; 'HVP, vmapped xN' is one call
of `flat_products` on N probes, per probe.

  python bench/bench_hessian.py [--rounds 5] [--probes 8]
"""

import argparse
import functools
import statistics
import time
from typing import Callable

import jax
import numpy as np
import optax

from ftjax import hessian
from ftjax.models import create_model

BATCH = 64
VMAPPED = 4


def loss_and_params():
  """(loss as a Partial over a random batch, params) of the default model."""
  model = create_model("resnet18", 10, width=16, stem="small")
  rng = np.random.default_rng(0)
  batch = {
    "image": rng.normal(size=(BATCH, 28, 28, 1)).astype(np.float32),
    "label": rng.integers(0, 10, BATCH).astype(np.int32),
  }
  variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), batch["image"][:1])

  def loss(params, batch_stats, batch):
    logits = model.apply({"params": params, "batch_stats": batch_stats}, batch["image"], train=False)
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()

  return jax.tree_util.Partial(loss, batch_stats=variables["batch_stats"], batch=batch), variables["params"]


def variants(loss_fn, params, probes: int) -> dict[str, tuple[Callable[[], object], int]]:
  """{name: (a function that blocks until done, how many HVPs or gradients it is worth)}."""
  grad = jax.jit(lambda f, p: jax.grad(f)(p))
  hvp = jax.jit(hessian.hvp)
  tangents = jax.random.normal(jax.random.key(1), (VMAPPED, sum(x.size for x in jax.tree.leaves(params))))
  key = jax.random.key(2)
  return {
    "gradient": (lambda: jax.block_until_ready(grad(loss_fn, params)), 1),
    "HVP": (lambda: jax.block_until_ready(hvp(loss_fn, params, params)), 1),
    f"HVP, vmapped x{VMAPPED}": (
      lambda: jax.block_until_ready(hessian.flat_products(loss_fn, params, tangents)),
      VMAPPED,
    ),
    f"per-layer traces ({probes} probes)": (lambda: hessian.layer_traces(loss_fn, params, key, probes), probes),
    f"network trace ({probes} probes)": (lambda: hessian.network_trace(loss_fn, params, key, probes), probes),
  }


def main(rounds: int, probes: int) -> None:
  loss_fn, params = loss_and_params()
  runs = variants(loss_fn, params, probes)
  for name, (run, _) in runs.items():
    start = time.perf_counter()
    run()
    print(f"compiled and ran {name!r} in {time.perf_counter() - start:.1f} s", flush=True)
  times = {name: [] for name in runs}
  for _ in range(rounds):
    for name, (run, _) in runs.items():
      start = time.perf_counter()
      run()
      times[name].append(time.perf_counter() - start)

  median = {name: statistics.median(t) for name, t in times.items()}
  gradient, network = median["gradient"], median[f"network trace ({probes} probes)"]
  print(f"\n{jax.devices()[0].device_kind}, batch {BATCH}, {rounds} rounds, median")
  print(f"{'variant':30s} {'ms':>9s} {'ms/unit':>9s} {'/ gradient':>11s} {'/ network trace':>16s}")
  for name, (_, units) in runs.items():
    per_unit = median[name] / units
    print(
      f"{name:30s} {median[name] * 1e3:9.1f} {per_unit * 1e3:9.1f} {per_unit / gradient:11.2f} "
      f"{median[name] / network:16.3f}"
    )


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--probes", type=int, default=8)
  args = parser.parse_args()
  main(args.rounds, args.probes)
