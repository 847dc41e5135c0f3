"""The repository's documentation stands alone: every relative link of README.md and docs/*.md
points at a file of the repository (and at an existing heading or anchor of a Markdown target),
nothing refers to documents outside the repository, every "methods.md §N.N" citation in code,
docs and notebooks names a section of docs/methods.md, and CITATION.cff is valid CFF 1.2.0.

The checks are functions of a repository root, so the tests at the end run them on a small
repository with known faults and assert that each fault is reported."""

import collections
import json
import os
import pathlib
import re
import urllib.parse

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FORBIDDEN = ("../shared", "SPEC.md", "SPEC §")
SKIPPED_DIRS = {"__pycache__", "workdirs", "build", "dist", "venv"}
CITED_SUFFIXES = (".py", ".md", ".ipynb")

FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
INLINE_LINK = re.compile(r"\[[^\]\n]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", re.M)
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"", re.I)
SECTION_HEADING = re.compile(r"^#{2,3} (\d+(?:\.\d+)?) ", re.M)
CITATION = re.compile(r"methods\.md\s*§\s*(\d+(?:\.\d+)?)(?:\s*[–-]\s*(\d+(?:\.\d+)?))?")


def documentation_files(root: pathlib.Path) -> list[pathlib.Path]:
  """README.md and every docs/*.md."""
  return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def without_code(text: str) -> str:
  """Markdown text with fenced code blocks and inline code spans removed (links there are code)."""
  return INLINE_CODE.sub("", FENCE.sub("", text))


def github_slug(heading: str) -> str:
  """The anchor GitHub gives a heading: link syntax reduced to its text, lower case, characters
  other than letters, digits, '_', '-' and spaces dropped, spaces turned into '-'."""
  text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
  return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
  """The link targets a Markdown text defines: explicit <a id/name> anchors and heading slugs
  (a repeated slug gets -1, -2, ... as on GitHub)."""
  found = set(HTML_ANCHOR.findall(text))
  seen = collections.Counter()
  for heading in HEADING.findall(FENCE.sub("", text)):
    slug = github_slug(heading)
    found.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
    seen[slug] += 1
  return found


def link_targets(text: str) -> list[str]:
  """Targets of the inline and reference-style links of a Markdown text, outside code."""
  text = without_code(text)
  return INLINE_LINK.findall(text) + REFERENCE_LINK.findall(text)


def broken_links(root: pathlib.Path) -> list[str]:
  """'file: target (why)' for every relative link of the documentation whose file does not exist,
  lies outside the repository, or whose #anchor the target Markdown file does not define."""
  root = root.resolve()
  problems = []
  for doc in documentation_files(root):
    for target in link_targets(doc.read_text(encoding="utf-8")):
      if not target or urllib.parse.urlsplit(target).scheme:  # http:, https:, mailto:
        continue
      path, _, anchor = urllib.parse.unquote(target).partition("#")
      resolved = (doc.parent / path).resolve() if path else doc
      where = f"{doc.relative_to(root)}: {target}"
      if not resolved.is_relative_to(root):
        problems.append(f"{where} (outside the repository)")
      elif not resolved.exists():
        problems.append(f"{where} (no such file)")
      elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved.read_text(encoding="utf-8")):
        problems.append(f"{where} (no anchor #{anchor} in {resolved.relative_to(root)})")
  return problems


def forbidden_mentions(root: pathlib.Path) -> list[str]:
  """'file: text' for every mention of a document outside the repository."""
  return [
    f"{doc.relative_to(root)}: {text}"
    for doc in documentation_files(root)
    for text in FORBIDDEN
    if text in doc.read_text(encoding="utf-8")
  ]


def methods_sections(root: pathlib.Path) -> set[str]:
  """The section numbers of docs/methods.md ('1', '2.4', ...), from its headings."""
  return set(SECTION_HEADING.findall(FENCE.sub("", (root / "docs" / "methods.md").read_text(encoding="utf-8"))))


def searchable_text(path: pathlib.Path) -> str:
  """A file's text; for a notebook, the sources of its cells."""
  text = path.read_text(encoding="utf-8")
  if path.suffix != ".ipynb":
    return text
  return "\n".join("".join(cell.get("source", "")) for cell in json.loads(text).get("cells", []))


def cited_files(root: pathlib.Path):
  """Every .py, .md and .ipynb file of the repository outside hidden and generated folders."""
  for folder, dirs, files in os.walk(root):
    dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
    for name in files:
      if name.endswith(CITED_SUFFIXES):
        yield pathlib.Path(folder) / name


