"""``pantailor batch --tailor-scope group`` on a real LocalCluster (2 worker processes): one fit
per group, members equal to single-scene runs given that tailor, reruns, resume, a bad member, a
failed group fit, a changed member, and a mixed group refused.

Scenes are the tiny georeferenced QuickBird-like GeoTIFF pairs of ``test_batch`` (72 x 104 PAN,
tile 32); the backbone has random weights.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.batch import BatchState, batch_status, format_status, run_batch
from pipeline.batch.groups import group_dir, shares
from pipeline.cli import main
from pipeline.config import RunConfig
from pipeline.distribute import Engine
from pipeline.runner import run_scene
from pipeline.sampling import SampleConfig
from tests.test_batch import FIT, SAMPLE, batch_cfg, manifest, products, weights, write_pair

pytestmark = pytest.mark.slow
__all__ = ["weights"]  # the module-scoped weights fixture of test_batch

GROUP_SAMPLE = {**SAMPLE, "min_patches": 3, "max_patches": 3}


def _fits(client: Any) -> int:
    """Adapter fits run so far, summed over the workers (``workers.scene_tasks.FIT_CALLS``)."""
    from workers.scene_tasks import fit_calls

    return sum(client.run(fit_calls).values())


def _journal_fit(out: Path, scene: str) -> dict[str, Any]:
    journal = out / scene / f"{scene}.work" / "journal.json"
    return json.loads(journal.read_text())["stages"]["fit"]  # type: ignore[no-any-return]


def test_shares_split_the_group_budget() -> None:
    cfg = SampleConfig(min_patches=4, max_patches=8)
    got = [(c.min_patches, c.max_patches) for c in shares(cfg, 3)]
    assert got == [(2, 3), (1, 3), (1, 2)]  # 8 patches in all, at least one per scene
    assert [c.max_patches for c in shares(cfg, 10)] == [1] * 10
    assert [c.holdout for c in shares(SampleConfig(holdout=2), 3)] == [1, 1, 0]  # 2 held out


def test_concat_keeps_every_scenes_held_out_patches_last() -> None:
    import torch

    from pipeline.batch.groups import concat_patches
    from pipeline.sampling import PatchBatch

    def batch(scene: int, n: int, holdout: int) -> PatchBatch:
        ms = torch.stack([torch.full((2, 2, 2), 10.0 * scene + i) for i in range(n)])
        return PatchBatch(ms, ms.repeat(1, 1, 2, 2)[:, :1], None, None, ((0, 0),) * n, 2, holdout)

    got = concat_patches([batch(0, 3, 1), batch(1, 2, 0), batch(2, 2, 1)])
    fit, held = got.split()
    assert held is not None and got.holdout == 2
    assert fit.ms[:, 0, 0, 0].tolist() == [0.0, 1.0, 10.0, 11.0, 20.0]
    assert held.ms[:, 0, 0, 0].tolist() == [2.0, 21.0]


def test_one_fit_per_group_members_equal_single_runs_rerun_and_resume(
    client: Any, weights: Path, tmp_path: Path
) -> None:
    for i in range(4):
        write_pair(tmp_path / f"sc{i}", seed=i)
    rows = [f"s{i},sc{i}/pan.tif;sc{i}/ms.tif,qb,strip" for i in range(3)]
    m = manifest(tmp_path, [*rows, "alone,sc3/pan.tif;sc3/ms.tif,qb,"], ",group")
    out = tmp_path / "out"
    engine = Engine(client, device="cpu")
    cfg = batch_cfg(m, out, weights, tailor_scope="group", sample=GROUP_SAMPLE)
    before = _fits(client)
    res = run_batch(cfg, engine=engine)
    assert res.exit_status == 0 and sorted(res.done) == ["alone", "s0", "s1", "s2"]
    assert _fits(client) - before == 2  # one for the strip of three, one for the lone scene
    group = BatchState.read(out).groups()["strip"]
    assert group["fits"] == 1 and group["members"] == ["s0", "s1", "s2"]
    assert group["n_patches"] == 3  # one patch from each of the three scenes
    adapter = Path(group["adapter"])
    assert adapter.parent == group_dir(out.resolve(), "strip")
    for scene in ("s0", "s1", "s2"):  # each member's journal records the group's tailor
        rec = _journal_fit(out, scene)
        assert rec["given"] and (rec["path"], rec["sha256"]) == (str(adapter), group["sha256"])
    assert "given" not in _journal_fit(out, "alone")  # no group of one: its own fit
    status = batch_status(out)
    assert status["groups"]["strip"]["fits"] == 1 and "group strip: done, 3 scenes" in (
        format_status(status)
    )
    first = products(out, res.done)
    items = {
        f["id"]: f["properties"]
        for f in json.loads((out / "products.json").read_text())["features"]
    }
    assert items["s0"]["pantailor:tailor_group"] == "strip"
    assert items["s0"]["pantailor:adapter_sha256"] == group["sha256"]
    assert items["alone"]["pantailor:tailor_group"] is None

    single = RunConfig(
        inputs=(str(tmp_path / "sc1/pan.tif"), str(tmp_path / "sc1/ms.tif")),
        output=str(tmp_path / "single" / "s1.tif"), sensor="qb", weights=str(weights), tile=32,
        quality_tiles=1, fit=FIT, sample=GROUP_SAMPLE, adapter_file=str(adapter),
    )  # fmt: skip
    run_scene(single, engine=engine)
    assert (tmp_path / "single" / "s1.tif").read_bytes() == first["s1"]

    again = run_batch(cfg, engine=engine)  # rerun after completion: nothing
    assert again.ran == [] and again.plan["actions"] == {"done": 4}
    assert _fits(client) - before == 2

    (out / "s2" / "s2.tif").unlink()  # a member to redo: the recorded tailor serves it
    redo = run_batch(cfg, engine=engine)
    assert redo.ran == ["s2"] and redo.plan["actions"] == {"done": 3, "missing": 1}
    assert _fits(client) - before == 2 and BatchState.read(out).groups()["strip"]["fits"] == 1
    assert products(out, res.done) == first  # byte-identical


def test_bad_member_fails_alone_failed_fit_fails_its_group_changed_member_refits(
    client: Any, weights: Path, tmp_path: Path
) -> None:
    for i in range(5):
        write_pair(tmp_path / f"sc{i}", seed=i)
    rows = [f"a{i},sc{i}/pan.tif;sc{i}/ms.tif,qb,ga" for i in range(2)]
    rows += ["gone,sc9/pan.tif;sc9/ms.tif,qb,ga"]  # a member whose input does not exist
    rows += [f"b{i},sc{i + 2}/pan.tif;sc{i + 2}/ms.tif,qb,gb" for i in range(3)]
    m = manifest(tmp_path, rows, ",group")
    out = tmp_path / "out"
    blocker = group_dir(out.resolve(), "gb")  # gb's fit cannot save its tailor: a file in the way
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    engine = Engine(client, device="cpu")
    cfg = batch_cfg(m, out, weights, tailor_scope="group")
    res = run_batch(cfg, engine=engine)
    assert sorted(res.done) == ["a0", "a1"] and res.exit_status == 1
    assert "Input file not found" in res.failed["gone"]  # fails alone: its group goes on
    for scene in ("b0", "b1", "b2"):  # the group's error is its scenes' error
        assert res.failed[scene].startswith("group gb: ") and "FileExistsError" in res.failed[scene]
    groups = BatchState.read(out).groups()
    assert groups["ga"]["fits"] == 1 and groups["ga"]["members"] == ["a0", "a1", "gone"]
    assert groups["gb"]["state"] == "failed" and groups["gb"]["fits"] == 0
    a_first = products(out, ["a0", "a1"])

    blocker.unlink()
    time.sleep(0.01)
    write_pair(tmp_path / "sc1", seed=41)  # a1 changes: ga is fitted again, a0 recomputed too
    again = run_batch(
        batch_cfg(m, out, weights, tailor_scope="group", retry_failed=True), engine=engine
    )
    assert again.plan["actions"] == {"changed": 3, "retry": 3}  # a0, a1, gone; b0-b2
    assert sorted(again.done) == ["a0", "a1", "b0", "b1", "b2"] and list(again.failed) == ["gone"]
    groups = BatchState.read(out).groups()
    assert groups["ga"]["fits"] == 2 and groups["gb"]["fits"] == 1
    a_now = products(out, ["a0", "a1"])
    assert a_now["a0"] != a_first["a0"] and a_now["a1"] != a_first["a1"]


def test_mixed_group_is_refused_naming_its_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        "x1,p1.tif;m1.tif,qb,fusionnet,g",
        "x2,p2.tif;m2.tif,qb,pnn,g",
        "x3,p3.tif;m3.tif,qb,,h",
    ]
    m = manifest(tmp_path, rows, ",method,group")
    argv = ["batch", str(m), "-o", str(tmp_path / "out"), "--tailor-scope", "group", "--dry-run"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "group 'g'" in err and "x1 (" in err and "x2 (" in err and "method pnn" in err
    assert "x3" not in err
    assert main([*argv[:4], "--dry-run"]) == 0  # scene scope: no groups, no refusal
    manifest(tmp_path, [rows[0], rows[1].replace("pnn", "fusionnet"), rows[2]], ",method,group")
    capsys.readouterr()
    assert main(argv) == 0  # one group of two (h has one scene: its own fit)
    assert "groups to run: 1" in capsys.readouterr().out


def test_a_group_run_in_parts_ends_as_one_run_without_fitting_again(
    client: Any, weights: Path, tmp_path: Path
) -> None:
    for i in range(3):
        write_pair(tmp_path / f"sc{i}", seed=i)
    rows = [f"p{i},sc{i}/pan.tif;sc{i}/ms.tif,qb,strip" for i in range(3)]
    m = manifest(tmp_path, rows, ",group")
    engine = Engine(client, device="cpu")
    whole = tmp_path / "whole"
    assert run_batch(batch_cfg(m, whole, weights, tailor_scope="group"), engine=engine).ran
    reference = products(whole, ["p0", "p1", "p2"])
    out = tmp_path / "parts"  # a driver that stopped after the fit and one scene
    part = run_batch(batch_cfg(m, out, weights, tailor_scope="group", only=("p0",)), engine=engine)
    assert part.ran == ["p0"] and BatchState.read(out).groups()["strip"]["fits"] == 1
    before = _fits(client)
    rest = run_batch(batch_cfg(m, out, weights, tailor_scope="group"), engine=engine)
    assert sorted(rest.ran) == ["p1", "p2"] and rest.plan["actions"] == {"done": 1, "new": 2}
    assert _fits(client) == before and BatchState.read(out).groups()["strip"]["fits"] == 1
    assert products(out, ["p0", "p1", "p2"]) == reference  # byte-identical to one whole run


def test_killed_group_driver_resumes_without_refitting_or_recomputing(
    client: Any, weights: Path, tmp_path: Path
) -> None:
    """SIGKILL the driver of a group batch after one member finished: the rerun reuses the group's
    recorded tailor (no fit), recomputes no finished scene, and its products equal an
    uninterrupted group batch byte for byte."""
    import shutil
    import signal

    from tests.test_batch import _db_states, start_driver

    ids = [f"g{i}" for i in range(3)]
    for i in range(3):
        write_pair(tmp_path / f"sc{i}", seed=i, shape=(96, 128))  # 12 tiles each
    rows = [f"g{i},sc{i}/pan.tif;sc{i}/ms.tif,qb,strip" for i in range(3)]
    m = manifest(tmp_path, rows, ",group")
    engine, out = Engine(client, device="cpu"), tmp_path / "out"
    cfg = batch_cfg(m, out, weights, tailor_scope="group", sample=GROUP_SAMPLE, scenes_in_flight=1)
    assert run_batch(cfg, engine=engine).exit_status == 0
    reference = products(out, ids)
    shutil.rmtree(out)
    proc = start_driver(tmp_path, cfg, client)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if "done" in _db_states(out).values():
                break  # the group is fitted and one member finished
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    finished = sorted(i for i, s in _db_states(out).items() if s == "done")
    assert 1 <= len(finished) < 3, (finished, proc.stderr.read() if proc.stderr else b"")
    assert BatchState.read(out).groups()["strip"]["state"] == "done"
    stamps = {i: (out / i / f"{i}.tif").stat().st_mtime_ns for i in finished}
    before = _fits(client)
    res = run_batch(cfg, engine=engine)
    assert res.exit_status == 0 and sorted(res.done) == ids
    assert _fits(client) == before  # the recorded group tailor is reused, not fitted again
    assert not set(res.ran) & set(finished)
    assert {i: (out / i / f"{i}.tif").stat().st_mtime_ns for i in finished} == stamps
    assert products(out, ids) == reference
