"""Scene reading and validation: GeoTIFF pairs and band files, containers, every bad input."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import rasterio
import scipy.io
from affine import Affine
from rasterio.crs import CRS

from pipeline.errors import GridMismatchError, InputError
from pipeline.scene import open_scene, to_dn, to_float
from pipeline.synthetic import make_scene

UTM = CRS.from_epsg(32631)
X0, Y0 = 593_000.0, 5_747_000.0


def write_tif(
    path: Path,
    data: np.ndarray,
    *,
    pixel: float,
    origin: tuple[float, float] = (X0, Y0),
    crs: CRS | None = UTM,
    nodata: float | None = None,
) -> Path:
    """Write ``data`` (B, H, W) or (H, W) as a GeoTIFF with a north-up grid."""
    arr = data[None] if data.ndim == 2 else data
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=arr.shape[2],
        height=arr.shape[1],
        count=arr.shape[0],
        dtype=arr.dtype,
        crs=crs,
        transform=Affine(pixel, 0, origin[0], 0, -pixel, origin[1]),
        nodata=nodata,
    ) as dst:
        dst.write(arr)
    return path


@pytest.fixture
def wv4_pair(tmp_path: Path) -> tuple[Path, Path, Any]:
    """Corner-aligned wv4 pair, PAN 148 x 116 (MS 37 x 29: odd), 0.5 m / 2 m."""
    sc = make_scene((148, 116), "wv4", seed=3)
    pan = write_tif(tmp_path / "pan.tif", sc.pan, pixel=0.5)
    ms = write_tif(tmp_path / "ms.tif", sc.ms, pixel=2.0)
    return pan, ms, sc


def test_geotiff_pair_opens_lazily_and_exactly(wv4_pair: tuple[Path, Path, Any]) -> None:
    pan, ms, sc = wv4_pair
    scene = open_scene([pan, ms], "wv4", rows=32)
    assert type(scene.pan).__module__.startswith("dask")
    assert scene.pan.chunks[0][0] == 32 and scene.ms.chunks[1][0] == 8
    np.testing.assert_array_equal(np.asarray(scene.pan), sc.pan)
    np.testing.assert_array_equal(np.asarray(scene.ms), sc.ms)
    assert scene.alignment == "corner" and scene.nodata is None and scene.dn_max == 2047
    assert CRS.from_wkt(scene.crs) == UTM
    assert scene.pan_transform == (0.5, 0.0, X0, 0.0, -0.5, Y0)
    assert scene.ms_transform == (2.0, 0.0, X0, 0.0, -2.0, Y0)
    assert scene.sources == (pan.resolve(), ms.resolve())


@pytest.mark.parametrize(
    "ratio,shift_pan_px",
    [(2, -0.5), (2, 0.5), (4, -0.5), (4, 1.5)],
    ids=["landsat-style", "r2-plus", "r4-half", "r4-first-centres"],
)
def test_centre_aligned_grids_accepted(tmp_path: Path, ratio: int, shift_pan_px: float) -> None:
    sensor = "landsat8" if ratio == 2 else "wv4"
    n = 7 if ratio == 2 else 4
    p = 15.0
    rng = np.random.default_rng(0)
    ms = write_tif(
        tmp_path / "ms.tif", rng.integers(0, 999, (n, 21, 17), dtype=np.uint16), pixel=p * ratio
    )
    origin = (X0 + shift_pan_px * p, Y0 - shift_pan_px * p)
    pan_data = rng.integers(0, 999, (21 * ratio, 17 * ratio), dtype=np.uint16)
    pan = write_tif(tmp_path / "pan.tif", pan_data, pixel=p, origin=origin)
    assert open_scene([pan, ms], sensor).alignment == "centre"


@pytest.mark.parametrize("shift_pan_px", [0.3, 1.0, -2.5])
def test_misregistered_grids_rejected(tmp_path: Path, shift_pan_px: float) -> None:
    rng = np.random.default_rng(0)
    ms = write_tif(tmp_path / "ms.tif", rng.integers(0, 99, (4, 9, 7), dtype=np.uint16), pixel=2.0)
    origin = (X0 + shift_pan_px * 0.5, Y0)
    pan = write_tif(tmp_path / "pan.tif", np.zeros((36, 28), np.uint16), pixel=0.5, origin=origin)
    with pytest.raises(GridMismatchError, match="not co-registered") as info:
        open_scene([pan, ms], "wv4")
    msg = str(info.value)
    assert "pan.tif" in msg and "ms.tif" in msg and "Fix:" in msg
    assert f"offset x {shift_pan_px:.3f}" in msg


def test_wrong_crs(tmp_path: Path) -> None:
    ms = write_tif(tmp_path / "ms.tif", np.zeros((4, 9, 7), np.uint16), pixel=2.0)
    pan = write_tif(
        tmp_path / "pan.tif", np.zeros((36, 28), np.uint16), pixel=0.5, crs=CRS.from_epsg(32632)
    )
    with pytest.raises(GridMismatchError, match="coordinate reference systems") as info:
        open_scene([pan, ms], "wv4")
    assert "32632" in str(info.value) and "gdalwarp" in str(info.value)


def test_only_one_georeferenced(tmp_path: Path) -> None:
    ms = write_tif(tmp_path / "ms.tif", np.zeros((4, 9, 7), np.uint16), pixel=2.0)
    pan = tmp_path / "pan.tif"
    with rasterio.open(pan, "w", driver="GTiff", width=28, height=36, count=1, dtype="uint16") as d:
        d.write(np.zeros((1, 36, 28), np.uint16))  # no CRS, no geotransform: a pixel grid
    with pytest.raises(GridMismatchError, match="Only one of PAN and MS"):
        open_scene([pan, ms], "wv4")


def test_extent_mismatch(tmp_path: Path) -> None:
    ms = write_tif(tmp_path / "ms.tif", np.zeros((4, 9, 7), np.uint16), pixel=2.0)
    pan = write_tif(tmp_path / "pan.tif", np.zeros((44, 28), np.uint16), pixel=0.5)
    with pytest.raises(GridMismatchError, match="extents differ") as info:
        open_scene([pan, ms], "wv4")
    assert "PAN 36 x 28 for MS 9 x 7" in str(info.value) and "PAN 44 x 28" in str(info.value)


def test_pan_remainder_is_cropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = np.arange(39 * 30, dtype=np.uint16).reshape(39, 30)
    ms = write_tif(tmp_path / "ms.tif", np.zeros((4, 9, 7), np.uint16), pixel=2.0)
    pan = write_tif(tmp_path / "pan.tif", data, pixel=0.5)
    with caplog.at_level(logging.WARNING):
        scene = open_scene([pan, ms], "wv4")
    assert scene.pan_shape_yx == (36, 28)
    np.testing.assert_array_equal(np.asarray(scene.pan), data[:36, :28])
    assert "cropping 3 trailing PAN rows and 2 columns" in caplog.text


def test_wrong_ratio(tmp_path: Path) -> None:
    ms = write_tif(tmp_path / "ms.tif", np.zeros((4, 12, 7), np.uint16), pixel=1.5)
    pan = write_tif(tmp_path / "pan.tif", np.zeros((36, 21), np.uint16), pixel=0.5)
    with pytest.raises(GridMismatchError, match="pixel-size ratio") as info:
        open_scene([pan, ms], "wv4")
    assert "ratios 3, 3" in str(info.value) and "exactly 4 times" in str(info.value)


def test_wrong_band_count(tmp_path: Path) -> None:
    ms = write_tif(tmp_path / "ms.tif", np.zeros((3, 9, 7), np.uint16), pixel=2.0)
    pan = write_tif(tmp_path / "pan.tif", np.zeros((36, 28), np.uint16), pixel=0.5)
    with pytest.raises(InputError, match="band count") as info:
        open_scene([pan, ms], "wv3")
    assert "8 bands" in str(info.value) and "3 bands" in str(info.value)
    assert "ms.tif" in str(info.value)


@pytest.mark.parametrize("dtype", ["int8", "complex64"])
def test_unsupported_dtype(tmp_path: Path, dtype: str) -> None:
    ms = write_tif(tmp_path / "ms.tif", np.zeros((4, 9, 7), dtype), pixel=2.0)
    pan = write_tif(tmp_path / "pan.tif", np.zeros((36, 28), np.uint16), pixel=0.5)
    with pytest.raises(InputError, match="Unsupported pixel data type") as info:
        open_scene([pan, ms], "wv4")
    assert dtype in str(info.value) and "ms.tif" in str(info.value)


def test_single_band_ms_files_stack_in_order(tmp_path: Path) -> None:
    bands = [np.full((9, 7), 10 * (b + 1), np.int16) for b in range(7)]
    files = [
        write_tif(tmp_path / f"B{b + 1}.tif", d, pixel=30.0, nodata=-32768)
        for b, d in enumerate(bands)
    ]
    pan = write_tif(tmp_path / "B8.tif", np.ones((18, 14), np.int16), pixel=15.0, nodata=-32768)
    scene = open_scene([pan, *files], "landsat8")
    assert scene.ms.shape == (7, 9, 7) and scene.nodata == -32768
    assert np.asarray(scene.ms)[:, 0, 0].tolist() == [10, 20, 30, 40, 50, 60, 70]


def test_ms_band_files_on_different_grids(tmp_path: Path) -> None:
    a = write_tif(tmp_path / "B1.tif", np.zeros((9, 7), np.int16), pixel=30.0)
    b = write_tif(tmp_path / "B2.tif", np.zeros((9, 7), np.int16), pixel=30.0, origin=(X0 + 30, Y0))
    pan = write_tif(tmp_path / "B8.tif", np.zeros((18, 14), np.int16), pixel=15.0)
    with pytest.raises(GridMismatchError, match="do not share one grid") as info:
        open_scene([pan, a, b], "landsat8")
    assert "B1.tif" in str(info.value) and "B2.tif" in str(info.value)


def test_ms_decimate_for_upsampled_delivery(tmp_path: Path) -> None:
    sc = make_scene((64, 48), "wv4", seed=1)
    stored = np.repeat(np.repeat(sc.ms.astype(np.float64), 2, axis=1), 2, axis=2)
    ms = write_tif(tmp_path / "ms.tif", stored, pixel=1.0)
    pan = write_tif(tmp_path / "pan.tif", sc.pan, pixel=0.5)
    with pytest.raises(GridMismatchError, match="ratio"):
        open_scene([pan, ms], "wv4")  # never guessed
    scene = open_scene([pan, ms], "wv4", ms_decimate=2)
    np.testing.assert_array_equal(np.asarray(scene.ms), sc.ms)
    assert scene.ms_transform == (2.0, 0.0, X0, 0.0, -2.0, Y0)


def test_nodata_from_files_given_and_conflicting(tmp_path: Path) -> None:
    ms = write_tif(tmp_path / "ms.tif", np.zeros((4, 9, 7), np.uint16), pixel=2.0, nodata=0)
    pan = write_tif(tmp_path / "pan.tif", np.zeros((36, 28), np.uint16), pixel=0.5, nodata=65535)
    with pytest.raises(InputError, match="different nodata") as info:
        open_scene([pan, ms], "wv4")
    assert "--nodata" in str(info.value)
    assert open_scene([pan, ms], "wv4", nodata=7).nodata == 7.0
    pan2 = write_tif(tmp_path / "pan2.tif", np.zeros((36, 28), np.uint16), pixel=0.5)
    assert open_scene([pan2, ms], "wv4").nodata == 0.0


def test_missing_and_unrecognised_inputs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found") as info:
        open_scene([tmp_path / "nope.tif", tmp_path / "ms.tif"], "wv4")
    assert "nope.tif" in str(info.value)
    (tmp_path / "a.jpg").write_bytes(b"x")
    with pytest.raises(InputError, match="Unrecognised"):
        open_scene([tmp_path / "a.jpg"], "wv4")


# ----------------------------------------------------------------------------- containers


def test_mat_v5_axes_and_gt(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pan = rng.random((36, 28))
    lrms = rng.random((9, 7, 4))  # H x W x B
    gt = rng.random((36, 28, 4))
    path = tmp_path / "rr.mat"
    scipy.io.savemat(path, {"pan": pan, "lrms": lrms, "gt": gt, "lms": gt})
    scene = open_scene(path, "wv4", dn_max=1.0)
    assert scene.ms.shape == (4, 9, 7) and scene.gt.shape == (4, 36, 28)
    assert scene.ms[2, 5, 3] == lrms[5, 3, 2] and scene.gt[3, 30, 1] == gt[30, 1, 3]
    assert scene.crs is None and scene.pan_transform == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    assert scene.ms_transform == (4.0, 0.0, 0.0, 0.0, 4.0, 0.0) and scene.dn_max == 1.0


def test_mat_grip_keys_and_bit_depth(tmp_path: Path) -> None:
    path = tmp_path / "img.mat"
    pan = np.zeros((36, 28), np.uint8)
    scipy.io.savemat(path, {"I_PAN": pan, "I_MS": np.ones((9, 7, 4), np.uint8), "L": 8})
    scene = open_scene(path, "ge1")
    assert scene.dn_max == 255.0 and scene.ms.dtype == np.uint8
    assert open_scene(path, "ge1", dn_max=100).dn_max == 100.0


def test_mat_ms_at_pan_resolution_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "img.mat"
    scipy.io.savemat(path, {"I_PAN": np.zeros((36, 28)), "I_MS": np.zeros((36, 28, 4))})
    with pytest.raises(GridMismatchError, match="extents differ"):
        open_scene(path, "wv4")


def test_mat_v73_hdf5_axes(tmp_path: Path) -> None:
    """MATLAB v7.3 files are HDF5 with reversed axes and a 'MATLAB 7.3' header."""
    rng = np.random.default_rng(1)
    pan = rng.integers(0, 2047, (36, 28)).astype(np.uint16)
    ms = rng.integers(0, 2047, (9, 7, 4)).astype(np.uint16)  # MATLAB H x W x B
    path = tmp_path / "v73.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        f["I_PAN"] = pan.T
        f["I_MS_LR"] = ms.transpose(2, 1, 0)
    with path.open("r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64")
    scene = open_scene(path, "wv4")
    np.testing.assert_array_equal(scene.pan, pan)
    assert scene.ms[3, 8, 6] == ms[8, 6, 3]


def test_h5_patches_need_an_index(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    path = tmp_path / "train.h5"
    with h5py.File(path, "w") as f:  # PanCollection layout: (N, C, H, W)
        f["pan"] = rng.random((5, 1, 36, 28))
        f["ms"] = rng.random((5, 4, 9, 7))
        f["gt"] = rng.random((5, 4, 36, 28))
    with pytest.raises(InputError, match="holds 5 patches") as info:
        open_scene(path, "wv4")
    assert "--patch" in str(info.value)
    scene = open_scene(path, "wv4", patch=4)
    with h5py.File(path) as f:
        np.testing.assert_array_equal(scene.ms, f["ms"][4])
        np.testing.assert_array_equal(scene.pan, f["pan"][4, 0])
        np.testing.assert_array_equal(scene.gt, f["gt"][4])


def test_two_container_files(tmp_path: Path) -> None:
    scipy.io.savemat(tmp_path / "1_pan.mat", {"cropped_gray": np.zeros((18, 14), np.uint8)})
    scipy.io.savemat(tmp_path / "1_ms.mat", {"cropped_im": np.ones((9, 7, 6), np.uint8)})
    scene = open_scene([tmp_path / "1_pan.mat", tmp_path / "1_ms.mat"], "landsat7")
    assert scene.ms.shape == (6, 9, 7) and scene.pan.shape == (18, 14)
    with pytest.raises(InputError, match="No MS array") as info:
        open_scene(tmp_path / "1_pan.mat", "landsat7")
    assert "cropped_gray" in str(info.value)


# ----------------------------------------------------------------------------- scaling


def test_scaling_is_exactly_reversible() -> None:
    dn = np.arange(65536, dtype=np.uint16)
    x = to_float(dn, 2047.0)
    assert x.dtype == np.float32 and x[2047] == 1.0 and x[0] == 0.0
    np.testing.assert_array_equal(to_dn(x, 2047.0, "uint16"), dn)


def test_scaling_nodata_and_clipping() -> None:
    dn = np.array([0, 255, 9], dtype=np.uint8)
    x = to_float(dn, 255.0, nodata=9)
    assert np.isnan(x[2]) and x[1] == 1.0
    assert to_dn(x, 255.0, "uint8", nodata=9).tolist() == [0, 255, 9]
    assert to_dn(np.array([1.5, -0.2]), 255.0, "uint8").tolist() == [255, 0]


# ----------------------------------------------------------------------------- real data


@pytest.mark.data
def test_real_landsat_is_centre_aligned(data_root: Path) -> None:
    folder = data_root / "landsat/r_cran_satellite/LC08"
    pan = sorted(folder.glob("*_B8.TIF"))
    ms = sorted(folder.glob("*_B[1-7].TIF"))
    if len(pan) != 1 or len(ms) != 7:
        pytest.skip(f"Landsat-8 band files not found under {folder}")
    scene = open_scene([*pan, *ms], "landsat8")
    assert scene.alignment == "centre" and scene.nodata == -32768.0
    # PAN origin half a PAN pixel (7.5 m) up-left of the MS origin
    assert scene.pan_transform[2] == scene.ms_transform[2] - 7.5
    with pytest.raises(InputError, match="band count"):
        open_scene([*pan, *ms[:6]], "landsat8")


@pytest.mark.data
def test_real_spacenet_grid(data_file: Any) -> None:
    pan, ms = data_file("vhr/spacenet_wv2/pan1.tif"), data_file("vhr/spacenet_wv2/ms1.tif")
    with pytest.raises(GridMismatchError, match="ratio"):
        open_scene([pan, ms], "wv4")
    scene = open_scene([pan, ms], "wv4", ms_decimate=2)
    assert scene.alignment == "corner" and scene.ms.shape == (4, 150, 150)


def test_normalised_container_is_rescaled_at_ingest_and_recorded(tmp_path: Path) -> None:
    from pipeline.store import write_scene

    path = tmp_path / "rr.mat"
    rng = np.random.default_rng(0)
    pan = rng.uniform(0.2, 0.8, (36, 28))
    scipy.io.savemat(path, {"pan": pan, "lrms": rng.uniform(0.1, 0.6, (9, 7, 4))})
    scene = open_scene(path, "wv4")
    assert scene.dn_max == 2047 and scene.dn_max_from == "sensor"
    meta = write_scene(scene, tmp_path / "s.zarr", tile=16).meta
    assert meta.dn_max == 1.0 and meta.radiometry["dn_max_from"] == "inputs"
    assert "already normalised" in meta.radiometry["actions"][0]
    assert len(meta.radiometry["band_gains"]) == 4 and min(meta.radiometry["band_gains"]) > 0
    # an explicit scale is kept as given
    kept = write_scene(open_scene(path, "wv4", dn_max=1), tmp_path / "t.zarr", tile=16).meta
    assert kept.dn_max == 1.0 and kept.radiometry["actions"] == []
