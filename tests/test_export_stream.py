"""The COG export streamed beside the tile map (issue 12, item 1): same bytes, nothing half-done.

:class:`pipeline.export_stream.ExportStream` writes each tile into the stage files as it is
journaled, in whatever order the tiles finish; its COG must equal :func:`export_cog`'s (the
sequential export of the finished array) byte for byte, with streamed overview levels and with
GDAL's. A run streams its export: a run interrupted during inference or during the COG assembly
leaves nothing at the output path and no temporaries, and its rerun writes the bytes of an
uninterrupted run. The stores are tiny; the cluster is 2 worker processes x 1 thread.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rasterio.crs import CRS

from pipeline import export_stream, stage_export
from pipeline.distribute import Engine
from pipeline.errors import StoreError
from pipeline.export import CogOptions, export_cog
from pipeline.export_stream import ExportStream, _assemble
from pipeline.grid import Window
from pipeline.runner import RunConfig, run_scene
from pipeline.scene import Scene
from pipeline.sensors import get_sensor
from pipeline.store import SceneStore, write_scene

H, W = 256, 320  # 2 overview levels with 128-pixel COG blocks
OPTS = CogOptions(blocksize=128)


def _store(tmp_path: Path, tile: int = 64) -> SceneStore:
    rng = np.random.default_rng(7)
    scene = Scene(
        pan=rng.integers(0, 2048, (H, W), dtype=np.uint16),
        ms=rng.integers(1, 2048, (4, H // 4, W // 4), dtype=np.uint16),
        sensor=get_sensor("wv4"),
        crs=CRS.from_epsg(32631).to_wkt(),
        pan_transform=(0.5, 0.0, 593_000.0, 0.0, -0.5, 5_747_000.0),
        ms_transform=(2.0, 0.0, 593_000.0, 0.0, -2.0, 5_747_000.0),
        nodata=None,
        dn_max=2047.0,
    )
    store = write_scene(scene, tmp_path / "s.zarr", tile=tile)
    store.create_output("x")
    x = rng.random((4, H, W), dtype=np.float32)
    x[:, 10:30, 40:47] = np.nan  # masked pixels: the levels' means leave them out
    store.write_region("x", Window(0, H, 0, W), x)
    store.mark_complete("x")
    return store


def _leftovers(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f".{name}.*"))


@pytest.mark.parametrize(
    "opts",
    [OPTS, CogOptions(blocksize=128, overview_resampling="nearest"), CogOptions(dtype="float32")],
    ids=["streamed levels", "GDAL's levels", "float32"],
)
def test_the_streamed_cog_equals_the_sequential_export_byte_for_byte(
    tmp_path: Path, opts: CogOptions
) -> None:
    store = _store(tmp_path)
    keys = list(store.grid.keys())
    random.Random(3).shuffle(keys)  # tiles finish out of order
    stream = ExportStream(store.path, "x", tmp_path / "streamed.tif", options=opts)
    for k in keys:
        stream.add([k])
    stream.add(keys[:3])  # a tile added twice is written once
    stream.finish()
    export_cog(store.path, "x", tmp_path / "sequential.tif", options=opts)
    streamed = (tmp_path / "streamed.tif").read_bytes()
    assert streamed == (tmp_path / "sequential.tif").read_bytes()
    assert _leftovers(tmp_path, "streamed.tif") == []


def test_a_stream_missing_tiles_refuses_to_finish_and_leaves_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path)
    out = tmp_path / "o.tif"
    stream = ExportStream(store.path, "x", out, options=OPTS)
    stream.add(list(store.grid.keys())[:-1])
    with pytest.raises(StoreError, match="before every tile"):
        stream.finish()
    assert not out.exists() and _leftovers(tmp_path, "o.tif") == []


@pytest.mark.parametrize("where", ["while writing tiles", "during the COG copy"])
def test_a_failed_stream_keeps_the_old_product_and_no_temporaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    store = _store(tmp_path)
    out = tmp_path / "o.tif"
    out.write_bytes(b"the previous product")
    calls = []

    def boom(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise OSError("injected failure")

    name = "_convert" if where == "while writing tiles" else "_assemble"
    monkeypatch.setattr(export_stream, name, boom)
    stream = ExportStream(store.path, "x", out, options=OPTS, overwrite=True)
    stream.add(store.grid.keys())
    with pytest.raises((OSError, StoreError), match="injected"):  # a write error: named
        stream.finish()
    assert calls and out.read_bytes() == b"the previous product"
    assert _leftovers(tmp_path, "o.tif") == []


def test_an_aborted_stream_removes_its_stage_files(tmp_path: Path) -> None:
    store = _store(tmp_path)
    stream = ExportStream(store.path, "x", tmp_path / "o.tif", options=OPTS)
    stream.add(list(store.grid.keys())[:5])
    stream.abort()
    stream.abort()  # idempotent (the run's exit stack calls it after a failure)
    assert not (tmp_path / "o.tif").exists() and _leftovers(tmp_path, "o.tif") == []


# ----------------------------------------------------------------------------- through run_scene


class Interrupt(Exception):
    pass


def _cfg(store: SceneStore, out: Path) -> RunConfig:
    return RunConfig(inputs=(str(store.path),), output=str(out), method="brovey", quality_tiles=0)


@pytest.fixture
def scene(tmp_path: Path) -> SceneStore:
    from tests.test_workers import small_store

    return small_store(tmp_path / "s.zarr", (96, 128), 32)  # 12 tiles


def test_a_streamed_run_writes_the_sequential_runs_cog_never_visible_before_the_end(
    engine: Engine, scene: SceneStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stage_export, "STREAM_EXPORT", True)
    out = tmp_path / "streamed.tif"
    seen: list[bool] = []

    def progress(stage: str, done: int, total: int) -> None:
        seen.append(out.exists())

    summary = run_scene(_cfg(scene, out), engine=engine, progress=progress)
    assert seen and not any(seen) and out.is_file()
    assert "export_overlapped" in summary["timings"]
    monkeypatch.setattr(stage_export, "STREAM_EXPORT", False)
    plain = tmp_path / "plain.tif"
    t = run_scene(_cfg(scene, plain), engine=engine)["timings"]
    assert "export_overlapped" not in t
    assert 0 < t["export_assemble"] <= t["export"]  # GDAL's COG copy, a part of the export
    assert out.read_bytes() == plain.read_bytes()


@pytest.mark.parametrize("where", ["mid-inference", "mid-export"])
def test_a_run_interrupted_mid_stream_resumes_to_the_same_bytes(
    engine: Engine,
    scene: SceneStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    monkeypatch.setattr(stage_export, "STREAM_EXPORT", True)
    fresh = tmp_path / "fresh.tif"
    run_scene(_cfg(scene, fresh), engine=engine)
    out = tmp_path / "o.tif"
    progress = None
    if where == "mid-inference":

        def progress(stage: str, done: int, total: int) -> None:
            if stage == "infer" and done >= 5:
                raise Interrupt

    else:

        def boom(*args: Any, **kwargs: Any) -> None:
            raise Interrupt

        monkeypatch.setattr(export_stream, "_assemble", boom)
    with pytest.raises(Interrupt):
        run_scene(_cfg(scene, out), engine=engine, progress=progress)
    monkeypatch.setattr(export_stream, "_assemble", _assemble)
    assert not out.exists() and _leftovers(tmp_path, "o.tif") == []
    summary = run_scene(_cfg(scene, out), engine=engine)
    assert summary["infer"]["skipped"] >= (5 if where == "mid-inference" else 12)
    assert out.read_bytes() == fresh.read_bytes()


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread niceness is Linux's")
def test_the_writer_thread_is_niced_and_the_callers_thread_is_not(tmp_path: Path) -> None:
    """The tile tasks keep the cores; the writer takes what they leave idle."""
    store = _store(tmp_path)
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    stream = ExportStream(store.path, "x", tmp_path / "o.tif", options=OPTS, nice=5)
    stream.add(list(store.grid.keys())[:1])
    tid, want = stream._thread.native_id, min(19, base + 5)
    assert tid is not None
    for _ in range(100):  # the writer sets its niceness first thing
        if os.getpriority(os.PRIO_PROCESS, tid) == want:
            break
        time.sleep(0.05)
    assert os.getpriority(os.PRIO_PROCESS, tid) == want
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base
    stream.abort()


@pytest.mark.parametrize("cores", [2, 3])
def test_auto_streams_only_where_the_driver_has_a_core_no_local_worker_uses(
    engine: Engine, scene: SceneStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cores: int
) -> None:
    """The engine's 2 local worker threads on a host of ``cores`` cores: 2 leave none spare
    (the stream would slow the tiles: export after them), 3 leave one (stream)."""
    import pipeline.distribute

    monkeypatch.setattr(stage_export, "STREAM_EXPORT", "auto")
    monkeypatch.setattr(pipeline.distribute.os, "cpu_count", lambda: cores)
    summary = run_scene(_cfg(scene, tmp_path / "o.tif"), engine=engine)
    assert ("export_overlapped" in summary["timings"]) == (cores == 3)
