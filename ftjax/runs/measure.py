"""Hessian-based generalisation measures of a finished fine-tuning run (docs/methods.md §4): its latest
checkpoint, restored with its data and model but without its method, measured on the first evaluation
batches of its training split. `measure` computes them as a dict; `measure_reports` writes them
(measures.json and plots). Progress bars with the time left go to stderr (process 0)."""

import dataclasses
import functools
import json
import logging
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ftjax import config_layout, data, generalization, hessian, label_noise, layer_groups, parallel
from ftjax.config_validation import ConfigError, as_config_error
from ftjax.distance import norms
from ftjax.methods import consistent_loss, distance_regularization, transition_estimation
from ftjax.runs import hessian_tasks
from ftjax.train import loop, selection, steps as train_steps
from ftjax.train.experiment import RunSetup, build_run_setup

log = logging.getLogger("ftjax.measure")


class MeasureSettings(NamedTuple):
  """What to compute and how hard to try (the flags of the same names say what each is). The
  defaults (2 batches of 128 examples, 20 probes) take under 2 minutes for the default ResNet-18
  run on a 2-core CPU, most of it in the per-layer eigenvalues and Lanczos quadratures."""

  num_probes: int = 20
  trace_method: str = "hutchinson"
  max_batches: int = 2
  batch_size: int = 128
  eigen_iterations: int = 10
  eigen_tol: float = 1e-2
  lanczos_steps: int = 10
  noise_scale: float = 0.1
  noise_draws: int = 4
  delta: float = 0.05
  seed: int = 0
  checkpoint: str = "final"
  density_runs: int = 0  # opt-in: density_steps more Hessian products per run
  density_steps: int = 30
  density_layers: bool = False
  labels: str = "given"
  loss: str = "cross_entropy"
  concurrency: int = 2  # Hessian measures computed at once on a one-device mesh (ftjax.runs.hessian_tasks)
  linearize: bool = True  # each batch's gradient linearized once per estimate (faster; holds its values)


DEFAULTS = MeasureSettings()
CHECKPOINTS = ("final", "selected")  # the run's last state, or the model selected on validation (ftjax.train.selection)
LABELS = ("given", "final")  # the training labels as given (noisy, if so), or those a method ended training on
LOSSES = ("cross_entropy", "forward_corrected")  # the train loss measured: plain, or the consistent loss's


def check_settings(settings: MeasureSettings, prefix: str = "--") -> None:
  """One-line error for a setting that cannot work, naming it as `prefix` + field (the flag, or
  the config field a sweep sets it by)."""
  if settings.trace_method not in ("hutchinson", "hutchpp"):
    raise ConfigError(f"{prefix}trace_method={settings.trace_method!r}; valid: 'hutchinson', 'hutchpp'")
  for field, valid in (("labels", LABELS), ("loss", LOSSES)):
    if getattr(settings, field) not in valid:
      raise ConfigError(f"{prefix}{field}={getattr(settings, field)!r}; valid: {', '.join(map(repr, valid))}")
  if settings.checkpoint not in CHECKPOINTS:
    raise ConfigError(f"{prefix}checkpoint={settings.checkpoint!r}; valid: {', '.join(map(repr, CHECKPOINTS))}")
  if settings.density_runs < 0 or (settings.density_runs and settings.density_steps < 2):
    raise ConfigError(
      f"{prefix}density_runs={settings.density_runs}, {prefix}density_steps={settings.density_steps}; valid: "
      "density_runs >= 0 (0 = no density) and density_steps >= 2"
    )
  minimums = dict(
    num_probes=6 if settings.trace_method == "hutchpp" else 2,
    max_batches=1,
    batch_size=1,
    eigen_iterations=1,
    lanczos_steps=1,
    noise_draws=2,
    concurrency=1,
  )
  for field, low in minimums.items():
    if getattr(settings, field) < low:
      method = f" with {prefix}trace_method={settings.trace_method}" if field == "num_probes" else ""
      raise ConfigError(f"{prefix}{field}={getattr(settings, field)}{method}; valid: an integer >= {low}")
  if not (settings.noise_scale > 0 and 0 < settings.delta < 1 and settings.eigen_tol > 0):
    raise ConfigError(
      f"{prefix}noise_scale={settings.noise_scale}, {prefix}delta={settings.delta}, "
      f"{prefix}eigen_tol={settings.eigen_tol}; valid: noise_scale > 0, 0 < delta < 1, eigen_tol > 0"
    )


