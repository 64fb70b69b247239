"""The notebooks: committed with outputs, in sync with notebooks/build.py, and executed here on
the small demo crop shipped in the package (nbclient, their own local cluster)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "large_scene.ipynb"
nbformat = pytest.importorskip("nbformat")


def _build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nb_build", ROOT / "notebooks" / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _outputs(nb: Any) -> list[Any]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def _text(outputs: list[Any]) -> str:
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


def test_committed_notebook_is_what_build_writes_and_has_outputs() -> None:
    committed = nbformat.read(NOTEBOOK, as_version=4)
    built = _build_module().notebook(_build_module().LARGE_SCENE)
    assert [c.source for c in committed.cells] == [c.source for c in built.cells]
    outputs = _outputs(committed)
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4  # curve, crops, map, times
    assert "dashboard: http" in _text(outputs) and "mean HQNR" in _text(outputs)


@pytest.mark.slow
def test_large_scene_notebook_executes_on_the_demo_crop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("PANTAILOR_NB_SCENE", "demo")
    monkeypatch.setenv("PANTAILOR_NB_TILE", "128")
    monkeypatch.setenv("PANTAILOR_NB_WORKERS", "1")
    monkeypatch.setenv("PANTAILOR_NB_OUT", str(tmp_path / "nb"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []  # executed afresh
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute(cwd=str(tmp_path))
    outputs = _outputs(nb)
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4
    text = _text(outputs)
    assert "demo PAN" in text and "dashboard: http" in text and "mean HQNR" in text
    import rasterio

    with rasterio.open(tmp_path / "nb" / "product.tif") as f:
        assert f.crs.to_epsg() == 32616 and f.count == 4 and f.shape == (256, 512)
