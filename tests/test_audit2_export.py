"""Audit round 2, case #130: ``pantailor export`` of a killed run's output array wrote a COG with
no-data holes that looked complete. A tile map now marks its output array complete when every
tile is written, and ``export`` refuses an output whose run stopped before that."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.distribute import Engine
from pipeline.journal import RunPaths
from pipeline.runner import run_scene
from pipeline.store import SceneStore
from tests.test_run_integrity import files_cfg, write_pair


class Interrupt(Exception):
    pass


def test_export_of_a_killed_runs_output_is_refused_until_the_rerun_finishes_it(
    engine: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = files_cfg(write_pair(tmp_path / "in"), tmp_path / "o.tif")

    def stop_after_two(stage: str, done: int, total: int) -> None:
        if stage == "infer" and done >= 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_scene(cfg, engine=engine, progress=stop_after_two)
    paths = RunPaths.of(cfg)
    journal = json.loads(paths.journal.read_text())
    array = journal["output_array"]
    assert 2 <= len(journal["tiles"]) < 6
    assert not SceneStore.open(paths.store).output_complete(array)

    out = tmp_path / "exported.tif"
    capsys.readouterr()
    code = main(["export", str(paths.store), array, "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "unfinished" in err and str(paths.store) in err and "rerun" in err
    assert not out.exists()

    run_scene(cfg, engine=engine)
    assert SceneStore.open(paths.store).output_complete(array)
    assert main(["export", str(paths.store), array, "-o", str(out)]) == 0
    assert out.exists()


def test_a_new_output_is_unfinished_and_an_older_stores_output_counts_as_whole(
    tmp_path: Path,
) -> None:
    from tests.test_run_integrity import small_store

    store = small_store(tmp_path / "s.zarr", (64, 64), 32)
    arr = store.create_output("x")
    assert not store.output_complete("x")
    store.mark_complete("x")
    assert store.output_complete("x")
    del arr.attrs["complete"]  # an output written before the mark existed
    assert SceneStore.open(store.path).output_complete("x")


def test_a_disk_full_during_export_is_a_clear_error_and_leaves_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Audit #128: GDAL's write error (disk full) surfaced raw; now it names the output and the
    fix, and neither the COG nor a temporary is left."""
    import rasterio.shutil
    from rasterio._err import CPLE_AppDefinedError

    from tests.test_audit2_store import ingested

    store = ingested(tmp_path)

    def full(*args: object, **kw: object) -> None:
        raise CPLE_AppDefinedError(1, 28, "Free disk space available is 0 bytes. No space left")

    monkeypatch.setattr(rasterio.shutil, "copy", full)
    out = tmp_path / "out" / "pan.tif"
    out.parent.mkdir()
    capsys.readouterr()
    code = main(["export", str(store), "pan", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "its disk is full" in err and str(out) in err and "free space" in err
    assert list(out.parent.iterdir()) == []


def test_export_on_a_full_tmpfs_fails_cleanly_and_succeeds_with_room(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same on a real full disk: a 1 MiB tmpfs (needs mount rights; skipped without)."""
    import subprocess

    from tests.test_audit2_store import ingested

    store = ingested(tmp_path)
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        (small / "ballast").write_bytes(b"\0" * (2**20 - 8192))
        capsys.readouterr()
        code = main(["export", str(store), "pan", "-o", str(small / "pan.tif")])
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err and "its disk is full" in err
        assert sorted(p.name for p in small.iterdir()) == ["ballast"]
        (small / "ballast").unlink()
        assert main(["export", str(store), "pan", "-o", str(small / "pan.tif")]) == 0
    finally:
        subprocess.run(["umount", str(small)], check=False)