def check_finished(workdir: str, checkpoint: str = "final", labels: str = "given", loss: str = "cross_entropy") -> None:
  """One-line error unless `workdir` holds a finished run: a checkpoint, and config.json and results.json that
  hold JSON objects (and, for `checkpoint='selected'`, a model selected on validation; for `labels='final'`, the
  labels its method changed, as the measured model was trained on them (`labels_path`); for
  `loss='forward_corrected'`, a run of the consistent loss)."""
  checkpoints = os.path.join(workdir, "checkpoints")
  has_checkpoint = os.path.isdir(checkpoints) and any(name.isdigit() for name in os.listdir(checkpoints))
  if not (os.path.isfile(os.path.join(workdir, "results.json")) and has_checkpoint):
    raise ConfigError(
      f"workdir {workdir!r} holds no finished run (results.json and checkpoints/<step>/); "
      "valid: a workdir of a completed python -m experiments.finetune"
    )
  if not os.path.isfile(os.path.join(workdir, "config.json")):
    raise ConfigError(
      f"workdir {workdir!r} has no config.json, so its run cannot be rebuilt; valid: a workdir of a completed "
      "python -m experiments.finetune with the config.json it wrote"
    )
  read_run_json(workdir, "config.json")
  method = read_run_json(workdir, "results.json").get("method")
  if loss == "forward_corrected" and method != "consistent":
    raise ConfigError(
      f"--loss=forward_corrected measures the consistent loss, but workdir {workdir!r} holds a run of method "
      f"{method!r}; valid: --loss=cross_entropy, or a run of method 'consistent'"
    )
  if checkpoint == "selected" and selection.read_selected(workdir) is None:
    raise ConfigError(
      f"workdir {workdir!r} holds no selected model ({selection.SELECTED_DIR}/{selection.RECORD_FILE}: the run had "
      "no validation split, config.data.validation_fraction=0 and two config.data.splits); valid: "
      "--checkpoint=final, or a run with a validation split"
    )
  if labels == "final" and not os.path.isfile(labels_path(workdir, checkpoint)):
    if os.path.isfile(labels_path(workdir, "final")):
      raise ConfigError(
        f"workdir {workdir!r} keeps the labels its final model ended on but not those of its selected model "
        f"({selection.SELECTED_DIR}/{selection.LABELS_FILE}: a run made before ftjax kept them); valid: "
        "--checkpoint=final with --labels=final, or --labels=given"
      )
    raise ConfigError(
      f"workdir {workdir!r} holds no {loop.FINAL_LABELS_FILE} (its method {method!r} keeps no labels of its own, as "
      "regsl does); valid: --labels=given"
    )


def labels_path(workdir: str, checkpoint: str) -> str:
  """Where the run in `workdir` keeps the training labels its method changed: those its final model ended on, or
  (`checkpoint='selected'`) those its selected model was trained on at its step."""
  if checkpoint == "selected":
    return os.path.join(selection.selected_dir(workdir), selection.LABELS_FILE)
  return os.path.join(workdir, loop.FINAL_LABELS_FILE)


def read_json_object(path: str, valid: str, what: str = "") -> dict:
  """The JSON object in the file `path`; a one-line ConfigError naming it (`what` before its path) when it
  holds none (e.g. truncated), ending in what would be `valid`."""
  with open(path) as f:
    text = f.read()
  try:
    content = json.loads(text)
  except ValueError as e:
    raise ConfigError(f"{what}{path!r} is not valid JSON ({e}; truncated?); valid: {valid}") from e
  if not isinstance(content, dict):
    raise ConfigError(f"{what}{path!r} holds a JSON {type(content).__name__}; valid: {valid}")
  return content


def read_run_json(workdir: str, name: str) -> dict:
  """The JSON object in `workdir/name`; a one-line ConfigError naming a file that holds none (e.g. truncated)."""
  return read_json_object(
    os.path.join(workdir, name),
    f"the {name} a completed run writes (rerun python -m experiments.finetune on that workdir to rewrite it)",
  )


