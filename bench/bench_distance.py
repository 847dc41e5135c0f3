"""Train-step time of the default model with and without each distance transform (docs/methods.md §2).

ResNet-18 (width 16, small stem), batch 64 of 28x28x1 images, SGD with momentum, one device. Every
variant is compiled first; then rounds of `--steps` steps run each variant in turn (interleaved, so
drifting machine load hits all alike) and the table reports the median over rounds of ms/step.

  python bench/bench_distance.py [--rounds 5] [--steps 10]
"""

import argparse
import functools
import statistics
import time

import jax
import numpy as np
import optax

from ftjax import layer_groups, parallel
from ftjax.distance import anchors, batchnorm, penalty, projection, radii
from ftjax.methods.base import Method, cross_entropy_loss
from ftjax.models import create_model, structure_of
from ftjax.train.state import create_train_state
from ftjax.train.steps import CompiledSteps

BATCH = 64


def variants(params, batch_stats) -> dict[str, tuple[optax.GradientTransformation, optax.GradientTransformation]]:
  """{name: (pre_optimizer, post_optimizer)} for the plain step and each transform."""
  structure = structure_of("resnet18")
  anchor = anchors.anchor_params(params, "zero", structure.head_pattern)
  patterns = structure.groups
  groups = layer_groups.assign_groups(params, patterns)
  per_layer = lambda value: radii.layer_values(
    groups,
    radii.group_values(layer_groups.group_order(patterns), value, 2.0, 10 * value, "authors", head=structure.head),
  )
  identity = optax.identity()
  return {
    "plain": (identity, identity),
    "frobenius projection": (identity, projection.distance_projection(anchor, per_layer(1.0), "frobenius")),
    "mars projection (rescale)": (identity, projection.distance_projection(anchor, per_layer(1.0), "mars")),
    "mars projection (exact)": (identity, projection.distance_projection(anchor, per_layer(1.0), "mars", "exact")),
    "l2-sp penalty": (
      penalty.add_penalty_gradient(functools.partial(penalty.l2sp_penalty, weights=per_layer(1e-3)), anchor),
      identity,
    ),
    "layer-wise mars penalty": (
      penalty.add_penalty_gradient(
        functools.partial(penalty.layerwise_penalty, weights=per_layer(1e-3), norm="mars"), anchor
      ),
      identity,
    ),
    "batchnorm constraint": (identity, batchnorm.batchnorm_constraint(anchor, batch_stats, 0.1)),
  }


def main(rounds: int, steps: int) -> None:
  model = create_model("resnet18", 10, width=16, stem="small")
  rng = np.random.default_rng(0)
  batch = {
    "image": rng.normal(size=(BATCH, 28, 28, 1)).astype(np.float32),
    "label": rng.integers(0, 10, BATCH).astype(np.int32),
    "index": np.arange(BATCH, dtype=np.int32),
  }
  # Host copies: every variant's state is placed from them, and the train step donates its state.
  variables = jax.device_get(jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), batch["image"][:1]))
  mesh = parallel.data_mesh(jax.devices()[:1])
  batch = parallel.shard_batch(batch, mesh)

  runs = {}
  for name, (pre, post) in variants(variables["params"], variables["batch_stats"]).items():
    method = Method(name, loss=cross_entropy_loss, pre_optimizer=pre, post_optimizer=post)
    tx = optax.chain(pre, optax.sgd(0.05, momentum=0.9), post)
    compiled = CompiledSteps(mesh, model=model, method=method, tx=tx, steps_per_epoch=100)
    state = parallel.replicate(create_train_state(variables, tx, (), jax.random.key(1)), mesh)
    start = time.perf_counter()
    state, metrics = compiled.train(state, batch)
    jax.block_until_ready(metrics)
    print(f"compiled {name!r} in {time.perf_counter() - start:.1f} s", flush=True)
    runs[name] = [compiled.train, state, []]

  for _ in range(rounds):
    for run in runs.values():
      train, state, times = run
      start = time.perf_counter()
      for _ in range(steps):
        state, metrics = train(state, batch)
      jax.block_until_ready((state, metrics))
      times.append((time.perf_counter() - start) / steps * 1e3)
      run[1] = state

  plain = statistics.median(runs["plain"][2])
  print(f"\n{jax.devices()[0].device_kind}, {rounds} rounds x {steps} steps, median ms/step")
  print(f"{'variant':28s} {'ms/step':>9s} {'min':>9s} {'ratio':>7s}")
  for name, (_, _, times) in runs.items():
    median = statistics.median(times)
    print(f"{name:28s} {median:9.2f} {min(times):9.2f} {median / plain:7.3f}")


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=10)
  args = parser.parse_args()
  main(args.rounds, args.steps)
