"""examples/quickstart.ipynb: committed with the outputs of its full version, and runs top to bottom
(its quick variant) with the public API."""

import base64
import os

import nbformat
from nbclient import NotebookClient

from tests.test_finetune import REPO

NOTEBOOK = os.path.join(REPO, "examples", "quickstart.ipynb")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def text_outputs(notebook) -> str:
  return "".join(
    o.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
  )


def figures(notebook) -> list[bytes]:
  return [
    base64.b64decode(o["data"]["image/png"])
    for cell in notebook.cells
    for o in cell.get("outputs", [])
    if "image/png" in o.get("data", {})
  ]


def test_committed_notebook_shows_the_results_of_its_full_version():
  with open(NOTEBOOK) as f:
    notebook = nbformat.read(f, as_version=4)
  code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
  assert all(cell.get("execution_count") for cell in code_cells), "every code cell executed, in order"
  assert [cell.execution_count for cell in code_cells] == list(range(1, len(code_cells) + 1))
  outputs = text_outputs(notebook)
  assert "test accuracy" in outputs and "<= radius" in outputs and "stage4/block1/conv2/kernel" in outputs
  assert "Traceback" not in outputs and not any(
    o.get("output_type") == "error" for cell in code_cells for o in cell.get("outputs", [])
  )
  [figure] = figures(notebook)
  assert figure.startswith(PNG_SIGNATURE)
  assert os.path.getsize(NOTEBOOK) < 200_000, "figures kept small"


def test_quickstart_notebook_executes(tmp_path, monkeypatch):
  with open(NOTEBOOK) as f:
    notebook = nbformat.read(f, as_version=4)
  monkeypatch.setenv("FTJAX_QUICKSTART_QUICK", "1")
  monkeypatch.setenv("FTJAX_QUICKSTART_WORKDIR", str(tmp_path / "quickstart"))
  NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": REPO}}).execute()
  outputs = text_outputs(notebook)
  assert "test accuracy" in outputs and "<= radius" in outputs and " ± " in outputs
  assert len(figures(notebook)) == 1
  assert os.path.exists(tmp_path / "quickstart" / "results.json")
