"""examples/quickstart.ipynb runs top to bottom (its quick variant) with the public API."""

import os

import nbformat
from nbclient import NotebookClient

from tests.test_finetune import REPO


def test_quickstart_notebook_executes(tmp_path, monkeypatch):
  with open(os.path.join(REPO, "examples", "quickstart.ipynb")) as f:
    notebook = nbformat.read(f, as_version=4)
  monkeypatch.setenv("FTJAX_QUICKSTART_QUICK", "1")
  monkeypatch.setenv("FTJAX_QUICKSTART_WORKDIR", str(tmp_path / "quickstart"))
  NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": REPO}}).execute()
  outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                    for o in cell.get("outputs", []))
  assert "test accuracy" in outputs and "<= radius" in outputs and " ± " in outputs
  figures = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
  assert len(figures) == 1
  assert os.path.exists(tmp_path / "quickstart" / "results.json")
