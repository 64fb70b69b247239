"""Audit: a batch never reports as done a scene whose product someone else replaced.

Found by the outside-in audit (docs/notes/audit.md): after ``pantailor batch`` finished a
scene, copying another GeoTIFF over ``OUTDIR/ID/ID.tif`` and rerunning said "1 done", listing
the foreign file as the scene's product. The real 2-worker LocalCluster, one tiny scene, brovey.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.batch import BatchConfig, run_batch
from pipeline.distribute import Engine
from tests.test_batch import manifest, write_pair

pytestmark = pytest.mark.slow


def _config(tmp_path: Path) -> BatchConfig:
    """One tiny QuickBird scene ``c0`` (brovey) into ``tmp_path/out``."""
    write_pair(tmp_path / "sc0", seed=0)
    m = manifest(tmp_path, ["c0,sc0/pan.tif;sc0/ms.tif,qb"])
    out = tmp_path / "out"
    return BatchConfig(source=str(m), out_dir=str(out), method="brovey", tile=32, quality_tiles=0)


def _finished(client: Any, tmp_path: Path) -> tuple[BatchConfig, Engine, Path]:
    """:func:`_config` run once to the end: its config, engine and the scene's COG."""
    cfg, engine = _config(tmp_path), Engine(client, device="cpu")
    assert run_batch(cfg, engine=engine).exit_status == 0
    return cfg, engine, tmp_path / "out" / "c0" / "c0.tif"


def test_a_done_scene_whose_cog_was_replaced_is_not_done_and_the_file_is_kept(
    client: Any, tmp_path: Path
) -> None:
    write_pair(tmp_path / "other", seed=7)
    cfg, engine, cog = _finished(client, tmp_path)
    ours = cog.read_bytes()
    shutil.copyfile(tmp_path / "other" / "pan.tif", cog)  # replaced a while later
    later = time.time() + 60
    os.utime(cog, (later, later))
    res = run_batch(cfg, engine=engine)
    assert res.plan["actions"] == {"replaced": 1}
    assert res.exit_status == 1 and list(res.failed) == ["c0"]
    text = res.failed["c0"]
    assert "replaced after its run finished" in text and str(cog) in text
    assert cog.read_bytes() == (tmp_path / "other" / "pan.tif").read_bytes()  # kept
    cog.rename(tmp_path / "foreign.tif")  # the fix the message gives
    res = run_batch(dataclasses.replace(cfg, retry_failed=True), engine=engine)
    assert res.exit_status == 0 and cog.read_bytes() == ours
    assert res.plan["actions"] == {"retry": 1}


def test_a_deleted_product_is_exported_again_without_recomputing_the_scene(
    client: Any, tmp_path: Path
) -> None:
    """The batch reran a done scene whose COG was deleted with ``--overwrite``: fit and every
    tile again, where ``pantailor run`` re-exports from its journal and store."""
    cfg, engine, cog = _finished(client, tmp_path)
    out, ours = tmp_path / "out", cog.read_bytes()
    fit = out / "c0" / "c0.work" / "coefficients.json"
    fitted = fit.stat().st_mtime_ns
    cog.unlink()
    res = run_batch(cfg, engine=engine)
    assert res.plan["actions"] == {"missing": 1} and res.exit_status == 0
    assert cog.read_bytes() == ours
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert rows[0]["tiles_computed"] == "0"  # all 12 before the fix
    assert fit.stat().st_mtime_ns == fitted  # not fitted again


def test_a_user_file_at_a_scenes_output_is_kept_and_the_fix_fits_the_batch(
    client: Any, tmp_path: Path
) -> None:
    """A file the batch did not write at ``OUTDIR/ID/ID.tif`` is kept and the scene fails; the
    fix offered was only ``--overwrite``, an option batch does not have (audit case 66)."""
    cfg, out = _config(tmp_path), tmp_path / "out"
    (out / "c0").mkdir(parents=True)
    (out / "c0" / "c0.tif").write_bytes(b"the user's own file")
    res = run_batch(cfg, engine=Engine(client, device="cpu"))
    assert res.exit_status == 1 and list(res.failed) == ["c0"]
    assert "already exists" in res.failed["c0"] and "move that file away" in res.failed["c0"]
    assert (out / "c0" / "c0.tif").read_bytes() == b"the user's own file"
