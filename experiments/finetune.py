"""Fine-tune a pretrained network: `python -m experiments.finetune --workdir DIR
[--config experiments/configs/NAME.py[:ARG]] [--config.FIELD=VALUE ...]`.

Rerunning the same command in the same workdir resumes from its latest checkpoint.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from experiments import launch
from ftjax.train import loop

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.json.", required=True)
config_flags.DEFINE_config_file("config", "experiments/configs/default.py", "Config file (get_config).",
                                lock_config=True)
flags.DEFINE_bool("allow_config_change", False, "Resume a workdir that was started with another config.")


def main(argv):
  del argv
  launch.setup()
  loop.train_and_evaluate(FLAGS.config, FLAGS.workdir, allow_config_change=FLAGS.allow_config_change)


if __name__ == "__main__":
  launch.run(main)
