"""The files measuring writes (docs/methods.md §4): `measure_run` measures a finished run
(`measure.measure`) and writes measures.json beside per-layer bar plots (layer_traces.png,
layer_distances.png), layers in network order; with several workdirs, bound_vs_gap.png plots each
run's Hessian bound against its measured generalisation gap."""

import json
import logging
import os
import time

import jax
import ml_collections
import numpy as np
from matplotlib.figure import Figure
from tqdm.contrib.logging import logging_redirect_tqdm

from ftjax import hessian, plots
from ftjax.runs import density_report
from ftjax.runs.measure import (
  DEFAULTS,
  MeasureSettings,
  bound_text,
  check_finished,
  check_settings,
  load_finished_run,
  matched_gap,
  measure,
)

log = logging.getLogger("ftjax.measure")


def output_name(name: str, settings: MeasureSettings) -> str:
  """The file `name` (e.g. 'measures.json') for the measures `settings` ask for: as it is for the final model on
  the given labels and the cross-entropy; else with '_selected', '_final_labels', '_forward_corrected' before its
  suffix for the model selected on validation, the labels the method ended on, the consistent loss."""
  stem, suffix = os.path.splitext(name)
  parts = [
    "selected" if settings.checkpoint == "selected" else "",
    "final_labels" if settings.labels == "final" else "",
    "forward_corrected" if settings.loss == "forward_corrected" else "",
  ]
  return "_".join([stem, *filter(None, parts)]) + suffix


def measure_run(workdir: str, settings: MeasureSettings, defaults: ml_collections.ConfigDict | None = None) -> dict:
  """Computes every measure of the run in `workdir` and writes measures.json and the plots (for
  `settings.checkpoint='selected'`: measures_selected.json, ...) (`defaults` completes a config.json written before
  some fields existed); progress lines of the 'ftjax' loggers print above the bars."""
  with logging_redirect_tqdm(loggers=[logging.getLogger("ftjax")]):
    start = time.time()
    run = load_finished_run(workdir, settings.batch_size, defaults, settings.checkpoint, settings.labels, settings.loss)
    measures = measure(run, settings)
    measures["wall_seconds"] = time.time() - start
    if jax.process_index() == 0:
      with open(os.path.join(workdir, output_name("measures.json", settings)), "w") as f:
        json.dump(measures, f, indent=2)
      plot_layers(measures, workdir, settings)
      if "hessian_density" in measures:
        plot_density(measures, workdir, settings)
    log_bounds(measures)
  return measures


def plot_density(measures: dict, workdir: str, settings: MeasureSettings = DEFAULTS) -> str:
  """hessian_density.png (or hessian_density_selected.png) in `workdir`: the network's (and each measured layer's)
  eigenvalue density, top eigenvalues from power iteration marked."""
  spectrum = lambda record: hessian.SpectralQuadrature(np.asarray(record["nodes"]), np.asarray(record["weights"]))
  densities = measures["hessian_density"]
  tops = {density_report.NETWORK: measures["network"]["top_eigenvalue"]}
  tops.update({name: layer["top_eigenvalue"] for name, layer in measures["layers"].items()})
  run = (
    f"{os.path.basename(os.path.normpath(workdir))} (method {measures['method']}, step {measures['checkpoint_step']})"
  )
  return density_report.hessian_density_figure(
    workdir,
    spectrum(densities["network"]),
    {name: spectrum(record) for name, record in densities["layers"].items()},
    top_eigenvalues=tops,
    title=f"{run}: Hessian eigenvalue density",
    file_name=output_name(density_report.FILENAME, settings),
  )


def log_bounds(measures: dict) -> None:
  """Logs a run's measured gap against its Hessian and PAC-Bayes bounds, saying which are vacuous."""
  workdir, pac_bayes = measures["workdir"], measures["pac_bayes"]
  hessian_trivial = f">= max_train_loss - train_loss = {measures['trivial_gap_bound']:.4g}"
  log.info(
    "%s: measured gap %.4g, Hessian bound %s (authors' full-HVP variant %s)",
    workdir,
    matched_gap(measures),
    bound_text(measures["bound"], measures["bound_vacuous"], hessian_trivial),
    bound_text(measures["bound_authors_full_hvp"], measures["bound_authors_full_hvp_vacuous"], hessian_trivial),
  )
  log.info(
    "%s: PAC-Bayes bound %s on the test risk (loss in [0, 1]) of the noise-perturbed network (%.0f s)",
    workdir,
    bound_text(pac_bayes["bound"], pac_bayes["vacuous"], ">= 1"),
    measures["wall_seconds"],
  )


def bar_plot(
  path: str, names: list[str], panels: list[tuple[str, list[float], list[float] | None]], title: str
) -> Figure:
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


def plot_layers(measures: dict, workdir: str, settings: MeasureSettings = DEFAULTS) -> None:
  """layer_traces.png (tr(H_ii) ± stderr, top eigenvalue) and layer_distances.png (||v_i||_F,
  v_i^T H_ii^+ v_i) in `workdir` (their `output_name`s for `settings`), layers in the order of measures['layers'] from
  the top, titled with the run's name (the workdir's) and method."""
  layers = measures["layers"]
  names = list(layers)
  column = lambda key: [layers[name][key] for name in names]
  run = f"{os.path.basename(os.path.normpath(workdir))} (method {measures['method']})"
  bar_plot(
    os.path.join(workdir, output_name("layer_traces.png", settings)),
    names,
    [
      ("Hessian trace tr(H_ii)", column("trace"), column("trace_stderr")),
      ("top eigenvalue of H_ii", column("top_eigenvalue"), None),
    ],
    f"{run}: Hessian of each layer",
  )
  bar_plot(
    os.path.join(workdir, output_name("layer_distances.png", settings)),
    names,
    [
      ("distance ||W_i - W_i^(s)||_F", column("distance_frobenius"), None),
      (
        "v_i^T H_ii^+ v_i (max over batches)",
        [layers[name]["hessian_quantity"]["paper_positive_part"] for name in names],
        None,
      ),
    ],
    f"{run}: distance from the source weights",
  )


def plot_bound_vs_gap(all_measures: list[dict], out: str) -> str:
  """bound_vs_gap.png in `out`: each run's Hessian bound against its measured generalisation gap."""
  points = [
    plots.BoundPoint(name, name, matched_gap(m), m["bound"])
    for m in all_measures
    for name in [os.path.basename(os.path.normpath(m["workdir"]))]
  ]
  return plots.plot_bound_vs_gap(points, os.path.join(out, "bound_vs_gap.png"))


def measure_workdirs(
  workdirs: list[str],
  settings: MeasureSettings,
  out: str | None = None,
  defaults: ml_collections.ConfigDict | None = None,
) -> list[dict]:
  """`measure_run` on each workdir (all checked first), then the bound-against-gap plot when there
  are several."""
  check_settings(settings)
  for workdir in workdirs:
    check_finished(workdir, settings.checkpoint, settings.labels, settings.loss)
  all_measures = [measure_run(workdir, settings, defaults) for workdir in workdirs]
  if len(all_measures) > 1 and jax.process_index() == 0:
    out = out or workdirs[0]
    os.makedirs(out, exist_ok=True)
    log.info("wrote %s", plot_bound_vs_gap(all_measures, out))
  return all_measures
