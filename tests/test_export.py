"""COG export: layout, georeferencing, radiometry, atomic writes, the CLI, SpaceNet round trip."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from pipeline import cli, export
from pipeline.errors import ConfigError, StoreError
from pipeline.export import CogOptions, export_cog
from pipeline.grid import Window
from pipeline.scene import Scene, open_scene
from pipeline.sensors import get_sensor
from pipeline.store import SceneStore, write_scene

H, W = 256, 320  # larger than the 64-pixel COG block so that overviews exist
PAN_T = (0.5, 0.0, 593_000.0, 0.0, -0.5, 5_747_000.0)
MS_T = (2.0, 0.0, 593_000.0, 0.0, -2.0, 5_747_000.0)


def _store(tmp_path: Path, *, georef: bool = True, nodata: float | None = None) -> SceneStore:
    rng = np.random.default_rng(5)
    scene = Scene(
        pan=rng.integers(0, 2048, (H, W), dtype=np.uint16),
        ms=rng.integers(1, 2048, (4, H // 4, W // 4), dtype=np.uint16),
        sensor=get_sensor("wv4"),
        crs=CRS.from_epsg(32631).to_wkt() if georef else None,
        pan_transform=PAN_T if georef else (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        ms_transform=MS_T if georef else (4.0, 0.0, 0.0, 0.0, 4.0, 0.0),
        nodata=nodata,
        dn_max=2047.0,
    )
    return write_scene(scene, tmp_path / "s.zarr", tile=96)


def test_exported_file_is_a_valid_cog(tmp_path: Path) -> None:
    store = _store(tmp_path)
    out = export_cog(store.path, "ms_up", tmp_path / "o.tif", options=CogOptions(blocksize=128))
    with rasterio.open(out) as src:
        assert src.driver == "GTiff"
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "2"
        assert src.tags(ns="IMAGE_STRUCTURE")["INTERLEAVE"] == "PIXEL"  # band-ordered stages
        assert set(src.block_shapes) == {(128, 128)}  # tiled (rasterio deprecates is_tiled)
        assert src.overviews(1) == [2, 4]  # AUTO: halve until it fits a block: 320, 160, 80
        assert src.descriptions == ("blue", "green", "red", "nir")
        assert src.tags()["array"] == "ms_up"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.tif", "s.zarr"]


def test_zstd_and_float_predictor(tmp_path: Path) -> None:
    store = _store(tmp_path)
    opts = CogOptions(dtype="float32", compress="zstd", blocksize=128)
    out = export_cog(store.path, "ms_up", tmp_path / "o.tif", options=opts)
    with rasterio.open(out) as src:
        ims = src.tags(ns="IMAGE_STRUCTURE")
        assert (ims["COMPRESSION"], ims["PREDICTOR"], src.dtypes[0]) == ("ZSTD", "3", "float32")
        assert np.isnan(src.nodata)


def test_georeferencing_and_ms_up_values(tmp_path: Path) -> None:
    store = _store(tmp_path)
    out = export_cog(store.path, "ms_up", tmp_path / "o.tif", options=CogOptions(blocksize=128))
    ms = store.read_ms(Window(0, H // 4, 0, W // 4))
    with rasterio.open(out) as src:
        assert src.crs == CRS.from_epsg(32631)
        assert src.transform == Affine(*PAN_T)
        assert src.dtypes[0] == "uint16" and src.shape == (H, W)
        up = src.read()
    for dy, dx in [(0, 0), (3, 1), (2, 3)]:  # every pixel of a 4x4 block repeats its MS pixel
        np.testing.assert_array_equal(up[:, dy::4, dx::4], ms)


def test_ms_exports_on_its_own_grid(tmp_path: Path) -> None:
    store = _store(tmp_path)
    out = export_cog(store.path, "ms", tmp_path / "ms.tif", options=CogOptions(blocksize=128))
    with rasterio.open(out) as src:
        assert src.transform == Affine(*MS_T) and src.shape == (H // 4, W // 4)
        np.testing.assert_array_equal(src.read(), store.read_ms(Window(0, H // 4, 0, W // 4)))


def test_non_georeferenced_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = _store(tmp_path, georef=False)
    with caplog.at_level(logging.WARNING, logger="pipeline.export"):
        out = export_cog(store.path, "ms_up", tmp_path / "o.tif", options=CogOptions(blocksize=128))
    assert "not georeferenced" in caplog.text
    with rasterio.open(out) as src:
        assert src.crs is None
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"


def test_normalised_output_back_to_dn(tmp_path: Path) -> None:
    store = _store(tmp_path, nodata=0)
    store.create_output("fused")
    data = np.full((4, H, W), 0.5, np.float32)
    data[:, 0, 0] = np.nan  # never written -> nodata
    data[:, 0, 1] = 40.0  # 40 * 2047 overflows uint16 -> clipped
    data[:, 0, 2] = -1.0  # negative -> clipped to 0
    for key in list(store.grid.keys()):
        w = store.grid.pan_window(key)
        store.write_region("fused", w, data[(slice(None), *w.slices)])
    store.mark_complete("fused")
    out = export_cog(store.path, "fused", tmp_path / "o.tif", options=CogOptions(blocksize=128))
    with rasterio.open(out) as src:
        got = src.read()
        assert src.nodata == 0 and src.dtypes[0] == "uint16"
    assert got[0, 0, :4].tolist() == [0, 65535, 0, 1024]  # 0.5 * 2047 = 1023.5 rounds to even
    assert np.all(got[:, 1:, :] == 1024)


def test_dn_output_exported_as_is(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.create_output("dn_out", "float32", units="dn")
    w = store.grid.pan_window(next(store.grid.keys()))
    store.write_region("dn_out", w, np.full((4, *w.shape_yx), 7.4, np.float32))
    store.mark_complete("dn_out")
    out = export_cog(store.path, "dn_out", tmp_path / "o.tif", options=CogOptions(blocksize=128))
    with rasterio.open(out) as src:
        assert src.read(1, window=((0, 2), (0, 2))).tolist() == [[7, 7], [7, 7]]


def test_existing_output_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    (tmp_path / "o.tif").write_bytes(b"old")
    with pytest.raises(StoreError, match="already exists") as info:
        export_cog(store.path, "ms_up", tmp_path / "o.tif")
    assert "--overwrite" in str(info.value)
    assert (tmp_path / "o.tif").read_bytes() == b"old"
    export_cog(store.path, "ms_up", tmp_path / "o.tif", overwrite=True)
    assert (tmp_path / "o.tif").stat().st_size > 1000


def test_failed_export_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(tmp_path)
    calls = []

    def boom(block: Any, *args: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return block

    monkeypatch.setattr(export, "_convert", boom)
    with pytest.raises(StoreError, match="could not be written") as err:
        export_cog(store.path, "ms_up", tmp_path / "o.tif")
    assert isinstance(err.value.__cause__, OSError) and "disk full" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]


def test_bad_names_and_options(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with pytest.raises(StoreError, match="no array 'fuse'"):
        export_cog(store.path, "fuse", tmp_path / "o.tif")
    with pytest.raises(ConfigError, match="multiple of 16, at least 128"):
        CogOptions(blocksize=100)
    with pytest.raises(ConfigError, match="compression"):
        CogOptions(compress="jpeg")
    with pytest.raises(StoreError, match="No scene store"):
        export_cog(tmp_path / "none.zarr", "ms_up", tmp_path / "o.tif")
    assert not (tmp_path / "o.tif").exists()


def test_cli_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = _store(tmp_path)
    out = tmp_path / "o.tif"
    argv = ["export", str(store.path), "ms_up", "-o", str(out), "--dtype", "float32"]
    assert cli.main([*argv, "--blocksize", "128", "--compress", "zstd"]) == 0
    with rasterio.open(out) as src:
        assert src.dtypes[0] == "float32"
    assert cli.main(argv) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.data
def test_real_spacenet_georeferencing_survives(data_file: Any, tmp_path: Path) -> None:
    from dataclasses import replace

    pan, ms = data_file("vhr/spacenet_wv2/pan1.tif"), data_file("vhr/spacenet_wv2/ms1.tif")
    wv2_4 = replace(
        get_sensor("wv2"),
        name="wv2-4",
        bands=("blue", "green", "red", "nir"),
        rgb=(2, 1, 0),
        aliases=(),
        mtf_ms=(0.35, 0.35, 0.35, 0.27),
    )
    store = write_scene(open_scene([pan, ms], wv2_4, ms_decimate=2), tmp_path / "s.zarr", tile=128)
    out = export_cog(store.path, "ms_up", tmp_path / "o.tif", options=CogOptions(dtype="uint16"))
    with rasterio.open(out) as got, rasterio.open(pan) as ref, rasterio.open(ms) as msf:
        assert got.crs == ref.crs and got.transform == ref.transform
        assert got.shape == ref.shape
        native = msf.read()[:, ::2, ::2]
        np.testing.assert_array_equal(got.read()[:, ::4, ::4], native)


def test_stage_files_go_at_once_and_are_closed(tmp_path: Path) -> None:
    """remove_stage: names gone on return (missing ones skipped), descriptors closed after."""
    import os
    import threading

    from pipeline.overviews import remove_stage

    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("needs /proc/self/fd")
    files = [tmp_path / ".o.tif.1234.stage.tif", tmp_path / ".o.tif.1234.ov1.tif"]
    for f in files:
        f.write_bytes(os.urandom(1 << 16))
    before = len(list(fds.iterdir()))
    remove_stage([files[0], tmp_path / "never-written.tif", files[1]])
    assert list(tmp_path.iterdir()) == []
    for t in threading.enumerate():
        if t.name == "free-stage":
            t.join(timeout=10)
    assert len(list(fds.iterdir())) == before
