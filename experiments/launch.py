"""What every experiment module shares: multi-host flags, logging, and one-line errors for bad input.

`--distributed` calls `jax.distributed.initialize` (on TPU pods and SLURM it finds its peers by
itself; elsewhere pass --coordinator_address, --num_processes and --process_id).
"""

import logging
import sys

import jax
from absl import app, flags
from ml_collections import config_flags
from absl import logging as absl_logging

from ftjax import progress_logging
from ftjax.config_validation import ConfigError
from ftjax.train import interruptions

log = logging.getLogger('ftjax.launch')

flags.DEFINE_bool("distributed", False, "Initialise jax.distributed for a multi-host run.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host, outside TPU/SLURM).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host, outside TPU/SLURM).")
flags.DEFINE_integer("process_id", None, "This process's index (multi-host, outside TPU/SLURM).")



def setup() -> None:
  """Progress lines on stderr, and jax.distributed when asked for."""
  absl_logging.set_verbosity(absl_logging.WARNING)
  progress_logging.show_progress()
  FLAGS = flags.FLAGS
  if FLAGS.distributed:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes (tests); GPUs/TPUs ignore it
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  log.info("JAX process %d of %d, %d local / %d global devices (%s)", jax.process_index(),
           jax.process_count(), jax.local_device_count(), jax.device_count(), jax.devices()[0].platform)


def fail(message: str) -> None:
  """Exits with code 2 after printing `message` as one line on stderr."""
  print("error: " + " ".join(str(message).split()), file=sys.stderr)
  sys.exit(2)


def _unknown_field(error: Exception, argv: list[str]) -> None:
  overrides = " ".join(a for a in argv[1:] if a.startswith("--config."))
  detail = str(error).replace("\\n", " ").replace("\\'", "").replace("'", "").strip('"')
  fail(f"unknown config field ({detail}) in {overrides}; valid: the fields of the config file "
       "(experiments/configs/default.py lists them)")


def define_config_flag(default_path: str) -> None:
  """`--config` (an ml_collections config file, `path.py[:arg]`) with `--config.FIELD=VALUE`
  overrides; an unknown field, which ml_collections meets already here, is one line too."""
  try:
    config_flags.DEFINE_config_file("config", default_path, "Config file (get_config).", lock_config=True)
  except (AttributeError, KeyError) as e:
    _unknown_field(e, sys.argv)


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing whose errors (unknown flag or config field, bad value, missing config
  file) end the program with one line instead of a traceback."""
  try:
    args = flags.FLAGS(argv)
    if "config" in flags.FLAGS:
      flags.FLAGS.config.keys()  # a config file that failed to load raises only when used
    return args
  except (AttributeError, KeyError) as e:
    _unknown_field(e, argv)
  except (flags.Error, OSError) as e:
    fail(str(e))


def run(main) -> None:
  """`absl.app.run(main)`, turning a bad-input error into one line on stderr and exit code 2."""
  def guarded(argv):
    try:
      return main(argv)
    except ConfigError as e:
      fail(str(e))
    except interruptions.NonFiniteError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(3)
    except interruptions.Preempted as e:
      log.warning("%s", e)
      sys.exit(128 + e.signal_number)
  app.run(guarded, flags_parser=parse_flags)
