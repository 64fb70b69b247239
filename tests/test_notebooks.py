"""The notebooks: committed with outputs, in sync with notebooks/build.py, and executed here on
small inputs (nbclient, their own local cluster): ``large_scene`` on the demo crop shipped in the
package, ``archive_batch`` on the two tiny real Landsat scenes of ``PANTAILOR_DATA``."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "large_scene.ipynb"
ARCHIVE = ROOT / "notebooks" / "archive_batch.ipynb"
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


def test_committed_archive_notebook_is_what_build_writes_and_has_outputs() -> None:
    committed = nbformat.read(ARCHIVE, as_version=4)
    built = _build_module().notebook(_build_module().ARCHIVE_BATCH)
    assert [c.source for c in committed.cells] == [c.source for c in built.cells]
    outputs = _outputs(committed)
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # quality, quicklooks
    text = _text(outputs)
    assert "exit status 0" in text and "7 done, 0 failed" in text and "mean product HQNR" in text


@pytest.mark.slow
@pytest.mark.data
def test_archive_notebook_executes_on_two_landsat_scenes(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("PANTAILOR_DATA", str(data_root))
    monkeypatch.setenv("PANTAILOR_NB_SCENES", "lc08-rcran,le07-rcran")
    monkeypatch.setenv("PANTAILOR_NB_WORKERS", "1")
    monkeypatch.setenv("PANTAILOR_NB_OUT", str(tmp_path / "nb"))
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = nbformat.read(ARCHIVE, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []  # executed afresh
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute(cwd=str(tmp_path))
    outputs = _outputs(nb)
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2
    text = _text(outputs)
    assert "exit status 0" in text and "2 done, 0 failed" in text, text
    for scene, sensor in (("lc08-rcran", "landsat8"), ("le07-rcran", "landsat7")):
        assert re.search(rf"{scene}\s+{sensor}\s+done\s+NaN\s+0\.\d+", text), text
    import pystac

    items = pystac.ItemCollection.from_file(str(tmp_path / "nb" / "products.json"))
    assert sorted(i.id for i in items) == ["lc08-rcran", "le07-rcran"]
    for item in items:
        assert 0.0 < item.properties["pantailor:hqnr"] <= 1.0
        assert Path(item.assets["data"].href).is_file()
