"""Band groups: shipped weights on sensors without weights of their band count (or order)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from pipeline.backbones import (
    BandGroups,
    band_groups,
    build,
    default_weights,
    load,
    weights_record,
)
from pipeline.backbones.groups import SHIPPED_BANDS, pick_shipped
from pipeline.errors import CheckpointError, ConfigError
from pipeline.sensors import get_sensor


def _inputs(b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ms = torch.rand(1, b, 8, 8, generator=g)
    lms = torch.nn.functional.interpolate(ms, scale_factor=2, mode="bilinear")
    return ms, lms, torch.rand(1, 1, 16, 16, generator=g)


def test_groups_by_name_put_each_band_in_its_slot() -> None:
    l8 = get_sensor("landsat8").bands  # coastal, blue, green, red, nir, swir1, swir2
    groups = band_groups(l8, SHIPPED_BANDS[6], "name")
    assert groups[0] == (1, 2, 3, 4, 5, 6)  # the six Landsat-7 bands, each in its own slot
    assert groups[1:] == [(0, 2, 3, 4, 5, 6)]  # coastal takes blue's slot
    assert band_groups(("red", "green", "blue"), ("blue", "green", "red")) == [(2, 1, 0)]
    assert band_groups(l8, SHIPPED_BANDS[6]) == [(0, 1, 2, 3, 4, 5), (1, 2, 3, 4, 5, 6)]


def test_groups_without_names_are_windows_covering_every_band() -> None:
    groups = band_groups(get_sensor("s2-20m").bands, ("",) * 4)
    assert groups == [(0, 1, 2, 3), (2, 3, 4, 5)]
    with pytest.raises(ConfigError, match="at most"):
        band_groups(("a", "b", "c"), ("",) * 4)


def test_permuted_group_is_the_network_on_permuted_bands() -> None:
    net = build("fusionnet", 3).eval()
    ms, lms, pan = _inputs(3)
    wrapped = BandGroups(net, [(2, 0, 1)], 3)
    with torch.no_grad():
        got = wrapped(ms, lms, pan)
        ref = net(ms[:, [2, 0, 1]], lms[:, [2, 0, 1]], pan)
    torch.testing.assert_close(got[:, [2, 0, 1]], ref)
    assert wrapped.feat_channels == net.feat_channels


def test_overlapping_groups_average_their_outputs() -> None:
    net = build("fusionnet", 2).eval()
    ms, lms, pan = _inputs(3, seed=1)
    wrapped = BandGroups(net, [(0, 1), (1, 2)], 3)
    with torch.no_grad():
        got = wrapped(ms, lms, pan)
        a = net(ms[:, [0, 1]], lms[:, [0, 1]], pan)
        b = net(ms[:, [1, 2]], lms[:, [1, 2]], pan)
    torch.testing.assert_close(got[:, 0], a[:, 0])
    torch.testing.assert_close(got[:, 1], (a[:, 1] + b[:, 0]) / 2)
    torch.testing.assert_close(got[:, 2], b[:, 1])
    assert wrapped.extract(ms, lms, pan).shape[1] == 2 * net.feat_channels


def test_groups_must_cover_every_band() -> None:
    with pytest.raises(ConfigError, match="cover"):
        BandGroups(build("fusionnet", 2), [(0, 1)], 3)


def test_pick_shipped_prefers_own_count_then_named_sets() -> None:
    assert pick_shipped(get_sensor("landsat8").bands, [4, 6, 8]) == 6
    assert pick_shipped(get_sensor("landsat7").bands, [4, 6, 8]) == 6
    assert pick_shipped(("a", "b", "c", "d", "e"), [4, 8]) == 4
    assert pick_shipped(("a", "b", "c"), [4, 8]) is None


@pytest.mark.parametrize("sensor", ["landsat7", "landsat8", "s2-20m"])
def test_every_builtin_sensor_loads_a_network(sensor: str) -> None:
    spec = get_sensor(sensor)
    model = load("fusionnet", None, sensor=spec)
    ms, lms, pan = _inputs(spec.n_bands)
    with torch.no_grad():
        out = model(ms, lms, pan)
    assert out.shape == (1, spec.n_bands, 16, 16) and torch.isfinite(out).all()
    rec = weights_record(model)
    assert rec["file"] is not None and Path(rec["file"]).is_file()
    assert len(rec["file_sha256"]) == 64 and rec["n_bands"] == spec.n_bands
    assert (rec["band_groups"] is not None) == (sensor == "landsat8")
    assert Path(rec["file"]).name == f"fusionnet_{min(spec.n_bands, 6)}band.pt"


def test_saved_band_groups_load_back(tmp_path: Path) -> None:
    """A fine-tuned band-group backbone (saved by the fit) loads as the same network."""
    from pipeline.backbones import checksum, save_backbone

    model = load("fusionnet", None, sensor="landsat8")
    save_backbone(model, tmp_path / "ft.pt", {})
    again = load("fusionnet", tmp_path / "ft.pt", sensor="landsat8")
    assert isinstance(again, BandGroups) and again.groups == model.groups
    assert checksum(again) == checksum(model)


def test_wrong_band_count_with_explicit_weights_still_fails() -> None:
    with pytest.raises(CheckpointError, match="does not fit"):
        load("fusionnet", default_weights("fusionnet", 4), n_bands=7)


def test_dry_run_fails_as_the_run_would(tmp_path: Path) -> None:
    """Weights that do not fit fail the dry run (it used to report success), as the run does."""
    from pipeline.cli import main

    rng = np.random.default_rng(0)
    f = tmp_path / "s.mat"
    scipy.io.savemat(f, {"pan": rng.random((64, 64)), "ms": rng.random((16, 16, 8))})
    four = str(default_weights("fusionnet", 4))
    argv = ["run", str(f), "--sensor", "wv3", "--method", "fusionnet", "--weights", four]
    argv += ["-o", str(tmp_path / "o.tif"), "--dry-run", "--json"]
    assert main(argv) != 0  # 4-band weights on an 8-band sensor
    assert main([*argv[:6], "--weights", str(default_weights("fusionnet", 8)), *argv[8:]]) == 0
    assert not (tmp_path / "o.tif").exists()


def test_fusebox_order_runs_the_6band_weights_on_a_permutation() -> None:
    from pipeline.sensors import SensorSpec

    rgb_first = SensorSpec(
        name="l7-rgb", title="Landsat-7 as FuseBox stores it", bands=("red", "green", "blue",
        "nir", "swir1", "swir2"), rgb=(0, 1, 2), ratio=2, bit_depth=8, mtf_ms=(0.3,) * 6,
        mtf_pan=0.15,
    )  # fmt: skip
    model = load("fusionnet", None, sensor=rgb_first)
    assert isinstance(model, BandGroups) and model.groups == [(2, 1, 0, 3, 4, 5)]
    plain = load("fusionnet", None, sensor="landsat7")
    ms, lms, pan = _inputs(6)
    with torch.no_grad():
        got = model(ms[:, [2, 1, 0, 3, 4, 5]], lms[:, [2, 1, 0, 3, 4, 5]], pan)
        ref = plain(ms, lms, pan)
    torch.testing.assert_close(got[:, [2, 1, 0, 3, 4, 5]], ref)


@pytest.mark.data
def test_fusebox_container_is_read_in_the_landsat7_order(data_root: Path) -> None:
    from pipeline.ingest import open_scene

    root = data_root / "landsat/fusebox_landsat7/cropped"
    raw = scipy.io.loadmat(root / "26_ms.mat")["cropped_im"]  # R, G, B, NIR, SWIR1, SWIR2
    sc = open_scene([root / "26_pan.mat", root / "26_ms.mat"], "landsat7")
    np.testing.assert_array_equal(np.asarray(sc.ms[0]), raw[..., 2])  # blue first
    np.testing.assert_array_equal(np.asarray(sc.ms[2]), raw[..., 0])  # red third
    np.testing.assert_array_equal(np.asarray(sc.ms[3:]), raw[..., 3:].transpose(2, 0, 1))


def test_sentinel2_container_keys(tmp_path: Path) -> None:
    from pipeline.ingest import open_scene

    rng = np.random.default_rng(0)
    im10 = rng.integers(0, 10000, (64, 64, 4)).astype(np.uint16)  # B2, B3, B4, B8
    im20 = rng.integers(0, 10000, (32, 32, 6)).astype(np.uint16)
    f = tmp_path / "s2.mat"
    scipy.io.savemat(f, {"im10": im10, "im20": im20})
    sc = open_scene(f, "s2-20m")
    np.testing.assert_array_equal(np.asarray(sc.pan), im10[..., 3])  # B8
    np.testing.assert_array_equal(np.asarray(sc.ms), im20.transpose(2, 0, 1))
    assert json.dumps(sc.sensor.bands)
