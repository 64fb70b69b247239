"""Audit round 2, the minor cases left open last session (docs/notes/audit.md #72, #84, #86).

#72: a deleted ``pan/zarr.json`` was reported as "the store has no array 'pan'" with the fix
"check the array name"; the name is right and the store is damaged. #84: ``run STORE --tile 32``
on a store of tile 64 ran with the store's tiles, silently (``--tile`` had a default, so given and
default could not be told apart). #86: a PAN whose grid is rotated was refused as "ratios 4, 0,
0, 4", with no word of the rotation.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import rasterio
from affine import Affine

from pipeline.cli import main
from tests.test_audit2_store import ingested
from tests.test_run_integrity import write_pair


def test_a_missing_array_metadata_file_is_named_as_damage_not_as_a_wrong_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ingested(tmp_path)
    (store / "pan" / "zarr.json").unlink()
    capsys.readouterr()
    code = main(["export", str(store), "pan", "-o", str(tmp_path / "pan.tif")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "The scene store is damaged" in err and "'pan'" in err and "--overwrite" in err
    assert "check the array name" not in err


def test_an_array_that_was_never_written_is_still_named_as_absent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ingested(tmp_path)
    capsys.readouterr()
    code = main(["export", str(store), "fusionnet", "-o", str(tmp_path / "o.tif")])
    err = capsys.readouterr().err
    assert code == 2 and "damaged" not in err and "no array 'fusionnet'" in err


def test_a_tile_other_than_the_stores_is_refused_and_its_own_or_none_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.store import SceneStore

    pan, ms = write_pair(tmp_path / "in")
    store = tmp_path / "s.zarr"
    assert (
        main(["ingest", str(pan), str(ms), "--sensor", "qb", "--tile", "64", "-o", str(store)]) == 0
    )
    stored = SceneStore.open(store).meta.tile
    assert stored == 64
    capsys.readouterr()
    argv = ["run", str(store), "--method", "brovey", "-o", str(tmp_path / "o.tif"), "--dry-run"]
    code = main([*argv, "--tile", str(stored // 2)])
    err = capsys.readouterr().err
    assert code == 2
    assert "--tile differs from the scene store's" in err and f"--tile {stored}" in err
    assert str(store) in err and "Fix:" in err
    assert main([*argv, "--tile", str(stored)]) == 0
    assert main(argv) == 0


def test_a_batch_wide_tile_skips_a_store_row_and_reaches_a_files_row(tmp_path: Path) -> None:
    from pipeline.batch.plan import BatchConfig, fingerprint, run_config
    from pipeline.batch.sources import SceneSpec

    store = ingested(tmp_path)
    pan, ms = write_pair(tmp_path / "files")
    cfg = BatchConfig(source="m.csv", out_dir=str(tmp_path), sensor="qb", tile=128)
    on_store = run_config(SceneSpec(id="s", inputs=(str(store),)), cfg, tmp_path / "s.tif")
    on_files = run_config(SceneSpec(id="f", inputs=(str(pan), str(ms))), cfg, tmp_path / "f.tif")
    assert on_store.tile is None and on_files.tile == 128 and on_files.ingest_tile == 128
    default = run_config(
        SceneSpec(id="f", inputs=(str(pan), str(ms))),
        BatchConfig(source="m.csv", out_dir=str(tmp_path), sensor="qb"),
        tmp_path / "f.tif",
    )
    given = run_config(
        SceneSpec(id="f", inputs=(str(pan), str(ms))),
        BatchConfig(source="m.csv", out_dir=str(tmp_path), sensor="qb", tile=512),
        tmp_path / "f.tif",
    )
    assert default.ingest_tile == 512  # the default is the old 512: a batch database's
    assert fingerprint(default) == fingerprint(given)  # fingerprints do not change


@pytest.mark.parametrize("which", ["pan", "ms"])
def test_a_rotated_grid_is_named_as_rotated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str
) -> None:
    pan, ms = write_pair(tmp_path)
    path = pan if which == "pan" else ms
    with rasterio.open(path, "r+") as dst:
        dst.transform = dst.transform * Affine.rotation(30)
    capsys.readouterr()
    code = main(["run", str(pan), str(ms), "--sensor", "qb", "--method", "brovey",
                 "-o", str(tmp_path / "o.tif"), "--dry-run"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"The {which.upper()} grid is rotated" in err and "30 degrees" in err
    assert str(path) in err and "north-up" in err
