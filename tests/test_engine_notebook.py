"""The large-scene notebook runs top to bottom on a small scene (nbclient, its own local cluster)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.test_workers import random_weights

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "large_scene.ipynb"


@pytest.mark.slow
def test_large_scene_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    weights = random_weights(tmp_path / "w.pt", "fusionnet", 8)
    monkeypatch.setenv("PANTAILOR_NB_SIZE", "256")
    monkeypatch.setenv("PANTAILOR_NB_WORKERS", "1")
    monkeypatch.setenv("PANTAILOR_NB_OUT", str(tmp_path / "nb"))
    monkeypatch.setenv("PANTAILOR_NB_WEIGHTS", str(weights))
    monkeypatch.setenv(
        "PYTHONPATH", str(NOTEBOOK.parent.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute(cwd=str(tmp_path))
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the quicklook is shown
    assert (tmp_path / "nb" / "demo.tif").is_file()
    assert any("hqnr" in o.get("text", "") for o in outputs)
