"""Hessian-based generalisation measures of finished fine-tuning runs (docs/methods.md §4): a workdir's latest
checkpoint is measured on the first evaluation batches of its training split, and measures.json is
written beside per-layer bar plots (layer_traces.png, layer_distances.png), layers in network
order; with several workdirs, bound_vs_gap.png plots each run's Hessian bound against its measured
generalisation gap. Progress bars with the time left go to stderr (process 0)."""

import functools
import json
import logging
import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import optax
from matplotlib.figure import Figure
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ftjax import data, generalization, hessian, label_noise, layer_groups, parallel, plots
from ftjax.config_validation import ConfigError
from ftjax.distance import norms
from ftjax.methods import distance_regularization
from ftjax.train import loop
from ftjax.train.experiment import Experiment, build_experiment
from ftjax.train.state import TrainState
from ftjax.train.steps import CompiledSteps

log = logging.getLogger("ftjax.measure")


class MeasureSettings(NamedTuple):
  """What to compute and how hard to try (the flags of the same names say what each is). The
  defaults (2 batches of 128 examples, 20 probes) take about 4 minutes for the default ResNet-18
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


DEFAULTS = MeasureSettings()


def check_settings(settings: MeasureSettings, prefix: str = "--") -> None:
  """One-line error for a setting that cannot work, naming it as `prefix` + field (the flag, or
  the config field a sweep sets it by)."""
  if settings.trace_method not in ("hutchinson", "hutchpp"):
    raise ConfigError(f"{prefix}trace_method={settings.trace_method!r}; valid: 'hutchinson', 'hutchpp'")
  minimums = dict(num_probes=6 if settings.trace_method == "hutchpp" else 2, max_batches=1, batch_size=1,
                  eigen_iterations=1, lanczos_steps=1, noise_draws=2)
  for field, low in minimums.items():
    if getattr(settings, field) < low:
      method = f" with {prefix}trace_method={settings.trace_method}" if field == "num_probes" else ""
      raise ConfigError(f"{prefix}{field}={getattr(settings, field)}{method}; valid: an integer >= {low}")
  if not (settings.noise_scale > 0 and 0 < settings.delta < 1 and settings.eigen_tol > 0):
    raise ConfigError(f"{prefix}noise_scale={settings.noise_scale}, {prefix}delta={settings.delta}, "
                      f"{prefix}eigen_tol={settings.eigen_tol}; valid: noise_scale > 0, 0 < delta < 1, eigen_tol > 0")


def check_finished(workdir: str) -> None:
  """One-line error unless `workdir` holds a finished run: results.json and a checkpoint."""
  checkpoints = os.path.join(workdir, "checkpoints")
  has_checkpoint = os.path.isdir(checkpoints) and any(name.isdigit() for name in os.listdir(checkpoints))
  if not (os.path.isfile(os.path.join(workdir, "results.json")) and has_checkpoint):
    raise ConfigError(f"workdir {workdir!r} holds no finished run (results.json and checkpoints/<step>/); "
                      "valid: a workdir of a completed python -m experiments.finetune")


def masked_cross_entropy(model, params, batch_stats, batch) -> jax.Array:
  """Mean cross-entropy over the real examples of `batch` (mask 1) in eval mode."""
  logits = model.apply({"params": params, "batch_stats": batch_stats}, batch["image"], train=False)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
  return jnp.sum(losses * batch["mask"]) / jnp.sum(batch["mask"])


def recorded_config(workdir: str, defaults: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
  """The config the run in `workdir` recorded (config.json); fields it lacks (added to ftjax after
  the run was made) take their value in `defaults`."""
  with open(os.path.join(workdir, "config.json")) as f:
    recorded = json.load(f)
  if defaults is None:
    return ml_collections.ConfigDict(recorded)
  config = ml_collections.ConfigDict(defaults.to_dict())
  config.update(recorded)
  return config


def load_finished_run(workdir: str, batch_size: int, defaults: ml_collections.ConfigDict | None = None
                      ) -> tuple[Experiment, TrainState, dict]:
  """(experiment rebuilt from config.json, completed by `defaults`; the latest checkpointed state;
  results.json), checked to describe the same step."""
  check_finished(workdir)
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  exp = build_experiment(recorded_config(workdir, defaults), workdir)
  try:
    parallel.check_global_batch_size(batch_size, exp.mesh)
  except ValueError as e:
    raise ConfigError(f"--batch_size: {e}") from e
  state = loop.restore_trained_state(exp, workdir)
  step = int(jax.device_get(state.step))
  if step != results["steps"]:
    raise ConfigError(f"workdir {workdir!r}: its latest checkpoint is step {step} but results.json describes step "
                      f"{results['steps']}; valid: a finished run (rerun experiments.finetune to finish it)")
  return exp, state, results


def batch_losses(exp: Experiment, state: TrainState, settings: MeasureSettings) -> tuple[list, int]:
  """([params -> masked mean cross-entropy on batch b] for the first `max_batches` evaluation
  batches of the training split, sharded over the mesh; the number of real examples in them)."""
  loss = functools.partial(masked_cross_entropy, exp.model)
  batches = data.eval_batches(exp.splits.train, exp.eval_preprocess, settings.batch_size)
  losses, count = [], 0
  for batch, _ in zip(batches, range(settings.max_batches)):
    losses.append(jax.tree_util.Partial(loss, batch_stats=state.batch_stats,
                                        batch=parallel.shard_batch(batch, exp.mesh)))
    count += int(batch["mask"].sum())
  return losses, count


def progress_bar(description: str, unit: str) -> hessian.Progress:
  """Wraps an iterable in a tqdm bar on stderr (count, rate, time left), shown on process 0 only."""
  return lambda iterable: tqdm(iterable, desc=description, unit=unit, disable=jax.process_index() != 0)


def layer_measures(losses: list, params, anchor, settings: MeasureSettings, key: jax.Array) -> dict[str, dict]:
  """{layer: top eigenvalue of H_ii (on all batches) and v_i^T H_ii^+ v_i (max over batches)},
  logging each layer as it is done."""
  differences = generalization.layer_differences(params, anchor)
  out = {}
  layers = progress_bar("eigenvalue, v^T H^+ v", "layer")(differences.items())
  for i, (name, difference) in enumerate(layers):
    eigen = hessian.top_eigenvalues(losses, params, jax.random.fold_in(key, i), 1, layer=name,
                                    max_iterations=settings.eigen_iterations, tol=settings.eigen_tol)
    positive = max(generalization.positive_part_quadratic_form(loss, params, name, difference, settings.lanczos_steps)
                   for loss in losses)
    out[name] = {"top_eigenvalue": float(eigen.eigenvalues[0]),
                 "top_eigenvalue_iterations": int(eigen.num_iterations[0]), "paper_positive_part": positive}
    log.info("layer %d/%d %s: top eigenvalue %.4g (%d HVPs), v^T H^+ v %.4g", i + 1, len(differences), name,
             eigen.eigenvalues[0], eigen.num_iterations[0], positive)
  return out


def matched_gap(measures: dict) -> float:
  """The generalisation gap the Hessian bound speaks of (docs/methods.md §4): test minus training loss with
  test labels distributed as the training labels are (under their synthetic noise, if any)."""
  return measures.get("generalization_gap_noisy_labels", measures["generalization_gap"])


def bound_text(value: float, vacuous: bool, trivial: str) -> str:
  """`value`, followed by '(vacuous: `trivial`)' when it is."""
  return f"{value:.4g}" + (f" (vacuous: {trivial})" if vacuous else "")


def measure_run(workdir: str, settings: MeasureSettings, defaults: ml_collections.ConfigDict | None = None) -> dict:
  """Computes every measure of the run in `workdir` and writes measures.json and the plots
  (`defaults` completes a config.json written before some fields existed); progress lines of the
  'ftjax' loggers print above the bars."""
  with logging_redirect_tqdm(loggers=[logging.getLogger("ftjax")]):
    return _measure_run(workdir, settings, defaults)


def _measure_run(workdir: str, settings: MeasureSettings, defaults: ml_collections.ConfigDict | None) -> dict:
  start = time.time()
  exp, state, results = load_finished_run(workdir, settings.batch_size, defaults)
  log.info("%s: step %d, evaluating", workdir, results["steps"])
  steps = CompiledSteps(exp.mesh, model=exp.model, method=exp.method, tx=exp.tx,
                        steps_per_epoch=exp.steps_per_epoch, donate=False)
  train_eval = loop.evaluate(steps, state, exp.splits.train, exp.eval_preprocess, settings.batch_size, exp.mesh)
  test_eval = loop.evaluate(steps, state, exp.splits.test, exp.eval_preprocess, settings.batch_size, exp.mesh)
  num_train, max_loss = train_eval["count"], train_eval["max_loss"]
  gap = {"generalization_gap": test_eval["loss"] - train_eval["loss"]}
  if exp.label_noise.transition is not None:  # the test loss under the noise the training labels carry
    noisy_test_loss = label_noise.expected_noisy_cross_entropy(
        loop.predict_probabilities(exp, state, exp.splits.test), exp.splits.test.labels, exp.label_noise.transition)
    gap.update(test_loss_noisy_labels=noisy_test_loss,
               generalization_gap_noisy_labels=noisy_test_loss - train_eval["loss"])
  losses, num_measured = batch_losses(exp, state, settings)
  params, anchor = state.params, parallel.replicate(exp.anchor_params, exp.mesh)
  key = jax.random.key(settings.seed)

  log.info("traces: %d probes (%s) on %d examples", settings.num_probes, settings.trace_method, num_measured)
  traces = hessian.block_traces(losses, params, jax.random.fold_in(key, 0), settings.num_probes,
                                blocks={**hessian.layer_blocks(params), **hessian.network_block(params)},
                                method=settings.trace_method, progress=progress_bar("Hessian traces", "probe"))
  network_eigen = hessian.top_eigenvalues(losses, params, jax.random.fold_in(key, 1), 1,
                                          max_iterations=settings.eigen_iterations, tol=settings.eigen_tol)
  log.info("network: trace %.4g, top eigenvalue %.4g", traces[hessian.NETWORK].estimate, network_eigen.eigenvalues[0])
  per_layer = layer_measures(losses, params, anchor, settings, jax.random.fold_in(key, 2))
  authors = generalization.max_over_batches(
      [generalization.full_hvp_quadratic_forms(loss, params, anchor) for loss in losses])
  paper = {name: layer["paper_positive_part"] for name, layer in per_layer.items()}
  distances = {name: d["frobenius"]
               for name, d in norms.layer_distances(jax.device_get(params), exp.anchor_params).items()}

  log.info("noise stability: %d draws per layer", settings.noise_draws)
  sigmas = generalization.relative_sigmas(params, settings.noise_scale)
  stability = generalization.layer_noise_stability(losses, params, sigmas, jax.random.fold_in(key, 3),
                                                   settings.noise_draws, progress_bar("noise stability", "case"))
  together = stability[generalization.ALL_LAYERS]
  pac_bayes = generalization.pac_bayes_bound(train_eval["loss"] + together.estimate, distances, sigmas, num_train,
                                             settings.delta)
  bounds = {"bound": generalization.hessian_bound(paper, max_loss, num_train),
            "bound_authors_full_hvp": generalization.hessian_bound(authors, max_loss, num_train)}
  trivial_gap = generalization.trivial_gap_bound(max_loss, train_eval["loss"])
  in_network_order = layer_groups.network_order(per_layer, distance_regularization.group_patterns(exp.config))

  measures = {
      "workdir": workdir,
      "method": results["method"],
      "checkpoint_step": results["steps"],
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
      "network": {"trace": traces[hessian.NETWORK].estimate, "trace_stderr": traces[hessian.NETWORK].stderr,
                  "top_eigenvalue": float(network_eigen.eigenvalues[0]),
                  "top_eigenvalue_iterations": int(network_eigen.num_iterations[0])},
      "layers": {name: {
          "trace": traces[name].estimate,
          "trace_stderr": traces[name].stderr,
          "top_eigenvalue": per_layer[name]["top_eigenvalue"],
          "top_eigenvalue_iterations": per_layer[name]["top_eigenvalue_iterations"],
          "distance_frobenius": distances[name],
          "hessian_quantity": {"paper_positive_part": paper[name], "authors_full_hvp": authors[name]},
          "noise_sigma": sigmas[name],
          "noise_stability": stability[name].estimate,
          "noise_stability_stderr": stability[name].stderr,
      } for name in in_network_order},
      "noise_stability_all_layers": together._asdict(),
      "pac_bayes": {**pac_bayes._asdict(), "noise_scale": settings.noise_scale},
      "settings": settings._asdict(),
      "wall_seconds": time.time() - start,
  }
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "measures.json"), "w") as f:
      json.dump(measures, f, indent=2)
    plot_layers(measures, workdir)
  hessian_trivial = f">= max_train_loss - train_loss = {trivial_gap:.4g}"
  log.info("%s: measured gap %.4g, Hessian bound %s (authors' full-HVP variant %s)", workdir, matched_gap(measures),
           bound_text(measures["bound"], measures["bound_vacuous"], hessian_trivial),
           bound_text(measures["bound_authors_full_hvp"], measures["bound_authors_full_hvp_vacuous"], hessian_trivial))
  log.info("%s: PAC-Bayes bound %s on the test risk (loss in [0, 1]) of the noise-perturbed network (%.0f s)",
           workdir, bound_text(pac_bayes.bound, pac_bayes.vacuous, ">= 1"), measures["wall_seconds"])
  return measures


def bar_plot(path: str, names: list[str], panels: list[tuple[str, list[float], list[float] | None]],
             title: str) -> Figure:
  """Writes `path` (PNG, `title` also in its metadata) and returns its figure: one horizontal bar
  chart per (panel title, values, error bars or None) over the layer `names`, the first at the
  top, the figure's height growing with the number of layers."""
  fig = Figure(figsize=(5 * len(panels), 0.28 * len(names) + 1.8), layout="constrained")
  axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)
  for ax, (panel_title, values, errors) in zip(axes[0], panels):
    ax.barh(range(len(names)), values, xerr=errors)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_title(panel_title, fontsize=10)
    ax.tick_params(axis="x", labelsize=9)
    ax.grid(axis="x", alpha=0.3)
  axes[0, 0].set_yticks(range(len(names)), names, fontsize=9)
  axes[0, 0].invert_yaxis()
  fig.suptitle(title, fontsize=11)
  fig.savefig(path, dpi=100, metadata={"Title": title})
  return fig


