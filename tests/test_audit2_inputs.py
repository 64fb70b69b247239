"""Audit round 2: bad input values through the CLI get a clear error before any work.

Found by the round-2 audit (docs/notes/audit.md): ``--nodata`` a uint16 input cannot hold
(-9999, 70000, nan, inf) died on a raw ``OverflowError`` / ``ValueError`` from zarr's fill
value; ``--nodata 0.5`` on integer inputs was accepted and marked no pixel.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from tests.test_run_integrity import write_pair


@pytest.mark.parametrize("value", ["-9999", "70000", "nan", "inf", "0.5"])
def test_a_nodata_value_the_inputs_dtype_cannot_hold_is_refused_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    pan, ms = write_pair(tmp_path / "in")
    store = tmp_path / "s.zarr"
    code = main(
        ["ingest", str(pan), str(ms), "--sensor", "qb", f"--nodata={value}", "-o", str(store)]
    )
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == 2
    assert "cannot occur in a uint16 input" in err and str(pan) in err and "--nodata" in err
    assert not store.exists() and not list(tmp_path.glob(".s.zarr*"))


GOOD_SENSOR = {
    "bands": "[blue, green, red, nir]",
    "rgb": "[2, 1, 0]",
    "ratio": "4",
    "bit_depth": "11",
    "mtf_ms": "[0.3, 0.3, 0.3, 0.3]",
    "mtf_pan": "0.15",
}


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("rgb", "[2, 1]", "rgb must be 3"),  # ran the whole scene, then died in the quicklook
        ("rgb", "red", "rgb must be 3"),
        ("bands", "blue", "bands must be a list"),  # read as the 4 bands b, l, u, e
        ("bands", "[blue, blue, red, nir]", "bands must be a list"),
        ("bands", "[1, 2, 3, 4]", "bands must be a list"),
        ("bit_depth", "2000", "bit_depth must be an integer >= 1 and <= 32"),  # OverflowError
        ("dn_max", "-5", "dn_max must be a number > 0"),  # silently 2**bit_depth - 1
    ],
)
def test_a_sensor_file_with_a_wrong_field_is_refused_naming_the_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: str, says: str
) -> None:
    sensor_file = tmp_path / "mysensors.yaml"
    body = {**GOOD_SENSOR, field: value}
    sensor_file.write_text("mysat:\n" + "".join(f"  {k}: {v}\n" for k, v in body.items()))
    pan, ms = write_pair(tmp_path / "in")
    argv = ["run", str(pan), str(ms), "--sensor", "mysat", "--sensor-file", str(sensor_file)]
    code = main([*argv, "--method", "brovey", "-o", str(tmp_path / "o.tif"), "--dry-run"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == 2
    assert says in err and str(sensor_file) in err and "Fix:" in err


def test_an_absurd_tile_size_is_refused_before_any_allocation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pan, ms = write_pair(tmp_path / "in")
    store = tmp_path / "s.zarr"
    argv = ["ingest", str(pan), str(ms), "--sensor", "qb", "--tile", "1000000000"]
    code = main([*argv, "-o", str(store)])  # was numpy's _ArrayMemoryError (1.7 EiB chunk)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == 2
    assert "up to 16384" in err and "1000000000" in err and "--tile 512" in err
    assert not store.exists()


@pytest.mark.parametrize("patch", [-8, 30, 8])
def test_a_bad_fit_patch_is_named_as_fit_patch_not_tile(patch: int) -> None:
    """Audit #119: ``--fit-patch -8`` was refused as "the tile size", suggesting ``--tile``."""
    from pipeline.errors import ConfigError
    from pipeline.sampling import patch_grid

    with pytest.raises(ConfigError) as err:
        patch_grid((512, 512), 4, patch)
    text = str(err.value)
    assert "--fit-patch" in text and "--tile" not in text and "multiple of 4" in text


@pytest.mark.parametrize("name", ["42", "'my sat'", "'-x'"])
def test_a_sensor_file_name_that_is_no_name_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """Audit #108: a sensor named ``42`` was registered (and ``--sensor 42`` then ran)."""
    sensor_file = tmp_path / "mysensors.yaml"
    sensor_file.write_text(f"{name}:\n" + "".join(f"  {k}: {v}\n" for k, v in GOOD_SENSOR.items()))
    pan, ms = write_pair(tmp_path / "in")
    argv = ["run", str(pan), str(ms), "--sensor", "mysat", "--sensor-file", str(sensor_file)]
    code = main([*argv, "--method", "brovey", "-o", str(tmp_path / "o.tif"), "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "is not a name" in err and str(sensor_file) in err
