"""`train_and_evaluate(config, workdir)`: build everything from the config, train with
checkpoints (resuming from the latest one), evaluate, and write `workdir/results.json`."""

import json
import logging
import os
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ftjax import checkpointing, data, label_noise, parallel
from ftjax.config_validation import ConfigError
from ftjax.distance import norms
from ftjax.metrics_writer import MetricsWriter
from ftjax.train import interruptions
from ftjax.train.experiment import Experiment, build_experiment
from ftjax.train.state import TrainState
from ftjax.train.steps import CompiledSteps

log = logging.getLogger(__name__)


def evaluate(steps: CompiledSteps, state: TrainState, source, preprocess: data.Preprocess, batch_size: int,
             mesh) -> dict:
  """Mean loss, accuracy and largest per-example loss of `state` over every example of `source`."""
  totals = {"loss_sum": 0.0, "correct": 0.0, "count": 0.0}
  max_loss = -np.inf
  for batch in data.eval_batches(source, preprocess, batch_size):
    sums = jax.device_get(steps.eval(state, parallel.shard_batch(batch, mesh)))
    for k in totals:
      totals[k] += float(sums[k])
    max_loss = max(max_loss, float(sums["max_loss"]))
  return {"loss": totals["loss_sum"] / totals["count"], "accuracy": totals["correct"] / totals["count"],
          "max_loss": max_loss, "count": int(totals["count"])}


def predict_probabilities(exp: Experiment, state: TrainState, source) -> np.ndarray:
  """Softmax probabilities [len(source), C] of `state` in eval mode, in example order."""
  steps = CompiledSteps(exp.mesh, model=exp.model, method=exp.method, tx=exp.tx,
                        steps_per_epoch=exp.steps_per_epoch, donate=False)
  chunks = []
  for batch in data.eval_batches(source, exp.eval_preprocess, exp.config.eval_batch_size):
    probs, mask = jax.device_get(steps.predict(state, parallel.shard_batch(batch, exp.mesh)))
    chunks.append(np.asarray(probs)[np.asarray(mask) > 0])
  return np.concatenate(chunks)


def restore_trained_state(exp: Experiment, workdir: str) -> TrainState:
  """The latest checkpointed state of the run in `workdir`, replicated over `exp.mesh`."""
  manager = checkpointing.checkpoint_manager(os.path.join(workdir, "checkpoints"))
  state = checkpointing.restore_latest(manager, parallel.replicate(exp.initial_state, exp.mesh))
  manager.close()
  if state is None:
    raise ConfigError(f"workdir {workdir!r} holds no checkpoint; valid: a workdir of a run of experiments.finetune")
  return state


def record_config(workdir: str, config: ml_collections.ConfigDict, allow_change: bool) -> None:
  """Writes `workdir/config.json`; refuses to resume a workdir started with another config."""
  path = os.path.join(workdir, "config.json")
  resolved = json.loads(config.to_json())
  if os.path.exists(path) and not allow_change:
    with open(path) as f:
      started = json.load(f)
    changed = sorted(k for k in set(started) | set(resolved) if started.get(k) != resolved.get(k))
    if changed:
      raise ConfigError(f"workdir {workdir!r} was started with another config (fields {', '.join(changed)} "
                        "differ); valid: the same config, a new workdir, or --allow_config_change")
  if jax.process_index() == 0:
    with open(path, "w") as f:
      json.dump(resolved, f, indent=2)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *, allow_config_change: bool = False) -> dict:
  """Trains `config` in `workdir` (resuming from its latest checkpoint) and returns the results
  written to `workdir/results.json`."""
  start_time = time.time()
  exp = build_experiment(config, workdir)
  os.makedirs(workdir, exist_ok=True)
  record_config(workdir, exp.config, allow_config_change)
  mesh = exp.mesh
  manager = checkpointing.checkpoint_manager(os.path.join(workdir, "checkpoints"))
  state = parallel.replicate(exp.initial_state, mesh)
  state = checkpointing.restore_latest(manager, state) or state
  start_step = int(jax.device_get(state.step))
  writer = MetricsWriter(workdir)
  writer.truncate_after(start_step)
  if start_step:
    log.info("resuming from step %d of %d", start_step, exp.total_steps)
  steps = CompiledSteps(mesh, model=exp.model, method=exp.method, tx=exp.tx, steps_per_epoch=exp.steps_per_epoch)
  try:
    state = train(exp, steps, state, manager, writer, start_step)
    return final_results(exp, steps, state, workdir, start_step, time.time() - start_time)
  finally:
    manager.wait_until_finished()
    manager.close()
    writer.close()


def label_report(exp: Experiment, state: TrainState) -> dict:
  """How many training labels are correct (SPEC §3.1): at the start (after synthetic noise), now
  (the labels a method keeps in its state, e.g. self label-correction, else the given ones), and
  how many the method has changed."""
  clean, start = exp.label_noise.clean_labels, np.asarray(exp.splits.train.labels)
  kept = getattr(state.method_state, "labels", None)
  now = start if kept is None else np.asarray(jax.device_get(kept))
  return {"fraction_correct_start": label_noise.fraction_correct(start, clean),
          "fraction_correct": label_noise.fraction_correct(now, clean), "num_changed": int(np.sum(now != start))}


def flat_distances(params, anchor_params) -> dict[str, float]:
  """{'<layer path>/<norm>': distance} for the metrics log (SPEC §2.1)."""
  distances = norms.layer_distances(jax.device_get(params), anchor_params)
  return {f"{name}/{norm}": value for name, by_norm in distances.items() for norm, value in by_norm.items()}


