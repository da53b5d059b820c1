"""notebooks/quickstart.ipynb runs top to bottom from the repository root, with toy models, and finds trees."""
import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"


DOMAIN_NOTEBOOK = ROOT / "notebooks" / "domain_adaptation.ipynb"
USA_DATA = ROOT.parent / "shared" / "data" / "usa_deadtree"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_stored_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
@pytest.mark.skipif(not (USA_DATA / "masks").is_dir(), reason="needs the USA set beside the repository")
def test_domain_adaptation_notebook_scores_both_conditions_with_the_shipped_models(tmp_path, monkeypatch):
    monkeypatch.delenv("DEADTREE_MODELS", raising=False)  # the shipped east-rgbn and west-to-east
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("DEADTREE_NOTEBOOK_FRAMES", "1")
    notebook = nbformat.read(DOMAIN_NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT / "notebooks")}})
    client.execute()

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    text = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    scores = dict(re.findall(r"^(raw|west-to-east)\s+pooled pixel IoU ([0-9.]+)", text, flags=re.MULTILINE))
    assert set(scores) == {"raw", "west-to-east"}, text
    assert all(0 < float(v) <= 1 for v in scores.values())  # an east model finds western dead trees either way
    assert any("image/png" in out.get("data", {}) for out in outputs), "the comparison figure was not drawn"


@pytest.mark.slow
def test_quickstart_runs_and_finds_dead_trees(toy_models, tmp_path, monkeypatch):
    # The kernel is a child process: it inherits DEADTREE_MODELS (the toy models) from this one, and TMPDIR,
    # so the notebook's temporary output folder lands in tmp_path and is cleaned up with it.
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=180, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    text = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    found = re.search(r"(\d+) dead-tree polygons?", text)
    assert found and int(found.group(1)) > 0, text
    assert f"outputs go to {tmp_path}" in text
    assert any("image/png" in out.get("data", {}) for out in outputs), "the map of outlines was not drawn"
    tables = [out["data"]["text/plain"] for out in outputs if "text/plain" in out.get("data", {})]
    assert any("pixel IoU" in table for table in tables), "the evaluation table is missing"
