"""Audit: what a killed export leaves behind is cleaned by the rerun, and only that.

Found by the outside-in audit (docs/notes/audit.md): ``pantailor run`` SIGKILLed during its
export left ``.OUT.tif.<tag>.ov1.tif`` (a streamed overview level) beside the product; the rerun
removed the stage file but kept the level forever, since ``files.remove_temporaries`` did not
know the level files' names. ``pantailor export`` wrote into (or over) its own input store.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.files import remove_temporaries, temporary_for
from pipeline.overviews import stage_paths
from tests.test_workers import small_store


def test_every_temporary_an_export_writes_is_removed_by_the_rerun_cleanup(tmp_path: Path) -> None:
    out = tmp_path / "o.tif"
    stage, vrt, partial, levels = stage_paths(out, 3)
    made = [stage, vrt, partial, *levels, temporary_for(out)]
    for p in made:
        p.write_bytes(b"left by a killed export")
    users = [tmp_path / ".o.tif.backup.txt", tmp_path / "o.tif.ov1.tif", tmp_path / ".p.tif.x.ov1"]
    for p in users:
        p.write_text("not pantailor's")
    gone = remove_temporaries(out)
    assert sorted(gone) == sorted(made)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in users)


@pytest.mark.parametrize("where", ["the store", "inside the store", "a folder"])
def test_export_refuses_an_output_that_is_or_is_inside_its_store_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    """``pantailor export S.zarr ms_up -o S.zarr --overwrite`` exported the whole array, then
    died on a raw IsADirectoryError; ``-o S.zarr/x.tif`` wrote a file into the input store."""
    store = small_store(tmp_path / "s.zarr", (64, 64), 32)
    before = sorted(p.relative_to(store.path) for p in store.path.rglob("*"))
    (tmp_path / "folder").mkdir()
    out = {
        "the store": store.path,
        "inside the store": store.path / "x.tif",
        "a folder": tmp_path / "folder",
    }[where]
    argv = ["export", str(store.path), "ms_up", "-o", str(out), "--overwrite"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "Fix:" in err and "Traceback" not in err
    assert sorted(p.relative_to(store.path) for p in store.path.rglob("*")) == before
    assert not list(tmp_path.glob(".*"))  # no temporary left either


def test_export_refuses_an_output_another_writer_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``pantailor export`` into a COG a run is still writing would remove that run's live
    temporaries (audit case 41, for the export command): it takes the output's lock too."""
    from pipeline.lock import RunLock, output_lock

    store = small_store(tmp_path / "s.zarr", (64, 64), 32)
    out = tmp_path / "o.tif"
    argv = ["export", str(store.path), "ms_up", "-o", str(out), "--overwrite"]
    with RunLock.acquire(output_lock(out), what="the output o.tif"):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Another run is using the output o.tif" in err and "Traceback" not in err
        assert not out.exists()
    assert main(argv) == 0 and out.is_file() and not output_lock(out).exists()
