"""The config part of the commands' `--help`: one line per field, grouped by the schema's sections."""

from typing import Any

import ml_collections

from ftjax.config_validation import BOOLEAN, STRING, FieldCheck
from ftjax.configs.schema import SECTIONS, Section

ABSENT = "(not set)"
LONG_VALUE = 40


def shown_value(value: Any) -> str:
  """`repr(value)`, a dict's longer than LONG_VALUE as its keys only ({'a': ..., 'b': ...})."""
  if isinstance(value, ml_collections.ConfigDict):
    value = value.to_dict()
  text = repr(value)
  if isinstance(value, dict) and len(text) > LONG_VALUE:
    return "{" + ", ".join(f"{key!r}: ..." for key in value) + "}"
  return text


def valid_text(check: FieldCheck | None) -> str:
  """What a field's check accepts, where its value's type does not already say it."""
  return "" if check is None or check in (STRING, BOOLEAN) else f"; valid: {check.valid}"


def _lookup(config: ml_collections.ConfigDict, name: str) -> tuple[bool, Any]:
  node = config
  for part in name.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return False, None
    node = node[part]
  return True, node


def unknown_fields(config: ml_collections.ConfigDict, known: set[str], prefix: str = "") -> list[tuple[str, Any]]:
  """(dotted name, value) of every field of `config` that no name of `known` is or lies under."""
  found = []
  for key, value in config.items():
    name = prefix + key
    if name in known:
      continue
    if isinstance(value, ml_collections.ConfigDict) and any(k.startswith(name + ".") for k in known):
      found += unknown_fields(value, known, name + ".")
    else:
      found.append((name, value))
  return found


def help_lines(config: ml_collections.ConfigDict, sections: tuple[Section, ...] = SECTIONS) -> list[str]:
  """For each section (an optional one only where `config` holds it): a 'title: about' line, then
  one line per field, '  NAME  VALUE  meaning; valid: ...' with the field's value in `config`
  (ABSENT where `config` lacks it); last, the fields `config` holds that no section declares
  (name and value only)."""
  shown = [s for s in sections if not s.optional or any(_lookup(config, f.name)[0] for f in s.fields)]
  rows: list[tuple[str, str, str] | str] = []
  for section in shown:
    rows.append(f"{section.title}: {section.about}")
    for field in section.fields:
      present, value = _lookup(config, field.name)
      rows.append((field.name, shown_value(value) if present else ABSENT, field.help + valid_text(field.check)))
  extra = unknown_fields(config, {f.name for s in sections for f in s.fields})
  if extra:
    rows.append("fields of this config that the schema (ftjax.configs) does not declare:")
    rows += [(name, shown_value(value), "") for name, value in extra]
  cells = [row for row in rows if isinstance(row, tuple)]
  name_width = max(len(name) for name, _, _ in cells)
  value_width = max((len(value) for _, value, _ in cells if len(value) <= 24), default=0)
  return [
    row if isinstance(row, str) else f"  {row[0]:<{name_width}}  {row[1]:<{value_width}}  {row[2]}".rstrip()
    for row in rows
  ]
