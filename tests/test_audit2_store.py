"""Audit round 2: a scene store damaged after it was written is an input error naming the store,
never a traceback; a run whose own store's ``zarr.json`` was damaged ingests it again on rerun.

Found by the round-2 audit (docs/notes/audit.md): a truncated or garbage ``zarr.json`` died on a
raw ``JSONDecodeError`` (``export``, ``run STORE`` and the rerun of a run); a truncated chunk died
on zstd's ``RuntimeError`` in the export (or a worker's tile).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.distribute import Engine
from pipeline.runner import run_scene
from tests.test_run_integrity import files_cfg, write_pair


def ingested(tmp_path: Path) -> Path:
    pan, ms = write_pair(tmp_path / "in")
    store = tmp_path / "s.zarr"
    assert main(["ingest", str(pan), str(ms), "--sensor", "qb", "-o", str(store)]) == 0
    return store


def damage(store: Path, how: str) -> None:
    if how == "zarr.json truncated":
        (store / "zarr.json").write_bytes((store / "zarr.json").read_bytes()[:100])
    elif how == "zarr.json garbage":
        (store / "zarr.json").write_text("garbage{")
    elif how == "pan zarr.json garbage":
        (store / "pan" / "zarr.json").write_text("garbage{")
    else:  # a chunk truncated
        chunk = next(p for p in sorted((store / "pan" / "c").rglob("*")) if p.is_file())
        chunk.write_bytes(chunk.read_bytes()[:20])


@pytest.mark.parametrize(
    "how", ["zarr.json truncated", "zarr.json garbage", "pan zarr.json garbage", "chunk truncated"]
)
def test_export_of_a_damaged_store_names_the_store_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str
) -> None:
    store = ingested(tmp_path)
    damage(store, how)
    capsys.readouterr()
    out = tmp_path / "pan.tif"
    code = main(["export", str(store), "pan", "-o", str(out)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == 2
    assert "The scene store is damaged" in err and str(store) in err and "--overwrite" in err
    assert not out.exists()


@pytest.mark.slow
def test_a_rerun_whose_store_metadata_was_damaged_ingests_again_and_gives_the_same_bytes(
    engine: Engine, tmp_path: Path
) -> None:
    pan, ms = write_pair(tmp_path / "in")
    out = tmp_path / "o.tif"
    cfg = files_cfg([pan, ms], out)
    run_scene(cfg, engine=engine)
    first = out.read_bytes()
    (tmp_path / "o.work" / "scene.zarr" / "zarr.json").write_text("garbage{")
    out.unlink()
    run_scene(cfg, engine=engine)
    assert out.read_bytes() == first


@pytest.mark.parametrize(
    "flag", [["--nodata", "5"], ["--dn-max", "4095"]], ids=["nodata", "dn-max"]
)
def test_an_ingest_option_a_store_input_was_not_ingested_with_is_refused_not_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: list[str]
) -> None:
    store = ingested(tmp_path)
    capsys.readouterr()
    argv = ["run", str(store), "--method", "brovey", "-o", str(tmp_path / "o.tif"), "--dry-run"]
    code = main([*argv, *flag])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{flag[0]} differs from the scene store's" in err and str(store) in err
    assert "Fix:" in err
    assert main([*argv, "--dn-max", "2047"]) == 0  # the store's own value is accepted


@pytest.mark.parametrize(
    "flag", [["--ms-decimate", "2"], ["--patch", "1"]], ids=["ms-decimate", "patch"]
)
def test_an_ingest_only_option_with_a_store_input_is_refused_not_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: list[str]
) -> None:
    """Audit #83: ``run STORE --ms-decimate 2`` ran on the store as it was, silently."""
    store = ingested(tmp_path)
    capsys.readouterr()
    argv = ["run", str(store), "--method", "brovey", "-o", str(tmp_path / "o.tif"), "--dry-run"]
    code = main([*argv, *flag])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{flag[0]} acts at ingest" in err and str(store) in err and "Fix:" in err
    assert main(argv) == 0


def test_batch_wide_ingest_options_skip_a_store_row_and_reach_a_files_row(tmp_path: Path) -> None:
    """A batch-wide ``--ms-decimate`` / ``--nodata`` meant for the files rows must not make a
    store row fail (a store keeps its ingest); a store row's own option still reaches it."""
    from pipeline.batch.plan import BatchConfig, run_config
    from pipeline.batch.sources import SceneSpec

    store = ingested(tmp_path)
    pan, ms = write_pair(tmp_path / "files")
    cfg = BatchConfig(
        source="m.csv", out_dir=str(tmp_path), sensor="qb", method="brovey",
        ingest={"ms_decimate": 2, "nodata": 0.0},
    )  # fmt: skip
    on_store = run_config(SceneSpec(id="s", inputs=(str(store),)), cfg, tmp_path / "s.tif")
    on_files = run_config(SceneSpec(id="f", inputs=(str(pan), str(ms))), cfg, tmp_path / "f.tif")
    own = run_config(
        SceneSpec(id="o", inputs=(str(store),), options={"nodata": 5.0}), cfg, tmp_path / "o.tif"
    )
    assert dict(on_store.ingest) == {}
    assert dict(on_files.ingest) == {"ms_decimate": 2, "nodata": 0.0}
    assert dict(own.ingest) == {"nodata": 5.0}


def test_a_deleted_input_chunk_is_noticed_not_read_as_fill(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Audit #74: a deleted ``pan`` chunk read back as the fill value (rc 0, a product with a
    hole). The ingest now writes every chunk (fill-valued ones too) and says so; a store that
    lost one is refused by ``run`` and ``export``, naming the store and the array."""
    from pipeline.store import SceneStore

    store = ingested(tmp_path)
    SceneStore.open(store).verify_chunks()  # intact
    chunks = sorted(p for p in (store / "pan" / "c").rglob("*") if p.is_file())
    assert len(chunks) == SceneStore.open(store).array("pan").nchunks
    chunks[0].unlink()
    capsys.readouterr()
    run = ["run", str(store), "--method", "brovey", "-o", str(tmp_path / "o.tif"), "--dry-run"]
    for argv in (run, ["export", str(store), "ms", "-o", str(tmp_path / "ms.tif")]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err, argv
        assert "1 of the" in err and "'pan'" in err and str(store) in err, argv
    assert not (tmp_path / "ms.tif").exists()


def test_an_all_nodata_chunk_is_written_too(tmp_path: Path) -> None:
    """Zarr skips a chunk equal to the fill value unless told otherwise: the check above would
    then call a legal all-no-data chunk lost."""
    import numpy as np

    from pipeline.scene import Scene
    from pipeline.sensors import get_sensor
    from pipeline.store import write_scene
    from pipeline.synthetic import make_scene

    syn = make_scene((64, 64), "qb", seed=1)
    pan, ms = syn.pan.copy(), syn.ms.copy()
    pan[:32, :32] = 0  # one whole PAN chunk of tile 32 is no-data (= the fill value)
    ms[:, :8, :8] = 0
    scene = Scene(
        pan=pan, ms=ms, sensor=get_sensor("qb"), crs=None, nodata=0, dn_max=2047.0,
        pan_transform=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0), ms_transform=(4.0, 0.0, 0.0, 0.0, 4.0, 0.0),
    )  # fmt: skip
    store = write_scene(scene, tmp_path / "s.zarr", tile=32)
    store.verify_chunks()
    assert np.all(store.read_pan(store.grid.pan_window(next(iter(store.grid.keys())))) == 0)
