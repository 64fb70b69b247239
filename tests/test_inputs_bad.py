"""Bad inputs through the real engine: no-data, non-finite values, scales, custom sensors.

Each test is named after what it checks and fails on the code before issue 9 (no-data DN fed to
the network by the tile kernel, NaN spreading through the convolutions, an untagged integer COG,
a [0, 1] container divided by 2047 again, custom sensors looked up by name on workers). Scenes
are tiny GeoTIFFs on a pixel grid; one LocalCluster of two worker processes serves the module.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio

from pipeline.backbones import load
from pipeline.cli import main
from pipeline.errors import InputError
from pipeline.fit import FitConfig
from pipeline.fuse import fuse
from pipeline.runner import RunConfig, run_scene
from pipeline.sampling import SampleConfig
from pipeline.sensors import get_sensor, load_sensor_file
from pipeline.synthetic import make_scene
from tests.test_workers import random_weights

pytestmark = pytest.mark.slow

QB = get_sensor("qb")
SHAPE = (76, 108)  # PAN; not a multiple of the tile
TILE = 32


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    from pipeline.distribute import open_engine
    from workers.cluster import ClusterConfig

    cfg = ClusterConfig(kind="local", n_workers=2, device="cpu", dashboard_address=None)
    with open_engine(cfg) as eng:
        yield eng


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_weights(tmp_path_factory.mktemp("w") / "fusionnet.pt", "fusionnet", 4)


def write_tif(path: Path, data: np.ndarray, nodata: float | None = None) -> Path:
    """A GeoTIFF on a plain pixel grid: ``(H, W)`` or ``(B, H, W)``."""
    arr = data[None] if data.ndim == 2 else data
    profile = {"driver": "GTiff", "count": arr.shape[0], "dtype": arr.dtype.name}
    profile.update(height=arr.shape[1], width=arr.shape[2], nodata=nodata)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr)
    return path


def run(engine: Any, tmp: Path, inputs: list[Path], weights: Path, **kw: Any) -> Path:
    """``pantailor run`` with the pretrained network (no adaptation) on the module's engine."""
    out = tmp / "out.tif"
    base: dict[str, Any] = {"sensor": "qb", "adapt": "none", "tile": TILE, "quality_tiles": 0}
    cfg = RunConfig(
        inputs=tuple(map(str, inputs)), output=str(out), weights=str(weights), **{**base, **kw}
    )
    run_scene(cfg, engine=engine)
    return out


def read_cog(path: Path) -> tuple[np.ndarray, float | None]:
    with rasterio.open(path) as src:
        return src.read(), src.nodata


def footprint(image: np.ndarray, nodata: float | None) -> np.ndarray:
    """``(H, W)`` pixels that are no-data in every band of a product."""
    bad = np.isnan(image) if nodata is None or np.isnan(nodata) else image == nodata
    return np.asarray(bad.all(axis=0))


# ----------------------------------------------------------------------------- item 5


def test_engine_equals_fuse_on_a_scene_with_nodata_nan_and_a_saturated_block(
    engine: Any, weights: Path, tmp_path: Path
) -> None:
    syn = make_scene(SHAPE, QB, seed=3)
    pan = syn.pan.astype(np.float32)
    ms = syn.ms.copy()
    ms[:, 6:11, 14:19] = 65535  # MS no-data: PAN rows 24..44, cols 56..76
    pan[50:60, 8:20] = np.nan  # PAN non-finite
    pan[4:20, 80:100] = QB.dn_max  # saturated in both
    ms[:, 1:5, 20:25] = QB.dn_max
    files = [write_tif(tmp_path / "pan.tif", pan), write_tif(tmp_path / "ms.tif", ms, 65535)]
    cog, nodata = read_cog(run(engine, tmp_path, files, weights))
    assert nodata == 65535

    backbone = load("fusionnet", weights, n_bands=4)
    sample = SampleConfig(patch=16, max_nodata=0.5)
    ref = fuse(pan, ms, QB, backbone, fit=FitConfig(adapt="none"), sample=sample, nodata=65535)
    ref_image = ref.image
    expected = np.zeros(SHAPE, bool)
    expected[24:44, 56:76] = expected[50:60, 8:20] = True
    assert np.array_equal(footprint(cog, nodata), expected)
    assert np.array_equal(footprint(ref_image, 65535), expected)
    valid = ~expected
    # the engine's valid pixels equal the in-memory path's (COG rounded to uint16 DN)
    diff = np.abs(cog[:, valid].astype(np.float64) - np.rint(ref_image[:, valid]))
    assert diff.max() <= 1.0
    assert cog[:, valid].max() <= QB.dn_max