def plot_layers(measures: dict, workdir: str) -> None:
  """layer_traces.png (tr(H_ii) ± stderr, top eigenvalue) and layer_distances.png (||v_i||_F,
  v_i^T H_ii^+ v_i) in `workdir`, layers in the order of measures['layers'] from the top, titled
  with the run's name (the workdir's) and method."""
  layers = measures["layers"]
  names = list(layers)
  column = lambda key: [layers[name][key] for name in names]
  run = f"{os.path.basename(os.path.normpath(workdir))} (method {measures['method']})"
  bar_plot(os.path.join(workdir, "layer_traces.png"), names,
           [("Hessian trace tr(H_ii)", column("trace"), column("trace_stderr")),
            ("top eigenvalue of H_ii", column("top_eigenvalue"), None)], f"{run}: Hessian of each layer")
  bar_plot(os.path.join(workdir, "layer_distances.png"), names,
           [("distance ||W_i - W_i^(s)||_F", column("distance_frobenius"), None),
            ("v_i^T H_ii^+ v_i (max over batches)",
             [layers[name]["hessian_quantity"]["paper_positive_part"] for name in names], None)],
           f"{run}: distance from the source weights")


def plot_bound_vs_gap(all_measures: list[dict], out: str) -> str:
  """bound_vs_gap.png in `out`: each run's Hessian bound against its measured generalisation gap."""
  points = [plots.BoundPoint(name, name, matched_gap(m), m["bound"])
            for m in all_measures for name in [os.path.basename(os.path.normpath(m["workdir"]))]]
  return plots.plot_bound_vs_gap(points, os.path.join(out, "bound_vs_gap.png"))


def measure_workdirs(workdirs: list[str], settings: MeasureSettings, out: str | None = None,
                     defaults: ml_collections.ConfigDict | None = None) -> list[dict]:
  """`measure_run` on each workdir (all checked first), then the bound-against-gap plot when there
  are several."""
  check_settings(settings)
  for workdir in workdirs:
    check_finished(workdir)
  all_measures = [measure_run(workdir, settings, defaults) for workdir in workdirs]
  if len(all_measures) > 1 and jax.process_index() == 0:
    out = out or workdirs[0]
    os.makedirs(out, exist_ok=True)
    log.info("wrote %s", plot_bound_vs_gap(all_measures, out))
  return all_measures
