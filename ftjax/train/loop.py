"""`train_and_evaluate(config, workdir)`: build everything from the config, train with
checkpoints (resuming from the latest one), evaluate, and write `workdir/results.json` and
`workdir/curves.png`; a finished run's workdir is left as it is."""

import functools
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from ftjax import checkpoint_io, config_layout, configs, data, label_noise, parallel, plots
from ftjax.config_validation import ConfigChangeError, ConfigError
from ftjax.distance import norms
from ftjax.methods import transition_estimation
from ftjax.metrics_writer import MetricsWriter, read_metrics
from ftjax.train import checkpointing, interruptions, selection, workdir_lock
from ftjax.train.experiment import Experiment, RunSetup, build_experiment, checked_config, compiled_steps
from ftjax.train.state import TrainState
from ftjax.train.steps import CompiledSteps, EvalSteps, eval_steps

log = logging.getLogger(__name__)

CURVES_FILE = "curves.png"


def evaluate(
  steps: "CompiledSteps | EvalSteps",
  state: "TrainState | TrainedModel",
  batches: Iterable[dict],
  mesh: jax.sharding.Mesh,
) -> dict:
  """Mean loss, accuracy and largest per-example loss of `state` over one evaluation pass of `batches` (as
  `data.eval_batches` or a pass of `data.EvalPasses` makes them: padding masked out)."""
  totals = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
  max_loss = -np.inf
  for batch in batches:
    sums = jax.device_get(steps.eval(state, parallel.shard_batch(batch, mesh)))
    for k in totals:
      totals[k] += float(sums[k])
    max_loss = max(max_loss, float(sums["max_loss"]))
  return {
    "loss": totals["loss_sum"] / totals["count"],
    "accuracy": totals["correct"] / totals["count"],
    "max_loss": max_loss,
    "count": int(totals["count"]),
  }


class TrainedModel(NamedTuple):
  """A trained model's variables (replicated) at checkpoint `step`: all that evaluating it needs
  (`evaluate` and `predict_probabilities` also take a `TrainState`)."""

  step: int
  params: dict
  batch_stats: dict


def predict_probabilities(
  run: Experiment | RunSetup, state: TrainState | TrainedModel, source: data.Source
) -> np.ndarray:
  """Softmax probabilities [len(source), C] of `state` in eval mode, in example order."""
  steps = eval_steps(run.mesh, run.model, run.structure.inputs)
  chunks = []
  size, workers = run.config.optim.eval_batch_size, run.config.data.workers
  for batch in data.eval_batches(source, run.eval_preprocess, size, workers=workers):
    probs, mask = jax.device_get(steps.predict(state, parallel.shard_batch(batch, run.mesh)))
    chunks.append(np.asarray(probs)[np.asarray(mask) > 0])
  return np.concatenate(chunks)


def no_checkpoint_error(workdir: str) -> ConfigError:
  return ConfigError(f"workdir {workdir!r} holds no checkpoint; valid: a workdir of a run of experiments.finetune")


def restore_trained_state(exp: Experiment, workdir: str) -> TrainState:
  """The latest checkpointed state of the run in `workdir`, replicated over `exp.mesh`."""
  manager = checkpointing.checkpoint_manager(os.path.join(workdir, "checkpoints"))
  state = checkpointing.restore_latest(manager, parallel.replicate(exp.initial_state, exp.mesh))
  manager.close()
  if state is None:
    raise no_checkpoint_error(workdir)
  return state


def restore_trained_model(setup: RunSetup, workdir: str) -> TrainedModel:
  """The model variables of the latest checkpoint of the run in `workdir` (its 'model' item), typed
  and replicated like `setup.variables` over `setup.mesh`: no method or optimiser is built."""
  manager = checkpoint_io.checkpoint_manager(os.path.join(workdir, "checkpoints"))
  like = {"params": setup.variables["params"], "batch_stats": setup.variables.get("batch_stats", {})}
  try:
    step = manager.latest_step()
    variables = checkpoint_io.restore_latest_item(manager, "model", parallel.replicate(like, setup.mesh))
  finally:
    manager.close()
  if variables is None:
    raise no_checkpoint_error(workdir)
  return TrainedModel(step, variables["params"], variables["batch_stats"])


