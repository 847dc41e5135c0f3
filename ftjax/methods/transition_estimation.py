"""The noise-transition matrix F that the consistent loss corrects with (docs/methods.md §3.4): the true one,
one read from a file, or an estimate from a plainly fine-tuned model — dual-T (docs/methods.md §3.4, the authors'
code) or anchor points alone — computed once per workdir and kept in `workdir/transition_matrix.json`.
The plain run it estimates from is `workdir/transition_estimator`, or an identical finished plain run
that `consistent.estimator_workdir` names (a sweep's plain cell)."""

import json
import logging
import os

import ml_collections
import numpy as np

from ftjax import progress_logging
from ftjax.config_validation import ConfigError
from ftjax.methods.base import MethodContext
from ftjax.methods.consistent_loss import anchor_transition, dual_t_estimate

FILE_NAME = "transition_matrix.json"
ESTIMATOR_DIR = "transition_estimator"

log = logging.getLogger(__name__)


def read_matrix(path: str, num_classes: int) -> np.ndarray:
  """A C×C matrix from a .npy file or a .json file holding a list of rows (or {'estimate': rows})."""
  if path.endswith(".npy"):
    matrix = np.load(path)
  else:
    with open(path) as f:
      content = json.load(f)
    matrix = np.asarray(content["estimate"] if isinstance(content, dict) else content, np.float64)
  if matrix.shape != (num_classes, num_classes):
    raise ValueError(f"transition matrix in {path!r} has shape {matrix.shape}; valid: ({num_classes}, {num_classes})")
  return matrix


def estimator_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` as plain fine-tuning: the run whose predictions the dual-T estimator reads (with
  `consistent.estimator_workdir` back at its default '')."""
  plain = ml_collections.ConfigDict(config.to_dict())
  plain.method = "none"
  plain.consistent.estimator_workdir = ""
  return plain


def estimator_workdir(config: ml_collections.ConfigDict, workdir: str) -> str:
  """The workdir of the estimator run: `consistent.estimator_workdir`, or `workdir/transition_estimator` when ''."""
  return config.consistent.estimator_workdir or os.path.join(workdir, ESTIMATOR_DIR)


def differing_fields(recorded: dict, expected: dict, prefix: str = "") -> list[str]:
  """The dotted names of the fields whose values differ between two resolved config JSONs."""
  fields = []
  for key in sorted(set(recorded) | set(expected)):
    a, b = recorded.get(key), expected.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      fields += differing_fields(a, b, f"{prefix}{key}.")
    elif a != b:
      fields.append(prefix + key)
  return fields


def estimator_run_differences(config: ml_collections.ConfigDict, recorded: dict) -> list[str]:
  """The fields in which a run's resolved config JSON `recorded` (its config.json) differs from the
  estimator run of `config` ([] when it is that run)."""
  return differing_fields(recorded, json.loads(estimator_config(config).to_json()))


def check_estimator_workdir(config: ml_collections.ConfigDict, estimator_dir: str) -> None:
  """One-line `ConfigError` when `estimator_dir` holds a run (config.json) of a config other than the estimator's."""
  path = os.path.join(estimator_dir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    changed = estimator_run_differences(config, json.load(f))
  if changed:
    raise ConfigError(f"config.consistent.estimator_workdir={estimator_dir!r} holds a run of another config (fields "
                      f"{', '.join(changed)} differ from this config with method='none'); valid: the workdir of "
                      "that plain run, or '' for a run of its own in WORKDIR/transition_estimator")


def estimate_in_workdir(config: ml_collections.ConfigDict, workdir: str) -> np.ndarray:
  """The `consistent.estimator` estimate of F from a plain fine-tuning run on the same noisy labels,
  saved to `workdir/transition_matrix.json`: the run in `consistent.estimator_workdir` (checked to
  be of `estimator_config(config)`; trained there if unfinished), or, when that is '', one trained
  (or resumed) in `workdir/transition_estimator`. Its progress lines are labelled 'transition estimator'."""
  from ftjax.train import loop  # the estimator is itself a training run

  path = os.path.join(workdir, FILE_NAME)
  estimator_dir = estimator_workdir(config, workdir)
  if config.consistent.estimator_workdir:
    check_estimator_workdir(config, estimator_dir)
  plain = estimator_config(config)
  with progress_logging.labelled("transition estimator"):
    log.info("plain fine-tuning run in %s", estimator_dir)
    loop.train_and_evaluate(plain, estimator_dir)
    exp = loop.build_experiment(plain, estimator_dir)
    probs = loop.predict_probabilities(exp, loop.restore_trained_state(exp, estimator_dir), exp.splits.train)
  percentile = config.consistent.anchor_percentile
  if config.consistent.estimator == "dual_t":
    estimate = dual_t_estimate(probs, np.asarray(exp.splits.train.labels), percentile)
  else:
    estimate = anchor_transition(probs, percentile)
  os.makedirs(workdir, exist_ok=True)  # the run builds its method before it creates its workdir
  with open(path, "w") as f:
    json.dump({"estimate": np.asarray(estimate).tolist(), "estimator": config.consistent.estimator,
               "estimator_workdir": estimator_dir, "anchor_percentile": percentile}, f, indent=2)
  return np.asarray(estimate)


def transition_matrix(context: MethodContext) -> np.ndarray:
  """F as `config.consistent.transition` says: 'true' (the synthetic noise's matrix), 'estimate'
  (read from the workdir, or estimated there first), or a .json / .npy path."""
  spec, config = context.config.consistent.transition, context.config
  if spec == "true":
    if context.noise_transition is None:
      raise ValueError("consistent.transition='true' needs synthetic noise (noise.type != 'none'); "
                       "valid: 'estimate' or a .json/.npy file")
    return np.asarray(context.noise_transition)
  if spec != "estimate":
    return read_matrix(spec, context.num_classes)
  if context.workdir is None:
    raise ValueError("consistent.transition='estimate' needs the run's workdir to keep the estimate in")
  saved = os.path.join(context.workdir, FILE_NAME)
  if os.path.exists(saved):
    return read_matrix(saved, context.num_classes)
  return estimate_in_workdir(config, context.workdir)