# ----------------------------------------------------------------------------- item 6


def test_non_finite_inputs_give_exactly_their_footprint_tagged_and_finite_elsewhere(
    engine: Any, weights: Path, tmp_path: Path
) -> None:
    syn = make_scene(SHAPE, QB, seed=4)
    pan = syn.pan.astype(np.float32)
    ms = syn.ms.astype(np.float32)
    ms[2, 4:8, 4:8] = np.nan  # one band NaN: the whole MS pixel is invalid
    ms[:, 12, 20] = np.inf  # one Inf MS pixel
    pan[60:66, 40:47] = np.nan
    files = [write_tif(tmp_path / "pan.tif", pan), write_tif(tmp_path / "ms.tif", ms)]
    cog, nodata = read_cog(run(engine, tmp_path, files, weights))
    assert cog.dtype == np.float32 and nodata is not None and np.isnan(nodata)
    expected = np.zeros(SHAPE, bool)
    expected[16:32, 16:32] = expected[48:52, 80:84] = expected[60:66, 40:47] = True
    assert np.array_equal(footprint(cog, nodata), expected)
    good = cog[:, ~expected]
    assert np.isfinite(good).all() and good.min() >= 0 and good.max() <= QB.dn_max


def test_nan_in_the_pan_is_tagged_nodata_in_an_integer_cog(
    engine: Any, weights: Path, tmp_path: Path
) -> None:
    syn = make_scene(SHAPE, QB, seed=5)
    pan = syn.pan.astype(np.float32)
    pan[10:30, 20:40] = np.nan
    files = [write_tif(tmp_path / "pan.tif", pan), write_tif(tmp_path / "ms.tif", syn.ms)]
    cog, nodata = read_cog(run(engine, tmp_path, files, weights))
    assert cog.dtype == np.uint16 and nodata == 65535  # outside [0, dn_max]: never a value
    expected = np.zeros(SHAPE, bool)
    expected[10:30, 20:40] = True
    assert np.array_equal(footprint(cog, nodata), expected)
    assert (cog[:, ~expected] <= QB.dn_max).all()


# ----------------------------------------------------------------------------- item 8


def test_a_custom_sensor_runs_on_workers_that_never_read_its_file(
    engine: Any, weights: Path, tmp_path: Path
) -> None:
    sensor_file = tmp_path / "sensors.yaml"
    sensor_file.write_text(
        "oddsat:\n  bands: [b, g, r, n]\n  rgb: [2, 1, 0]\n  ratio: 4\n  bit_depth: 11\n"
        "  mtf_ms: [0.31, 0.3, 0.29, 0.28]\n  mtf_pan: 0.16\n"
    )
    (spec,) = load_sensor_file(sensor_file)  # registered in this (driver) process only
    syn = make_scene(SHAPE, QB, seed=6)
    files = [write_tif(tmp_path / "pan.tif", syn.pan), write_tif(tmp_path / "ms.tif", syn.ms)]
    for method in ("fusionnet", "mtf-glp"):
        out = tmp_path / f"{method}.tif"
        cfg = RunConfig(
            inputs=tuple(map(str, files)),
            output=str(out),
            sensor="oddsat",
            method=method,
            weights=str(weights) if method == "fusionnet" else None,
            adapt="none",
            tile=TILE,
            quality_tiles=1,
        )
        run_scene(cfg, engine=engine)
        assert np.isfinite(read_cog(out)[0]).all()
    from pipeline.store import SceneStore

    store = next(tmp_path.glob("*.work/*.zarr"))
    assert SceneStore.open(store).sensor == spec


# ----------------------------------------------------------------------------- item 9


