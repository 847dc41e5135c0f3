"""The noise-transition matrix F that the consistent loss corrects with (docs/methods.md §3.4): the true one,
one read from a file, or an estimate from a plainly fine-tuned model — dual-T (docs/methods.md §3.4, the authors'
code) or anchor points alone — kept in `workdir/transition_matrix.json`.

An estimate is made by earlier stages of the run, which the driver runs (`ftjax.runs.stages`): the plain
run it estimates from is trained in `workdir/transition_estimator`, or is an identical finished plain run
that `consistent.estimator_workdir` names (a sweep's plain cell); this module only says which run that
is, computes the estimate from its predictions, and writes and reads the file.
"""

import json
import os

import ml_collections
import numpy as np

from ftjax import config_layout
from ftjax.config_validation import ConfigError
from ftjax.methods.base import MethodContext
from ftjax.methods.consistent_loss import anchor_transition, dual_t_estimate

FILE_NAME = "transition_matrix.json"
ESTIMATOR_DIR = "transition_estimator"
STAGES_FUNCTION = "ftjax.runs.stages.run_with_stages"  # the driver that runs the stages before such a run


def read_matrix(path: str, num_classes: int | None) -> np.ndarray:
  """A C×C matrix from a .npy file or a .json file holding a list of rows (or {'estimate': rows}); a file
  that holds none (with `num_classes` None: no square matrix) is a one-line ValueError naming it."""
  c = "C" if num_classes is None else num_classes
  valid = f"valid: a .npy file of a {c}x{c} array, or a .json file of {c} rows of {c} numbers (or {{'estimate': rows}})"
  try:
    if path.endswith(".npy"):
      matrix = np.load(path)
    else:
      with open(path) as f:
        content = json.load(f)
      matrix = np.asarray(content["estimate"] if isinstance(content, dict) else content, np.float64)
  except (ValueError, KeyError, TypeError, EOFError) as e:
    detail = " ".join(str(e).split())[:120]
    raise ValueError(f"transition matrix file {path!r} is unreadable ({type(e).__name__}: {detail}); {valid}") from e
  square = matrix.ndim == 2 and matrix.shape[0] == matrix.shape[1] and matrix.size > 0
  if (num_classes is None and not square) or (num_classes is not None and matrix.shape != (num_classes, num_classes)):
    raise ValueError(f"transition matrix in {path!r} has shape {matrix.shape}; {valid}")
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


def estimator_run_differences(config: ml_collections.ConfigDict, recorded: dict) -> list[str]:
  """The fields in which a run's resolved config JSON `recorded` (its config.json) differs from the
  estimator run of `config` ([] when it is that run)."""
  return config_layout.differing_fields(
    config_layout.in_sections(recorded), json.loads(estimator_config(config).to_json())
  )


def check_estimator_workdir(config: ml_collections.ConfigDict, estimator_dir: str) -> None:
  """One-line `ConfigError` when `estimator_dir` holds a run (config.json) of a config other than the estimator's."""
  path = os.path.join(estimator_dir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    changed = estimator_run_differences(config, json.load(f))
  if changed:
    raise ConfigError(
      f"config.consistent.estimator_workdir={estimator_dir!r} holds a run of another config (fields "
      f"{', '.join(changed)} differ from this config with method='none'); valid: the workdir of "
      "that plain run, or '' for a run of its own in WORKDIR/transition_estimator"
    )


def needs_estimate(config: ml_collections.ConfigDict) -> bool:
  """Whether `config` trains with an F estimated from another run (which a stage before it trains)."""
  return config.method == "consistent" and config.consistent.transition == "estimate"


def estimate_path(workdir: str) -> str:
  return os.path.join(workdir, FILE_NAME)


def estimate_from_probabilities(
  config: ml_collections.ConfigDict, probs: np.ndarray, noisy_labels: np.ndarray
) -> np.ndarray:
  """The `consistent.estimator` estimate of F (float64 [C, C]) from the estimator run's probabilities
  [n, C] on the noisy training examples and their labels [n]."""
  percentile = config.consistent.anchor_percentile
  if config.consistent.estimator == "dual_t":
    return dual_t_estimate(probs, np.asarray(noisy_labels), percentile)
  return anchor_transition(probs, percentile)


def write_estimate(config: ml_collections.ConfigDict, workdir: str, estimator_dir: str, estimate: np.ndarray) -> str:
  """Writes `workdir/transition_matrix.json` (the estimate, with how it was made); returns its path."""
  path = estimate_path(workdir)
  os.makedirs(workdir, exist_ok=True)
  with open(path, "w") as f:
    json.dump(
      {
        "estimate": np.asarray(estimate).tolist(),
        "estimator": config.consistent.estimator,
        "estimator_workdir": estimator_dir,
        "anchor_percentile": config.consistent.anchor_percentile,
      },
      f,
      indent=2,
    )
  return path


def check_estimate_in(config: ml_collections.ConfigDict, workdir: str | None) -> None:
  """One-line `ConfigError` when `config` trains with an estimated F that `workdir` does not hold yet:
  the stages before it (`STAGES_FUNCTION` runs them) make it."""
  if needs_estimate(config) and not (workdir and os.path.exists(estimate_path(workdir))):
    raise ConfigError(
      f"config.consistent.transition='estimate' needs F in {estimate_path(workdir or 'WORKDIR')!r}, "
      f"which the run's earlier stages write; valid: run the config through {STAGES_FUNCTION} "
      "(as python -m experiments.finetune does), or give F as 'true' or a .json/.npy path"
    )


def transition_matrix(context: MethodContext) -> np.ndarray:
  """F as `config.consistent.transition` says: 'true' (the synthetic noise's matrix), 'estimate'
  (read from the workdir, where the run's earlier stages wrote it), or a .json / .npy path."""
  spec, config = context.config.consistent.transition, context.config
  if spec == "true":
    if context.noise_transition is None:
      raise ValueError(
        "consistent.transition='true' needs synthetic noise (noise.type != 'none'); "
        "valid: 'estimate' or a .json/.npy file"
      )
    return np.asarray(context.noise_transition)
  if spec != "estimate":
    return read_matrix(spec, context.num_classes)
  check_estimate_in(config, context.workdir)
  return read_matrix(estimate_path(context.workdir), context.num_classes)
