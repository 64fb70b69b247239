"""pipeline.xr: lazy rioxarray in, lazy georeferenced Dask DataArray out, equal to the engine."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pytest
import rasterio
import rioxarray
import xarray as xr

from pipeline import demo
from pipeline import xr as pxr
from pipeline.errors import GridMismatchError, InputError
from pipeline.runner import run_scene

SENSOR = demo.SENSOR


def _open() -> tuple[Any, Any]:
    pan = rioxarray.open_rasterio(demo.PAN_FILE, chunks={"y": 64, "x": -1})
    ms = rioxarray.open_rasterio(demo.MS_FILE, chunks={"y": 32, "x": -1})
    return pan, ms


class Reads:
    """Wrap a DataArray's Dask data so that every chunk read is recorded (tag, chunk location)."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, int, int]] = []
        self.lock = threading.Lock()

    def wrap(self, arr: Any, tag: str) -> Any:
        def record(block: np.ndarray, block_info: Any = None) -> np.ndarray:
            loc = block_info[0]["chunk-location"]
            with self.lock:
                self.chunks.append((tag, loc[-2], loc[-1]))
            return block

        return arr.copy(data=da.map_blocks(record, arr.data, dtype=arr.dtype))


def test_nothing_is_computed_before_asked() -> None:
    pan, ms = _open()
    reads = Reads()
    out = pxr.pansharpen(
        reads.wrap(pan, "pan"), reads.wrap(ms, "ms"), sensor=SENSOR, adapt="none", tile=128
    )
    assert reads.chunks == []  # no fit, nothing read
    assert isinstance(out.data, da.Array) and out.shape == (4, 256, 512)
    assert out.rio.crs.to_epsg() == 32616 and out.rio.transform() == pan.rio.transform()
    values = out.values
    assert np.isfinite(values).all() and reads.chunks  # computed only now


def test_the_tailor_fit_reads_only_the_sampled_windows() -> None:
    pan = rioxarray.open_rasterio(demo.PAN_FILE, chunks={"y": 32, "x": 128})  # 8 x 4 chunks
    ms = rioxarray.open_rasterio(demo.MS_FILE, chunks={"y": 16, "x": 64})
    reads = Reads()
    small = {"min_patches": 4, "max_patches": 4, "holdout": 2}  # default: 12 of the 32 patches
    out = pxr.pansharpen(
        reads.wrap(pan, "pan"), reads.wrap(ms, "ms"), sensor=SENSOR, tile=128, sample=small
    )
    assert out.attrs["pantailor_adapt"] == "tailor" and out.attrs["pantailor_fit_steps"] > 0
    pan_read = {c for c in reads.chunks if c[0] == "pan"}
    # 6 sampled 64-pixel patches on the 64-pixel patch grid touch 2 of the 32 chunks (32 x 128) each
    assert 0 < len(pan_read) <= 12
    n = len(reads.chunks)
    first_row = out.isel(y=slice(0, 10)).values  # the first tile row: its chunks plus halo only
    assert first_row.shape == (4, 10, 512)
    assert {c[1] for c in reads.chunks[n:] if c[0] == "pan"} <= {0, 1, 2, 3, 4, 5}


def test_tiles_with_halo_equal_the_whole_image() -> None:
    pan, ms = _open()
    fitted = pxr.fit_scene(pan, ms, sensor=SENSOR)
    whole = pxr.apply(fitted, pan, ms, tile=512).values  # one chunk: the whole scene
    tiled = pxr.apply(fitted, pan, ms, tile=48)
    assert len(tiled.chunks[1]) == 6 and len(tiled.chunks[2]) == 11
    np.testing.assert_allclose(tiled.values, whole, atol=0.05, rtol=0)  # DN, float noise only


@pytest.mark.slow
def test_equals_pantailor_run_on_the_same_scene(tmp_path: Path) -> None:
    """Also around a no-data hole in the MS: both fill it at the scene's band levels."""
    from workers.cluster import load_cluster_config

    pan, ms = _open()
    data = ms.values.copy()
    data[:, 40:60, 60:100] = 0  # no data in every band, across the run's tiles and xr's
    files = tmp_path / "pan.tif", tmp_path / "ms.tif"
    pan.rio.write_nodata(0).rio.to_raster(files[0])
    ms.copy(data=data).rio.write_nodata(0).rio.to_raster(files[1])
    cfg = replace(demo.demo_config(tmp_path / "run"), inputs=tuple(str(f) for f in files))
    run_scene(cfg, cluster=load_cluster_config(None, n_workers=1))
    with rasterio.open(cfg.output) as f:
        product, nodata = f.read().astype(np.float64), f.nodata
    pan, ms = rioxarray.open_rasterio(files[0]), rioxarray.open_rasterio(files[1])
    out = pxr.pansharpen(pan, ms, sensor=SENSOR, tile=96).values  # other tiles than the run's 128
    hole = np.isnan(out)
    assert hole[:, 80:120, 120:200].all() and (product[hole] == nodata).all()
    diff = np.abs(np.clip(np.rint(out[~hole]), 0, 65535) - product[~hole])
    assert diff.max() <= 1 and (diff > 0).mean() < 0.005  # rounding ties of float noise only


