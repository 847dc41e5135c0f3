"""What every experiment module shares: multi-host flags, logging, one-line errors for bad input,
and `--help` (the command's flags and every field of the config it would run).

`--distributed` calls `jax.distributed.initialize` (on TPU pods and SLURM it finds its peers by
itself; elsewhere pass --coordinator_address, --num_processes and --process_id).

Compiled programs are kept in a persistent compilation cache, so a second run, a resumed run and every run of a
sweep after the first skip most of XLA's compile time: `$JAX_COMPILATION_CACHE_DIR` when set (JAX's own variable;
an empty value switches the cache off), else `$XDG_CACHE_HOME/ftjax/jax-HOST` (`~/.cache/...`), one folder per host
since XLA:CPU compiles for the host's instruction set.
"""

import logging
import os
import socket
import sys
import tempfile
import time
import traceback
from typing import Callable

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


COMPILE_SECONDS_CACHED = 0.1  # programs that compile faster than this are not worth a cache entry (a file read)


def compilation_cache_dir() -> str | None:
  """The persistent compilation cache folder of the commands (see the module docstring); None when switched off."""
  if "JAX_COMPILATION_CACHE_DIR" in os.environ:
    return os.environ["JAX_COMPILATION_CACHE_DIR"] or None
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "ftjax", f"jax-{socket.gethostname()}")


def enable_compilation_cache() -> None:
  """Points JAX's persistent compilation cache at `compilation_cache_dir()` (nothing when off or not writable)."""
  path = compilation_cache_dir()
  if path is None:
    return
  try:
    os.makedirs(path, exist_ok=True)
  except OSError:
    return
  if _can_write_in(path) is not None:
    return
  jax.config.update("jax_compilation_cache_dir", path)
  if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", COMPILE_SECONDS_CACHED)


def setup(check: Callable[[], None] | None = None) -> None:
  """Progress lines on stderr, the persistent compilation cache, and jax.distributed when asked for; `check`
  (inputs only readable once JAX has started, e.g. a source workdir's checkpoint) runs before the first progress
  line."""
  absl_logging.set_verbosity(absl_logging.WARNING)
  enable_compilation_cache()
  progress_logging.show_progress()
  FLAGS = flags.FLAGS
  if FLAGS.distributed:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes (tests); GPUs/TPUs ignore it
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  if check is not None:
    check()
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


def _nearest_existing(path: str) -> str:
  """`path` itself if it exists, else its nearest existing ancestor."""
  path = os.path.abspath(path)
  while not os.path.lexists(path):
    path = os.path.dirname(path)
  return path


def _can_write_in(directory: str) -> str | None:
  """None if a file can be created in `directory` (tried with an unnamed temporary file, which leaves
  nothing behind), else the reason it cannot."""
  try:
    with tempfile.TemporaryFile(dir=directory):
      return None
  except OSError as e:
    return e.strerror or str(e)


def check_writable_dir(flag: str, path: str, *, must_exist: bool = False) -> None:
  """Exits with one line unless `path` is a directory that is writable, or (unless `must_exist`) a path
  where one can be created; creates nothing."""
  valid = "an existing directory" if must_exist else "a directory, or a path where one can be created"
  if not path:
    fail(f"{flag}='' is empty; valid: {valid}")
  existing = _nearest_existing(path)
  if existing == os.path.abspath(path) and not os.path.isdir(path):
    fail(f"{flag}={path!r} is an existing file, not a directory; valid: {valid}")
  if must_exist and existing != os.path.abspath(path):
    fail(f"{flag}={path!r} does not exist; valid: {valid}")
  if not os.path.isdir(existing):
    fail(f"{flag}={path!r} lies under {existing!r}, which is a file; valid: {valid}")
  reason = _can_write_in(existing)
  if reason:
    fail(f"{flag}={path!r} cannot be written ({existing!r}: {reason}); valid: {valid} in a writable location")


