"""`--help` of the four commands: their flags and every field of the config they would run, in
under 150 lines, exit code 0, and none of absl's own flags."""

import importlib
import os
import subprocess
import sys

import pytest

from ftjax import configs
from ftjax.configs import help_text
from tests.test_configs import has, lookup, parse_help

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = {  # command: (help argument, config module it runs by default, its own flags)
  "finetune": ("--help", "default", ("--workdir", "--config", "--allow_config_change")),
  "measure": ("-h", None, ("--workdir", "--out", "--num_probes", "--trace_method", "--max_batches", "--seed")),
  "sweep": ("--helpfull", "sweep_noisy_digits", ("--workdir", "--config")),
  "pretrain": ("--help", "pretrain", ("--workdir", "--config", "--export", "--allow_config_change")),
}


def command_help(command: str, *args: str) -> list[str]:
  proc = subprocess.run(
    [sys.executable, "-m", f"experiments.{command}", *args], cwd=REPO, capture_output=True, text=True, timeout=120
  )
  assert proc.returncode == 0, proc.stderr
  for text in ("absl", "--flagfile", "--only_check_args", "Traceback"):
    assert text not in proc.stdout + proc.stderr
  lines = proc.stdout.splitlines()
  assert len(lines) < 150 and lines[0].startswith(f"usage: python -m experiments.{command} --workdir=WORKDIR")
  return lines


@pytest.mark.parametrize("command", COMMANDS)
def test_help_lists_the_flags_and_every_field_of_the_default_config(command):
  help_arg, module, own_flags = COMMANDS[command]
  lines = command_help(command, help_arg)
  flag_names = {line.split()[0] for line in lines if line.startswith("  --")}
  assert set(own_flags) | {"--distributed", "--coordinator_address", "--num_processes", "--process_id"} <= flag_names
  fields = parse_help(line for line in lines if not line.startswith("  --"))
  if module is None:
    assert not fields
    return
  config = importlib.import_module(f"experiments.configs.{module}").get_config()
  for field in configs.fields():
    if field.name.startswith("sweep.") and "sweep" not in config:
      assert field.name not in fields
      continue
    value, meaning = fields[field.name]
    shown = help_text.shown_value(lookup(config, field.name)) if has(config, field.name) else help_text.ABSENT
    assert value == shown and meaning.startswith(field.help), field.name
    if field.check is not None and field.check.valid.startswith("one of"):
      assert meaning.endswith(f"valid: {field.check.valid}"), field.name


def test_measure_help_shows_its_defaults_and_choices():
  lines = command_help("measure", "--help")
  rows = {line.split()[0]: line.split()[1] for line in lines if line.startswith("  --")}
  assert (rows["--num_probes"], rows["--max_batches"], rows["--workdir"]) == ("20", "2", "required")
  trace = next(line for line in lines if line.startswith("  --trace_method"))
  assert trace.endswith("valid: one of 'hutchinson', 'hutchpp'")


def test_help_shows_the_values_of_the_config_given_and_its_overrides():
  lines = command_help(
    "sweep", "--config", "experiments/configs/sweep_noisy_digits.py:full", "--help", "--config.optim.learning_rate=0.2"
  )
  fields = parse_help(lines)
  assert fields["model.name"][0] == "'auto'" and fields["optim.learning_rate"][0] == "0.2"
  assert fields["sweep.noise"][0] == repr(tuple(f"{k}:{r}" for k in ("symmetric", "pairflip") for r in (0.2, 0.4, 0.6)))
  assert any(line.startswith("config experiments/configs/sweep_noisy_digits.py:full ") for line in lines)


def test_group_pairs_parse_from_the_command_line_as_tuples_of_tuples():
  groups = (("conv.*", "early"), ("head/.*", "head"))
  fields = parse_help(
    command_help("finetune", "--help", f"--config.reg.groups={groups!r}", "--config.reg.group_values=(('early', 0.5),)")
  )
  assert fields["reg.groups"][0] == repr(groups)
  assert fields["reg.group_values"][0] == repr((("early", 0.5),))


def test_help_with_a_bad_config_argument_is_one_line_and_exit_code_2():
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "experiments.finetune",
      "--help",
      "--config",
      "experiments/configs/sweep_noisy_digits.py:nope",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  assert proc.stderr.strip().splitlines() == [
    "error: flag --config=experiments/configs/sweep_noisy_digits.py:nope: ValueError: sweep_noisy_digits config "
    "argument 'nope'; valid: none, 'ablation', 'settings', 'full', 'tuned', 'tuned_full', 'seeds'"
  ]
