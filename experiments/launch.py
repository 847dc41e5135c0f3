"""What every experiment module shares: multi-host flags, logging, and one-line errors for bad input.

`--distributed` calls `jax.distributed.initialize` (on TPU pods and SLURM it finds its peers by
itself; elsewhere pass --coordinator_address, --num_processes and --process_id).
"""

import sys

import jax
from absl import app, flags, logging

from ftjax.config_validation import ConfigError

flags.DEFINE_bool("distributed", False, "Initialise jax.distributed for a multi-host run.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host, outside TPU/SLURM).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host, outside TPU/SLURM).")
flags.DEFINE_integer("process_id", None, "This process's index (multi-host, outside TPU/SLURM).")



def setup() -> None:
  """INFO logging to stderr, and jax.distributed when asked for."""
  logging.set_verbosity(logging.INFO)
  FLAGS = flags.FLAGS
  if FLAGS.distributed:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  logging.info("JAX process %d of %d, %d local / %d global devices (%s)", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count(), jax.devices()[0].platform)


def run(main) -> None:
  """`absl.app.run(main)`, turning a bad-input error into one line on stderr and exit code 2."""
  def guarded(argv):
    try:
      return main(argv)
    except ConfigError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
  app.run(guarded)
