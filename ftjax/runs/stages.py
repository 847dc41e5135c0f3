"""A run as the explicit stages it needs, each with its own workdir, run in order by the driver.

A config whose method needs another run first is a sequence: `consistent` with
`consistent.transition='estimate'` is (1) the plain fine-tuning run the estimate reads, in
`consistent.estimator_workdir` or `WORKDIR/transition_estimator`; (2) the estimate of F from its
predictions, written to `WORKDIR/transition_matrix.json`; (3) the run itself, whose method reads F from
there. Every stage resumes (a training stage from its latest checkpoint) and a finished identical
stage is reused as it is; stages already done are left out (a finished run, or an F already written).
"""

import functools
import logging
import os
from typing import Callable, NamedTuple

import ml_collections
import numpy as np

from ftjax import progress_logging
from ftjax.methods import transition_estimation
from ftjax.train import loop
from ftjax.train.experiment import build_run_setup, checked_config

log = logging.getLogger(__name__)


class Stage(NamedTuple):
  """One stage of a run: `label` names it in progress lines ('' for the run itself), `workdir` is
  where it works, `run()` does it (returning at once when it finished before) and returns its result."""

  label: str
  workdir: str
  run: Callable[[], object]


def train_estimator(config: ml_collections.ConfigDict, estimator_dir: str) -> dict:
  """Trains (or resumes, or reuses when finished) the plain run F is estimated from, after checking
  that a `consistent.estimator_workdir` holds no run of another config."""
  if config.consistent.estimator_workdir:
    transition_estimation.check_estimator_workdir(config, estimator_dir)
  log.info("plain fine-tuning run in %s", estimator_dir)
  return loop.train_and_evaluate(transition_estimation.estimator_config(config), estimator_dir)


def estimate_transition(config: ml_collections.ConfigDict, workdir: str, estimator_dir: str) -> np.ndarray:
  """The `consistent.estimator` estimate of F from the finished plain run in `estimator_dir` (its
  probabilities on the noisy training split), written to `workdir/transition_matrix.json`."""
  setup = build_run_setup(transition_estimation.estimator_config(config))
  model = loop.restore_trained_model(setup, estimator_dir)
  probs = loop.predict_probabilities(setup, model, setup.splits.train)
  estimate = transition_estimation.estimate_from_probabilities(config, probs, setup.splits.train.labels)
  log.info(
    "transition matrix estimate in %s", transition_estimation.write_estimate(config, workdir, estimator_dir, estimate)
  )
  return estimate


def stages(config: ml_collections.ConfigDict, workdir: str, *, allow_config_change: bool = False) -> list[Stage]:
  """The stages of `config` in `workdir` still to run, in order; the last is the run itself
  (`loop.train_and_evaluate`). The estimation stages come only while the run is unfinished and its
  F is not written; a workdir started with another config fails here, before any stage trains."""
  config = checked_config(config)
  run = Stage(
    "", workdir, functools.partial(loop.train_and_evaluate, config, workdir, allow_config_change=allow_config_change)
  )
  if (
    not transition_estimation.needs_estimate(config)
    or loop.stored_results(workdir, config) is not None
    or os.path.exists(transition_estimation.estimate_path(workdir))
  ):
    return [run]
  loop.check_config_unchanged(workdir, config, allow_config_change)
  estimator_dir = transition_estimation.estimator_workdir(config, workdir)
  return [
    Stage("transition estimator", estimator_dir, functools.partial(train_estimator, config, estimator_dir)),
    Stage("transition estimator", workdir, functools.partial(estimate_transition, config, workdir, estimator_dir)),
    run,
  ]


def run_with_stages(config: ml_collections.ConfigDict, workdir: str, *, allow_config_change: bool = False) -> dict:
  """Runs every stage of `config` in `workdir` (`stages`) and returns the results of the run itself,
  as `loop.train_and_evaluate` returns them."""
  results = None
  for stage in stages(config, workdir, allow_config_change=allow_config_change):
    if stage.label:
      with progress_logging.labelled(stage.label):
        stage.run()
    else:
      results = stage.run()
  return results
