"""Run a grid of fine-tuning runs (variants × datasets × noise settings × seeds) and summarise it:
`python -m experiments.sweep --workdir DIR --config experiments/configs/NAME.py`.

Each run gets its own workdir `DIR/<variant>/<dataset>/<noise>/seed<k>`; runs that already hold
a `results.json` are skipped, so an interrupted sweep resumes where it stopped (and a run cut off
mid-way resumes from its checkpoint). The same command started several times (one process per GPU)
shares the grid: each process leaves the runs another one is training. The summary (`DIR/summary.md`,
`DIR/summary.csv`: mean ± std of test accuracy over seeds, label correctness overall and of the worst class)
and `DIR/accuracy.png` are rewritten after every run trained, and for the cells whose runs change training labels
(e.g. regsl) `DIR/label_trajectories.png` plots each seed's fraction of correct training labels, and of its worst
class, by epoch.
With `sweep.measure=True` every finished run is also measured (experiments.measure's quantities, with
`sweep.measure_settings` overriding its defaults), the summary gains the mean Hessian bound,
measured gap and tr(H) per cell, and `DIR/bound_vs_gap.png` plots every run's bound against its gap.
"""

import functools

from absl import flags

from experiments import launch
from ftjax import configs
from ftjax.runs import measure_reports, sweeps

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory holding one sub-directory per run and the summary.", required=True)
launch.define_config_flag("experiments/configs/sweep_noisy_digits.py")


def main(argv):
  del argv
  launch.check_writable_dir("--workdir", FLAGS.workdir)
  settings = sweeps.measure_settings(FLAGS.config.sweep)
  sweeps.selected_variants(FLAGS.config.sweep)
  sweeps.check_cell_files(sweeps.grid(FLAGS.config), FLAGS.workdir)  # configs and files, before any progress line
  launch.setup()
  measure_run = (
    functools.partial(measure_reports.measure_run, settings=settings, defaults=configs.default_config())
    if settings
    else None
  )
  sweeps.run_sweep(FLAGS.config, FLAGS.workdir, measure_run)


if __name__ == "__main__":
  launch.run(main)
