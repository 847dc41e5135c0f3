"""`train_and_evaluate(config, workdir)`: build everything from the config, train with
checkpoints (resuming from the latest one), evaluate, and write `workdir/results.json`."""

import dataclasses
import json
import logging
import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from ftjax import checkpointing, data, optim, parallel
from ftjax.distance import anchors, norms
from ftjax.methods import registry as method_registry
from ftjax.methods.base import Method, MethodContext
from ftjax.metrics_writer import MetricsWriter
from ftjax.models import pretrained, registry as model_registry
from ftjax.config_validation import ConfigError, as_config_error
from ftjax.train.config_checks import validate_config
from ftjax.train.state import TrainState, create_train_state
from ftjax.train.steps import CompiledSteps

log = logging.getLogger(__name__)


class Experiment(NamedTuple):
  """Everything a run builds from its config before the first step."""
  config: ml_collections.ConfigDict
  splits: data.Splits
  num_classes: int
  model: object
  method: Method
  tx: optax.GradientTransformation
  train_preprocess: data.Preprocess
  eval_preprocess: data.Preprocess
  steps_per_epoch: int
  total_steps: int
  mesh: jax.sharding.Mesh
  initial_state: TrainState
  anchor_params: dict


def resolve_num_classes(config: ml_collections.ConfigDict, splits: data.Splits) -> int:
  """The dataset's class count; a one-line error if `config.num_classes` is set to another."""
  found = splits.train.num_classes
  if config.num_classes and config.num_classes != found:
    raise ConfigError(f"config.num_classes={config.num_classes} does not fit dataset {config.dataset!r}, "
                      f"which has {found} classes; valid: {found} or 0 (take it from the data)")
  return found


def preprocess_configs(config: ml_collections.ConfigDict) -> tuple[data.Preprocess, data.Preprocess]:
  """(train, eval) preprocessing; augmentation is applied only to training batches."""
  train = data.Preprocess(image_size=config.image_size, channels=config.channels, mean=tuple(config.mean),
                          std=tuple(config.std), crop_padding=config.crop_padding, flip=config.flip)
  return train, dataclasses.replace(train, crop_padding=0, flip=False)


def initial_variables(config, model) -> tuple[dict, dict]:
  """(start variables: source weights with a fresh head, anchor params: the SPEC §1 reference
  point). Source shapes and the method's layer groups are checked on abstract shapes first."""
  source = pretrained.load_source(config.pretrained)
  dummy = jnp.zeros((1, config.image_size, config.image_size, config.channels), jnp.float32)
  init_fn = lambda key: model.init(key, dummy, train=False)
  key = jax.random.fold_in(jax.random.key(config.seed), 0)
  shapes = jax.eval_shape(init_fn, key)
  if source is not None:
    pretrained.check_fits(source.variables, shapes)
  method_registry.check_method(config, shapes["params"])
  variables = jax.device_get(jax.jit(init_fn)(key))
  if source is not None:
    variables = pretrained.merge_into(variables, source.variables)
  return variables, anchors.anchor_params(variables["params"], config.reg.head_anchor)


