"""Fine-tune a pretrained network: `python -m experiments.finetune --workdir DIR
[--config experiments/configs/NAME.py[:ARG]] [--config.FIELD=VALUE ...]`.

Rerunning the same command in the same workdir resumes from its latest checkpoint.
"""

from absl import flags

from experiments import launch
from ftjax.runs import stages
from ftjax.train.experiment import check_source, checked_config

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.json.", required=True)
launch.define_config_flag("experiments/configs/default.py")
flags.DEFINE_bool("allow_config_change", False, "Resume a workdir that was started with another config.")


def main(argv):
  del argv
  launch.check_writable_dir("--workdir", FLAGS.workdir)
  config = checked_config(FLAGS.config)  # bad input is refused before any progress line
  launch.setup(check=lambda: check_source(config))
  stages.run_with_stages(FLAGS.config, FLAGS.workdir, allow_config_change=FLAGS.allow_config_change)


if __name__ == "__main__":
  launch.run(main)
