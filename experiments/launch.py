"""What every experiment module shares: multi-host flags, logging, one-line errors for bad input,
and `--help` (the command's flags and every field of the config it would run).

`--distributed` calls `jax.distributed.initialize` (on TPU pods and SLURM it finds its peers by
itself; elsewhere pass --coordinator_address, --num_processes and --process_id).
"""

import logging
import sys

import jax
from absl import app, flags, logging as absl_logging
from ml_collections import config_flags

from ftjax import configs, progress_logging
from ftjax.config_validation import ConfigChangeError, ConfigError
from ftjax.train import interruptions

log = logging.getLogger("ftjax.launch")

flags.DEFINE_bool("distributed", False, "Initialise jax.distributed for a multi-host run.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host, outside TPU/SLURM).")
flags.DEFINE_integer("num_processes", None, "Number of processes (multi-host, outside TPU/SLURM).")
flags.DEFINE_integer("process_id", None, "This process's index (multi-host, outside TPU/SLURM).")
MULTI_HOST_FLAGS = ("distributed", "coordinator_address", "num_processes", "process_id")
HELP_ARGS = ("-h", "-?", "--help", "--helpshort", "--helpfull")


def setup() -> None:
  """Progress lines on stderr, and jax.distributed when asked for."""
  absl_logging.set_verbosity(absl_logging.WARNING)
  progress_logging.show_progress()
  FLAGS = flags.FLAGS
  if FLAGS.distributed:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes (tests); GPUs/TPUs ignore it
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  log.info(
    "JAX process %d of %d, %d local / %d global devices (%s)",
    jax.process_index(),
    jax.process_count(),
    jax.local_device_count(),
    jax.device_count(),
    jax.devices()[0].platform,
  )


def fail(message: str) -> None:
  """Exits with code 2 after printing `message` as one line on stderr."""
  print("error: " + " ".join(str(message).split()), file=sys.stderr)
  sys.exit(2)


def _unknown_field(error: Exception, argv: list[str]) -> None:
  overrides = " ".join(a for a in argv[1:] if a.startswith("--config."))
  detail = str(error).replace("\\n", " ").replace("\\'", "").replace("'", "").strip('"')
  fail(f"unknown config field ({detail}) in {overrides}; valid: the fields of the config file (--help lists them)")


def _without_traceback(message: str) -> str:
  """An absl flag error without the traceback ml_collections puts in when a config file's
  `get_config` raises: the flag and the exception's own last line."""
  flag, found, trace = message.partition(" Error whilst parsing config file:")
  return f"{flag} {trace.strip().splitlines()[-1]}" if found else message


def _columns(rows: list[tuple[str, str, str]]) -> list[str]:
  width = [max(len(row[i]) for row in rows) for i in (0, 1)]
  return [f"  {name:<{width[0]}}  {value:<{width[1]}}  {text}".rstrip() for name, value, text in rows]


def _is_required(flag) -> bool:
  """Whether the flag was defined with `required=True` (a validator that refuses None)."""
  return any(not validator.checker(None) for validator in flag.validators)


def _flag_row(flag) -> tuple[str, str, str]:
  """(--name, default, help; for an enum flag its choices), the help on one line without the
  '<a|b>: ' that absl puts before an enum flag's."""
  default = "required" if _is_required(flag) else repr(flag.default)
  text = " ".join(flag.help.split())
  choices = getattr(flag.parser, "enum_values", None)
  if choices:
    text = text.removeprefix(f"<{'|'.join(choices)}>: ").rstrip(".")
    text += f"; valid: one of {', '.join(repr(c) for c in choices)}"
  return f"--{flag.name}", default, text


def command_help_lines() -> list[str]:
  """`--help` of the running command (after its flags were parsed): a usage line, its docstring,
  its own flags, the multi-host flags, and every field of the config it would run (with
  `--config` and its overrides applied), as `ftjax.configs.help_lines` lists them."""
  main = sys.modules["__main__"]
  command = getattr(main.__spec__, "name", sys.argv[0])
  own = [f for f in flags.FLAGS.flags_by_module_dict().get(sys.argv[0], []) if f.name not in MULTI_HOST_FLAGS]
  has_config = "config" in flags.FLAGS
  usage = " ".join(f"--{f.name}={f.name.upper()}" for f in own if _is_required(f))
  config_usage = " [--config=FILE.py[:ARG]] [--config.FIELD=VALUE ...]" if has_config else ""
  lines = [
    f"usage: python -m {command} {usage}{config_usage} [--FLAG=VALUE ...]",
    "",
    *(main.__doc__ or "").strip().splitlines(),
    "",
    "flags:",
  ]
  rows = [_flag_row(f) for f in own]
  if has_config:
    path = config_flags.get_config_filename(flags.FLAGS["config"])
    rows.append(("--config", path, "config file whose get_config(ARG) builds the config; fields below"))
  lines += _columns(rows)
  lines.append("multi-host flags (on TPU pods and SLURM --distributed alone finds the peers):")
  lines += _columns([_flag_row(flags.FLAGS[name]) for name in MULTI_HOST_FLAGS])
  if has_config:
    lines += [
      "",
      f"config {path} (set any field with --config.FIELD=VALUE; docs/config.md has them all):",
      *configs.help_lines(flags.FLAGS.config),
    ]
  return lines


def define_config_flag(default_path: str) -> None:
  """`--config` (an ml_collections config file, `path.py[:arg]`) with `--config.FIELD=VALUE`
  overrides; an unknown field, which ml_collections meets already here, is one line too."""
  try:
    config_flags.DEFINE_config_file("config", default_path, "Config file (get_config).", lock_config=True)
  except (AttributeError, KeyError) as e:
    _unknown_field(e, sys.argv)


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing whose errors (unknown flag or config field, bad value, missing config
  file) end the program with one line instead of a traceback. With a HELP_ARGS argument it prints
  `command_help_lines()` and exits 0 instead (required flags may then be missing)."""
  wants_help = any(arg.split("=", 1)[0] in HELP_ARGS for arg in argv[1:])
  argv = argv[:1] + [arg for arg in argv[1:] if arg.split("=", 1)[0] not in HELP_ARGS]
  try:
    try:
      args = flags.FLAGS(argv)
    except flags.IllegalFlagValueError:
      if not (wants_help and flags.FLAGS.is_parsed()):  # parsed, and only a required flag is missing
        raise
    if "config" in flags.FLAGS:
      flags.FLAGS.config.keys()  # a config file that failed to load raises only when used
  except (AttributeError, KeyError) as e:
    _unknown_field(e, argv)
  except (flags.Error, OSError) as e:
    fail(_without_traceback(str(e)))
  if wants_help:
    print("\n".join(command_help_lines()))
    sys.exit(0)
  return args


def run(main) -> None:
  """`absl.app.run(main)`, turning a bad-input error into one line on stderr and exit code 2."""

  def guarded(argv):
    try:
      return main(argv)
    except ConfigChangeError as e:
      fail(e.for_command_line())
    except ConfigError as e:
      fail(str(e))
    except interruptions.NonFiniteError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(3)
    except interruptions.Preempted as e:
      log.warning("%s", e)
      sys.exit(128 + e.signal_number)

  app.run(guarded, flags_parser=parse_flags)
