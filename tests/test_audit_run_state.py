"""Audit: a run owns its outputs and its journal never calls someone else's file its product.

Found by the outside-in audit (docs/notes/audit.md): a run silently replaced a user's
``OUT.report.json`` / ``OUT.quicklook.png`` it did not create; a finished run whose COG another
run (``--work-dir`` elsewhere, ``--overwrite``) had replaced answered "complete already"; an
unfinished run resumed over a COG that appeared while it was stopped. Tiny scenes, brovey, the
module's real 2-worker LocalCluster.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pipeline.distribute import Engine
from pipeline.errors import StoreError
from pipeline.runner import run_scene
from tests.test_run_integrity import Interrupt, files_cfg, read_cog, stop_after, write_pair

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("product", ["report.json", "quicklook.png"])
def test_a_run_never_replaces_a_report_or_quicklook_it_did_not_create(
    engine: Engine, tmp_path: Path, product: str
) -> None:
    pan, ms = write_pair(tmp_path / "in")
    users = tmp_path / f"o.{product}"
    users.write_text("the user's own file")
    with pytest.raises(StoreError, match="already exists") as err:
        run_scene(files_cfg([pan, ms], tmp_path / "o.tif"), engine=engine)
    assert str(users) in str(err.value) and "--overwrite" in str(err.value)
    assert users.read_text() == "the user's own file"
    assert not (tmp_path / "o.tif").exists()


def test_a_finished_run_whose_cog_was_replaced_is_not_called_complete(
    engine: Engine, tmp_path: Path
) -> None:
    pan, ms = write_pair(tmp_path / "in")
    out = tmp_path / "o.tif"
    first = files_cfg([pan, ms], out, work_dir=str(tmp_path / "w1"))
    run_scene(first, engine=engine)
    ours = out.read_bytes()
    # another run of the same -o (its own work dir, --overwrite) replaces the COG
    other = files_cfg([pan, ms], out, method="gsa", work_dir=str(tmp_path / "w2"), overwrite=True)
    run_scene(other, engine=engine)
    theirs = out.read_bytes()
    assert theirs != ours
    with pytest.raises(StoreError, match="replaced after its run finished") as err:
        run_scene(first, engine=engine)
    assert str(out) in str(err.value) and "--overwrite" in str(err.value)
    assert out.read_bytes() == theirs  # refused, nothing touched
    again = run_scene(files_cfg([pan, ms], out, work_dir=str(tmp_path / "w1"), overwrite=True),
                      engine=engine)  # fmt: skip
    assert not again.get("already_complete")
    assert out.read_bytes() == ours


def test_an_untouched_finished_run_is_still_complete(engine: Engine, tmp_path: Path) -> None:
    """The check above must not break the normal rerun: same COG, nothing recomputed."""
    pan, ms = write_pair(tmp_path / "in")
    out = tmp_path / "o.tif"
    run_scene(files_cfg([pan, ms], out), engine=engine)
    os.utime(pan)  # touched inputs with the same bytes are the same inputs
    assert run_scene(files_cfg([pan, ms], out), engine=engine)["already_complete"]


def test_a_cog_that_appeared_while_a_run_was_stopped_is_not_overwritten(
    engine: Engine, tmp_path: Path
) -> None:
    pan, ms = write_pair(tmp_path / "in")
    out = tmp_path / "o.tif"
    with pytest.raises(Interrupt):
        run_scene(files_cfg([pan, ms], out), engine=engine, progress=stop_after(1))
    out.write_text("another program's file")
    with pytest.raises(StoreError, match="already exists"):
        run_scene(files_cfg([pan, ms], out), engine=engine)
    assert out.read_text() == "another program's file"
    out.unlink()
    assert run_scene(files_cfg([pan, ms], out), engine=engine)["infer"]["skipped"] >= 1


SENSOR = """auditsat:
  title: Audit satellite
  bands: [blue, green, red, nir]
  rgb: [2, 1, 0]
  ratio: 4
  bit_depth: 11
  mtf_ms: [{g}, {g}, {g}, {g}]
  mtf_pan: 0.15
  source: tests/test_audit_run_state.py
"""


def test_an_edited_sensor_file_is_noticed_not_called_complete(
    engine: Engine, tmp_path: Path
) -> None:
    """Same command, same paths, but the --sensor-file's MTF gains edited: the finished run
    answered "complete already" with the product of the old sensor."""
    pan, ms = write_pair(tmp_path / "in")
    sensors = tmp_path / "sensors.yaml"
    sensors.write_text(SENSOR.format(g=0.35))
    out = tmp_path / "o.tif"
    kw = {"sensor": "auditsat", "sensor_file": str(sensors), "method": "mtf-glp"}
    run_scene(files_cfg([pan, ms], out, **kw), engine=engine)
    old = read_cog(out)
    sensors.write_text(SENSOR.format(g=0.2))
    with pytest.raises(StoreError, match="finished run with other settings") as err:
        run_scene(files_cfg([pan, ms], out, **kw), engine=engine)
    assert "sensor_spec" in str(err.value) and "0.2" in str(err.value)
    run_scene(files_cfg([pan, ms], out, overwrite=True, **kw), engine=engine)
    fresh = tmp_path / "fresh.tif"
    run_scene(files_cfg([pan, ms], fresh, **kw), engine=engine)
    assert np.array_equal(read_cog(out), read_cog(fresh))
    assert not np.array_equal(read_cog(out), old)
