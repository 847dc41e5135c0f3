"""The drivers: running a config in its stages (`stages`, `run_with_stages`), grids of runs (`sweeps`),
and measuring finished runs (`measure`, with the files it writes in `measure_reports`). Nothing below
imports them."""

from ftjax.runs import measure, measure_reports, stages, sweeps
from ftjax.runs.measure import MeasureSettings, load_finished_run
from ftjax.runs.measure_reports import measure_run, measure_workdirs
from ftjax.runs.stages import run_with_stages
from ftjax.runs.sweeps import run_sweep

__all__ = [
  "MeasureSettings",
  "load_finished_run",
  "measure",
  "measure_reports",
  "measure_run",
  "measure_workdirs",
  "run_sweep",
  "run_with_stages",
  "stages",
  "sweeps",
]
