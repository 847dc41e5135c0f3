"""Run a grid of fine-tuning runs (variants × datasets × noise settings × seeds) and summarise it:
`python -m experiments.sweep --workdir DIR --config experiments/configs/NAME.py`.

Each run gets its own workdir `DIR/<variant>/<dataset>/<noise>/seed<k>`; runs that already hold
a `results.json` are skipped, so an interrupted sweep resumes where it stopped (and a run cut off
mid-way resumes from its checkpoint). The summary (`DIR/summary.md`, `DIR/summary.csv`: mean ± std
of test accuracy over seeds) and `DIR/accuracy.png` are written at the end.
"""

from absl import flags

from experiments import launch
from ftjax import sweeps

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory holding one sub-directory per run and the summary.", required=True)
launch.define_config_flag("experiments/configs/sweep_noisy_digits.py")


def main(argv):
  del argv
  launch.setup()
  sweeps.run_sweep(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  launch.run(main)