def check_new_file(flag: str, path: str) -> None:
  """Exits with one line unless `path` can be written as a file: its directory exists and is writable
  and `path` is no directory; creates nothing."""
  directory = os.path.dirname(os.path.abspath(path))
  valid = "a file path in an existing, writable directory"
  if os.path.isdir(path):
    fail(f"{flag}={path!r} is a directory; valid: {valid}")
  if not os.path.isdir(directory):
    fail(f"{flag}={path!r}: its directory {directory!r} does not exist; valid: {valid}")
  reason = _can_write_in(directory)
  if reason:
    fail(f"{flag}={path!r} cannot be written ({directory!r}: {reason}); valid: {valid}")


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


def _config_file(argv: list[str]) -> str:
  """The file part of the `--config` argument in `argv` (without its ':ARG'), or of the flag's default."""
  value = None
  for i, arg in enumerate(argv[1:], 1):
    if arg.startswith("--config="):
      value = arg.split("=", 1)[1]
    elif arg == "--config" and i + 1 < len(argv):
      value = argv[i + 1]
  if value is None:
    value = flags.FLAGS["config"].default_as_str.strip("'\"") if "config" in flags.FLAGS else ""
  return value.split(":", 1)[0]


def _config_file_error(error: Exception, path: str) -> None:
  """One line for a config file that does not load: a syntax error, no `get_config`, or a `get_config`
  that raises."""
  valid = "a Python file defining get_config() (or get_config(arg) with --config=FILE.py:ARG)"
  if isinstance(error, SyntaxError):
    fail(f"--config={path}: syntax error at line {error.lineno}: {error.msg}; valid: {valid}")
  if isinstance(error, AttributeError):
    fail(f"--config={path} defines no get_config; valid: {valid}")
  fail(f"--config={path}: get_config raised {type(error).__name__}: {error}; valid: {valid}")


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
  except AttributeError as e:
    if "get_config" in str(e):  # the config module lacks it
      _config_file_error(e, _config_file(argv))
    _unknown_field(e, argv)
  except KeyError as e:
    _unknown_field(e, argv)
  except (flags.Error, OSError) as e:
    fail(_without_traceback(str(e)))
  except Exception as e:  # noqa: BLE001 (whatever the config file's own code raised)
    _config_file_error(e, _config_file(argv))
  if wants_help:
    print("\n".join(command_help_lines()))
    sys.exit(0)
  return args


def report_unexpected(error: Exception) -> None:
  """Exits with code 1 after writing the traceback of `error` to a log file in the temporary directory
  and one line naming the error and that file on stderr."""
  text = "".join(traceback.format_exception(error))
  path = os.path.join(tempfile.gettempdir(), f"ftjax-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")
  try:
    with open(path, "w") as f:
      f.write(" ".join(sys.argv) + "\n\n" + text)
    where = f"traceback in {path}"
  except OSError:
    where = "no log file could be written"
  message = " ".join(f"{type(error).__name__}: {error}".split())
  print(f"error: unexpected {message} ({where})", file=sys.stderr)
  sys.exit(1)


def _stop_now(line: str, code: int) -> None:
  """Prints `line` on stderr and ends the process with `code` at once: checkpoint writes that the fault left
  pending are abandoned without the interpreter's shutdown reporting them (the last complete checkpoint stays)."""
  print(line, file=sys.stderr)
  logging.shutdown()
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)


def run(main) -> None:
  """`absl.app.run(main)`, turning a bad-input error into one line on stderr and exit code 2, a non-finite
  loss or state into one line and exit code 3, a full disk into one line and exit code 4 (rerun once space is
  freed), and any other exception into one line naming a log file that holds its traceback (exit code 1)."""

  def guarded(argv):
    try:
      return main(argv)
    except ConfigChangeError as e:
      fail(e.for_command_line())
    except ConfigError as e:
      fail(str(e))
    except interruptions.NonFiniteError as e:
      _stop_now(f"error: {e}", 3)
    except interruptions.DiskFullError as e:
      _stop_now(f"error: {e}", 4)
    except interruptions.Preempted as e:
      log.warning("%s", e)
      sys.exit(128 + e.signal_number)
    except Exception as e:  # noqa: BLE001 (no traceback reaches the user)
      report_unexpected(e)

  app.run(guarded, flags_parser=parse_flags)
