"""The Hessian measures of one trained model (docs/methods.md §4) as independent tasks: the traces, the network's
top eigenvalue, each layer's top eigenvalue and v_i^T H_ii^+ v_i, the authors' full-HVP quadratic forms and the
noise stability.

On a one-device mesh `concurrency` tasks run at once in threads: each task is a host loop of small compiled calls
with a host round trip after each (power iteration, Lanczos), which leaves the cores idle between calls when it
runs alone. Every task draws from its own keys, so no number depends on how many run at once or in which order
they finish. A multi-device mesh runs them one after another: its programs hold collectives, which every device
must start in the same order.
"""

import concurrent.futures
import functools
import logging
from typing import Callable, NamedTuple, Sequence

import jax
from tqdm import tqdm

from ftjax import generalization, hessian

log = logging.getLogger("ftjax.measure")


class HessianMeasures(NamedTuple):
  """traces: {layer, NETWORK: TraceEstimate}; network_eigen: the network's TopEigenvalues; layers: {layer:
  {'top_eigenvalue', 'top_eigenvalue_iterations', 'paper_positive_part'}} in the params' order; authors: {layer:
  v_i^T (H v)_i, max over batches}; stability: {layer, ALL_LAYERS: StabilityEstimate}."""

  traces: dict
  network_eigen: hessian.TopEigenvalues
  layers: dict[str, dict]
  authors: dict[str, float]
  stability: dict


def layer_measure(losses: list, params, name: str, difference: jax.Array, settings, key: jax.Array) -> dict:
  """The top eigenvalue of the layer's block H_ii (on the mean loss of all batches) and v_i^T H_ii^+ v_i (max over
  batches) for the layer `name` with v_i = `difference`."""
  eigen = hessian.top_eigenvalues(
    losses,
    params,
    key,
    1,
    layer=name,
    max_iterations=settings.eigen_iterations,
    tol=settings.eigen_tol,
    linearize=settings.linearize,
  )
  positive = max(
    generalization.positive_part_quadratic_form(
      loss, params, name, difference, settings.lanczos_steps, settings.linearize
    )
    for loss in losses
  )
  return {
    "top_eigenvalue": float(eigen.eigenvalues[0]),
    "top_eigenvalue_iterations": int(eigen.num_iterations[0]),
    "paper_positive_part": positive,
  }


def run_tasks(
  tasks: dict[str, Callable[[], object]], concurrency: int, on_done: Callable[[str, object], None]
) -> dict[str, object]:
  """{name: task()}, `concurrency` tasks at a time in threads, in the order given; `on_done(name, result)` runs in
  the calling thread as each finishes. A task's exception is raised here once the running tasks end (the waiting
  ones are dropped)."""
  pool = concurrent.futures.ThreadPoolExecutor(concurrency, thread_name_prefix="ftjax-measure")
  try:
    futures = {pool.submit(task): name for name, task in tasks.items()}
    for future in concurrent.futures.as_completed(futures):
      on_done(futures[future], future.result())
    return {name: future.result() for future, name in futures.items()}
  finally:
    pool.shutdown(cancel_futures=True)


def hessian_measures(
  losses: list,
  params,
  anchor,
  sigmas: dict[str, float],
  in_network_order: Sequence[str],
  settings,
  key: jax.Array,
  concurrency: int,
) -> HessianMeasures:
  """Every Hessian measure of `params` on the per-batch `losses` (`settings`: a `measure.MeasureSettings`), the
  layers' distances measured from `anchor` and their noise from `sigmas`; progress lines as tasks finish. The
  layers' tasks start input first (`in_network_order`, the layers from the input to the output), since a layer's
  products cost more the further it is from the output."""
  differences = generalization.layer_differences(params, anchor)
  layer_key, index = jax.random.fold_in(key, 2), {name: i for i, name in enumerate(differences)}
  tasks = {  # the longest first, so the layers' many short tasks fill in around them
    "traces": functools.partial(
      hessian.block_traces,
      losses,
      params,
      jax.random.fold_in(key, 0),
      settings.num_probes,
      blocks={**hessian.layer_blocks(params), **hessian.network_block(params)},
      method=settings.trace_method,
      linearize=settings.linearize,
    ),
    "stability": functools.partial(
      generalization.layer_noise_stability, losses, params, sigmas, jax.random.fold_in(key, 3), settings.noise_draws
    ),
    "network": functools.partial(
      hessian.top_eigenvalues,
      losses,
      params,
      jax.random.fold_in(key, 1),
      1,
      max_iterations=settings.eigen_iterations,
      tol=settings.eigen_tol,
      linearize=settings.linearize,
    ),
    "authors": lambda: generalization.max_over_batches(
      [generalization.full_hvp_quadratic_forms(loss, params, anchor) for loss in losses]
    ),
    **{
      f"layer {name}": functools.partial(
        layer_measure, losses, params, name, differences[name], settings, jax.random.fold_in(layer_key, index[name])
      )
      for name in in_network_order
    },
  }
  log.info(
    "traces (%d probes, %s), top eigenvalues, v^T H^+ v of %d layers, noise stability (%d draws): %d at a time",
    settings.num_probes,
    settings.trace_method,
    len(differences),
    settings.noise_draws,
    concurrency,
  )
  with tqdm(total=len(tasks), desc="Hessian measures", unit="task", disable=jax.process_index() != 0) as bar:

    def finished(name: str, result) -> None:
      bar.update()
      log.info("%s: %s", name, task_summary(name, result))

    done = run_tasks(tasks, concurrency, finished)
  return HessianMeasures(
    traces=done["traces"],
    network_eigen=done["network"],
    layers={name: done[f"layer {name}"] for name in differences},
    authors=done["authors"],
    stability=done["stability"],
  )


def task_summary(name: str, result) -> str:
  """What the finished task `name` found, in a few words."""
  if name.startswith("layer "):
    eigenvalue, iterations = result["top_eigenvalue"], result["top_eigenvalue_iterations"]
    return f"top eigenvalue {eigenvalue:.4g} ({iterations} HVPs), v^T H^+ v {result['paper_positive_part']:.4g}"
  if name == "traces":
    return f"network trace {result[hessian.NETWORK].estimate:.4g}"
  if name == "network":
    return f"network top eigenvalue {result.eigenvalues[0]:.4g} ({result.num_iterations[0]} HVPs)"
  if name == "stability":
    return f"noise stability of all layers {result[generalization.ALL_LAYERS].estimate:.4g}"
  return "v_i^T (H v)_i of every layer"
