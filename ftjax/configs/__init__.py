"""The config schema (every field with its default, check and meaning), the default config built
from it, its validation, and the help text the commands print."""

from ftjax.configs.help_text import help_lines
from ftjax.configs.schema import SECTIONS, Field, Section, default_config, field_checks, fields
from ftjax.configs.validation import check_input_format, validate_config

__all__ = [
  "Field",
  "SECTIONS",
  "Section",
  "check_input_format",
  "default_config",
  "field_checks",
  "fields",
  "help_lines",
  "validate_config",
]
