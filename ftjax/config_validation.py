"""Checks of every config field before anything is loaded or compiled: a wrong value raises a
`ConfigError` whose one-line message names the field, the value and what would be valid."""

import contextlib
import math
from typing import Any, Callable, NamedTuple

import ml_collections


class ConfigError(ValueError):
  """A config field holds a value that cannot work."""


class ConfigChangeError(ConfigError):
  """A workdir was started with another config. The message names the Python argument that resumes
  it anyway (`allow_config_change=True`); `for_command_line()` names the flag instead."""

  ARGUMENT, FLAG = "allow_config_change=True", "--allow_config_change"

  def for_command_line(self) -> str:
    return str(self).replace(self.ARGUMENT, self.FLAG)


@contextlib.contextmanager
def as_config_error():
  """Re-raises the one-line errors of loaders (bad path, unknown name, misfit shapes) as `ConfigError`."""
  try:
    yield
  except (FileNotFoundError, ValueError, ImportError) as e:
    raise ConfigError(str(e)) from e


class FieldCheck(NamedTuple):
  """`is_valid(value)` decides; `valid` says in words what would be valid; `problem` what an
  invalid value is."""

  is_valid: Callable[[Any], bool]
  valid: str
  problem: str = "is invalid"


def one_of(choices) -> FieldCheck:
  choices = tuple(choices)
  return FieldCheck(lambda v: v in choices, "one of " + ", ".join(repr(c) for c in choices))


INT32_MAX = 2**31 - 1  # every integer field fits an int32 (seeds, sizes, counts)


def integer(low: int = 0, high: int = INT32_MAX) -> FieldCheck:
  return FieldCheck(
    lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high,
    f"an integer in [{low}, {high}]",
  )


def is_finite_number(v) -> bool:
  """Whether `v` is an int or float (never a bool) that is neither nan nor ±inf."""
  return isinstance(v, (int, float)) and not isinstance(v, bool) and (isinstance(v, int) or math.isfinite(v))


def number(low: float | None = None, high: float | None = None, *, low_open=False, high_open=False) -> FieldCheck:
  def ok(v):
    if not is_finite_number(v):
      return False
    above = low is None or (v > low if low_open else v >= low)
    below = high is None or (v < high if high_open else v <= high)
    return above and below

  lo = "" if low is None else ("(" if low_open else "[") + f"{low}, "
  hi = "" if high is None else f"{high}" + (")" if high_open else "]")
  return FieldCheck(ok, f"a number in {lo or '(-inf, '}{hi or 'inf)'}")


BOOLEAN = FieldCheck(lambda v: isinstance(v, bool), "True or False")
STRING = FieldCheck(lambda v: isinstance(v, str), "a string")


def numbers(low: float, *, low_open: bool = False, length: int | None = None) -> FieldCheck:
  """A tuple of numbers, each above `low` (optionally of fixed length)."""
  each = number(low, low_open=low_open)
  return FieldCheck(
    lambda v: (
      isinstance(v, (tuple, list)) and (length is None or len(v) == length) and all(each.is_valid(x) for x in v)
    ),
    f"a tuple of numbers each {'>' if low_open else '>='} {low}",
  )


def pairs(first_type: type, second_type: type) -> FieldCheck:
  """A tuple of 2-tuples (first, second): `first` an instance of `first_type`, `second` of `second_type` (an
  int counts as a float; a bool, nan or ±inf never counts as a number)."""

  def fits(value, kind) -> bool:
    if kind is float:
      return is_finite_number(value)
    return isinstance(value, kind)

  def ok(items):
    return isinstance(items, (tuple, list)) and all(
      isinstance(item, (tuple, list)) and len(item) == 2 and fits(item[0], first_type) and fits(item[1], second_type)
      for item in items
    )

  return FieldCheck(ok, f"a tuple of ({first_type.__name__}, {second_type.__name__}) pairs")


def member_of(names, extra=()) -> FieldCheck:
  """One of the keys of the live mapping `names` (a registry that may grow after import) or of `extra`;
  the message lists those present when the check was made."""
  return FieldCheck(lambda v: v in names or v in extra, "one of " + ", ".join(repr(c) for c in (*names, *extra)))


def check_fields(config: ml_collections.ConfigDict, checks: dict[str, FieldCheck], prefix: str = "") -> None:
  """Raises `ConfigError` for the first field of `checks` that `config` lacks or holds an invalid value in."""
  for field, check in checks.items():
    node = config
    for part in field.split("."):
      if part not in node:
        raise ConfigError(f"config.{prefix}{field} is missing; expected {check.valid}")
      node = node[part]
    if not check.is_valid(node):
      raise ConfigError(f"config.{prefix}{field}={node!r} {check.problem}; valid: {check.valid}")
