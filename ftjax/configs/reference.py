"""docs/config.md, the config reference, written from the schema:
`python -m ftjax.configs.reference > docs/config.md`."""

from ftjax.configs.help_text import valid_text
from ftjax.configs.schema import SECTIONS, Section

INTRO = """\
# Config reference

Generated from `ftjax/configs/schema.py` by `python -m ftjax.configs.reference > docs/config.md`;
edit the schema, not this file.

A run's config is a Python file under `experiments/configs/` whose `get_config(arg=None)` returns an
`ml_collections.ConfigDict`, built on `ftjax.configs.default_config()` (the defaults below). Pick one
with `--config experiments/configs/NAME.py[:ARG]` and set any field with `--config.FIELD=VALUE`
(`--config.noise.rate=0.4`). Every field is checked before anything is loaded or compiled; a bad
value stops the command with one line naming the field and what would be valid.
`python -m experiments.finetune --help` (and `measure`, `sweep`, `pretrain`) lists the fields of
the config it would run, with that config's values.
"""


def _cell(text: str) -> str:
  return text.replace("|", "\\|")


def section_markdown(section: Section) -> str:
  """A section's heading, what it is about, and a table of its fields."""
  where = " Only sweep configs have this section." if section.optional else ""
  lines = [
    f"## {section.title}",
    "",
    f"{section.about[0].upper()}{section.about[1:]}.{where}",
    "",
    "| field | default | meaning |",
    "| --- | --- | --- |",
  ]
  for field in section.fields:
    meaning = field.help + valid_text(field.check)
    lines.append(f"| `{field.name}` | `{field.default!r}` | {_cell(meaning)} |")
  return "\n".join(lines)


def reference_markdown(sections: tuple[Section, ...] = SECTIONS) -> str:
  """The whole reference: an introduction, then one section per schema section, in order."""
  return "\n\n".join([INTRO.rstrip(), *(section_markdown(s) for s in sections)]) + "\n"


if __name__ == "__main__":
  print(reference_markdown(), end="")