def recorded_config(workdir: str, defaults: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
  """The config the run in `workdir` recorded (config.json); fields it lacks (added to ftjax after
  the run was made) take their value in `defaults`."""
  recorded = config_layout.in_sections(read_run_json(workdir, "config.json"))
  if defaults is None:
    return ml_collections.ConfigDict(recorded)
  config = ml_collections.ConfigDict(defaults.to_dict())
  config.update(recorded)
  return config


class FinishedRun(NamedTuple):
  """A finished run restored for measuring: its workdir, its setup (config, data, model; no method),
  its latest checkpoint's model variables and its results.json."""

  workdir: str
  setup: RunSetup
  trained: loop.TrainedModel
  results: dict
  transition: np.ndarray | None = None  # F of the forward-corrected loss, when that is what is measured


def load_finished_run(
  workdir: str,
  batch_size: int,
  defaults: ml_collections.ConfigDict | None = None,
  checkpoint: str = "final",
  labels: str = "given",
  loss: str = "cross_entropy",
) -> FinishedRun:
  """The run in `workdir` (its config.json, completed by `defaults`) rebuilt without its method, with
  its latest checkpointed model variables (`checkpoint='final'`; checked to describe the step of its results.json)
  or the model it selected on validation (`'selected'`), and its results.json; with `labels='final'` its training
  split carries the labels the method trained that model on (`labels_path`), with `loss='forward_corrected'` the
  run's F is loaded."""
  check_finished(workdir, checkpoint, labels, loss)
  results = read_run_json(workdir, "results.json")
  setup = build_run_setup(recorded_config(workdir, defaults), check_method=False)
  try:
    parallel.check_global_batch_size(batch_size, setup.mesh)
  except ValueError as e:
    raise ConfigError(f"--batch_size: {e}") from e
  if labels == "final":
    final = np.load(labels_path(workdir, checkpoint))
    train = dataclasses.replace(setup.splits.train, labels=final)
    setup = setup._replace(splits=setup.splits._replace(train=train))
  transition = run_transition(setup, workdir) if loss == "forward_corrected" else None
  if checkpoint == "selected":
    return FinishedRun(workdir, setup, loop.restore_selected_model(setup, workdir), results, transition)
  trained = loop.restore_trained_model(setup, workdir)
  if trained.step != results["steps"]:
    raise ConfigError(
      f"workdir {workdir!r}: its latest checkpoint is step {trained.step} but results.json describes "
      f"step {results['steps']}; valid: a finished run (rerun experiments.finetune to finish it)"
    )
  return FinishedRun(workdir, setup, trained, results, transition)


def run_transition(setup: RunSetup, workdir: str) -> np.ndarray:
  """The F a consistent-loss run in `workdir` trained with (`consistent.transition`: the synthetic noise's, its
  estimate in the workdir, or a file)."""
  spec, classes = setup.config.consistent.transition, setup.num_classes
  if spec == "true":
    return np.asarray(setup.label_noise.transition)
  path = transition_estimation.estimate_path(workdir) if spec == "estimate" else spec
  with as_config_error():
    return transition_estimation.read_matrix(path, classes)


def forward_corrected_eval(setup: RunSetup, state, source, transition: np.ndarray) -> dict:
  """{'loss', 'max_loss', 'count'}: the forward-corrected loss −log (p F)_ỹ of `state` on `source`'s labels."""
  probs = np.asarray(loop.predict_probabilities(setup, state, source), np.float64) @ transition
  losses = -np.log(np.maximum(probs[np.arange(len(source)), np.asarray(source.labels)], np.finfo(np.float64).tiny))
  return {"loss": float(losses.mean()), "max_loss": float(losses.max()), "count": len(source)}


def masked_forward_corrected(model, params, batch_stats, batch, transition, inputs) -> jax.Array:
  """Mean forward-corrected loss (docs/methods.md §3.4) over the real examples of `batch` (mask 1), in eval mode."""
  logits = model.apply({"params": params, "batch_stats": batch_stats}, *(batch[k] for k in inputs), train=False)
  losses = consistent_loss.forward_corrected_losses(logits, batch["label"], transition)
  return jnp.sum(losses * batch["mask"]) / jnp.sum(batch["mask"])


def batch_losses(
  setup: RunSetup, state: loop.TrainedModel, settings: MeasureSettings, transition: np.ndarray | None = None
) -> tuple[list, int]:
  """([params -> masked mean loss on batch b] for the first `max_batches` evaluation batches of the training split,
  sharded over the mesh: cross-entropy, or the forward-corrected loss with `transition`; the number of real
  examples in them)."""
  if transition is None:
    loss = functools.partial(train_steps.masked_cross_entropy, setup.model, inputs=setup.structure.inputs)
  else:
    loss = functools.partial(
      masked_forward_corrected, setup.model, transition=jnp.asarray(transition), inputs=setup.structure.inputs
    )
  workers = setup.config.data.workers
  batches = data.eval_batches(setup.splits.train, setup.eval_preprocess, settings.batch_size, workers=workers)
  losses, count = [], 0
  for batch, _ in zip(batches, range(settings.max_batches)):
    losses.append(
      jax.tree_util.Partial(loss, batch_stats=state.batch_stats, batch=parallel.shard_batch(batch, setup.mesh))
    )
    count += int(batch["mask"].sum())
  return losses, count


def training_labels_transition(setup: RunSetup, settings: MeasureSettings) -> np.ndarray | None:
  """How the measured training labels are distributed given the clean ones, F [C, C]: the synthetic noise's F for
  the labels as given, the empirical F of the final labels against the clean ones for `labels='final'`; None
  without synthetic noise (no clean labels to compare with)."""
  transition = setup.label_noise.transition
  if transition is None or settings.labels != "final":
    return transition
  final = setup.splits.train.labels
  return label_noise.empirical_transition(setup.label_noise.clean_labels, final, transition.shape[0])


def matched_gap(measures: dict) -> float:
  """The generalisation gap the Hessian bound speaks of (docs/methods.md §4): test minus training loss with
  test labels distributed as the training labels are (under their synthetic noise, if any)."""
  for key in ("generalization_gap_forward_corrected", "generalization_gap_noisy_labels"):
    if key in measures:
      return measures[key]
  return measures["generalization_gap"]


def bound_text(value: float, vacuous: bool, trivial: str) -> str:
  """`value`, followed by '(vacuous: `trivial`)' when it is."""
  return f"{value:.4g}" + (f" (vacuous: {trivial})" if vacuous else "")


def measure(run: FinishedRun, settings: MeasureSettings) -> dict:
  """Every measure of `run` (the content of its measures.json but the wall time), logging progress."""
  setup, state, results, workdir = run.setup, run.trained, run.results, run.workdir
  log.info("%s: step %d, evaluating", workdir, results["steps"])
  steps = train_steps.eval_steps(setup.mesh, setup.model, setup.structure.inputs)
  size, workers = settings.batch_size, setup.config.data.workers
  batches = functools.partial(data.eval_batches, config=setup.eval_preprocess, global_batch_size=size, workers=workers)
  train_eval = loop.evaluate(steps, state, batches(setup.splits.train), setup.mesh)
  test_eval = loop.evaluate(steps, state, batches(setup.splits.test), setup.mesh)
  if run.transition is not None:  # the consistent loss the run trained with, on its training labels
    train_eval = {**train_eval, **forward_corrected_eval(setup, state, setup.splits.train, run.transition)}
  num_train, max_loss = train_eval["count"], train_eval["max_loss"]
  gap = {"generalization_gap": test_eval["loss"] - train_eval["loss"]}
  training_transition = training_labels_transition(setup, settings)
  test_probabilities = functools.cache(lambda: loop.predict_probabilities(setup, state, setup.splits.test))
  if training_transition is not None:  # the test loss under the noise the measured training labels carry
    noisy_test_loss = label_noise.expected_noisy_cross_entropy(
      test_probabilities(), setup.splits.test.labels, training_transition
    )
    gap.update(
      test_loss_noisy_labels=noisy_test_loss, generalization_gap_noisy_labels=noisy_test_loss - train_eval["loss"]
    )
  if run.transition is not None:  # the same loss on test labels drawn through F: the gap of the trained loss
    corrected = np.asarray(test_probabilities(), np.float64) @ run.transition
    test_corrected = label_noise.expected_noisy_cross_entropy(corrected, setup.splits.test.labels, run.transition)
    gap.update(
      test_loss_forward_corrected=test_corrected,
      generalization_gap_forward_corrected=test_corrected - train_eval["loss"],
    )
  losses, num_measured = batch_losses(setup, state, settings, run.transition)
  params, anchor = state.params, parallel.replicate(setup.anchor_params, setup.mesh)
  key = jax.random.key(settings.seed)

  sigmas = generalization.relative_sigmas(params, settings.noise_scale)
  in_network_order = layer_groups.network_order(
    sigmas, distance_regularization.group_patterns(setup.config, setup.structure), setup.structure.head
  )
  concurrency = settings.concurrency if setup.mesh.devices.size == 1 and jax.process_count() == 1 else 1
  log.info("Hessian measures on %d examples", num_measured)
  found = hessian_tasks.hessian_measures(losses, params, anchor, sigmas, in_network_order, settings, key, concurrency)
  traces, network_eigen, per_layer, authors, stability = found
  paper = {name: layer["paper_positive_part"] for name, layer in per_layer.items()}
  distances = {
    name: d["frobenius"] for name, d in norms.layer_distances(jax.device_get(params), setup.anchor_params).items()
  }
  together = stability[generalization.ALL_LAYERS]
  pac_bayes = generalization.pac_bayes_bound(
    train_eval["loss"] + together.estimate, distances, sigmas, num_train, settings.delta
  )
  bounds = {
    "bound": generalization.hessian_bound(paper, max_loss, num_train),
    "bound_authors_full_hvp": generalization.hessian_bound(authors, max_loss, num_train),
  }
  trivial_gap = generalization.trivial_gap_bound(max_loss, train_eval["loss"])

  measures = {
    "workdir": workdir,
    "method": results["method"],
    "checkpoint": settings.checkpoint,
    "train_labels": settings.labels,
    "train_loss_kind": settings.loss,
    "train_labels_note": labels_note(run, settings),
    "checkpoint_step": int(state.step),
    "num_train": num_train,
    "num_examples_measured": num_measured,
    "train_loss": train_eval["loss"],
    "test_loss": test_eval["loss"],
    "max_train_loss": max_loss,
    **gap,
    **bounds,
    "bound_formula": "sum_i sqrt(max_train_loss * max(H_i, 0) / num_train), H_i = max over batches of the "
    "batch-mean v_i^T H_i v_i; 'bound' uses hessian_quantity.paper_positive_part "
    "(v_i^T H_ii^+ v_i, Lanczos), 'bound_authors_full_hvp' uses authors_full_hvp (v_i^T (H v)_i)",
    "trivial_gap_bound": trivial_gap,
    **{f"{name}_vacuous": bool(value >= trivial_gap) for name, value in bounds.items()},
    "num_probes": traces[hessian.NETWORK].num_probes,
    "trace_method": settings.trace_method,
    "network": {
      "trace": traces[hessian.NETWORK].estimate,
      "trace_stderr": traces[hessian.NETWORK].stderr,
      "top_eigenvalue": float(network_eigen.eigenvalues[0]),
      "top_eigenvalue_iterations": int(network_eigen.num_iterations[0]),
    },
    "layers": {
      name: {
        "trace": traces[name].estimate,
        "trace_stderr": traces[name].stderr,
        "top_eigenvalue": per_layer[name]["top_eigenvalue"],
        "top_eigenvalue_iterations": per_layer[name]["top_eigenvalue_iterations"],
        "distance_frobenius": distances[name],
        "hessian_quantity": {"paper_positive_part": paper[name], "authors_full_hvp": authors[name]},
        "noise_sigma": sigmas[name],
        "noise_stability": stability[name].estimate,
        "noise_stability_stderr": stability[name].stderr,
      }
      for name in in_network_order
    },
    "noise_stability_all_layers": together._asdict(),
    "pac_bayes": {**pac_bayes._asdict(), "noise_scale": settings.noise_scale},
    "settings": settings._asdict(),
  }
  if settings.density_runs:
    measures["hessian_density"] = density_measures(losses, params, settings, jax.random.fold_in(key, 4))
  return measures


def labels_note(run: FinishedRun, settings: MeasureSettings) -> str:
  """What the train loss, the Hessians and the bound of `run` are measured against, in words."""
  given = "the training labels as given"
  if run.setup.config.noise.type != "none":
    given += f" (with their synthetic {run.setup.config.noise.type} noise, rate {run.setup.config.noise.rate:g})"
  at = "ended training on" if settings.checkpoint == "final" else "trained its selected model on"
  labels = f"the labels method {run.results['method']!r} {at}" if settings.labels == "final" else given
  loss = (
    "the forward-corrected loss −log (p F)_y it trained with"
    if settings.loss == "forward_corrected"
    else ("the cross-entropy")
  )
  note = f"train loss, Hessians and bound: {loss} on {labels}"
  if settings.labels == "final" and run.setup.label_noise.transition is not None:
    note += "; noisy-label test loss: test labels drawn as the final labels are from the clean ones (empirical F)"
  return note


def spectrum_record(spectrum: hessian.SpectralQuadrature) -> dict:
  """{'nodes', 'weights'}: [runs][steps] lists of one stochastic Lanczos quadrature."""
  return {"nodes": jax.device_get(spectrum.nodes).tolist(), "weights": jax.device_get(spectrum.weights).tolist()}


def density_measures(losses: list, params: dict, settings: MeasureSettings, key: jax.Array) -> dict:
  """The Hessian's eigenvalue density (docs/methods.md §4.6) as quadrature nodes and weights: of the whole network
  and, with `settings.density_layers`, of each layer's block."""
  log.info("Hessian density: %d Lanczos runs of %d steps", settings.density_runs, settings.density_steps)
  runs, steps = settings.density_runs, settings.density_steps
  network = hessian.hessian_spectrum(losses, params, key, runs, steps, linearize=settings.linearize)
  out = {"network": spectrum_record(network), "layers": {}}
  if settings.density_layers:
    spectra = hessian.layer_spectra(
      losses, params, jax.random.fold_in(key, 1), runs, steps, linearize=settings.linearize
    )
    out["layers"] = {name: spectrum_record(spectrum) for name, spectrum in spectra.items()}
  return out
