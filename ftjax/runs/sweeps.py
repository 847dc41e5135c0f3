"""Grids of fine-tuning runs and their summary tables.

A sweep config is a fine-tuning config (the base of every run) with a `sweep` section:
`variants`: {name: ('field=value', ...)} overrides (e.g. 'method=regsl', 'reg.radius=2.0');
`tune` (optional): {variant: ((field, (value, ...)), ...)}, a grid of each variant's own hyperparameters, every
combination run for every dataset, noise and seed, and per (variant, dataset, noise) the setting with the
best mean validation accuracy reported (`choose_setting`);
`order` (optional): variant names in the order the tables list them; `only` (optional): the
variants to run and summarise, comma-separated ('' = all); `datasets`: dataset names;
`noise`: settings 'none', 'symmetric:0.4', 'pairflip:0.2'; `seeds`: run seeds; `measure`: whether
experiments.sweep measures the finished runs' Hessian quantities (docs/methods.md §4), with
`measure_settings` overriding experiments.measure's defaults and `measure_seeds` the seeds whose
runs are measured (() = all).

A consistent-loss cell estimates its transition matrix from the sweep's plain cell of the same
dataset, noise and seed when that cell is exactly its estimator run (`reuse_plain_runs`). Several
single-process sweeps may share one root: each leaves the runs another holds (`train_unless_held`) and they
write the summary one at a time (`summary_lock`).
"""

import ast
import contextlib
import csv
import fcntl
import itertools
import json
import logging
import os
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import ml_collections
import numpy as np

from ftjax import label_noise, metrics_writer, plots, progress_logging
from ftjax.config_validation import ConfigError
from ftjax.methods import transition_estimation
from ftjax.runs import measure, measure_reports, stages
from ftjax.train import workdir_lock
from ftjax.train.experiment import checked_config

log = logging.getLogger(__name__)
SWEEP_NOISE_TYPES = tuple(kind for kind in label_noise.NOISE_TYPES if kind != "matrix")  # 'TYPE:RATE' settings


class Run(NamedTuple):
  """One cell of the grid and the config it trains; `setting` names the variant's tuned hyperparameter values
  ('field=value,...'; '' for an untuned variant)."""

  variant: str
  dataset: str
  noise: str
  seed: int
  config: ml_collections.ConfigDict
  setting: str = ""

  @property
  def name(self) -> str:
    variant = os.path.join(self.variant, self.setting.replace(":", "_")) if self.setting else self.variant
    return os.path.join(variant, self.dataset.replace(":", "_"), self.noise.replace(":", "_"), f"seed{self.seed}")

  def workdir(self, root: str) -> str:
    """The run's workdir under the sweep's `root`, as an absolute path."""
    return os.path.abspath(os.path.join(root, self.name))


def parse_value(text: str) -> Any:
  """A Python literal ('2.0', 'True', "('a',)") or, failing that, the string itself."""
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def apply_overrides(config: ml_collections.ConfigDict, overrides: Sequence[str]) -> ml_collections.ConfigDict:
  """A copy of `config` with each 'dotted.field=value' of `overrides` set; unknown fields are errors."""
  config = ml_collections.ConfigDict(config.to_dict())
  for item in overrides:
    field, sep, text = item.partition("=")
    *parents, leaf = field.split(".")
    node = config
    for part in parents:
      node = node[part] if isinstance(node, ml_collections.ConfigDict) and part in node else None
    if not sep or not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      raise ConfigError(
        f"sweep override {item!r} names no config field; valid: 'field=value' with a field of the base config"
      )
    value = parse_value(text)
    node[leaf] = float(value) if isinstance(node[leaf], float) and isinstance(value, int) else value
  return config


def noise_overrides(setting: str) -> list[str]:
  """'none' | 'TYPE:RATE' -> the noise.* overrides of that setting."""
  kind, _, rate = setting.partition(":")
  if kind not in SWEEP_NOISE_TYPES or (kind != "none") != bool(rate):
    raise ConfigError(
      f"sweep noise setting {setting!r} is invalid; valid: 'none' or 'TYPE:RATE' with TYPE in "
      f"{', '.join(SWEEP_NOISE_TYPES[1:])}"
    )
  return [f"noise.type={kind}"] + ([f"noise.rate={float(rate)}"] if rate else [])


