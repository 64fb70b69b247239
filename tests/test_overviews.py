"""COG overview levels computed while the export streams (pipeline.overviews), against GDAL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling

from pipeline import overviews
from pipeline.export import CogOptions, export_cog
from pipeline.grid import Window
from pipeline.overviews import Pyramid, aligned, level_count, level_shape
from pipeline.scene import Scene
from pipeline.sensors import get_sensor
from pipeline.store import write_scene


def _levels_of(x: np.ndarray, step: int, n: int, nodata: float | None) -> list[np.ndarray]:
    """Feed ``x`` to a Pyramid window by window (raster order) and assemble its levels."""
    out = [np.zeros((x.shape[0], *level_shape(x.shape[1:], k)), x.dtype) for k in range(1, n + 1)]

    def write(level: int, w: Window, block: np.ndarray) -> None:
        out[level - 1][(slice(None), *w.slices)] = block

    pyr = Pyramid(n, x.dtype, nodata, write)
    for y0 in range(0, x.shape[1], step):
        for x0 in range(0, x.shape[2], step):
            w = Window(y0, min(y0 + step, x.shape[1]), x0, min(x0 + step, x.shape[2]))
            pyr.add(x[(slice(None), *w.slices)], w)
    return out


def _gdal_levels(x: np.ndarray, nodata: float | None, n: int, tmp: Path) -> list[np.ndarray]:
    path = tmp / "ref.tif"
    prof = {"driver": "GTiff", "width": x.shape[2], "height": x.shape[1], "count": x.shape[0]}
    with rasterio.open(path, "w", **prof, dtype=x.dtype, nodata=nodata) as dst:
        dst.write(x)
        dst.build_overviews([2**k for k in range(1, n + 1)], Resampling.average)
    levels = []
    for k in range(n):
        with rasterio.open(path, overview_level=k) as src:
            levels.append(src.read())
    return levels


@pytest.mark.parametrize(("nodata", "dtype"), [(None, "uint16"), (0.0, "uint16"), (None, "int16")])
def test_pyramid_is_gdal_average(nodata: float | None, dtype: str, tmp_path: Path) -> None:
    """Without nodata, integer levels take the integer path; int16: negative means round half
    away from zero, as GDAL's."""
    rng = np.random.default_rng(3)
    low = -2048 if dtype == "int16" else 1
    x = rng.integers(low, 2048, (3, 208, 152)).astype(dtype)  # windows of 40: partial edges
    if nodata is not None:
        x[:, 10:50, 20:33] = 0  # a nodata hole, partly covering some 2x2 and 4x4 blocks
        x[1, 100:108, 0:8] = 0  # one band only
    ours = _levels_of(x, step=40, n=3, nodata=nodata)
    ref = _gdal_levels(x, nodata, 3, tmp_path)
    for a, b in zip(ours, ref, strict=True):
        assert a.shape == b.shape
        if nodata is not None:
            np.testing.assert_array_equal(a == 0, b == 0)  # same nodata pixels
        np.testing.assert_array_equal(a, b)


def test_float_nan_is_excluded_and_kept_where_all_nan() -> None:
    x = np.full((1, 4, 4), 2.0, np.float32)
    x[0, 0, 0] = 6.0
    x[0, 0, 1] = np.nan
    x[0, 2:, 2:] = np.nan
    (lev,) = _levels_of(x, step=4, n=1, nodata=float("nan"))
    assert lev[0, 0, 0] == pytest.approx(10.0 / 3.0)  # (6 + 2 + 2) / 3 valid pixels
    assert np.isnan(lev[0, 1, 1]) and lev[0, 0, 1] == 2.0


def test_level_count_and_alignment() -> None:
    assert level_count((256, 320), 128) == 2  # GDAL's AUTO: 320 -> 160 -> 80
    assert level_count((4000, 4000), 512) == 3
    assert level_count((100, 100), 128) == 0
    assert aligned((256, 320), 96, 2) and aligned((7, 7), 7, 0)
    assert not aligned((256, 320), 100, 3) and not aligned((203, 320), 96, 2)


def _scene_store(tmp_path: Path, h: int, w: int, tile: int) -> tuple[object, np.ndarray]:
    rng = np.random.default_rng(1)
    scene = Scene(
        pan=rng.integers(0, 2048, (h, w), dtype=np.uint16),
        ms=rng.integers(1, 2048, (4, h // 4, w // 4), dtype=np.uint16),
        sensor=get_sensor("wv4"),
        crs=None,
        pan_transform=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        ms_transform=(4.0, 0.0, 0.0, 0.0, 4.0, 0.0),
        nodata=None,
        dn_max=2047.0,
    )
    store = write_scene(scene, tmp_path / "s.zarr", tile=tile)
    store.create_output("fused")
    fused = rng.random((4, h, w), dtype=np.float32)  # full-range noise: means round often
    store.write_region("fused", Window(0, h, 0, w), fused)
    store.mark_complete("fused")
    return store, fused


@pytest.mark.parametrize(("h", "streamed"), [(264, True), (524, False)])
def test_exported_cog_overviews_are_gdal_average(
    h: int, streamed: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streamed levels where the sides allow it (264 = 8 x 33), GDAL's own otherwise (524 rows,
    3 levels, not a multiple of 8; the COG driver builds them, as before)."""
    store, fused = _scene_store(tmp_path, h, 328, 96)
    calls: list[int] = []
    half = overviews.Pyramid._half
    monkeypatch.setattr(overviews.Pyramid, "_half", lambda *a: calls.append(1) or half(*a))
    out = export_cog(store.path, "fused", tmp_path / "o.tif", options=CogOptions(blocksize=128))
    assert bool(calls) == streamed
    with rasterio.open(out) as src:
        full = src.read()
        n = len(src.overviews(1))
        assert src.overviews(1) == [2, 4, 8][:n] and n == (3 if h > 512 else 2)
        cog_levels = [
            src.read(out_shape=(4, *level_shape(full.shape[1:], k)), resampling=Resampling.nearest)
            for k in range(1, n + 1)
        ]
    np.testing.assert_array_equal(full, np.rint(fused.astype(np.float64) * 2047).astype(np.uint16))
    if streamed:
        for a, b in zip(cog_levels, _gdal_levels(full, None, n, tmp_path), strict=True):
            np.testing.assert_array_equal(a, b)
    left = sorted(p.name for p in tmp_path.iterdir() if p.name != "ref.tif")
    assert left == ["o.tif", "s.zarr"]  # no stage file left behind
