"""The noise-transition matrix F that the consistent loss corrects with (SPEC §3.4): the true one,
one read from a file, or an estimate from a plainly fine-tuned model — dual-T (SPEC, the authors'
code) or anchor points alone — computed once per workdir and kept in `workdir/transition_matrix.json`."""

import json
import os

import ml_collections
import numpy as np

from ftjax.methods.base import MethodContext
from ftjax.methods.consistent_loss import anchor_transition, dual_t_estimate

FILE_NAME = "transition_matrix.json"
ESTIMATOR_DIR = "transition_estimator"


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
  """`config` as plain fine-tuning: the run whose predictions the dual-T estimator reads."""
  plain = ml_collections.ConfigDict(config.to_dict())
  plain.method = "none"
  return plain


def estimate_in_workdir(config: ml_collections.ConfigDict, workdir: str) -> np.ndarray:
  """The `consistent.estimator` estimate of F from a plain fine-tuning run in `workdir/transition_estimator`
  (trained, or resumed, on the same noisy labels), saved to `workdir/transition_matrix.json`."""
  from ftjax.train import loop  # the estimator is itself a training run

  path = os.path.join(workdir, FILE_NAME)
  estimator_dir = os.path.join(workdir, ESTIMATOR_DIR)
  plain = estimator_config(config)
  loop.train_and_evaluate(plain, estimator_dir)
  exp = loop.build_experiment(plain, estimator_dir)
  probs = loop.predict_probabilities(exp, loop.restore_trained_state(exp, estimator_dir), exp.splits.train)
  percentile = config.consistent.anchor_percentile
  if config.consistent.estimator == "dual_t":
    estimate = dual_t_estimate(probs, np.asarray(exp.splits.train.labels), percentile)
  else:
    estimate = anchor_transition(probs, percentile)
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
