"""``pantailor batch`` on a real LocalCluster (2 worker processes): failure isolation, reruns,
changed inputs, the backbone staying loaded across scenes, and resume after a killed driver.

Scenes are tiny synthetic georeferenced QuickBird-like GeoTIFF pairs (awkward 72 x 104 PAN,
tile 32, 12 tiles); the backbone has random weights.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import rasterio
from rasterio.transform import from_origin

from pipeline.batch import BatchConfig, BatchState, batch_status, run_batch
from pipeline.batch.state import DB_NAME
from pipeline.cli import main
from pipeline.distribute import Engine
from pipeline.synthetic import make_scene
from tests.test_workers import random_weights

pytestmark = pytest.mark.slow

SHAPE = (72, 104)
FIT = {"steps": 2}
SAMPLE = {"patch": 32, "min_patches": 2, "max_patches": 2}


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_weights(tmp_path_factory.mktemp("w") / "fusionnet.pt", "fusionnet", 4)


def write_pair(folder: Path, seed: int, shape: tuple[int, int] = SHAPE) -> tuple[Path, Path]:
    """A georeferenced (EPSG:32631) synthetic PAN / 4-band MS GeoTIFF pair, ratio 4."""
    syn = make_scene(shape, "qb", seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    x0, y0 = 500000.0 + 100 * seed, 5750000.0
    pan, ms = folder / "pan.tif", folder / "ms.tif"
    h, w = shape
    for path, data, px in ((pan, syn.pan[None], 0.5), (ms, syn.ms, 2.0)):
        with rasterio.open(
            path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
            count=data.shape[0], dtype="uint16", crs="EPSG:32631",
            transform=from_origin(x0, y0, px, px),
        ) as dst:  # fmt: skip
            dst.write(data)
    assert (h, w) == syn.pan.shape
    return pan, ms


def manifest(root: Path, rows: list[str], extra: str = "") -> Path:
    m = root / "scenes.csv"
    m.write_text("id,inputs,sensor" + extra + "\n" + "\n".join(rows) + "\n")
    return m


def batch_cfg(m: Path, out: Path, w: Path, **kw: Any) -> BatchConfig:
    base: dict[str, Any] = {
        "weights": str(w), "tile": 32, "quality_tiles": 1, "fit": FIT, "sample": SAMPLE,
        "scenes_in_flight": 2,
    }  # fmt: skip
    return BatchConfig(source=str(m), out_dir=str(out), **{**base, **kw})


def products(out: Path, ids: list[str]) -> dict[str, bytes]:
    return {i: (out / i / f"{i}.tif").read_bytes() for i in ids}


def test_failures_are_isolated_reruns_skip_and_fixed_rows_run_alone(
    client: Any, weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(4):
        write_pair(tmp_path / f"sc{i}", seed=i)
    good = [f"g{i},sc{i}/pan.tif;sc{i}/ms.tif,qb," for i in range(4)]
    broken = ["gone,sc9/pan.tif;sc9/ms.tif,qb,", "badmethod,sc0/pan.tif;sc0/ms.tif,qb,fusionnett"]
    m = manifest(tmp_path, good + broken, ",method")
    out = tmp_path / "out"
    engine = Engine(client, device="cpu")
    running: set[str] = set()
    in_flight: list[int] = []

    def on_event(kind: str, scene: str, info: dict[str, Any]) -> None:
        if kind == "start":
            running.add(scene)
            in_flight.append(len(running))
        elif kind in ("done", "failed"):
            running.discard(scene)

    res = run_batch(batch_cfg(m, out, weights, adapt="none"), engine=engine, on_event=on_event)
    assert max(in_flight) == 2  # two scenes at once on the one engine, never more
    assert sorted(res.done) == ["g0", "g1", "g2", "g3"] and res.exit_status == 1
    assert set(res.failed) == {"gone", "badmethod"}
    assert "Input file not found" in res.failed["gone"] and "sc9/pan.tif" in res.failed["gone"]
    assert (
        "fusionnett" in res.failed["badmethod"] and "scenes.csv line 7" in res.failed["badmethod"]
    )
    first = products(out, res.done)
    assert list((out / "g0").rglob("zarr.json"))  # without --clean-work the store stays
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("id,state,hqnr_none,hqnr_product") and len(summary) == 7
    assert "Input file not found" in (out / "summary.md").read_text()
    items = json.loads((out / "products.json").read_text())
    assert items["type"] == "FeatureCollection" and len(items["features"]) == 4
    props = items["features"][0]["properties"]
    assert props["proj:code"] == "EPSG:32631" and props["proj:shape"] == list(SHAPE)
    assert props["pantailor:method"] == "fusionnet" and len(props["pantailor:weights_sha256"]) == 64
    assert (out / "dask-performance.html").stat().st_size > 1000

    again = run_batch(batch_cfg(m, out, weights, adapt="none"), engine=engine)
    assert again.ran == [] and again.failed == res.failed and again.exit_status == 1
    assert products(out, res.done) == first

    write_pair(tmp_path / "sc9", seed=9)  # fix both rows
    m = manifest(
        tmp_path, [*good, broken[0], broken[1].replace("fusionnett", "fusionnet")], ",method"
    )
    argv = ["batch", str(m), "-o", str(out), "--weights", str(weights), "--adapt", "none",
            "--tile", "32", "--quality-tiles", "1", "--scheduler", client.scheduler.address,
            "--device", "cpu", "--steps", "2"]  # fmt: skip
    fixed = run_batch(batch_cfg(m, out, weights, adapt="none"), engine=engine)
    assert sorted(fixed.ran) == ["badmethod", "gone"] and fixed.exit_status == 0
    assert products(out, res.done) == first  # finished scenes untouched
    status = batch_status(out)
    assert status["totals"]["done"] == 6 and status["totals"]["failed"] == 0
    assert main([*argv, "--dry-run"]) == 0  # the CLI has no sample flags: other settings
    assert "6 changed" in capsys.readouterr().out


def test_changed_input_is_recomputed_and_nothing_else(
    client: Any, weights: Path, tmp_path: Path
) -> None:
    for i in range(2):
        write_pair(tmp_path / f"sc{i}", seed=i)
    m = manifest(tmp_path, [f"c{i},sc{i}/pan.tif;sc{i}/ms.tif,qb" for i in range(2)])
    out = tmp_path / "out"
    engine = Engine(client, device="cpu")
    cfg = batch_cfg(m, out, weights, adapt="none", quality_tiles=0, clean_work=True)
    assert run_batch(cfg, engine=engine).exit_status == 0
    assert not list((out / "c0").rglob("zarr.json"))  # --clean-work: no store left
    assert list((out / "c0").rglob("journal.json"))  # the journal stays
    before = products(out, ["c0", "c1"])
    mtime = (out / "c1" / "c1.tif").stat().st_mtime_ns
    time.sleep(0.01)
    write_pair(tmp_path / "sc0", seed=42)  # same paths, new content
    res = run_batch(cfg, engine=engine)
    assert res.plan["actions"] == {"changed": 1, "done": 1} and res.ran == ["c0"]
    after = products(out, ["c0", "c1"])
    assert after["c0"] != before["c0"] and after["c1"] == before["c1"]
    assert (out / "c1" / "c1.tif").stat().st_mtime_ns == mtime
    (out / "c1" / "c1.tif").unlink()  # a deleted product is made again
    res = run_batch(cfg, engine=engine)
    assert res.plan["actions"] == {"missing": 1, "done": 1} and res.ran == ["c1"]
    assert products(out, ["c1"])["c1"] == before["c1"]


def _cache_facts(client: Any) -> dict[str, tuple[int, dict[str, int]]]:
    """Per worker: identity of its plugin's model cache and what the cache loaded."""
    from workers.plugin import PLUGIN_NAME

    def facts(dask_worker: Any) -> tuple[int, dict[str, int]]:
        cache = dask_worker.plugins[PLUGIN_NAME].cache  # client.run has no task context
        return id(cache), dict(cache.loads)

    return client.run(facts)  # type: ignore[no-any-return]