def restore_selected_model(setup: RunSetup, workdir: str) -> TrainedModel:
  """The model the run in `workdir` selected on its validation split (`ftjax.train.selection`), typed and
  replicated like `setup.variables` over `setup.mesh`."""
  record = selection.read_selected(workdir)
  like = {"params": setup.variables["params"], "batch_stats": setup.variables.get("batch_stats", {})}
  with open(os.path.join(selection.selected_dir(workdir), selection.MODEL_FILE), "rb") as f:
    variables = flax.serialization.from_bytes(jax.device_get(like), f.read())
  variables = parallel.replicate(variables, setup.mesh)
  return TrainedModel(record["step"], variables["params"], variables["batch_stats"])


def recorded_config(workdir: str) -> dict | None:
  """The config `workdir/config.json` records (as JSON, in sections; fields added to ftjax since it was written
  at their defaults), or None when there is none."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    recorded = config_layout.in_sections(json.load(f))
  return config_layout.completed(recorded, json.loads(configs.default_config().to_json()))


def check_config_unchanged(workdir: str, config: ml_collections.ConfigDict, allow_change: bool) -> None:
  """Raises `ConfigChangeError` when `workdir` was started with another config than `config`
  (unless `allow_change`)."""
  started = recorded_config(workdir)
  if started is None or allow_change:
    return
  resolved = json.loads(config.to_json())
  changed = config_layout.differing_run_fields(started, resolved)
  if changed:
    raise ConfigChangeError(
      f"workdir {workdir!r} was started with another config (fields {', '.join(changed)} "
      f"differ); valid: the same config, a new workdir, or {ConfigChangeError.ARGUMENT}"
    )


def record_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Writes `workdir/config.json` (on process 0; atomically, so a full disk leaves the old one whole)."""
  if jax.process_index() == 0:
    checkpointing.write_json_atomically(os.path.join(workdir, "config.json"), json.loads(config.to_json()), indent=2)


def stored_results(workdir: str, config: ml_collections.ConfigDict) -> dict | None:
  """The results of a finished run of `config` in `workdir` (its results.json, beside a config.json
  that records `config` itself, up to `config_layout.VALUE_FREE_FIELDS`), or None."""
  path = os.path.join(workdir, "results.json")
  recorded = recorded_config(workdir)
  if not os.path.exists(path) or recorded is None:
    return None
  if config_layout.differing_run_fields(recorded, json.loads(config.to_json())):
    return None
  with open(path) as f:
    return json.load(f)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, allow_config_change: bool = False) -> dict:
  """Trains `config` in `workdir` (resuming from its latest checkpoint) and returns the results
  written to `workdir/results.json`. A finished run of the same config (resolved, as
  `checked_config` makes it) returns its stored results and leaves the workdir as it is."""
  start_time = time.time()
  config = checked_config(config)
  stored = stored_results(workdir, config)
  if stored is not None:
    log.info("stored result of the finished run in %s: %s", workdir, result_line(stored, config))
    log_output_paths(workdir)
    return stored
  check_config_unchanged(workdir, config, allow_config_change)
  transition_estimation.check_estimate_in(config, workdir)
  exp = build_experiment(config, workdir)
  os.makedirs(workdir, exist_ok=True)
  with workdir_lock.held(workdir, enabled=jax.process_index() == 0):
    finished = stored_results(workdir, config)  # by another process since the check above
    return finished if finished is not None else train_in_workdir(exp, workdir, start_time)


def train_in_workdir(exp: Experiment, workdir: str, start_time: float) -> dict:
  """`train_and_evaluate` once the run holds `workdir`: restores, trains, evaluates and writes the results.
  A write that finds the disk full (a checkpoint, the metrics log, the results) raises `DiskFullError` in one
  line naming the file and about the bytes a checkpoint needs; the last finished checkpoint stays intact."""
  manager = checkpointing.checkpoint_manager(os.path.join(workdir, "checkpoints"))
  try:
    with interruptions.full_disk_told_once():
      try:
        return restore_train_evaluate(exp, workdir, manager, start_time)
      finally:
        try:
          checkpointing.wait_until_finished(manager)
        finally:
          manager.close()
  except Exception as e:
    if not interruptions.is_disk_full(e):
      raise
    raise disk_full_error(e, manager, exp.initial_state, workdir) from e