def ordered_variants(sweep: ml_collections.ConfigDict) -> list[tuple[str, tuple]]:
  """(name, overrides) of every variant: those `sweep.order` names first, in its order, then the
  rest by name (a ConfigDict keeps its keys sorted)."""
  order = tuple(sweep.get("order", ()))
  unknown = [name for name in order if name not in sweep.variants]
  if unknown:
    raise ConfigError(
      f"config.sweep.order names {unknown[0]!r}, which is no variant; valid: names among "
      f"config.sweep.variants ({', '.join(sweep.variants)})"
    )
  names = list(dict.fromkeys([*order, *sweep.variants]))
  return [(name, tuple(sweep.variants[name])) for name in names]


def selected_variants(sweep: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The names of the variants `sweep.only` selects (a comma-separated string; '' = every variant),
  in `ordered_variants` order."""
  names = [name for name, _ in ordered_variants(sweep)]
  only = sweep.get("only", "")
  if not isinstance(only, str):
    raise ConfigError(
      f"config.sweep.only={only!r} is not a string; valid: comma-separated names among "
      f"{', '.join(names)}, or '' for every variant"
    )
  chosen = [name.strip() for name in only.split(",") if name.strip()]
  unknown = [name for name in chosen if name not in names]
  if unknown:
    raise ConfigError(
      f"config.sweep.only={only!r} names {unknown[0]!r}, which is no variant; valid: comma-separated "
      f"names among {', '.join(names)}, or '' for every variant"
    )
  return tuple(name for name in names if not chosen or name in chosen)


def check_grid_not_empty(sweep: ml_collections.ConfigDict) -> None:
  """One-line error naming the first of `sweep.variants`, `datasets`, `noise`, `seeds` that is empty (a grid
  without runs)."""
  for field in ("variants", "datasets", "noise", "seeds"):
    if field in sweep and not sweep[field]:
      shown = "{}" if field == "variants" else repr(tuple(sweep[field]))
      raise ConfigError(f"config.sweep.{field}={shown} is empty, so the sweep has no runs; valid: at least one entry")


def check_measure_seeds(sweep: ml_collections.ConfigDict) -> None:
  """One-line error unless every seed of `sweep.measure_seeds` is one the sweep runs."""
  outside = [seed for seed in sweep.get("measure_seeds", ()) if seed not in sweep.seeds]
  if outside:
    raise ConfigError(
      f"config.sweep.measure_seeds={tuple(sweep.measure_seeds)} holds seed {outside[0]}, which "
      f"the sweep does not run; valid: seeds among config.sweep.seeds={tuple(sweep.seeds)}, "
      "or () for all"
    )


def tuned_settings(config: ml_collections.ConfigDict, variant: str) -> list[tuple[str, tuple[str, ...]]]:
  """(setting name, overrides) of every combination of the values `config.sweep.tune[variant]` gives its fields
  (((field, (value, ...)), ...)); [('', ())] for a variant that is not tuned."""
  grid_of = dict((config.sweep.get("tune", {}) or {}).get(variant, ()))
  if not grid_of:
    return [("", ())]
  fields = sorted(grid_of)
  settings = []
  for values in itertools.product(*(tuple(grid_of[field]) for field in fields)):
    texts = [f"{field}={value if isinstance(value, str) else repr(value)}" for field, value in zip(fields, values)]
    settings.append((",".join(texts), tuple(texts)))
  return settings


def check_tuning(config: ml_collections.ConfigDict) -> None:
  """One-line error unless `sweep.tune` names variants of the sweep, each field with a non-empty tuple of values,
  and the base config holds a validation split to select on."""
  tune = config.sweep.get("tune", {}) or {}
  if not tune:
    return
  for variant, fields in tune.items():
    if variant not in config.sweep.variants:
      raise ConfigError(
        f"config.sweep.tune names {variant!r}, which is no variant; valid: names among config.sweep.variants "
        f"({', '.join(config.sweep.variants)})"
      )
    pairs = fields if isinstance(fields, (tuple, list)) else ()
    if not pairs or not all(isinstance(pair, (tuple, list)) and len(pair) == 2 for pair in pairs):
      raise ConfigError(
        f"config.sweep.tune.{variant}={fields!r}; valid: a tuple of (field, (value, ...)) pairs, e.g. "
        "(('reg.radius', (0.1, 1.0)),)"
      )
    for field, values in pairs:
      if not isinstance(values, (tuple, list)) or not values:
        raise ConfigError(
          f"config.sweep.tune.{variant}.{field}={values!r}; valid: a non-empty tuple of the values to try"
        )
  if not config.data.validation_fraction and len(config.data.splits) < 3:
    raise ConfigError(
      "config.sweep.tune selects hyperparameters on a validation split, but config.data.validation_fraction=0; "
      "valid: a fraction in (0, 1), e.g. 0.1, or the dataset's own validation split as a third of config.data.splits"
    )


GRID_FIELDS = ("variants", "datasets", "noise", "seeds")


def sub_grids(sweep: ml_collections.ConfigDict) -> list[dict]:
  """The grids the sweep is the union of: each of `sweep.grids` ({field: values} over `GRID_FIELDS`; `variants`
  names variants of `sweep.variants`, an omitted field is the sweep's own), or the sweep's one grid."""
  whole = {"variants": tuple(sweep.variants), **{field: tuple(sweep[field]) for field in GRID_FIELDS[1:]}}
  grids = tuple(sweep.get("grids", ()) or ())
  if not grids:
    return [whole]
  out = []
  for i, sub in enumerate(grids):
    unknown = sorted(set(sub) - set(GRID_FIELDS)) if isinstance(sub, dict) else ["(not a dict)"]
    if unknown:
      raise ConfigError(f"config.sweep.grids[{i}] has {unknown[0]!r}; valid: a dict of {', '.join(GRID_FIELDS)}")
    grid_of = {**whole, **{field: tuple(values) for field, values in sub.items()}}
    missing = [name for name in grid_of["variants"] if name not in sweep.variants]
    if missing:
      raise ConfigError(
        f"config.sweep.grids[{i}].variants names {missing[0]!r}, which is no variant; valid: names among "
        f"config.sweep.variants ({', '.join(sweep.variants)})"
      )
    empty = next((field for field in GRID_FIELDS if not grid_of[field]), None)
    if empty:
      raise ConfigError(f"config.sweep.grids[{i}].{empty} is empty, so it has no runs; valid: at least one entry")
    out.append(grid_of)
  return out


def dataset_overrides(entry) -> tuple[str, list[str]]:
  """(label, overrides) of a `sweep.datasets` entry: a dataset name ('digits': its own label, data.name set), or
  (label, ('field=value', ...)), e.g. ('indoor', ('data.name=image_folder', 'data.dir=/data/indoor')): two image
  folders side by side, each named by the user."""
  if isinstance(entry, str):
    return entry, [f"data.name={entry}"]
  if isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str):
    return entry[0], list(entry[1])
  raise ConfigError(
    f"config.sweep.datasets holds {entry!r}; valid: a dataset name, or (label, ('data.name=...', 'data.dir=...'))"
  )


def grid(config: ml_collections.ConfigDict) -> list[Run]:
  """Every run of the sweep (variants in `ordered_variants` order, each over its tuned settings; over each of its
  `sub_grids`, a run they share listed once), each config validated (and `model='auto'` resolved) before any of
  them trains."""
  sweep = config.sweep
  check_grid_not_empty(sweep)
  check_measure_seeds(sweep)
  check_tuning(config)
  base = ml_collections.ConfigDict({k: v for k, v in config.to_dict().items() if k != "sweep"})
  runs: dict[str, Run] = {}
  for sub in sub_grids(sweep):
    variants = [
      (variant, setting, (*overrides, *tuned))
      for variant, overrides in ordered_variants(sweep)
      if variant in sub["variants"]
      for setting, tuned in tuned_settings(config, variant)
    ]
    for (variant, setting, overrides), entry, noise, seed in itertools.product(
      variants, sub["datasets"], sub["noise"], sub["seeds"]
    ):
      dataset, data_overrides = dataset_overrides(entry)
      run_overrides = [*data_overrides, *noise_overrides(noise), f"run.seed={seed}", f"noise.seed={seed}", *overrides]
      run = Run(variant, dataset, noise, seed, None, setting)
      if run.name not in runs:
        runs[run.name] = run._replace(config=checked_config(apply_overrides(base, run_overrides)))
  return list(runs.values())


def reuse_plain_runs(runs: list[Run], root: str) -> list[Run]:
  """`runs` with the `consistent.estimator_workdir` of each consistent cell that estimates its
  transition matrix (and has that field, left '') set to the workdir of the first cell of the same
  dataset, noise and seed that is its estimator run: whose config.json (or, not started yet, its
  config) equals `transition_estimation.estimator_config` as resolved JSON. The estimate then
  reuses that run instead of training one of its own."""

  def is_estimator(config: ml_collections.ConfigDict, other: Run) -> bool:
    recorded = read_json(other.workdir(root), "config.json") or json.loads(other.config.to_json())
    return not transition_estimation.estimator_run_differences(config, recorded)

  reusing = []
  for run in runs:
    consistent = run.config.consistent
    if (
      run.config.method == "consistent"
      and consistent.transition == "estimate"
      and consistent.get("estimator_workdir") == ""
    ):
      cell = (run.dataset, run.noise, run.seed)
      estimator = next(
        (
          other
          for other in runs
          if (other.dataset, other.noise, other.seed) == cell and is_estimator(run.config, other)
        ),
        None,
      )
      if estimator is not None:
        config = ml_collections.ConfigDict(run.config.to_dict())
        config.consistent.estimator_workdir = estimator.workdir(root)
        run = run._replace(config=config)
    reusing.append(run)
  return reusing


def training_order(runs: list[Run], root: str) -> list[Run]:
  """`runs` in grid order, except that a cell whose workdir another cell's transition estimate
  reuses (`consistent.estimator_workdir`) moves to just before the first such cell."""
  by_workdir = {run.workdir(root): run for run in runs}
  ordered = {}
  for run in runs:
    estimator = by_workdir.get(run.config.consistent.get("estimator_workdir", ""))
    for cell in (estimator, run):
      if cell is not None:
        ordered.setdefault(cell.name, cell)
  return list(ordered.values())


def measure_settings(sweep: ml_collections.ConfigDict) -> measure.MeasureSettings | None:
  """The checked measure settings of a sweep config, or None when it does not measure."""
  if not sweep.get("measure", False):
    return None
  overrides = sweep.get("measure_settings", ml_collections.ConfigDict()).to_dict()
  unknown = sorted(set(overrides) - set(measure.MeasureSettings._fields))
  if unknown:
    raise ConfigError(
      f"config.sweep.measure_settings.{unknown[0]} is unknown; valid: {', '.join(measure.MeasureSettings._fields)}"
    )
  settings = measure.DEFAULTS._replace(**overrides)
  measure.check_settings(settings, prefix="config.sweep.measure_settings.")
  return settings


def read_json(workdir: str, name: str) -> dict | None:
  """The JSON object in `workdir/name`, or None when absent; a one-line ConfigError naming a file that holds
  none (a truncated results.json is refused, not taken for an unfinished cell: the sweep never deletes it)."""
  path = os.path.join(workdir, name)
  if not os.path.isfile(path):
    return None
  return measure.read_json_object(
    path,
    f"the {name} a finished run writes, or delete it to have the sweep redo that step of the cell",
    what="sweep cell file ",
  )


def read_results(workdir: str) -> dict | None:
  return read_json(workdir, "results.json")


MEASURES = "measures.json"  # the measures of a run's final model on its given labels (measure_reports.output_name)


def measures_file(sweep: ml_collections.ConfigDict) -> str:
  """The name of the file a run's measures are in for this sweep: 'measures.json', or its variant for the
  checkpoint, labels and loss `sweep.measure_settings` ask for (e.g. 'measures_selected.json')."""
  settings = measure_settings(sweep)
  return measure_reports.output_name(MEASURES, settings) if settings is not None else MEASURES


def check_cell_files(runs: Sequence[Run], root: str, measures_name: str = MEASURES) -> None:
  """A one-line ConfigError for the first cell whose results.json or measures file is damaged (read before
  anything trains)."""
  for run in runs:
    for name in ("results.json", measures_name):
      read_json(run.workdir(root), name)


def compared_figures(results: dict) -> tuple[float | None, float, str]:
  """(validation accuracy, test accuracy, which model) a run is compared by: those of the model it selected on its
  validation split, or its final model's (validation accuracy None without a validation split)."""
  chosen = results.get("selected")
  if chosen:
    return chosen["validation_accuracy"], chosen["test_accuracy"], "selected"
  return results.get("validation_accuracy"), results["test_accuracy"], "final"


def choose_setting(by_setting: dict[str, list]) -> str:
  """The setting (of a variant's tuned ones, in grid order) with the best mean validation accuracy over its finished
  seeds (the first of equals); the first setting when none has a validation split."""
  means = {}
  for setting, finished in by_setting.items():
    validation = [compared_figures(results)[0] for results, _ in finished]
    if all(v is not None for v in validation):
      means[setting] = float(np.mean(validation))
  if not means:
    return next(iter(by_setting))
  best = max(means.values())
  return next(setting for setting, mean in means.items() if mean == best)


class ChosenCell(NamedTuple):
  """The finished runs of one (variant, dataset, noise) that its summary row reports: those of `setting`, the one
  `choose_setting` selects of the `settings_tried` with a finished run, as (results.json, run) in grid order."""

  setting: str
  settings_tried: int
  finished: list[tuple[dict, Run]]


def chosen_cells(runs: list[Run], root: str) -> dict[tuple[str, str, str], ChosenCell]:
  """{(variant, dataset, noise): ChosenCell} of the cells with a finished run, in grid order."""
  cells: dict[tuple, dict[str, list[tuple[dict, Run]]]] = {}
  for run in runs:
    results = read_results(os.path.join(root, run.name))
    by_setting = cells.setdefault((run.variant, run.dataset, run.noise), {})
    if results is not None:
      by_setting.setdefault(run.setting, []).append((results, run))
  chosen = {}
  for cell, by_setting in cells.items():
    if by_setting:
      setting = choose_setting(by_setting)
      chosen[cell] = ChosenCell(setting, len(by_setting), by_setting[setting])
  return chosen


def summarise(runs: list[Run], root: str, measures_name: str = MEASURES) -> list[dict]:
  """One row per (variant, dataset, noise): for a tuned variant, of the setting `choose_setting` selects on
  validation (with how many were tried); the test accuracy (of each run's selected model when it has a
  validation split, else its final one) per seed and its mean and std over the finished seeds, the mean fractions
  of correct training labels (at the start, at the end, and of the worst class at the end), and, over the seeds
  that were measured (their `measures_name` files), the means of the Hessian bound, measured gap and network
  Hessian trace (docs/methods.md §4)."""
  rows = []
  for (variant, dataset, noise), (setting, settings_tried, chosen) in chosen_cells(runs, root).items():
    finished = [(results, read_json(os.path.join(root, run.name), measures_name)) for results, run in chosen]
    figures = [compared_figures(results) for results, _ in finished]
    accuracy = np.array([test for _, test, _ in figures])
    labels = {
      when: float(np.mean([r["label_noise"][key] for r, _ in finished]))
      for when, key in (("start", "fraction_correct_start"), ("end", "fraction_correct"))
    }
    worst = [r["label_noise"].get("worst_class_correct") for r, _ in finished]  # absent from older results.json
    row = {
      "variant": variant,
      "dataset": dataset,
      "noise": noise,
      "seeds": len(finished),
      "test_accuracy_mean": float(accuracy.mean()),
      "test_accuracy_std": float(accuracy.std()),
      "test_accuracy_seeds": " ".join(f"{100 * a:.2f}" for a in accuracy),
      "model": figures[0][2],
      "setting": setting,
      "settings_tried": settings_tried,
      "labels_correct_start": labels["start"],
      "labels_correct_end": labels["end"],
      "worst_class_correct_end": None if None in worst else float(np.mean(worst)),
      "wall_seconds": float(sum(r["wall_seconds"] for r, _ in finished)),
    }
    if all(validation is not None for validation, _, _ in figures):
      row["validation_accuracy_mean"] = float(np.mean([validation for validation, _, _ in figures]))
    measured = [m for _, m in finished if m is not None]
    if measured:
      row.update(
        {
          "measured_seeds": len(measured),
          "bound_mean": float(np.mean([m["bound"] for m in measured])),
          "generalization_gap_mean": float(np.mean([measure.matched_gap(m) for m in measured])),
          "network_trace_mean": float(np.mean([m["network"]["trace"] for m in measured])),
        }
      )
    rows.append(row)
  return rows


MEASURE_COLUMNS = ("measured_seeds", "bound_mean", "generalization_gap_mean", "network_trace_mean")


def write_summary(rows: list[dict], root: str) -> None:
  """`root/summary.csv` and `root/summary.md` (test accuracy in %, each seed's and their mean ± std, the
  population std over seeds; for tuned variants the setting selected on validation; the worst class's fraction of
  correct training labels, blank for runs that did not record it; the Hessian columns where measured, blank
  elsewhere)."""
  measured = any("bound_mean" in r for r in rows)
  tuned = any(r["setting"] for r in rows)
  extra = ["validation_accuracy_mean"] if any("validation_accuracy_mean" in r for r in rows) else []
  fieldnames = list(rows[0]) + [c for c in [*extra, *MEASURE_COLUMNS] if (c in extra or measured) and c not in rows[0]]
  with open(os.path.join(root, "summary.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fieldnames, restval="")
    writer.writeheader()
    writer.writerows(rows)
  header = (
    "| variant | dataset | noise | seeds | test accuracy (%) | per seed (%) | model | labels correct at start "
    "| labels correct at end | worst class correct at end | wall time, all seeds (s) |"
  )
  if tuned:
    header += " setting selected on validation | settings tried |"
  if measured:
    header += " seeds measured | Hessian bound | gap (test − train loss) | tr(H) |"
  lines = [header, "|" + " --- |" * header.count(" |")]
  for r in rows:
    worst = "" if r.get("worst_class_correct_end") is None else f"{r['worst_class_correct_end']:.3f}"
    line = (
      f"| {r['variant']} | {r['dataset']} | {r['noise']} | {r['seeds']} | "
      f"{100 * r['test_accuracy_mean']:.2f} ± {100 * r['test_accuracy_std']:.2f} | {r['test_accuracy_seeds']} | "
      f"{r['model']} | {r['labels_correct_start']:.3f} | {r['labels_correct_end']:.3f} | {worst} | "
      f"{r['wall_seconds']:.0f} |"
    )
    if tuned:
      line += f" {r['setting'] or '(not tuned)'} | {r['settings_tried']} |"
    if measured:
      line += "".join(f" {r[c]:.4g} |" if c in r else " |" for c in MEASURE_COLUMNS)
    lines.append(line)
  lines.append(
    "\nTest accuracy: mean ± population std (ddof 0) over the finished seeds, of each run's model selected on its "
    "validation split ('selected') or its final model ('final')"
    + ("; a tuned variant's row is its setting with the best mean validation accuracy." if tuned else ".")
    + " Worst class correct: the lowest over clean classes of the fraction of a class's training examples whose "
    "label is that class, at the end of training (mean over the seeds)."
  )
  with open(os.path.join(root, "summary.md"), "w") as f:
    f.write("\n".join(lines) + "\n")


def write_comparison(rows: list[dict], root: str) -> None:
  """`root/comparison.md`: for each dataset, test accuracy (%, mean ± std over seeds) of every
  variant (rows) at every noise setting (columns), the best mean of each column in bold; a cell
  with fewer finished seeds than the fullest one says how many."""
  most_seeds = max(r["seeds"] for r in rows)
  sections = []
  for dataset in dict.fromkeys(r["dataset"] for r in rows):
    cells = {(r["variant"], r["noise"]): r for r in rows if r["dataset"] == dataset}
    settings = list(dict.fromkeys(noise for _, noise in cells))
    variants = list(dict.fromkeys(variant for variant, _ in cells))
    best = {noise: max(r["test_accuracy_mean"] for (_, n), r in cells.items() if n == noise) for noise in settings}
    lines = [f"| {dataset} | " + " | ".join(settings) + " |", "| --- |" + " --- |" * len(settings)]
    for variant in variants:
      texts = []
      for noise in settings:
        r = cells.get((variant, noise))
        text = f"{100 * r['test_accuracy_mean']:.2f} ± {100 * r['test_accuracy_std']:.2f}" if r else ""
        text = f"**{text}**" if r and r["test_accuracy_mean"] == best[noise] else text
        texts.append(f"{text} ({r['seeds']} of {most_seeds} seeds)" if r and r["seeds"] < most_seeds else text)
      lines.append(f"| {variant} | " + " | ".join(texts) + " |")
    sections.append("\n".join(lines))
  with open(os.path.join(root, "comparison.md"), "w") as f:
    f.write("\n\n".join(sections) + "\n")


def plot_bound_vs_gap(runs: list[Run], root: str, measures_name: str = MEASURES) -> str | None:
  """`root/bound_vs_gap.png`: every measured run's Hessian bound against its measured gap (from its
  `measures_name` file), coloured by variant; None when no run has measures."""
  points = []
  for run in runs:
    measured = read_json(os.path.join(root, run.name), measures_name)
    if measured is not None:
      label = f"{run.dataset} {run.noise} s{run.seed}"
      points.append(plots.BoundPoint(label, run.variant, measure.matched_gap(measured), measured["bound"]))
  return plots.plot_bound_vs_gap(points, os.path.join(root, "bound_vs_gap.png")) if points else None


def label_trajectory(seed: int, results: dict, records: list[dict]) -> plots.LabelTrajectory:
  """A run's fraction of correct training labels (overall and of the worst class) at each epoch's end from its
  metrics `records`, preceded at epoch 0 by those of its labels at the start (from its `results`)."""
  steps_per_epoch = results["steps"] / results["epochs"]
  start = results["label_noise"]
  records = [r for r in records if "labels/fraction_correct" in r]

  def series(metric: str) -> list[float]:  # a value not recorded (or logged as null) is NaN, a gap in the line
    return [float("nan") if r.get(metric) is None else r[metric] for r in records]

  epochs = [0.0] + [r["step"] / steps_per_epoch for r in records]
  fraction = [start["fraction_correct_start"]] + series("labels/fraction_correct")
  worst = [start.get("worst_class_correct_start", float("nan"))] + series("labels/worst_class_correct")
  recorded_worst = any("labels/worst_class_correct" in r for r in records)  # runs older than it did not record it
  return plots.LabelTrajectory(seed, epochs, fraction, worst if recorded_worst else [])


def plot_label_trajectories(runs: list[Run], root: str) -> str | None:
  """`root/label_trajectories.png`: for each (variant, dataset, noise) whose runs change training labels (e.g.
  regsl's self label-correction; of a tuned variant, the setting `choose_setting` selects), each seed's fraction of
  correct training labels by epoch, and dashed that of its worst class; None when no run changes labels."""
  panels = {}
  for (variant, dataset, noise), cell in chosen_cells(runs, root).items():
    seeds = [
      (run.seed, results, metrics_writer.read_metrics(os.path.join(root, run.name))) for results, run in cell.finished
    ]
    if any((r.get("labels/num_changed") or 0) > 0 for _, _, records in seeds for r in records):
      panels[f"{variant} · {dataset} · {noise}"] = [label_trajectory(*seed) for seed in seeds]
  return plots.plot_label_trajectories(panels, os.path.join(root, "label_trajectories.png")) if panels else None


def plot_accuracy(rows: list[dict], root: str) -> None:
  """`root/accuracy.png`: test accuracy per variant (bars, ± std) for each dataset and noise setting."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  settings = list(dict.fromkeys((r["dataset"], r["noise"]) for r in rows))
  variants = list(dict.fromkeys(r["variant"] for r in rows))
  by_key = {(r["variant"], r["dataset"], r["noise"]): r for r in rows}
  width = 0.8 / len(variants)
  fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(settings) * max(1, len(variants) / 3)), 3.5))
  for i, variant in enumerate(variants):
    cells = [by_key.get((variant, *s)) for s in settings]
    ax.bar(
      np.arange(len(settings)) + i * width,
      [100 * c["test_accuracy_mean"] if c else 0 for c in cells],
      width,
      yerr=[100 * c["test_accuracy_std"] if c else 0 for c in cells],
      label=variant,
      capsize=2,
    )
  ax.set_xticks(np.arange(len(settings)) + 0.4 - width / 2, [f"{d}\n{n}" for d, n in settings])
  ax.set_ylabel("test accuracy (%)")
  low = min(100 * r["test_accuracy_mean"] for r in rows)
  ax.set_ylim(max(0, low - 10), 100)
  ax.legend(fontsize="small")
  fig.tight_layout()
  fig.savefig(os.path.join(root, "accuracy.png"), dpi=120)
  plt.close(fig)


def run_sweep(
  config: ml_collections.ConfigDict, root: str, measure_run: Callable[[str], dict] | None = None
) -> list[dict]:
  """Trains every unfinished run of the variants `sweep.only` selects, in `training_order` (and, given
  `measure_run`, measures every finished run of `sweep.measure_seeds` that has no measures file yet), rewriting
  the summary and plots after each run it trains or measures, and at the end. Progress lines of a run and its
  measurement are labelled '[i/n variant/dataset/noise/seedK]'."""
  chosen = selected_variants(config.sweep)
  runs = [run for run in reuse_plain_runs(grid(config), root) if run.variant in chosen]
  measured_seeds = tuple(config.sweep.get("measure_seeds", ())) or tuple(config.sweep.seeds)
  measures_name = measures_file(config.sweep)
  check_cell_files(runs, root, measures_name)
  os.makedirs(root, exist_ok=True)
  start = time.time()
  rows = None  # the summary rows, once this process has written them
  order = training_order(runs, root)
  to_train = sum(read_results(run.workdir(root)) is None for run in order)
  log.info("%d runs: %d finished earlier, %d to train", len(order), len(order) - to_train, to_train)
  left, trained = [], []  # runs another process is training (several may share one sweep); seconds of those trained
  for i, run in enumerate(order):
    workdir = run.workdir(root)
    with progress_logging.labelled(f"{i + 1}/{len(order)} {run.name}"):
      run_start = time.time()
      to_measure = measure_run is not None and run.seed in measured_seeds and read_json(workdir, measures_name) is None
      if read_results(workdir) is not None:
        log.info("finished earlier, skipped")
        if not to_measure:
          continue  # nothing new to summarise
      elif not train_unless_held(run, workdir):
        left.append(run.name)
        continue
      else:
        trained.append(time.time() - run_start)
        log.info("%s", time_left(trained, to_train - len(left)))
      if to_measure:
        measure_run(workdir)
    # Each run compiles its own executables; dropping them keeps a long sweep within the process's
    # memory-map limit (XLA:CPU failed with "Cannot allocate memory" after ~20 measured runs).
    jax.clear_caches()
    rows = write_outputs(runs, root, measures_name)
  if rows is None:  # every run had finished earlier
    rows = write_outputs(runs, root, measures_name)
  log.info(
    "sweep of %d runs done in %.0f s; summary in %s", len(runs), time.time() - start, os.path.join(root, "summary.md")
  )
  if left:
    log.info(
      "%d runs were left to the processes training them (%s); the last process to finish writes the whole summary",
      len(left),
      ", ".join(left[:3]) + (", ..." if len(left) > 3 else ""),
    )
  return rows


def time_left(seconds: Sequence[float], to_train: int) -> str:
  """'k of n runs trained, about H h MM min left (their mean: S s a run)': the time the `to_train - k` runs still to
  train would take at the mean of the `seconds` the k trained runs took."""
  done, mean = len(seconds), float(np.mean(seconds))
  minutes = round(max(to_train - done, 0) * mean / 60)
  left = f"about {minutes // 60} h {minutes % 60:02d} min left"
  return f"{done} of {to_train} runs trained, {left} (their mean: {mean:.0f} s a run)"


def train_unless_held(run: Run, workdir: str) -> bool:
  """Trains `run` (with its stages) in `workdir`, unless another process holds its workdir, or the plain cell its
  transition estimate reads: then logs who and returns False. Only a single-process sweep leaves runs to others
  (a multi-host sweep's processes must train the same runs)."""
  if jax.process_count() == 1:
    estimator = run.config.consistent.get("estimator_workdir", "")
    for held in (workdir, estimator) if estimator and read_results(estimator) is None else (workdir,):
      holder = workdir_lock.live_holder(held) if os.path.isdir(held) else None
      if holder is not None:
        log.info("left to %s, which is training %s", holder, held)
        return False
  log.info("training (method=%s)", run.config.method)
  try:
    stages.run_with_stages(run.config, workdir)
  except workdir_lock.WorkdirBusyError as e:
    if jax.process_count() > 1:
      raise
    log.info("left to the process that took it first: %s", e)
    return False
  return True


def write_outputs(runs: list[Run], root: str, measures_name: str = MEASURES) -> list[dict]:
  """The summary rows of the finished runs, written with the plots (on process 0, once no other process sharing
  the sweep is writing them); measures from each run's `measures_name` file."""
  rows = summarise(runs, root, measures_name)
  if jax.process_index() == 0 and rows:
    with summary_lock(root):
      write_summary(rows, root)
      write_comparison(rows, root)
      plot_accuracy(rows, root)
      plot_bound_vs_gap(runs, root, measures_name)
      plot_label_trajectories(runs, root)
  return rows


@contextlib.contextmanager
def summary_lock(root: str):
  """Holds `root/.summary.lock` (waiting for it), so that processes sharing a sweep write its summary files and
  plots one at a time."""
  with open(os.path.join(root, ".summary.lock"), "a") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    yield
