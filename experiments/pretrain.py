"""Train a source model from scratch and export it as a loadable `.msgpack` (+ `.json`):
`python -m experiments.pretrain --workdir DIR [--config experiments/configs/pretrain.py] [--export PATH]`.

The shipped `ftjax/pretrained_weights/fashion_mnist_resnet18.msgpack` was made with
`python -m experiments.pretrain --workdir workdirs/pretrain --export ftjax/pretrained_weights/fashion_mnist_resnet18.msgpack`.
"""  # noqa: E501 (a command line)

import json
import os
import sys

import jax
from absl import flags

from experiments import launch
from ftjax import checkpoint_io, config_layout
from ftjax.config_validation import ConfigError
from ftjax.models import pretrained
from ftjax.runs import stages
from ftjax.train.experiment import check_source, checked_config

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.json.", required=True)
launch.define_config_flag("experiments/configs/pretrain.py")
flags.DEFINE_string("export", None, "Write the trained variables here (.msgpack) with a .json description.")
flags.DEFINE_bool("allow_config_change", False, "Resume a workdir that was started with another config.")


def main(argv):
  del argv
  if FLAGS.export and not FLAGS.export.endswith(".msgpack"):
    raise ConfigError(f"--export={FLAGS.export!r} must end in .msgpack")
  launch.check_writable_dir("--workdir", FLAGS.workdir)
  if FLAGS.export:
    launch.check_new_file("--export", FLAGS.export)
  checked = checked_config(FLAGS.config)  # bad input is refused before any progress line
  launch.setup(check=lambda: check_source(checked))
  config = FLAGS.config
  results = stages.run_with_stages(config, FLAGS.workdir, allow_config_change=FLAGS.allow_config_change)
  if FLAGS.export and jax.process_index() == 0:
    variables, step = checkpoint_io.restore_model(f"{FLAGS.workdir}/checkpoints")
    recorded = json.loads(config.to_json())
    info = {key: config_layout.get_path(recorded, path) for key, path in config_layout.ARCHITECTURE_FIELDS.items()}
    info.update(
      dataset=config.data.name,
      data_dir=os.path.abspath(config.data.dir) if config.data.dir else "",
      class_names=results["class_names"],
      step=step,
      test_accuracy=results["test_accuracy"],
      command="python -m experiments.pretrain " + " ".join(sys.argv[1:]),
    )
    pretrained.save_variables(FLAGS.export, variables, info)


if __name__ == "__main__":
  launch.run(main)