def restore_train_evaluate(exp: Experiment, workdir: str, manager: ocp.CheckpointManager, start_time: float) -> dict:
  """Restores the latest checkpoint of `manager` (if any), trains from it, evaluates and writes the results."""
  state = parallel.replicate(exp.initial_state, exp.mesh)
  state = checkpointing.restore_latest(manager, state) or state
  record_config(workdir, exp.config)
  start_step = int(jax.device_get(state.step))
  writer = MetricsWriter(workdir)
  try:
    writer.truncate_after(start_step)
    pending = restored_pending(exp, workdir, start_step)
    if start_step:
      log.info("resuming from step %d of %d", start_step, exp.total_steps)
    steps = compiled_steps(exp)
    with eval_passes(exp) as passes:
      state, final_eval = train(exp, steps, state, manager, writer, start_step, passes, pending)
    return final_results(exp, steps, state, workdir, start_step, time.time() - start_time, final_eval)
  finally:
    writer.close()


def disk_full_error(error: Exception, manager: ocp.CheckpointManager, state: TrainState, workdir: str):
  """The one-line `DiskFullError` for `error` (a full disk met while writing into `workdir`): the file it
  named, about the bytes a checkpoint takes and those free, and the checkpoint that is kept."""
  path = interruptions.written_path(error, workdir)
  needed, free = checkpointing.checkpoint_bytes(manager, state), shutil.disk_usage(workdir).free
  steps = checkpointing.saved_steps(manager)
  size = f"the checkpoint of step {steps[-1]} takes" if steps else "a checkpoint's arrays alone take"
  kept = f"the checkpoint of step {steps[-1]} is kept" if steps else "no checkpoint was saved"
  return interruptions.DiskFullError(
    f"no space left on device writing {path} ({size} {needed:,} bytes, {free:,} are free); {kept}; free space "
    "and rerun the same command to resume"
  )


