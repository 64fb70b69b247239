"""Audit round 2: a batch whose scene would write another scene's input is refused up front.

Found by the round-2 audit (docs/notes/audit.md): a manifest row whose ``output`` was another
row's PAN was planned ("would run: a b"; the run then failed on the existing file), and one
whose output another row read as its PAN would have fed one scene's product to the next.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from tests.test_run_integrity import write_pair


@pytest.mark.parametrize("which", ["existing input", "input made by the batch"])
def test_a_scene_writing_another_scenes_input_is_refused_naming_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str
) -> None:
    pan, ms = write_pair(tmp_path / "a")
    pan2, ms2 = write_pair(tmp_path / "b", seed=4)
    product = pan2 if which == "existing input" else tmp_path / "made" / "a.tif"
    b_pan = pan2 if which == "existing input" else product
    manifest = tmp_path / "m.csv"
    manifest.write_text(
        "id,inputs,sensor,method,output\n"
        f"a,{pan};{ms},qb,brovey,{product}\n"
        f"b,{b_pan};{ms2},qb,brovey,\n"
    )
    before = pan2.read_bytes()
    code = main(["batch", str(manifest), "-o", str(tmp_path / "out"), "--dry-run"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == 2
    assert "would write an input of scene 'b'" in err and str(product) in err and "Fix:" in err
    assert pan2.read_bytes() == before


def test_status_of_a_batch_stopped_before_its_state_was_written_is_an_error_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    db = out / "pantailor-batch.sqlite"
    db.write_bytes(b"")  # created, never written (was sqlite3.OperationalError: no such table)
    code = main(["status", str(out)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == 2
    assert "holds no batch state" in err and str(db) in err and "Fix:" in err
