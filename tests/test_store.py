"""Scene store: layout, metadata, streaming ingest, atomic publish, outputs, real scenes."""

from __future__ import annotations

import glob
import hashlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from pipeline import cli
from pipeline.errors import ConfigError, InputError, StoreError
from pipeline.grid import Window
from pipeline.scene import Scene, open_scene
from pipeline.sensors import get_sensor
from pipeline.store import SceneStore, partial_stores, write_scene

# PAN 4*37 x 4*29 = 148 x 116: not a multiple of the 32-pixel tile, odd MS sizes
H, W, R, T = 148, 116, 4, 32


def _scene(seed: int = 0, gt: bool = False, sources: tuple[Path, ...] = ()) -> Scene:
    rng = np.random.default_rng(seed)
    pan = rng.integers(0, 2048, (H, W), dtype=np.uint16)
    ms = rng.integers(0, 2048, (8, H // R, W // R), dtype=np.uint16)
    ref = rng.random((8, H, W)) if gt else None
    return Scene(
        pan=pan,
        ms=ms,
        sensor=get_sensor("wv3"),
        crs=None,
        pan_transform=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        ms_transform=(4.0, 0.0, 0.0, 0.0, 4.0, 0.0),
        nodata=None,
        dn_max=2047.0,
        gt=ref,
        sources=sources,
    )


class _Spy:
    """Array wrapper that records the rows each read asks for (and can fail on the n-th)."""

    def __init__(self, arr: np.ndarray, fail_at: int | None = None) -> None:
        self.arr, self.fail_at, self.rows = arr, fail_at, []
        self.shape, self.dtype = arr.shape, arr.dtype

    def __getitem__(self, sel: Any) -> np.ndarray:
        if self.fail_at is not None and len(self.rows) == self.fail_at:
            raise OSError("disk vanished")
        out = self.arr[sel]
        self.rows.append(out.shape[-2])
        return out


def test_round_trip_layout_and_windows(tmp_path: Path) -> None:
    sc = _scene(gt=True)
    store = write_scene(sc, tmp_path / "s.zarr", tile=T)
    assert store.meta.complete and store.meta.pan_shape_yx == (H, W)
    assert store.meta.ms_shape_yx == (37, 29) and store.meta.n_bands == 8
    assert store.grid.shape == (5, 4)
    g = zarr.open_group(tmp_path / "s.zarr", mode="r")
    assert g["pan"].chunks == (T, T)
    assert g["ms"].chunks == (8, T // R, T // R)
    assert g["gt"].chunks == (8, T, T)
    win = Window(30, 148, 5, 99)
    np.testing.assert_array_equal(store.read_pan(win), sc.pan[30:148, 5:99])
    np.testing.assert_array_equal(store.read_ms(Window(3, 37, 0, 29)), sc.ms[:, 3:, :])
    np.testing.assert_array_equal(store.read_gt(win), sc.gt[:, 30:148, 5:99])
    assert store.read_pan(win).dtype == np.uint16


def test_metadata_fields(tmp_path: Path) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(b"abc")
    store = write_scene(_scene(sources=(src,)), tmp_path / "s.zarr", tile=T)
    m = SceneStore.open(tmp_path / "s.zarr").meta
    assert (m.sensor, m.ratio, m.tile, m.crs, m.nodata) == ("wv3", 4, T, None, None)
    assert (m.dtype, m.pan_dtype, m.dn_max, m.alignment) == ("uint16", "uint16", 2047.0, "corner")
    assert m.ms_transform == (4.0, 0.0, 0.0, 0.0, 4.0, 0.0)
    assert len(m.bands) == 8 and m.version
    # sha256 of "abc" is a published test vector
    assert m.sources[0].sha256.startswith("ba7816bf8f01cfea414140de5dae2223")
    assert m.sources[0].bytes == 3
    assert store.meta == m


def test_ingest_streams_by_tile_rows(tmp_path: Path) -> None:
    sc = _scene()
    pan, ms = _Spy(sc.pan), _Spy(sc.ms)
    from dataclasses import replace

    write_scene(replace(sc, pan=pan, ms=ms), tmp_path / "s.zarr", tile=T)
    assert max(pan.rows) == T and sum(pan.rows) == H
    assert max(ms.rows) == T // R and sum(ms.rows) == H // R


def test_existing_store_refused_then_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    write_scene(_scene(seed=1), path, tile=T)
    with pytest.raises(StoreError, match="already exists") as info:
        write_scene(_scene(seed=2), path, tile=T)
    assert "--overwrite" in str(info.value) and str(path) in str(info.value)
    assert SceneStore.open(path).read_pan(Window(0, 2, 0, 2)).tolist() == (
        _scene(seed=1).pan[:2, :2].tolist()
    )
    write_scene(_scene(seed=2), path, tile=T, overwrite=True)
    np.testing.assert_array_equal(
        SceneStore.open(path).read_pan(Window(0, H, 0, W)), _scene(seed=2).pan
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]


def test_overwrite_refuses_a_non_store_folder(tmp_path: Path) -> None:
    path = tmp_path / "precious"
    path.mkdir()
    (path / "thesis.tex").write_text("x")
    with pytest.raises(StoreError, match="not a Zarr store"):
        write_scene(_scene(), path, tile=T, overwrite=True)
    assert (path / "thesis.tex").exists()


def test_interrupted_ingest_leaves_nothing(tmp_path: Path) -> None:
    from dataclasses import replace

    sc = _scene()
    with pytest.raises(InputError, match="disk vanished") as info:
        write_scene(replace(sc, pan=_Spy(sc.pan, fail_at=2)), tmp_path / "s.zarr", tile=T)
    assert "truncated" in str(info.value)
    assert not (tmp_path / "s.zarr").exists()
    assert list(tmp_path.iterdir()) == []
    assert partial_stores(tmp_path / "s.zarr") == []


def test_interrupted_ingest_overwriting_keeps_the_old_store(tmp_path: Path) -> None:
    from dataclasses import replace

    path = tmp_path / "s.zarr"
    write_scene(_scene(seed=1), path, tile=T)
    sc = _scene(seed=2)
    with pytest.raises(InputError):
        write_scene(replace(sc, ms=_Spy(sc.ms, fail_at=1)), path, tile=T, overwrite=True)
    np.testing.assert_array_equal(
        SceneStore.open(path).read_pan(Window(0, H, 0, W)), _scene(seed=1).pan
    )


def test_incomplete_store_does_not_open(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    write_scene(_scene(), path, tile=T)
    g = zarr.open_group(path, mode="r+")
    g.attrs["pantailor"] = {**g.attrs["pantailor"], "complete": False}  # a killed writer
    with pytest.raises(StoreError, match="incomplete") as info:
        SceneStore.open(path)
    assert "--overwrite" in str(info.value)
    with pytest.raises(StoreError, match="No scene store"):
        SceneStore.open(tmp_path / "nothing.zarr")


def test_tile_must_be_multiple_of_ratio(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="multiple of the PAN/MS ratio"):
        write_scene(_scene(), tmp_path / "s.zarr", tile=30)
    assert list(tmp_path.iterdir()) == []


def test_outputs_create_write_read(tmp_path: Path) -> None:
    store = write_scene(_scene(), tmp_path / "s.zarr", tile=T)
    arr = store.create_output("fused")
    assert arr.chunks == (8, T, T) and arr.shape == (8, H, W)
    assert store.units("fused") == "normalised" and store.outputs == ["fused"]
    key = max(store.grid.keys())  # the ragged bottom-right tile
    win = store.grid.pan_window(key)
    assert win.shape_yx == (H - 4 * T, W - 3 * T)
    store.write_region("fused", win, np.full((8, *win.shape_yx), 0.5))
    got = store.read_output("fused", Window(H - 30, H, W - 30, W))
    assert np.all(got[:, -(H - 4 * T) :, -(W - 3 * T) :] == 0.5)
    assert np.isnan(got[:, 0, 0]).all()  # untouched region: fill NaN
    # idempotent: re-creating keeps what was written
    store.create_output("fused")
    assert store.read_output("fused", win).min() == 0.5
    store.create_output("fused", overwrite=True)
    assert np.isnan(store.read_output("fused", win)).all()


def test_output_errors(tmp_path: Path) -> None:
    store = write_scene(_scene(), tmp_path / "s.zarr", tile=T)
    store.create_output("fused")
    with pytest.raises(StoreError, match="another shape or dtype"):
        store.create_output("fused", "uint16")
    with pytest.raises(StoreError, match="input array name"):
        store.create_output("pan")
    with pytest.raises(StoreError, match="wrong shape"):
        store.write_region("fused", Window(0, T, 0, T), np.zeros((8, T, T - 1)))
    with pytest.raises(StoreError, match="no array 'nope'"):
        store.read_output("nope", Window(0, 1, 0, 1))


def test_store_pickles_by_path(tmp_path: Path) -> None:
    store = write_scene(_scene(), tmp_path / "s.zarr", tile=T)
    store.create_output("fused")
    again = pickle.loads(pickle.dumps(store))
    assert again.meta == store.meta and again.outputs == ["fused"]
    assert len(pickle.dumps(store)) < 2000  # carries the path, not the data


def test_cli_ingest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import scipy.io

    sc = _scene()
    mat = tmp_path / "scene.mat"
    scipy.io.savemat(mat, {"I_PAN": sc.pan, "I_MS_LR": sc.ms.transpose(1, 2, 0)})
    out = tmp_path / "s.zarr"
    argv = ["ingest", str(mat), "--sensor", "wv3", "-o", str(out), "--tile", "64"]
    assert cli.main(argv) == 0
    assert "not georeferenced" in capsys.readouterr().out
    np.testing.assert_array_equal(SceneStore.open(out).read_ms(Window(0, 37, 0, 29)), sc.ms)
    assert (
        SceneStore.open(out).meta.sources[0].sha256 == hashlib.sha256(mat.read_bytes()).hexdigest()
    )
    assert cli.main(argv) == 2
    assert "already exists" in capsys.readouterr().err


# ----------------------------------------------------------------------------- real scenes

_LS = "landsat/r_cran_satellite/"


def _wv2_4band() -> Any:
    from dataclasses import replace

    wv2 = get_sensor("wv2")
    return replace(
        wv2,
        name="wv2-4",
        bands=("blue", "green", "red", "nir"),
        rgb=(2, 1, 0),
        aliases=(),
        mtf_ms=(0.35, 0.35, 0.35, 0.27),
    )


REAL = {
    "grip-ge1": (["vhr/grip/imgGE1.mat"], "ge1", {}),
    "grip-wv2": (["vhr/grip/imgWV2.mat"], "wv2", {}),
    "wv3-example": (["vhr/wv3_example/WV3_example.mat"], "wv3", {}),
    "quickbird": (["vhr/quickbird/QB-PAN.tif", "vhr/quickbird/QB-MS.tif"], "qb", {}),
    "cdif-wv3": (["rr/cdif/WV3_test.mat"], "wv3", {"dn_max": 1.0}),
    "cdif-pleiades": (["rr/cdif/Pleiades_test.mat"], "pleiades", {"dn_max": 1.0}),
    "fusionnet-train": (["rr/fusionnet_wv3/train.mat"], "wv3", {"patch": 7}),
}


@pytest.mark.data
@pytest.mark.parametrize("case", list(REAL))
def test_real_scene_ingests(case: str, data_file: Any, tmp_path: Path) -> None:
    rel, sensor, kw = REAL[case]
    files = [data_file(r) for r in rel]
    store = write_scene(open_scene(files, sensor, **kw), tmp_path / "s.zarr", tile=256)
    m = store.meta
    assert m.pan_shape_yx == (m.ratio * m.ms_shape_yx[0], m.ratio * m.ms_shape_yx[1])
    assert m.has_gt == case.startswith(("cdif", "fusionnet"))
    pan = store.read_pan(Window(0, 8, 0, 8))
    assert pan.std() > 0 or store.read_ms(Window(0, 8, 0, 8)).std() > 0


@pytest.mark.data
def test_real_grip_ge1_scale_from_container(data_file: Any, tmp_path: Path) -> None:
    store = write_scene(open_scene(data_file("vhr/grip/imgGE1.mat"), "ge1"), tmp_path / "s.zarr")
    assert store.meta.dn_max == 255.0 and store.meta.dtype == "uint8"


@pytest.mark.data
@pytest.mark.parametrize("product,sensor,n", [("LC08", "landsat8", 7), ("LE07", "landsat7", 6)])
def test_real_landsat_band_files_ingest(
    product: str, sensor: str, n: int, data_root: Path, tmp_path: Path
) -> None:
    folder = data_root / _LS / product
    pan = sorted(glob.glob(str(folder / "*_B8.TIF")))
    ms = sorted(glob.glob(str(folder / "*_B[1-7].TIF")))
    if not pan or len(ms) != n:
        pytest.skip(f"Landsat {product} band files not found under {folder}")
    store = write_scene(open_scene([*pan, *ms], sensor), tmp_path / "s.zarr", tile=32)
    m = store.meta
    assert (m.pan_shape_yx, m.n_bands, m.alignment, m.nodata) == ((82, 82), n, "centre", -32768)
    assert m.crs is not None and "32632" in m.crs and len(m.sources) == n + 1


@pytest.mark.data
def test_real_spacenet_ingests_with_decimation(data_file: Any, tmp_path: Path) -> None:
    for i in (1, 2, 3):
        files = [
            data_file(f"vhr/spacenet_wv2/pan{i}.tif"),
            data_file(f"vhr/spacenet_wv2/ms{i}.tif"),
        ]
        scene = open_scene(files, _wv2_4band(), ms_decimate=2)
        store = write_scene(scene, tmp_path / f"s{i}.zarr", tile=128)
        assert store.meta.ms_shape_yx == (150, 150) and store.meta.dtype == "float64"


@pytest.mark.data
@pytest.mark.slow
def test_real_fusebox_landsat7_all_pairs_ingest(data_root: Path, tmp_path: Path) -> None:
    folder = data_root / "landsat/fusebox_landsat7/cropped"
    pans = sorted(folder.glob("*_pan.mat"))
    if not pans:
        pytest.skip(f"FuseBox Landsat-7 files not found under {folder}")
    for pan in pans:
        ms = pan.with_name(pan.name.replace("_pan", "_ms"))
        store = write_scene(
            open_scene([pan, ms], "landsat7", dn_max=255),
            tmp_path / f"{pan.stem}.zarr",
            tile=400,
            hash_sources=False,
        )
        assert store.meta.pan_shape_yx == (800, 800) and store.meta.n_bands == 6