def restored_pending(exp: Experiment, workdir: str, start_step: int) -> list[dict]:
  """The train metrics of the steps after the last log line up to checkpoint `start_step` (none at step 0 or at
  a log step); a checkpoint without them (written before they were kept) resumes with a warning that the next
  log line averages fewer steps."""
  if start_step % exp.config.run.log_every == 0 or start_step == exp.total_steps:
    return []
  pending = checkpointing.restore_pending_metrics(pending_metrics_path(workdir), start_step)
  if pending is None:
    log.warning(
      "workdir %r keeps no train metrics of the steps before checkpoint %d: the log line of step %d averages "
      "only the steps after it",
      workdir,
      start_step,
      (start_step // exp.config.run.log_every + 1) * exp.config.run.log_every,
    )
    return []
  return pending


def pending_metrics_path(workdir: str) -> str:
  return os.path.join(workdir, checkpointing.PENDING_METRICS_FILE)


def label_report(exp: Experiment, state: TrainState) -> dict:
  """How many training labels are correct (docs/methods.md §3.1): at the start (after synthetic noise), now
  (the labels a method keeps in its state, e.g. self label-correction, else the given ones), and
  how many the method has changed; per clean class now (None for a class without examples) and the
  worst class's fraction at the start and now, which shows a class the labels have collapsed out of."""
  clean, start = exp.label_noise.clean_labels, np.asarray(exp.splits.train.labels)
  kept = getattr(state.method_state, "labels", None)
  now = start if kept is None else np.asarray(jax.device_get(kept))
  per_class_start = label_noise.per_class_correct(start, clean, exp.num_classes)
  per_class = label_noise.per_class_correct(now, clean, exp.num_classes)
  return {
    "fraction_correct_start": label_noise.fraction_correct(start, clean),
    "fraction_correct": label_noise.fraction_correct(now, clean),
    "num_changed": int(np.sum(now != start)),
    "worst_class_correct_start": float(np.nanmin(per_class_start)),
    "worst_class_correct": float(np.nanmin(per_class)),
    "labels_correct_per_class_start": [None if np.isnan(c) else float(c) for c in per_class_start],
    "labels_correct_per_class": [None if np.isnan(c) else float(c) for c in per_class],
  }


def measured_against(config: ml_collections.ConfigDict, method_state: Any) -> dict[str, str]:
  """What the train step's 'loss' and 'accuracy' are measured against, as suffixes of their names.
  A method that keeps labels in its state (e.g. regsl, docs/methods.md §3.2) computes its loss on those
  current labels; the accuracy is always on the training split's labels as given (`batch['label']`),
  which carry the synthetic noise when `config.noise.type` is not 'none'."""
  keeps_labels = getattr(method_state, "labels", None) is not None
  if config.noise.type != "none":
    given = " (vs noisy labels)"
  else:
    given = " (vs dataset labels)" if keeps_labels else ""
  return {"loss": " (vs current labels)" if keeps_labels else "", "accuracy": given}


def tracks_labels(config: ml_collections.ConfigDict, method_state: Any) -> bool:
  """Whether the training labels can be wrong: synthetic noise, or a method that changes them."""
  return config.noise.type != "none" or getattr(method_state, "labels", None) is not None


def result_line(results: dict, config: ml_collections.ConfigDict) -> str:
  """The final figures of a run, named for what they measure."""
  noisy = " (vs noisy labels)" if config.noise.type != "none" else ""
  return (
    f"test loss {results['test_loss']:.4f}  test accuracy {results['test_accuracy']:.4f}  "
    f"train loss {results['train_loss']:.4f}{noisy}  train accuracy {results['train_accuracy']:.4f}{noisy}  "
    f"({results['steps']} steps, {results['wall_seconds']:.0f} s)"
  )


def log_output_paths(workdir: str) -> None:
  """Logs where a run's results (and its curves, when drawn) are."""
  curves = os.path.join(workdir, CURVES_FILE)
  log.info(
    "results: %s%s", os.path.join(workdir, "results.json"), f"  curves: {curves}" if os.path.exists(curves) else ""
  )


def flat_distances(params: dict, anchor_params: dict, fan_in: norms.FanIn = ()) -> dict[str, float]:
  """{'<layer path>/<norm>': distance} for the metrics log (docs/methods.md §2.1), MARS as `fan_in` declares."""
  distances = norms.layer_distances(jax.device_get(params), anchor_params, fan_in)
  return {f"{name}/{norm}": value for name, by_norm in distances.items() for norm, value in by_norm.items()}


def prefixed(prefix: str, scalars: dict) -> dict:
  return {f"{prefix}{name}": value for name, value in scalars.items()}


def train_summary(pending: list[dict]) -> dict:
  """Means of the step metrics since the last log line (deterministic: no timings, so a resumed
  run logs exactly what an uninterrupted one does)."""
  stacked = jax.device_get(jax.tree.map(lambda *x: jnp.stack(x), *pending))
  return {name: float(np.mean(values)) for name, values in stacked.items()}


def train(
  exp: Experiment,
  steps: CompiledSteps,
  state: TrainState,
  manager: ocp.CheckpointManager,
  writer: MetricsWriter,
  start_step: int,
  passes: "EvalSplits",
  pending: list[dict] | None = None,
) -> tuple[TrainState, dict | None]:
  """Runs the steps from `start_step` to the end; every `log_every` steps logs the mean metrics and
  the per-layer distances, every epoch the label counts, every `eval_every` epochs and at the last
  step the test metrics (one metrics record per step), and checkpoints every `checkpoint_every`
  steps and at the end. Returns the final state and its test evaluation (None when no step ran).
  A non-finite loss, gradient or train state stops it before anything non-finite is saved; SIGTERM or SIGINT
  save a checkpoint and raise `Preempted`. `passes`: the evaluation splits' batches (`eval_passes`); `pending`: the
  metrics of the steps since the last log line before `start_step` (kept with each checkpoint, so that a resumed
  run logs what an uninterrupted one does)."""
  config, mesh = exp.config, exp.mesh
  pending, tick, unchecked, final_eval = list(pending or []), time.time(), None, None
  last_checkpoint = start_step or None
  against = measured_against(config, exp.initial_state.method_state)
  report_labels = tracks_labels(config, exp.initial_state.method_state)
  with interruptions.StopSignals() as signals:
    for step, batch in data.train_batches(
      exp.splits.train,
      exp.train_preprocess,
      seed=config.run.seed,
      global_batch_size=config.optim.batch_size,
      start_step=start_step,
      num_steps=exp.total_steps,
      workers=config.data.workers,
    ):
      state, metrics = steps.train(state, parallel.shard_batch(batch, mesh))
      if unchecked:  # the previous step's metrics, checked while this step runs
        interruptions.check_finite(*unchecked, last_checkpoint)
      done, record = step + 1, {}
      unchecked = (done, metrics)
      pending.append(metrics)
      if done % config.run.log_every == 0 or done == exp.total_steps:
        interruptions.check_finite(done, metrics, last_checkpoint)
        summary = {**train_summary(pending), "epoch": done / exp.steps_per_epoch}
        distances = flat_distances(state.params, exp.anchor_params, exp.structure.fan_in)
        record.update(prefixed("train/", summary), **prefixed("distance/", distances))
        speed = len(pending) * config.optim.batch_size / (time.time() - tick)
        log.info(
          "step %d/%d  epoch %.2f  train loss %.4f%s  train accuracy %.3f%s  %.0f examples/s",
          done,
          exp.total_steps,
          summary["epoch"],
          summary["loss"],
          against["loss"],
          summary["accuracy"],
          against["accuracy"],
          speed,
        )
        pending, tick = [], time.time()
      if done % exp.steps_per_epoch == 0:
        labels = label_report(exp, state)
        record.update(
          prefixed("labels/", {k: labels[k] for k in ("fraction_correct", "worst_class_correct", "num_changed")})
        )
        if report_labels:
          log.info(
            "epoch %d  training labels correct %.4f (%.4f at the start; %d changed); worst class %.4f",
            done // exp.steps_per_epoch,
            labels["fraction_correct"],
            labels["fraction_correct_start"],
            labels["num_changed"],
            labels["worst_class_correct"],
          )
      if (
        config.run.eval_every and done % (config.run.eval_every * exp.steps_per_epoch) == 0
      ) or done == exp.total_steps:
        final_eval = evaluate_and_select(exp, steps, state, done, writer.workdir, passes)  # the last step evaluates
        record.update(final_eval.record)
      if record:
        writer.write(done, record)
      preempted = signals.received or (jax.process_count() > 1 and manager.reached_preemption(done))
      if preempted or done % config.run.checkpoint_every == 0 or done == exp.total_steps:
        interruptions.check_finite(done, metrics, last_checkpoint)
        interruptions.check_state_finite(done, state, last_checkpoint)
        checkpointing.save(manager, state, force=bool(preempted))
        if jax.process_index() == 0 and done % config.run.log_every and done != exp.total_steps:
          keep = manager.all_steps()
          checkpointing.save_pending_metrics(pending_metrics_path(writer.workdir), done, pending, keep)
        last_checkpoint = done
      if preempted:
        raise interruptions.Preempted(done, signals.received or signal.SIGTERM)
  return state, final_eval


class Evaluation(NamedTuple):
  """One evaluation of the train state: test (and validation, None without a validation split) figures, and the
  metrics record entries they make."""

  test: dict
  validation: dict | None
  record: dict


class EvalSplits(NamedTuple):
  """The batches of the splits a run evaluates every `eval_every` epochs, pass after pass (`data.EvalPasses`)."""

  test: data.EvalPasses
  validation: data.EvalPasses | None

  def __enter__(self) -> "EvalSplits":
    return self

  def __exit__(self, *exc_info) -> None:
    for passes in filter(None, self):
      passes.close()


def eval_passes(exp: Experiment) -> EvalSplits:
  """The test and validation splits' evaluation batches of `exp`, made by `data.workers` processes that live
  until the returned object is closed (so that they start once per run, not once per evaluation)."""
  make = functools.partial(
    data.EvalPasses, config=exp.eval_preprocess, global_batch_size=exp.config.optim.eval_batch_size
  )
  workers = exp.config.data.workers
  validation = exp.splits.validation
  return EvalSplits(make(exp.splits.test, workers=workers), make(validation, workers=workers) if validation else None)


def evaluate_and_select(
  exp: Experiment, steps: CompiledSteps, state: TrainState, done: int, workdir: str, passes: EvalSplits
):
  """Evaluates test and, when the run holds one out, validation after step `done` (on one pass each of `passes`);
  logs them, and keeps the model in `workdir/selected/` when its validation figure (`run.select_by`) is the best so
  far (`ftjax.train.selection`)."""
  config, mesh, epoch = exp.config, exp.mesh, done / exp.steps_per_epoch
  test = evaluate(steps, state, passes.test(), mesh)
  record = prefixed("test/", {"loss": test["loss"], "accuracy": test["accuracy"]})
  if exp.splits.validation is None:
    log.info("step %d  epoch %.2f  test loss %.4f  test accuracy %.4f", done, epoch, test["loss"], test["accuracy"])
    return Evaluation(test, None, record)
  validation = evaluate(steps, state, passes.validation(), mesh)
  record.update(prefixed("validation/", {"loss": validation["loss"], "accuracy": validation["accuracy"]}))
  noisy = " (vs noisy labels)" if config.noise.type != "none" and not config.data.clean_validation else ""
  log.info(
    "step %d  epoch %.2f  validation loss %.4f  validation accuracy %.4f%s  test loss %.4f  test accuracy %.4f",
    done,
    epoch,
    validation["loss"],
    validation["accuracy"],
    noisy,
    test["loss"],
    test["accuracy"],
  )
  candidate = {
    "step": done,
    "epoch": epoch,
    "validation_accuracy": validation["accuracy"],
    "validation_loss": validation["loss"],
    "test_accuracy": test["accuracy"],
    "test_loss": test["loss"],
  }
  best = selection.read_selected(workdir)
  if jax.process_index() == 0 and selection.is_better(candidate, best, config.run.select_by):
    labels = getattr(state.method_state, "labels", None)  # a method that changes them (regsl): its labels now
    labels = None if labels is None else np.asarray(jax.device_get(labels))
    selection.keep(workdir, candidate, state.params, state.batch_stats, labels)
  return Evaluation(test, validation, record)


FINAL_LABELS_FILE = "final_labels.npy"


def write_final_labels(workdir: str, labels: np.ndarray) -> None:
  """Writes `workdir/final_labels.npy`: the training labels a method that changes them ended training on, in the
  training split's order (replaced atomically)."""
  checkpointing.write_array_atomically(os.path.join(workdir, FINAL_LABELS_FILE), labels.astype(np.int32))


def write_curves(exp: Experiment, workdir: str) -> str:
  """Draws `workdir/metrics.jsonl` into `workdir/curves.png`: loss, accuracy and, when the training
  labels can be wrong, the fraction of them that is correct, against the step."""
  config = exp.config
  against = measured_against(config, exp.initial_state.method_state)
  noise = f"   label noise: {config.noise.type} {config.noise.rate:g}" if config.noise.type != "none" else ""
  return plots.plot_training_curves(
    read_metrics(workdir),
    os.path.join(workdir, CURVES_FILE),
    f"method: {config.method}   dataset: {config.data.name}{noise}",
    train_loss_label="train" + against["loss"],
    train_accuracy_label="train" + against["accuracy"],
    label_fraction=tracks_labels(config, exp.initial_state.method_state),
  )


def final_results(
  exp: Experiment,
  steps: CompiledSteps,
  state: TrainState,
  workdir: str,
  start_step: int,
  wall_seconds: float,
  final_eval: Evaluation | None = None,
) -> dict:
  """Evaluates on the train split and (unless `final_eval` holds them already: the last step's) the test and
  validation splits, writes `workdir/results.json` (with the selected model's record when there is a validation
  split) and `workdir/curves.png`."""
  config = exp.config
  size, workers = config.optim.eval_batch_size, config.data.workers
  train_batches = data.eval_batches(exp.splits.train, exp.eval_preprocess, size, workers=workers)
  train_eval = evaluate(steps, state, train_batches, exp.mesh)
  if final_eval is None:
    with eval_passes(exp) as passes:
      final_eval = evaluate_and_select(exp, steps, state, int(jax.device_get(state.step)), workdir, passes)
  test_eval, validation_eval = final_eval.test, final_eval.validation
  results = {
    "test_accuracy": test_eval["accuracy"],
    "test_loss": test_eval["loss"],
    "train_accuracy": train_eval["accuracy"],
    "train_loss": train_eval["loss"],
    "max_train_loss": train_eval["max_loss"],
    "num_train": train_eval["count"],
    "num_test": test_eval["count"],
    "steps": int(jax.device_get(state.step)),
    "epochs": config.optim.num_epochs,
    "resumed_from_step": start_step,
    "wall_seconds": wall_seconds,
    "num_devices": exp.mesh.size,
    "num_processes": jax.process_count(),
    "method": config.method,
    "dataset": config.data.name,
    "class_names": [str(name) for name in exp.splits.train.class_names],
    "model": config.model.name,
    "pretrained": config.model.pretrained,
    "config": json.loads(config.to_json()),
    "layer_distances": norms.layer_distances(jax.device_get(state.params), exp.anchor_params, exp.structure.fan_in),
    "label_noise": {"type": config.noise.type, "rate": config.noise.rate, **label_report(exp, state)},
    **exp.method.results,
  }
  kept = getattr(state.method_state, "labels", None)
  if kept is not None and jax.process_index() == 0:  # the labels the model ended training on (e.g. regsl's)
    write_final_labels(workdir, np.asarray(jax.device_get(kept)))
  if validation_eval is not None:
    results.update(
      validation_accuracy=validation_eval["accuracy"],
      validation_loss=validation_eval["loss"],
      num_validation=validation_eval["count"],
      selected=selection.read_selected(workdir),
    )
  if jax.process_index() == 0:
    checkpointing.write_json_atomically(os.path.join(workdir, "results.json"), results, indent=2)
    write_curves(exp, workdir)
  log.info("%s", result_line(results, config))
  log_output_paths(workdir)
  return results