def prefixed(prefix: str, scalars: dict) -> dict:
  return {f"{prefix}{name}": value for name, value in scalars.items()}


def train_summary(pending: list[dict]) -> dict:
  """Means of the step metrics since the last log line (deterministic: no timings, so a resumed
  run logs exactly what an uninterrupted one does)."""
  stacked = jax.device_get(jax.tree.map(lambda *x: jnp.stack(x), *pending))
  return {name: float(np.mean(values)) for name, values in stacked.items()}


def train(exp: Experiment, steps: CompiledSteps, state: TrainState, manager, writer: MetricsWriter,
          start_step: int) -> TrainState:
  """Runs the steps from `start_step` to the end; every `log_every` steps logs the mean metrics and
  the per-layer distances, every epoch the label counts, every `eval_every` epochs the test
  metrics (one metrics record per step), and checkpoints every `checkpoint_every` steps and at the
  end. A non-finite loss or gradient stops it before anything non-finite is saved; SIGTERM or
  SIGINT save a checkpoint and raise `Preempted`."""
  config, mesh = exp.config, exp.mesh
  pending, tick, unchecked = [], time.time(), None
  last_checkpoint = start_step or None
  with interruptions.StopSignals() as signals:
    for step, batch in data.train_batches(exp.splits.train, exp.train_preprocess, seed=config.seed,
                                          global_batch_size=config.batch_size, start_step=start_step,
                                          num_steps=exp.total_steps):
      state, metrics = steps.train(state, parallel.shard_batch(batch, mesh))
      if unchecked:  # the previous step's metrics, checked while this step runs
        interruptions.check_finite(*unchecked, last_checkpoint)
      done, record = step + 1, {}
      unchecked = (done, metrics)
      pending.append(metrics)
      if done % config.log_every == 0 or done == exp.total_steps:
        interruptions.check_finite(done, metrics, last_checkpoint)
        summary = {**train_summary(pending), "epoch": done / exp.steps_per_epoch}
        record.update(prefixed("train/", summary), **prefixed("distance/", flat_distances(state.params, exp.anchor_params)))
        speed = len(pending) * config.batch_size / (time.time() - tick)
        log.info("step %d/%d  epoch %.2f  loss %.4f  accuracy %.3f  %.0f examples/s", done, exp.total_steps,
                 summary["epoch"], summary["loss"], summary["accuracy"], speed)
        pending, tick = [], time.time()
      if done % exp.steps_per_epoch == 0:
        labels = label_report(exp, state)
        record.update(prefixed("labels/", {k: labels[k] for k in ("fraction_correct", "num_changed")}))
      if config.eval_every and done % (config.eval_every * exp.steps_per_epoch) == 0 and done < exp.total_steps:
        test = evaluate(steps, state, exp.splits.test, exp.eval_preprocess, config.eval_batch_size, mesh)
        record.update(prefixed("test/", {"loss": test["loss"], "accuracy": test["accuracy"]}))
        log.info("step %d  test loss %.4f  test accuracy %.4f", done, test["loss"], test["accuracy"])
      if record:
        writer.write(done, record)
      preempted = signals.received or (jax.process_count() > 1 and manager.reached_preemption(done))
      if preempted or done % config.checkpoint_every == 0 or done == exp.total_steps:
        interruptions.check_finite(done, metrics, last_checkpoint)
        checkpointing.save(manager, state, force=bool(preempted))
        last_checkpoint = done
      if preempted:
        raise interruptions.Preempted(done, signals.received or signal.SIGTERM)
  return state


def final_results(exp: Experiment, steps: CompiledSteps, state: TrainState, workdir: str, start_step: int,
                  wall_seconds: float) -> dict:
  """Evaluates on the train and test splits and writes `workdir/results.json`."""
  config = exp.config
  train_eval = evaluate(steps, state, exp.splits.train, exp.eval_preprocess, config.eval_batch_size, exp.mesh)
  test_eval = evaluate(steps, state, exp.splits.test, exp.eval_preprocess, config.eval_batch_size, exp.mesh)
  results = {
      "test_accuracy": test_eval["accuracy"],
      "test_loss": test_eval["loss"],
      "train_accuracy": train_eval["accuracy"],
      "train_loss": train_eval["loss"],
      "max_train_loss": train_eval["max_loss"],
      "num_train": train_eval["count"],
      "num_test": test_eval["count"],
      "steps": int(jax.device_get(state.step)),
      "epochs": config.num_epochs,
      "resumed_from_step": start_step,
      "wall_seconds": wall_seconds,
      "num_devices": exp.mesh.size,
      "num_processes": jax.process_count(),
      "method": config.method,
      "dataset": config.dataset,
      "model": config.model,
      "pretrained": config.pretrained,
      "config": json.loads(config.to_json()),
      "layer_distances": norms.layer_distances(jax.device_get(state.params), exp.anchor_params),
      "label_noise": {"type": config.noise.type, "rate": config.noise.rate, **label_report(exp, state)},
      **exp.method.results,
  }
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(results, f, indent=2)
  log.info("test accuracy %.4f  test loss %.4f  train accuracy %.4f  (%d steps, %.0f s)",
               results["test_accuracy"], results["test_loss"], results["train_accuracy"], results["steps"],
               wall_seconds)
  return results
