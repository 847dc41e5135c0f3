"""The Hessian measures as concurrent tasks (ftjax.runs.hessian_tasks): the same numbers at any concurrency, each
task equal to its estimator called alone, and a failing task's exception raised."""

import threading

import chex
import jax
import numpy as np
import pytest

from ftjax import generalization, hessian
from ftjax.runs import hessian_tasks
from ftjax.runs.measure import MeasureSettings
from tests.test_hessian import TinyCNN, tiny_problem

SETTINGS = MeasureSettings(num_probes=4, eigen_iterations=4, lanczos_steps=3, noise_draws=2)


@pytest.fixture(scope="module")
def problem():
  """(two per-batch losses, params, anchor: params moved by a seeded step, sigmas, layers from the input)."""
  loss_a, params, _, _ = tiny_problem(TinyCNN(), (5, 5, 2), seed=0)
  loss_b = tiny_problem(TinyCNN(), (5, 5, 2), seed=1)[0]
  keys = iter(jax.random.split(jax.random.key(2), 8))
  anchor = jax.tree.map(lambda w: w + 0.1 * jax.random.normal(next(keys), w.shape), params)
  sigmas = generalization.relative_sigmas(params, 0.1)
  return [loss_a, loss_b], params, anchor, sigmas, ["conv/kernel", "head/kernel"]


def measured(problem, concurrency: int, settings: MeasureSettings = SETTINGS) -> hessian_tasks.HessianMeasures:
  losses, params, anchor, sigmas, order = problem
  return hessian_tasks.hessian_measures(losses, params, anchor, sigmas, order, settings, jax.random.key(3), concurrency)


def test_concurrency_changes_no_number(problem):
  one_at_a_time = measured(problem, 1)
  chex.assert_trees_all_equal(measured(problem, 2), one_at_a_time)
  chex.assert_trees_all_equal(measured(problem, 4), one_at_a_time)
  assert list(one_at_a_time.layers) == ["conv/kernel", "head/kernel"]  # the params' order, whatever ran first


@pytest.mark.parametrize("linearize", [True, False])
def test_each_task_is_its_estimator_called_alone(problem, linearize):
  losses, params, anchor, sigmas, _ = problem
  settings = SETTINGS._replace(linearize=linearize)
  found, key = measured(problem, 2, settings), jax.random.key(3)
  traces = hessian.block_traces(
    losses,
    params,
    jax.random.fold_in(key, 0),
    SETTINGS.num_probes,
    blocks={**hessian.layer_blocks(params), **hessian.network_block(params)},
    linearize=linearize,
  )
  assert found.traces == traces
  network = hessian.top_eigenvalues(
    losses,
    params,
    jax.random.fold_in(key, 1),
    1,
    max_iterations=SETTINGS.eigen_iterations,
    tol=SETTINGS.eigen_tol,
    linearize=linearize,
  )
  chex.assert_trees_all_equal(found.network_eigen, network)
  differences = generalization.layer_differences(params, anchor)
  for i, name in enumerate(differences):  # layer i draws from fold_in(fold_in(key, 2), i), i in the params' order
    eigen = hessian.top_eigenvalues(
      losses,
      params,
      jax.random.fold_in(jax.random.fold_in(key, 2), i),
      1,
      layer=name,
      max_iterations=SETTINGS.eigen_iterations,
      tol=SETTINGS.eigen_tol,
      linearize=linearize,
    )
    assert found.layers[name]["top_eigenvalue"] == float(eigen.eigenvalues[0])
    positive = [
      generalization.positive_part_quadratic_form(
        loss, params, name, differences[name], SETTINGS.lanczos_steps, linearize
      )
      for loss in losses
    ]
    assert found.layers[name]["paper_positive_part"] == max(positive)
  stability = generalization.layer_noise_stability(
    losses, params, sigmas, jax.random.fold_in(key, 3), SETTINGS.noise_draws
  )
  assert found.stability == stability
  authors = [generalization.full_hvp_quadratic_forms(loss, params, anchor) for loss in losses]
  assert found.authors == generalization.max_over_batches(authors)


def test_linearizing_changes_the_measures_by_rounding_alone(problem):
  linearized, whole = measured(problem, 2), measured(problem, 2, SETTINGS._replace(linearize=False))
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
  jax.tree.map(close, tuple(linearized.traces.values()), tuple(whole.traces.values()))
  close(linearized.network_eigen.eigenvalues, whole.network_eigen.eigenvalues)
  for name, layer in linearized.layers.items():
    close(layer["top_eigenvalue"], whole.layers[name]["top_eigenvalue"])
    close(layer["paper_positive_part"], whole.layers[name]["paper_positive_part"])


def test_tasks_run_at_once_and_report_as_they_finish():
  started = threading.Barrier(2, timeout=10)

  def waits_for_the_other(value):
    started.wait()  # raises BrokenBarrierError unless both tasks run at the same time
    return value

  finished = []
  tasks = {"a": lambda: waits_for_the_other(1), "b": lambda: waits_for_the_other(2), "c": lambda: 3}
  assert hessian_tasks.run_tasks(tasks, 2, lambda name, result: finished.append((name, result))) == {
    "a": 1,
    "b": 2,
    "c": 3,
  }
  assert sorted(finished) == [("a", 1), ("b", 2), ("c", 3)]


def test_a_failing_task_raises_and_drops_the_waiting_ones():
  ran = []

  def fails():
    raise FloatingPointError("HVP overflowed")

  tasks = {"fails": fails, **{f"later {i}": (lambda i=i: ran.append(i)) for i in range(50)}}
  with pytest.raises(FloatingPointError, match="HVP overflowed"):
    hessian_tasks.run_tasks(tasks, 1, lambda name, result: None)
  assert len(ran) <= 2  # one at a time: the failure comes first; the worker may start one more before the drop