def test_backbone_stays_loaded_in_workers_across_scenes(
    client: Any, weights: Path, tmp_path: Path
) -> None:
    for i in range(3):
        write_pair(tmp_path / f"sc{i}", seed=i)
    m = manifest(tmp_path, [f"t{i},sc{i}/pan.tif;sc{i}/ms.tif,qb" for i in range(3)])
    # other weights than the other tests' engines: this engine's plugin loads them fresh
    w = random_weights(tmp_path / "w2.pt", "fusionnet", 4, seed=5)
    seen: list[dict[str, tuple[int, dict[str, int]]]] = []

    def on_event(kind: str, scene: str, info: dict[str, Any]) -> None:
        if kind == "done" and not seen:
            seen.append(_cache_facts(client))

    res = run_batch(
        batch_cfg(m, tmp_path / "out", w, scenes_in_flight=1, quality_tiles=0),
        engine=Engine(client, device="cpu"),
        on_event=on_event,
    )
    assert res.exit_status == 0 and len(res.ran) == 3
    end = _cache_facts(client)
    for worker, (cache_id, loads) in end.items():
        assert cache_id == seen[0][worker][0]  # the same cache object after the first scene
        assert loads["backbone"] == 1  # loaded once per worker for the whole batch
    assert sum(loads.get("tailor", 0) for _, loads in end.values()) >= 3  # one tailor a scene


