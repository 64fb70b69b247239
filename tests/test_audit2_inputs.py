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