def unknown_citations(root: pathlib.Path) -> list[str]:
  """'file: methods.md §N.N' for every citation (or end of a cited range) that names no section."""
  sections = methods_sections(root)
  problems = []
  for path in cited_files(root):
    for match in CITATION.finditer(searchable_text(path)):
      if any(number not in sections for number in match.groups() if number):
        problems.append(f"{path.relative_to(root)}: {match.group(0)}")
  return problems


def test_documentation_links_resolve_inside_the_repository():
  assert broken_links(ROOT) == []


def test_documentation_does_not_refer_outside_the_repository():
  assert forbidden_mentions(ROOT) == []


def test_every_methods_citation_names_a_section():
  assert unknown_citations(ROOT) == []


def test_every_numbered_section_of_methods_has_its_explicit_anchor():
  text = (ROOT / "docs" / "methods.md").read_text(encoding="utf-8")
  sections = methods_sections(ROOT)
  assert {"1", "2.4", "3.4", "4.4", "4.5", "5"} <= sections
  missing = sorted(number for number in sections if "s" + number.replace(".", "-") not in HTML_ANCHOR.findall(text))
  assert missing == []


def test_citation_file_is_valid_cff_with_the_three_papers():
  yaml = pytest.importorskip("yaml")
  citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
  assert citation["cff-version"] == "1.2.0"
  assert {"authors", "message", "title"} <= set(citation)
  for reference in citation["references"]:
    assert {"type", "title", "authors"} <= set(reference) and reference["authors"]
  arxiv_ids = {identifier["value"] for reference in citation["references"] for identifier in reference["identifiers"]}
  assert arxiv_ids == {"arXiv:2002.08253", "arXiv:2111.04578", "arXiv:2206.02659"}


def test_license_is_the_apache_license():
  text = (ROOT / "LICENSE").read_text(encoding="utf-8")
  assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


@pytest.fixture
def faulty_repository(tmp_path):
  """A repository whose documentation has one fault of each kind the checks look for."""
  (tmp_path / "docs").mkdir()
  (tmp_path / "docs" / "methods.md").write_text(
    '# Methods\n\n<a id="s1"></a>\n## 1 One\n\n<a id="s2-1"></a>\n### 2.1 Two point one\n', encoding="utf-8"
  )
  (tmp_path / "docs" / "guide.md").write_text(
    "See [two point one](methods.md#s2-1), [the heading](methods.md#21-two-point-one),\n"
    "[missing anchor](methods.md#s9), [up](../README.md) and `[code](not-a-link.md)`.\n",
    encoding="utf-8",
  )
  (tmp_path / "README.md").write_text(
    "[guide](docs/guide.md) [gone](docs/gone.md) [web](https://example.org/x.md)\n"
    "[spec](../shared/SPEC.md)\n\n```\n[in a fence](nowhere.md)\n```\n",
    encoding="utf-8",
  )
  (tmp_path / "pkg").mkdir()
  (tmp_path / "pkg" / "mod.py").write_text(
    '"""Cites docs/methods.md §2.1, docs/methods.md §1–2.1 and docs/methods.md §2.4."""\n', encoding="utf-8"
  )
  (tmp_path / "note.ipynb").write_text(json.dumps({"cells": [{"source": ["see methods.md §3.2"]}]}), encoding="utf-8")
  return tmp_path


def test_checks_report_each_fault_of_a_faulty_repository(faulty_repository):
  root = faulty_repository
  assert sorted(broken_links(root)) == sorted(
    [
      "README.md: docs/gone.md (no such file)",
      "README.md: ../shared/SPEC.md (outside the repository)",
      "docs/guide.md: methods.md#s9 (no anchor #s9 in docs/methods.md)",
    ]
  )
  assert forbidden_mentions(root) == ["README.md: ../shared", "README.md: SPEC.md"]
  assert sorted(unknown_citations(root)) == ["note.ipynb: methods.md §3.2", "pkg/mod.py: methods.md §2.4"]


def test_github_slugs_of_headings():
  assert github_slug("2.4 Radii that grow with depth") == "24-radii-that-grow-with-depth"
  assert github_slug("Running `experiments` ([docs](x.md))") == "running-experiments-docs"
  assert anchors('# A\n## A\n<a id="x"></a>\n```\n# not a heading\n```\n') == {"a", "a-1", "x"}