def test_to_raster_and_to_zarr_work(tmp_path: Path) -> None:
    pan, ms = _open()
    out = pxr.pansharpen(pan, ms, sensor=SENSOR, adapt="none", tile=128)
    out.rio.to_raster(tmp_path / "x.tif")
    with rasterio.open(tmp_path / "x.tif") as f, rasterio.open(demo.PAN_FILE) as p:
        assert f.crs == p.crs and f.transform == p.transform and f.count == 4
        written = f.read()
    out.to_zarr(tmp_path / "x.zarr", consolidated=False)
    back = xr.open_dataset(tmp_path / "x.zarr", engine="zarr", consolidated=False)
    back = back["pansharpened"]
    np.testing.assert_array_equal(back.values, written)
    assert back.attrs["pantailor_method"] == "fusionnet"


@pytest.mark.slow
def test_uses_the_active_distributed_client() -> None:
    distributed = pytest.importorskip("distributed")
    pan, ms = _open()
    out = pxr.pansharpen(pan, ms, sensor=SENSOR, adapt="none", tile=128)
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0") as lc,
        distributed.Client(lc) as client,
        distributed.get_task_stream(client) as ts,
    ):
        values = out.values
    assert np.isfinite(values).all()
    assert any("forward_tile" in str(t["key"]) for t in ts.data)


def test_bad_inputs_name_what_is_wrong() -> None:
    pan, ms = _open()
    with pytest.raises(InputError, match="band count"):
        pxr.pansharpen(pan, ms.isel(band=[0, 1, 2]), sensor=SENSOR)
    shifted = ms.assign_coords(x=ms.x + 10.0)  # a third of an MS pixel
    with pytest.raises(GridMismatchError, match="co-registered"):
        pxr.pansharpen(pan, shifted, sensor=SENSOR)
    with pytest.raises(GridMismatchError, match="extents"):
        pxr.pansharpen(pan.isel(x=slice(0, 500)), ms, sensor=SENSOR)
    with pytest.raises(GridMismatchError, match="ratio"):
        pxr.pansharpen(pan, ms, sensor="qb")


def test_nodata_footprint_is_nan_and_tiles_still_equal_the_whole_image() -> None:
    pan, ms = _open()
    hole = np.zeros(pan.shape, dtype=bool)
    hole[0, 100:140, 120:200] = True  # crosses tile borders at 128
    pan = pan.copy(data=da.where(da.from_array(hole), 0, pan.data)).rio.write_nodata(0)
    fitted = pxr.fit_scene(pan, ms, sensor=SENSOR, adapt_mode="none")
    whole = pxr.apply(fitted, pan, ms, tile=512).values
    tiled = pxr.apply(fitted, pan, ms, tile=64).values
    assert np.isnan(tiled[:, hole[0]]).all() and np.isfinite(tiled[:, ~hole[0]]).all()
    np.testing.assert_allclose(tiled, whole, atol=0.05, rtol=0)


def test_accepts_the_grids_pantailor_run_accepts(tmp_path: Path) -> None:
    """One grid rule for both entry points (pipeline.ingest.checks): a centre-aligned pair with
    the PAN half a pixel *after* the MS origin, and a misregistration within the tolerance."""
    from pipeline.scene import open_scene

    pan, ms = _open()
    later = pan.isel(x=slice(1, 511)), ms.isel(x=slice(0, 255))  # PAN origin +1/2 PAN px
    nudged = pan, ms.assign_coords(x=ms.x + 1.5)  # 0.1 PAN px
    for i, (p, m) in enumerate((later, nudged)):
        files = tmp_path / f"pan{i}.tif", tmp_path / f"ms{i}.tif"
        p.rio.to_raster(files[0])
        m.rio.to_raster(files[1])
        scene = open_scene(files, SENSOR)  # what pantailor run reads
        out = pxr.apply(pxr.fit_scene(p, m, sensor=SENSOR, adapt_mode="none"), p, m, tile=128)
        assert out.shape == (4, *scene.pan.shape) == (4, *p.shape[-2:])