def build_experiment(config: ml_collections.ConfigDict) -> Experiment:
  """Validates `config`, loads data and weights, and builds the model, method and optimiser."""
  validate_config(config)
  mesh = parallel.data_mesh()
  parallel.check_global_batch_size(config.batch_size, mesh)
  with as_config_error():
    splits = data.load_dataset(config.dataset, config.data_dir or None, image_size=config.image_size,
                               test_fraction=config.test_fraction,
                               examples_per_class=config.examples_per_class or None, seed=config.seed)
  train_pp, eval_pp = preprocess_configs(config)
  splits = data.Splits(*(data.fitted_source(split, eval_pp) for split in splits))
  num_classes = resolve_num_classes(config, splits)
  if config.batch_size > len(splits.train):
    raise ConfigError(f"config.batch_size={config.batch_size} exceeds the {len(splits.train)} training "
                      f"examples of {config.dataset!r}; valid: at most {len(splits.train)}")
  model = model_registry.create_model(config.model, num_classes, width=config.width, stem=config.stem)
  with as_config_error():
    variables, anchor = initial_variables(config, model)
  steps_per_epoch = data.steps_per_epoch(len(splits.train), config.batch_size)
  method = method_registry.build_method(MethodContext(
      config=config, init_variables=variables, anchor_variables={"params": anchor},
      train_labels=splits.train.labels, num_classes=num_classes))
  schedule = optim.learning_rate_schedule(config, steps_per_epoch)
  tx = optax.chain(method.pre_optimizer, optim.make_optimizer(config, schedule), method.post_optimizer)
  state = create_train_state(variables, tx, method.init_state, jax.random.key(config.seed))
  return Experiment(config, splits, num_classes, model, method, tx, train_pp, eval_pp, steps_per_epoch,
                    steps_per_epoch * config.num_epochs, mesh, state, anchor)


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
  exp = build_experiment(config)
  os.makedirs(workdir, exist_ok=True)
  record_config(workdir, config, allow_config_change)
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
  state = train(exp, steps, state, manager, writer, start_step)
  results = final_results(exp, steps, state, workdir, start_step, time.time() - start_time)
  manager.wait_until_finished()
  manager.close()
  writer.close()
  return results


def flat_distances(params, anchor_params) -> dict[str, float]:
  """{'<layer path>/<norm>': distance} for the metrics log (SPEC §2.1)."""
  distances = norms.layer_distances(jax.device_get(params), anchor_params)
  return {f"{name}/{norm}": value for name, by_norm in distances.items() for norm, value in by_norm.items()}


def train(exp: Experiment, steps: CompiledSteps, state: TrainState, manager, writer: MetricsWriter,
          start_step: int) -> TrainState:
  """Runs the steps from `start_step` to the end, logging every `log_every` steps, evaluating
  every `eval_every` epochs and checkpointing every `checkpoint_every` steps and at the end."""
  config, mesh = exp.config, exp.mesh
  pending, tick = [], time.time()
  for step, batch in data.train_batches(exp.splits.train, exp.train_preprocess, seed=config.seed,
                                        global_batch_size=config.batch_size, start_step=start_step,
                                        num_steps=exp.total_steps):
    state, metrics = steps.train(state, parallel.shard_batch(batch, mesh))
    pending.append(metrics)
    done = step + 1
    if done % config.log_every == 0 or done == exp.total_steps:
      summary = {k: float(np.mean(v)) for k, v in jax.device_get(jax.tree.map(lambda *x: jnp.stack(x), *pending)).items()}
      elapsed, tick = time.time() - tick, time.time()
      summary["examples_per_second"] = len(pending) * config.batch_size / elapsed
      summary["epoch"] = done / exp.steps_per_epoch
      writer.write(done, summary, prefix="train/")
      writer.write(done, flat_distances(state.params, exp.anchor_params), prefix="distance/")
      log.info("step %d/%d  epoch %.2f  loss %.4f  accuracy %.3f  %.0f examples/s", done, exp.total_steps,
                   summary["epoch"], summary["loss"], summary["accuracy"], summary["examples_per_second"])
      pending = []
    if config.eval_every and done % (config.eval_every * exp.steps_per_epoch) == 0 and done < exp.total_steps:
      test = evaluate(steps, state, exp.splits.test, exp.eval_preprocess, config.eval_batch_size, mesh)
      writer.write(done, {"loss": test["loss"], "accuracy": test["accuracy"]}, prefix="test/")
      log.info("step %d  test loss %.4f  test accuracy %.4f", done, test["loss"], test["accuracy"])
    if done % config.checkpoint_every == 0 or done == exp.total_steps:
      checkpointing.save(manager, state)
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
      **exp.method.results,
  }
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "results.json"), "w") as f:
      json.dump(results, f, indent=2)
  log.info("test accuracy %.4f  test loss %.4f  train accuracy %.4f  (%d steps, %.0f s)",
               results["test_accuracy"], results["test_loss"], results["train_accuracy"], results["steps"],
               wall_seconds)
  return results