def test_a_truncated_geotiff_is_refused_naming_the_file_on_ingest_and_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    syn = make_scene((256, 256), QB, seed=7)
    pan = write_tif(tmp_path / "pan.tif", syn.pan)
    ms = write_tif(tmp_path / "ms.tif", syn.ms)
    data = pan.read_bytes()
    pan.write_bytes(data[: len(data) * 2 // 3])  # an interrupted copy
    rc = main(["ingest", str(pan), str(ms), "--sensor", "qb", "-o", str(tmp_path / "s.zarr")])
    err = capsys.readouterr().err
    assert rc == 2 and str(pan) in err and "truncated" in err and "Traceback" not in err
    cfg = RunConfig(inputs=(str(pan), str(ms)), output=str(tmp_path / "o.tif"), sensor="qb")
    with pytest.raises(InputError, match="truncated"):
        run_scene(cfg, engine=object())  # refused before any cluster work
    assert not (tmp_path / "s.zarr").exists() and not (tmp_path / "o.tif").exists()


def test_export_with_an_unknown_dtype_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    syn = make_scene((64, 64), QB, seed=8)
    files = [write_tif(tmp_path / "pan.tif", syn.pan), write_tif(tmp_path / "ms.tif", syn.ms)]
    store = tmp_path / "s.zarr"
    assert main(["ingest", *map(str, files), "--sensor", "qb", "-o", str(store)]) == 0
    rc = main(["export", str(store), "pan", "-o", str(tmp_path / "x.tif"), "--dtype", "foo"])
    err = capsys.readouterr().err
    assert rc == 2 and "dtype" in err and "foo" in err and "Traceback" not in err


def test_the_rescale_fix_for_a_unit_range_pan_works_as_written(tmp_path: Path) -> None:
    from pipeline.ingest import open_scene
    from pipeline.store import write_scene

    syn = make_scene((64, 64), QB, seed=9)
    pan = write_tif(tmp_path / "pan.tif", (syn.pan / QB.dn_max).astype(np.float32))
    ms = write_tif(tmp_path / "ms.tif", syn.ms)
    with pytest.raises(InputError, match="different radiometric levels") as info:
        write_scene(open_scene([pan, ms], "qb"), tmp_path / "s.zarr", tile=TILE)
    command = str(info.value.fix).split("rescale it with ")[1].split(", and pass")[0]
    argv = shlex.split(command)
    rio = Path(sys.executable).with_name("rio")
    subprocess.run([str(rio), *argv[1:]], check=True, capture_output=True)
    fixed = tmp_path / "pan_dn.tif"
    store = write_scene(open_scene([fixed, ms], "qb"), tmp_path / "s.zarr", tile=TILE)
    assert store.meta.dn_max == QB.dn_max and store.meta.radiometry["actions"] == []


def test_valid_outputs_do_not_depend_on_what_invalid_pixels_hold(weights: Path) -> None:
    from pipeline.infer import Radiometry, infer_window, model_run

    backbone = load("fusionnet", weights, n_bands=4)
    run = model_run(backbone, backbone.upsampler, 4)
    syn = make_scene(SHAPE, QB, seed=10)
    hole_ms, hole_pan = (slice(None), slice(6, 11), slice(14, 19)), (slice(30, 40), slice(8, 30))
    outs = []
    for dtype, fill in (("uint16", 65535), ("int16", -9999), ("float32", np.nan)):
        ms, pan = syn.ms.astype(dtype), syn.pan.astype(dtype)
        ms[hole_ms] = fill
        pan[hole_pan] = fill
        nodata = None if np.isnan(fill) else float(fill)
        outs.append(infer_window(run, ms, pan, Radiometry(dn_max=2047, ratio=4, nodata=nodata)))
    bad = np.isnan(outs[0]).all(axis=0)
    assert bad.sum() == 20 * 20 + 10 * 22
    for other in outs[1:]:
        np.testing.assert_array_equal(np.isnan(other).all(axis=0), bad)
        np.testing.assert_array_equal(other[:, ~bad], outs[0][:, ~bad])  # bit for bit
    assert outs[0][:, ~bad].min() >= 0 and outs[0][:, ~bad].max() <= 1


# ----------------------------------------------------------------------------- item 13


def test_outputs_are_clipped_to_the_valid_range_unless_clip_is_off(weights: Path) -> None:
    backbone = load("fusionnet", weights, n_bands=4)
    syn = make_scene(SHAPE, QB, seed=3)
    kw: dict[str, Any] = {"fit": FitConfig(adapt="none"), "sample": SampleConfig(patch=16)}
    raw = fuse(syn.pan, syn.ms, QB, backbone, clip=False, **kw).image
    assert raw.min() < 0  # this network overshoots here: the case is real
    clipped = fuse(syn.pan, syn.ms, QB, backbone, **kw).image
    assert clipped.min() == 0 and clipped.max() <= QB.dn_max
    inside = (raw >= 0) & (raw <= QB.dn_max)
    np.testing.assert_array_equal(clipped[inside], raw[inside])
    # with nodata 0, a clipped valid pixel must not read as no-data
    dark = fuse(syn.pan, syn.ms, QB, backbone, nodata=0.0, **kw).image
    assert dark.min() >= 0.5 and (dark == 1.0).sum() >= (raw < 0.5).sum()


# ----------------------------------------------------------------------------- item 7


def _ingest(tmp: Path, pan: np.ndarray, ms: np.ndarray, *extra: str) -> tuple[int, str]:
    files = [write_tif(tmp / "pan.tif", pan), write_tif(tmp / "ms.tif", ms)]
    out = tmp / "s.zarr"
    argv = ["ingest", *map(str, files), "--sensor", "qb", "-o", str(out), "--overwrite", *extra]
    return main(argv), str(out)


def test_8bit_data_declared_as_an_11bit_sensor_is_detected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.store import SceneStore

    syn = make_scene((64, 64), QB, seed=11)
    pan8, ms8 = (syn.pan // 4).astype(np.uint8), (syn.ms // 4).astype(np.uint8)
    rc, store = _ingest(tmp_path, pan8, ms8)  # uint8: unambiguous, normalised and recorded
    meta = SceneStore.open(store).meta
    assert rc == 0 and meta.dn_max == 255 and "8-bit" in meta.radiometry["actions"][0]
    rc, _ = _ingest(tmp_path, pan8.astype(np.uint16), ms8.astype(np.uint16))
    err = capsys.readouterr().err
    assert rc == 2 and "--dn-max 255" in err  # uint16 holding 8-bit values: refused
    rc, store = _ingest(tmp_path, pan8.astype(np.uint16), ms8.astype(np.uint16), "--dn-max", "255")
    assert rc == 0 and SceneStore.open(store).meta.dn_max == 255  # the fix works as written
    rc, _ = _ingest(tmp_path, syn.pan, (syn.ms // 8).astype(np.uint8))  # only the MS 8-bit
    assert rc == 2 and "different radiometric levels" in capsys.readouterr().err


def test_ms_saturated_far_above_dn_max_is_refused_with_a_working_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    syn = make_scene((64, 64), QB, seed=12)
    pan, ms = syn.pan * 5, syn.ms * 5  # 12-bit values on an 11-bit sensor
    rc, _ = _ingest(tmp_path, pan, ms)
    err = capsys.readouterr().err
    assert rc == 2 and "exceed dn_max 2047" in err
    fix = err.split("Fix: pass ")[1].split(" (")[0].split()
    assert fix[0] == "--dn-max" and float(fix[1]) >= max(pan.max(), ms.max())
    rc, _ = _ingest(tmp_path, pan, ms, *fix)
    assert rc == 0


@pytest.mark.data
def test_a_container_already_in_unit_range_runs_right_without_flags(
    engine: Any, data_file: Any, tmp_path: Path
) -> None:
    from pipeline.quality import reduced_resolution

    path = data_file("rr/cdif/WV3_test.mat")
    out = tmp_path / "x.tif"
    cfg = RunConfig(
        inputs=(str(path),),
        output=str(out),
        sensor="wv3",
        weights="dlpan:wv3",
        adapt="none",
        tile=128,
        quality_tiles=0,
    )
    run_scene(cfg, engine=engine)
    import scipy.io

    gt = np.moveaxis(scipy.io.loadmat(path)["gt"], -1, 0)
    fused = read_cog(out)[0]
    scores = reduced_resolution(fused, gt, "wv3")
    assert scores["sam"] < 6.0 and scores["ergas"] < 8.0  # 18.9 deg / 2090 before