def _db_states(out: Path) -> dict[str, str]:
    if not (out / DB_NAME).is_file():
        return {}
    con = sqlite3.connect(f"file:{out / DB_NAME}?mode=ro", uri=True, timeout=10)
    try:
        return dict(con.execute("SELECT id, state FROM scenes").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        con.close()


def _journalled(out: Path, finished: set[str]) -> dict[str, int]:
    """Tiles recorded in the journals of unfinished scenes (the runner's resume record)."""
    counts = {}
    for j in out.rglob("journal.json"):
        scene = j.relative_to(out).parts[0]
        if scene not in finished:
            try:
                counts[scene] = len(json.loads(j.read_text()).get("tiles", {}))
            except (OSError, ValueError):  # being replaced right now
                continue
    return counts


def start_driver(tmp_path: Path, cfg: BatchConfig, client: Any) -> subprocess.Popen[bytes]:
    """``run_batch(cfg)`` in a driver subprocess on ``client``'s scheduler (to be killed)."""
    fields = {
        f.name: dict(v) if isinstance(v := getattr(cfg, f.name), Mapping) else v
        for f in dataclasses.fields(cfg)
    }
    script = tmp_path / "drive.py"
    script.write_text(
        "from pipeline.batch import BatchConfig, run_batch\n"
        "from workers.cluster import load_cluster_config\n"
        f"cfg = BatchConfig(**{fields!r})\n"
        "if __name__ == '__main__':\n"
        f"    run_batch(cfg, cluster=load_cluster_config(None, address={client.scheduler.address!r}, device='cpu'))\n"
    )
    return subprocess.Popen(
        [sys.executable, str(script)], cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_killed_driver_resumes_to_identical_products_without_redoing_finished_scenes(
    client: Any, weights: Path, tmp_path: Path
) -> None:
    ids = [f"k{i}" for i in range(4)]
    for i in range(4):
        write_pair(tmp_path / f"sc{i}", seed=i, shape=(96, 128))  # 12 tiles each
    m = manifest(tmp_path, [f"k{i},sc{i}/pan.tif;sc{i}/ms.tif,qb" for i in range(4)])
    engine = Engine(client, device="cpu")
    out = tmp_path / "out"
    # the reference: an uninterrupted batch at the same place (a COG names its run, and the run
    # key includes the output path), then removed
    assert run_batch(batch_cfg(m, out, weights), engine=engine).exit_status == 0
    reference = products(out, ids)
    shutil.rmtree(out)
    # the driver runs in a subprocess (the config of the reference, on the same scheduler)
    proc = start_driver(tmp_path, batch_cfg(m, out, weights, scenes_in_flight=1), client)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            states = _db_states(out)
            done = {i for i, st in states.items() if st == "done"}
            if done and max(_journalled(out, done).values(), default=0) >= 3:
                break  # one scene finished, the next one part-way through its tiles
            time.sleep(0.05)
        while_running = batch_status(out)  # status reads while the driver holds the DB
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
    at_kill = _db_states(out)
    finished = sorted(i for i, s in at_kill.items() if s == "done")
    assert 1 <= len(finished) < 4, (at_kill, proc.stderr.read() if proc.stderr else b"")
    assert while_running["totals"]["done"] >= 1 and while_running["running_driver"]
    stamps = {i: (out / i / f"{i}.tif").stat().st_mtime_ns for i in finished}
    journalled = _journalled(out, set(finished))
    assert max(journalled.values()) >= 3, journalled
    res = run_batch(batch_cfg(m, out, weights, scenes_in_flight=1), engine=engine)
    assert res.exit_status == 0 and sorted(res.done) == ids
    assert not set(res.ran) & set(finished)  # no finished scene recomputed
    assert set(res.plan["actions"]) <= {"done", "resume", "new"}
    assert {i: (out / i / f"{i}.tif").stat().st_mtime_ns for i in finished} == stamps
    assert products(out, ids) == reference  # byte-identical
    rows = BatchState.read(out).rows()
    for scene, n in journalled.items():  # no journalled tile computed again
        assert rows[scene].tiles_computed == (rows[scene].tiles or 0) - n, (scene, n)
