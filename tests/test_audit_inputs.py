"""Audit: bad input through the CLI gets a clear error (file, expected, got, fix), never a
traceback, before any work is done.

Found by the outside-in audit (docs/notes/audit.md): a garbage ``--weights`` file raised a raw
``KeyError`` from torch's unpickler; ``evaluate`` on a scene smaller than the Wald protocol
died in ``torch.nn.functional.pad``; ``run -o EXISTING_FOLDER.tif --overwrite`` computed
everything, then died on ``IsADirectoryError``; a folder given as an input was called a
"truncated GeoTIFF"; ``-o out.png`` named neither the path nor the fix.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from pipeline.cli import main
from tests.test_run_integrity import write_pair


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


@pytest.mark.parametrize(
    "junk_bytes",
    [
        b"\x80\x02h\x05.",  # a pickle reading memo slot 5: KeyError in torch's unpickler
        b"\x80\x02.",  # a pickle stopping on an empty stack: IndexError
        random.Random(0).randbytes(5000),  # noise: UnpicklingError (was already reported)
    ],
    ids=["memo", "stack", "noise"],
)
def test_garbage_weights_are_a_checkpoint_error_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], junk_bytes: bytes
) -> None:
    pan, ms = write_pair(tmp_path / "in")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(junk_bytes)
    argv = ["run", str(pan), str(ms), "--sensor", "qb", "--weights", str(junk)]
    code, err = run_cli([*argv, "-o", str(tmp_path / "o.tif"), "--dry-run"], capsys)
    assert code == 2
    assert "Cannot read the checkpoint" in err and str(junk) in err and "Fix:" in err


@pytest.mark.parametrize("side", [12, 32])
def test_evaluate_on_a_scene_too_small_for_the_protocol_is_an_input_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], side: int
) -> None:
    pan, ms = write_pair(tmp_path / "in", shape=(side, side))
    argv = ["evaluate", str(pan), str(ms), "--sensor", "qb", "--methods", "brovey"]
    code, err = run_cli([*argv, "-o", str(tmp_path / "ev")], capsys)
    assert code == 2
    assert "too small for the reduced-resolution protocol" in err
    assert str(pan) in err and "--crop" in err
    assert not (tmp_path / "ev").exists()


def test_run_into_an_existing_folder_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pan, ms = write_pair(tmp_path / "in")
    folder = tmp_path / "x.tif"
    (folder / "keep").mkdir(parents=True)
    argv = ["run", str(pan), str(ms), "--sensor", "qb", "--method", "brovey", "-o", str(folder)]
    code, err = run_cli([*argv, "--overwrite", "--dry-run"], capsys)
    assert code == 2
    assert "The output is a folder" in err and str(folder) in err and "Fix:" in err
    assert (folder / "keep").is_dir()


def test_a_folder_given_as_an_input_is_called_a_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _pan, ms = write_pair(tmp_path / "in")
    folder = tmp_path / "scene.tif"
    folder.mkdir()
    argv = ["ingest", str(folder), str(ms), "--sensor", "qb", "-o", str(tmp_path / "s.zarr")]
    code, err = run_cli(argv, capsys)
    assert code == 2
    assert "is a folder" in err and str(folder) in err and "truncated" not in err
    assert not (tmp_path / "s.zarr").exists()


def test_an_output_that_is_not_a_geotiff_names_the_path_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pan, ms = write_pair(tmp_path / "in")
    out = tmp_path / "out.png"
    argv = ["run", str(pan), str(ms), "--sensor", "qb", "-o", str(out), "--dry-run"]
    code, err = run_cli(argv, capsys)
    assert code == 2
    assert f"File: {out}." in err and "Fix: pass e.g. -o out.tif" in err


@pytest.mark.parametrize(
    ("flag", "value"), [("--steps", "-5"), ("--max-nodata", "2"), ("--speculate", "-1")]
)
def test_a_bad_option_value_names_its_flag_and_a_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    """Audit cases 28, 29, 31: the message said "Got: (-5, 1000)" with no flag and no fix."""
    pan, ms = write_pair(tmp_path / "sc")
    argv = ["run", str(pan), str(ms), "--sensor", "qb", "-o", str(tmp_path / "o.tif")]
    assert main([*argv, flag, value]) == 2
    err = capsys.readouterr().err
    assert flag in err and value in err and "Fix:" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sc"]  # refused before any work


def test_a_scene_smaller_than_a_fit_patch_names_its_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Audit case 12: the refusal gave the flag to change but no file."""
    pan, ms = write_pair(tmp_path / "in", shape=(32, 32))
    argv = ["run", str(pan), str(ms), "--sensor", "qb", "-o", str(tmp_path / "o.tif")]
    code, err = run_cli(argv, capsys)
    assert code == 2 and "smaller than one fit patch" in err
    assert str(pan) in err and "--fit-patch" in err and "Traceback" not in err
    assert not (tmp_path / "o.tif").exists()


def test_ingest_refuses_a_geotiff_name_for_its_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Audit case 43: ``ingest -o x.tif`` wrote a Zarr folder named ``x.tif``."""
    pan, ms = write_pair(tmp_path / "in")
    code, err = run_cli(
        ["ingest", str(pan), str(ms), "--sensor", "qb", "-o", str(tmp_path / "x.tif")], capsys
    )
    assert code == 2 and "Zarr scene store" in err and str(tmp_path / "x.zarr") in err
    assert not (tmp_path / "x.tif").exists()
