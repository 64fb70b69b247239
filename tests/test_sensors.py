"""Sensor table and MTF kernels: lookups, validation, YAML sensors, filter response, degradation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import mtf
from pipeline.errors import ConfigError, SensorError
from pipeline.sensors import (
    BUILTIN_TABLE,
    DEFAULT_MS_GAIN,
    DEFAULT_PAN_GAIN,
    SensorSpec,
    get_sensor,
    load_sensor_file,
    read_sensor_file,
    sensor_names,
)

# --------------------------------------------------------------------------- sensor table

# MS and PAN Nyquist gains as listed in ../shared/docs/METHOD.md
METHOD_GAINS = {
    "qb": ((0.34, 0.32, 0.30, 0.22), 0.15),
    "ikonos": ((0.26, 0.28, 0.29, 0.28), 0.17),
    "ge1": ((0.23,) * 4, 0.16),
    "wv4": ((0.23,) * 4, 0.16),
    "wv2": ((0.35,) * 7 + (0.27,), 0.11),
    "wv3": ((0.325, 0.355, 0.360, 0.350, 0.365, 0.360, 0.335, 0.315), 0.14),
}


@pytest.mark.parametrize("name", list(METHOD_GAINS))
def test_vhr_gains_match_method(name: str) -> None:
    spec = get_sensor(name)
    assert spec.mtf_ms == METHOD_GAINS[name][0] and spec.mtf_pan == METHOD_GAINS[name][1]
    assert spec.ratio == 4


def test_required_sensors_present() -> None:
    names = set(sensor_names())
    want = {"wv2", "wv3", "wv4", "qb", "ge1", "ikonos", "pleiades", "gf1", "gf2"}
    assert want | {"landsat7", "landsat8", "s2-10m", "s2-20m"} <= names


@pytest.mark.parametrize(
    "alias,name",
    [("WorldView-3", "wv3"), ("WV3", "wv3"), ("worldview_2", "wv2"), (" QuickBird ", "qb"),
     ("GeoEye", "ge1"), ("L8", "landsat8"), ("lc09", "landsat8"), ("etm+", "landsat7")],
)  # fmt: skip
def test_aliases_case_insensitive(alias: str, name: str) -> None:
    assert get_sensor(alias).name == name


def test_spec_passes_through() -> None:
    spec = get_sensor("wv3")
    assert get_sensor(spec) is spec


def test_unknown_sensor_suggests_close_names() -> None:
    with pytest.raises(SensorError) as info:
        get_sensor("wv33")
    msg = str(info.value)
    assert "Unknown sensor 'wv33'" in msg and "did you mean" in msg and "'wv3'" in msg
    assert "--sensor-file" in msg
    assert isinstance(info.value, KeyError)


@pytest.mark.parametrize("name", sensor_names())
def test_every_builtin_is_consistent(name: str) -> None:
    s = get_sensor(name)
    assert len(s.mtf_ms) == s.n_bands == len(s.bands)
    assert all(0 <= i < s.n_bands for i in s.rgb) and len(set(s.rgb)) == 3
    assert s.ratio in (2, 4) and s.source


def test_the_builtin_table_is_a_sensor_file_whose_defaults_are_the_constants() -> None:
    """The built-in rows are package data in the users' format; rows citing the toolbox
    defaults carry exactly DEFAULT_MS_GAIN / DEFAULT_PAN_GAIN."""
    table = read_sensor_file(BUILTIN_TABLE)
    names = [s.name for s in table]
    assert len(set(names)) == len(names) == 15 and set(names) <= set(sensor_names())
    assert all(get_sensor(name) == s for name, s in zip(names, table, strict=True))
    defaults = [s for s in table if "toolbox defaults" in s.source]
    assert {s.name for s in defaults} >= {"pleiades", "gf1", "gf2", "landsat8", "s2-10m"}
    for s in defaults:
        assert set(s.mtf_ms) == {DEFAULT_MS_GAIN} and s.mtf_pan == DEFAULT_PAN_GAIN, s.name


def test_dn_max_from_bit_depth_or_given() -> None:
    assert get_sensor("wv3").dn_max == 2047.0  # 11 bit
    assert get_sensor("ge1").dn_max == 2047.0
    assert get_sensor("landsat7").dn_max == 255.0
    assert get_sensor("landsat8").dn_max == 65535.0
    assert get_sensor("s2-10m").dn_max == 10000.0  # reflectance x 10000, stated


def test_landsat_and_sentinel_entries() -> None:
    assert get_sensor("landsat8").n_bands == 7 and get_sensor("landsat8").ratio == 2
    assert get_sensor("landsat7").n_bands == 6
    assert get_sensor("s2-20m").n_bands == 6 and get_sensor("s2-20m").ratio == 2


def _spec(**kw: object) -> SensorSpec:
    base: dict[str, object] = dict(
        name="x", title="X", bands=("a", "b", "c"), rgb=(0, 1, 2), ratio=4, bit_depth=12,
        mtf_ms=(0.3, 0.3, 0.3), mtf_pan=0.15,
    )  # fmt: skip
    return SensorSpec(**(base | kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"mtf_ms": (0.3, 0.3)}, "one MS MTF gain per band"),
        ({"mtf_pan": 1.2}, "strictly between 0 and 1"),
        ({"mtf_ms": (0.3, 0.0, 0.3)}, "strictly between 0 and 1"),
        ({"ratio": 1}, "ratio must be an integer >= 2"),
        ({"rgb": (0, 1, 3)}, "0-based band indices"),
        ({"bands": ()}, "has no bands"),
    ],
)
def test_invalid_specs(kw: dict[str, object], match: str) -> None:
    with pytest.raises(SensorError, match=match):
        _spec(**kw)


def test_yaml_sensor_file(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "mysat-test:\n  title: MySat\n  bands: [b, g, r, n]\n  rgb: [2, 1, 0]\n  ratio: 4\n"
        "  bit_depth: 12\n  mtf_ms: [0.3, 0.3, 0.3, 0.3]\n  mtf_pan: 0.15\n"
    )
    (spec,) = load_sensor_file(path)
    assert get_sensor("MySat-Test") == spec and spec.dn_max == 4095.0 and spec.rgb == (2, 1, 0)


@pytest.mark.parametrize(
    "text,match",
    [
        ("- a\n- b\n", "must map sensor names"),
        ("x: 3\n", "must be a mapping"),
        ("x:\n  colour: red\n", "unknown fields"),
        ("x:\n  title: X\n", "is incomplete"),
        ("x: [unclosed\n", "Cannot read the sensor file"),
    ],
)
def test_bad_yaml_sensor_files(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SensorError, match=match) as info:
        load_sensor_file(path)
    assert str(path) in str(info.value)


_GOOD = {
    "bands": "[b, g, r, n]",
    "rgb": "[2, 1, 0]",
    "ratio": "4",
    "bit_depth": "11",
    "mtf_ms": "[0.3, 0.3, 0.3, 0.3]",
    "mtf_pan": "0.15",
}


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("ratio", "2.5", "ratio must be an integer >= 2"),
        ("ratio", "1", "ratio must be an integer >= 2"),
        ("ratio", '"4"', "ratio must be an integer >= 2"),
        ("bit_depth", "0", "bit_depth must be an integer >= 1"),
        ("bit_depth", "11.5", "bit_depth must be an integer >= 1"),
        ("mtf_ms", "[0.3, 0.3, 1.2, 0.3]", "strictly between 0 and 1"),
        ("mtf_pan", "0", "strictly between 0 and 1"),
        ("mtf_ms", "[0.3, 0.3, 0.3]", "one MS MTF gain per band"),
        ("mtf_ms", "0.3", "one MS MTF gain per band"),
        ("mtf_ms", '["a", 0.3, 0.3, 0.3]', "must be numbers"),
    ],
)
def test_sensor_file_values_are_validated_and_errors_name_the_file(
    tmp_path: Path, field: str, value: str, match: str
) -> None:
    body = "".join(f"  {k}: {value if k == field else v}\n" for k, v in _GOOD.items())
    path = tmp_path / "odd.yaml"
    path.write_text("oddsat-bad:\n" + body)
    with pytest.raises(SensorError, match=match) as info:
        load_sensor_file(path)
    assert str(path) in str(info.value)


def test_a_spec_survives_the_store_attrs_round_trip() -> None:
    spec = get_sensor("wv3")
    import json

    assert SensorSpec.from_attrs(json.loads(json.dumps(spec.to_attrs()))) == spec


# --------------------------------------------------------------------------- MTF kernels


@pytest.mark.parametrize("gain,ratio", [(0.3, 4), (0.23, 4), (0.15, 4), (0.3, 2), (0.11, 4)])
def test_kernel_response_at_ms_nyquist_equals_gain(gain: float, ratio: int) -> None:
    k = mtf.kernel_1d(gain, ratio)
    n = np.arange(k.size) - k.size // 2
    # discrete-time Fourier transform of the symmetric taps at nu = 1/(2 ratio) cycles/pixel
    response = float(np.sum(k * np.cos(2 * np.pi * n / (2 * ratio))))
    assert response == pytest.approx(gain, abs=0.01)
    assert float(np.sum(k)) == pytest.approx(1.0)  # DC gain 1
    np.testing.assert_allclose(k, k[::-1])


def test_kernel_2d_is_separable_and_normalised() -> None:
    k2 = mtf.kernel_2d(0.3, 4, size=9)
    assert k2.shape == (9, 9) and k2.sum() == pytest.approx(1.0)
    assert np.linalg.matrix_rank(k2) == 1


def test_kernel_errors() -> None:
    with pytest.raises(ConfigError, match="odd"):
        mtf.kernel_1d(0.3, 4, size=40)
    with pytest.raises(ConfigError, match="gain"):
        mtf.kernel_1d(1.0, 4)


def test_filter_np_and_torch_agree_and_keep_constants() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((3, 37, 29))
    gains = (0.3, 0.25, 0.35)
    ref = mtf.filter_np(img, gains, 4, size=11)
    taps = torch.from_numpy(mtf.kernels_1d(gains, 4, size=11))
    got = mtf.filter_torch(torch.from_numpy(img)[None], taps)[0].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-12)
    flat = mtf.filter_np(np.full((3, 20, 20), 7.0), gains, 4, size=11)
    np.testing.assert_allclose(flat, 7.0)


def test_decimation_keeps_offset_ratio_half() -> None:
    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    assert mtf.decimate(x, 4)[0, 0].tolist() == [[18.0, 22.0], [50.0, 54.0]]  # rows/cols 2, 6
    assert mtf.decimate(x, 2)[0, 0, 0].tolist() == [9.0, 11.0, 13.0, 15.0]


def test_degrade_np_and_torch_agree() -> None:
    rng = np.random.default_rng(1)
    img = rng.random((2, 32, 24))
    gains = (0.3, 0.2)
    ref = mtf.degrade_np(img, gains, 4, size=13)
    assert ref.shape == (2, 8, 6)
    taps = torch.from_numpy(mtf.kernels_1d(gains, 4, size=13))
    got = mtf.degrade_torch(torch.from_numpy(img)[None], taps, 4)[0].numpy()
    np.testing.assert_allclose(got, ref, atol=1e-12)


def test_filter_np_band_count_mismatch() -> None:
    with pytest.raises(ConfigError, match="One MTF gain per band"):
        mtf.filter_np(np.zeros((3, 8, 8)), (0.3, 0.3), 4)
