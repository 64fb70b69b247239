"""Run state that cannot lie (issue 9, items 1-4 and 9-12, 14), on a real LocalCluster.

Each test is named after what it checks and fails on the code before the fix: an output that is
an input, ``--overwrite`` deleting what the run did not create, two runs sharing one store mixing
their tiles, changed inputs not noticed, two concurrent runs of one output, stale locks, corrupt
journals, read-only output folders, errors that name options that do not exist, input errors
retried on every worker, the weights checked only after ingest, a failed run blocking the
corrected rerun, an interrupted export's temporary left behind, ingest options missing from
``run``. The scenes are tiny; the cluster is 2 worker processes x 1 thread.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from pipeline.cli import build_parser, main
from pipeline.distribute import Engine
from pipeline.errors import CheckpointError, ConfigError, InputError, PantailorError, StoreError
from pipeline.runner import RunConfig, RunPaths, run_scene
from pipeline.synthetic import make_scene
from tests.test_workers import random_weights, small_store

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dicnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_weights(tmp_path_factory.mktemp("w") / "dicnn.pt", "dicnn", 4)


def write_pair(folder: Path, seed: int = 3, shape: tuple[int, int] = (64, 96)) -> list[Path]:
    """A georeferenced QuickBird-like PAN/MS GeoTIFF pair (uint16, 11-bit)."""
    folder.mkdir(parents=True, exist_ok=True)
    syn = make_scene(shape, "qb", seed=seed)
    out = []
    for name, arr, px in (("pan", syn.pan[None], 0.5), ("ms", syn.ms, 2.0)):
        path = folder / f"{name}.tif"
        with rasterio.open(
            path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1],
            count=arr.shape[0], dtype=arr.dtype, crs=CRS.from_epsg(32631),
            transform=Affine(px, 0, 593_000.0, 0, -px, 5_747_000.0),
        ) as dst:  # fmt: skip
            dst.write(arr)
        out.append(path)
    return out


def files_cfg(inputs: list[Path], out: Path, **kw: Any) -> RunConfig:
    base: dict[str, Any] = {"sensor": "qb", "method": "brovey", "tile": 32, "quality_tiles": 0}
    return RunConfig(inputs=tuple(map(str, inputs)), output=str(out), **{**base, **kw})


def read_cog(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        data: np.ndarray = src.read()
    return data


def fit_calls(client: Any) -> int:
    from workers.scene_tasks import fit_calls as calls

    return sum(client.run(calls).values())


class Interrupt(Exception):
    pass


def stop_after(n: int) -> Any:
    def progress(stage: str, done: int, total: int) -> None:
        if stage == "infer" and done >= n:
            raise Interrupt

    return progress


# ----------------------------------------------------------------------------- 1: outputs vs inputs


@pytest.mark.parametrize("how", ["same path", "hard link"])
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(
    engine: Engine, tmp_path: Path, how: str
) -> None:
    pan, ms = write_pair(tmp_path / "in")
    before = pan.read_bytes()
    out = pan if how == "same path" else tmp_path / "out.tif"
    if how == "hard link":
        os.link(pan, out)
    with pytest.raises(ConfigError, match="is one of its inputs"):
        run_scene(files_cfg([pan, ms], out, overwrite=True), engine=engine)
    assert pan.read_bytes() == before


def test_overwrite_keeps_a_scene_store_the_run_did_not_create(
    engine: Engine, tmp_path: Path
) -> None:
    """``--work-dir .`` holding the user's own scene.zarr: the run refuses and keeps it."""
    pan, ms = write_pair(tmp_path / "in")
    work = tmp_path / "work"
    users = small_store(work / "scene.zarr", (64, 64), 32)
    cfg = files_cfg([pan, ms], tmp_path / "o.tif", work_dir=str(work), overwrite=True)
    with pytest.raises(StoreError, match="did not create"):
        run_scene(cfg, engine=engine)
    assert users.open(users.path).meta.pan_shape_yx == (64, 64)


def test_overwrite_keeps_the_journal_of_another_output(engine: Engine, tmp_path: Path) -> None:
    store = small_store(tmp_path / "s.zarr", (64, 64), 32)
    work = tmp_path / "shared-work"
    first = RunConfig(
        inputs=(str(store.path),), output=str(tmp_path / "a.tif"), method="brovey",
        work_dir=str(work), quality_tiles=0,
    )  # fmt: skip
    run_scene(first, engine=engine)
    journal = (work / "journal.json").read_text()
    second = RunConfig(**{**first.__dict__, "output": str(tmp_path / "b.tif"), "overwrite": True})
    with pytest.raises(StoreError, match="another output"):
        run_scene(second, engine=engine)
    assert (work / "journal.json").read_text() == journal and (tmp_path / "a.tif").is_file()


def test_overwrite_removes_what_the_run_created(engine: Engine, tmp_path: Path) -> None:
    pan, ms = write_pair(tmp_path / "in")
    cfg = files_cfg([pan, ms], tmp_path / "o.tif")
    first = run_scene(cfg, engine=engine)
    again = run_scene(files_cfg([pan, ms], tmp_path / "o.tif", overwrite=True), engine=engine)
    assert not again.get("already_complete") and again["infer"]["computed"] == 6
    assert (
        read_cog(tmp_path / "o.tif").tobytes() == read_cog(Path(first["outputs"]["cog"])).tobytes()
    )


# ----------------------------------------------------------------------------- 2: runs own outputs


def test_two_runs_on_one_store_never_mix_their_tiles(
    engine: Engine, dicnn: Path, tmp_path: Path
) -> None:
    """Kill run A mid-inference, run B (another method) on the same store, resume A: A's COG
    equals a clean run of A."""
    shared = small_store(tmp_path / "S.zarr", (96, 128), 32)
    clean = small_store(tmp_path / "clean.zarr", (96, 128), 32)

    def a_cfg(store: Path, out: str) -> RunConfig:
        return RunConfig(
            inputs=(str(store),), output=str(tmp_path / out), method="dicnn", weights=str(dicnn),
            adapt="none", quality_tiles=0,
        )  # fmt: skip

    with pytest.raises(Interrupt):
        run_scene(a_cfg(shared.path, "A.tif"), engine=engine, progress=stop_after(3))
    b = RunConfig(
        inputs=(str(shared.path),), output=str(tmp_path / "B.tif"), method="brovey",
        quality_tiles=0,
    )  # fmt: skip
    run_scene(b, engine=engine)
    resumed = run_scene(a_cfg(shared.path, "A.tif"), engine=engine)
    assert resumed["infer"]["skipped"] >= 3
    ref = run_scene(a_cfg(clean.path, "ref.tif"), engine=engine)
    assert read_cog(tmp_path / "A.tif").tobytes() == read_cog(tmp_path / "ref.tif").tobytes()
    assert resumed["outputs"]["array"] != ref["outputs"]["array"]  # one array per run


# ----------------------------------------------------------------------------- 3: changed inputs


def test_changed_inputs_at_the_same_paths_are_noticed_and_recomputed(
    engine: Engine, tmp_path: Path
) -> None:
    pan, ms = write_pair(tmp_path / "in", seed=3)
    out = tmp_path / "o.tif"
    run_scene(files_cfg([pan, ms], out), engine=engine)
    old = read_cog(out)
    os.utime(pan)  # touched, same bytes: still the same run
    assert run_scene(files_cfg([pan, ms], out), engine=engine)["already_complete"] is True
    write_pair(tmp_path / "in", seed=4)  # same names, same sizes, other pixels
    out.unlink()
    summary = run_scene(files_cfg([pan, ms], out), engine=engine)
    fresh_pair = write_pair(tmp_path / "fresh", seed=4)
    run_scene(files_cfg(fresh_pair, tmp_path / "fresh.tif"), engine=engine)
    new = read_cog(out)
    assert new.tobytes() != old.tobytes()
    assert new.tobytes() == read_cog(tmp_path / "fresh.tif").tobytes()
    assert summary["infer"]["computed"] == 6
    assert any(str(pan) in line for line in summary.get("inputs_changed", []))


# ----------------------------------------------------------------------------- 4: the lock


def test_a_second_concurrent_run_of_one_output_refuses_naming_the_holder(
    engine: Engine, tmp_path: Path
) -> None:
    store = small_store(tmp_path / "s.zarr", (96, 128), 32)
    cfg = RunConfig(
        inputs=(str(store.path),), output=str(tmp_path / "o.tif"), method="brovey",
        quality_tiles=0,
    )  # fmt: skip
    inside, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold(stage: str, done: int, total: int) -> None:
        if stage == "infer" and done >= 1 and not inside.is_set():
            inside.set()
            release.wait(60)

    def first() -> None:
        try:
            run_scene(cfg, engine=engine, progress=hold)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=first)
    t.start()
    try:
        assert inside.wait(60)
        with pytest.raises(PantailorError, match="Another run") as err:
            run_scene(cfg, engine=engine)
        assert f"pid {os.getpid()}" in str(err.value) and "started" in str(err.value)
    finally:
        release.set()
        t.join(120)
    assert not errors and (tmp_path / "o.tif").is_file()


def test_a_stale_lock_of_a_dead_process_is_taken_over(
    engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = small_store(tmp_path / "s.zarr", (64, 64), 32)
    cfg = RunConfig(
        inputs=(str(store.path),), output=str(tmp_path / "o.tif"), method="brovey",
        quality_tiles=0,
    )  # fmt: skip
    lock = RunPaths.of(cfg).lock
    code = (
        "import sys, time\nfrom pipeline.lock import RunLock\n"
        f"RunLock.acquire({str(lock)!r})\nprint('held', flush=True)\ntime.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(PantailorError, match=f"pid {holder.pid}"):
            run_scene(cfg, engine=engine)
    finally:
        holder.kill()
        holder.wait()
    with caplog.at_level(logging.WARNING, logger="pipeline.lock"):
        summary = run_scene(cfg, engine=engine)
    assert summary["infer"]["computed"] == 4 and not lock.exists()
    assert any("stale lock" in r.message and str(holder.pid) in r.message for r in caplog.records)


def test_two_runs_of_one_output_with_their_own_work_dirs_are_refused(
    engine: Engine, tmp_path: Path
) -> None:
    """The work-dir lock alone let a second run (``--work-dir`` of its own) export into the same
    ``-o`` and remove the first one's live temporaries (audit case 41): the output is locked."""
    from pipeline.lock import RunLock, output_lock

    store = small_store(tmp_path / "s.zarr", (64, 64), 32)
    cfg = RunConfig(
        inputs=(str(store.path),), output=str(tmp_path / "o.tif"), method="brovey",
        quality_tiles=0, work_dir=str(tmp_path / "w2"),
    )  # fmt: skip
    with RunLock.acquire(output_lock(tmp_path / "o.tif")):  # run 1, still writing o.tif
        with pytest.raises(PantailorError, match=r"the output o\.tif") as err:
            run_scene(cfg, engine=engine)
        assert f"pid {os.getpid()}" in str(err.value)
        assert not (tmp_path / "o.tif").exists() and not RunPaths.of(cfg).lock.exists()
    summary = run_scene(cfg, engine=engine)
    assert summary["infer"]["computed"] == 4 and (tmp_path / "o.tif").is_file()
    assert not output_lock(tmp_path / "o.tif").exists()


def test_a_lock_held_on_another_host_is_refused_with_the_fix(tmp_path: Path) -> None:
    from pipeline.lock import RunLock

    lock = tmp_path / "w" / "run.lock"
    lock.parent.mkdir()
    lock.write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": "then"}))
    with pytest.raises(PantailorError, match=r"host elsewhere, pid 1, started then.*delete"):
        RunLock.acquire(lock)
    assert lock.is_file()


# ----------------------------------------------------------------------------- 9-12, 14


def test_a_corrupt_journal_is_an_error_naming_the_file(
    client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = small_store(tmp_path / "s.zarr", (64, 64), 32)
    out = tmp_path / "o.tif"
    journal = RunPaths.of(RunConfig(inputs=(str(store.path),), output=str(out))).journal
    journal.parent.mkdir()
    journal.write_text('{"version": 1, "stages": {"ingest"')  # truncated
    argv = ["run", str(store.path), "--method", "brovey", "-o", str(out), "--scheduler",
            client.scheduler.address]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "not a pantailor journal" in err and str(journal) in err and "Traceback" not in err


def _immutable(folder: Path) -> bool:
    """Make ``folder`` unwritable even for root (chattr +i), else by mode; whether it worked."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
    else:
        subprocess.run(["chattr", "+i", str(folder)], check=False, capture_output=True)
    probe = folder / "probe"
    try:
        probe.write_bytes(b"")
    except OSError:
        return True
    probe.unlink()
    return False


def test_a_read_only_output_folder_is_refused_before_computing(
    client: Any, engine: Engine, tmp_path: Path
) -> None:
    store = small_store(tmp_path / "s.zarr", (64, 64), 32)
    ro = tmp_path / "ro"
    ro.mkdir()
    try:
        if not _immutable(ro):
            pytest.skip("cannot make a folder read-only here")
        before = fit_calls(client)
        cfg = RunConfig(inputs=(str(store.path),), output=str(ro / "o.tif"), method="brovey")
        with pytest.raises(StoreError, match="not writable"):
            run_scene(cfg, engine=engine)
        assert fit_calls(client) == before  # nothing computed
    finally:
        subprocess.run(["chattr", "-i", str(ro)], check=False, capture_output=True)
        ro.chmod(0o755)


def test_every_option_an_error_message_names_exists() -> None:
    """``--flag`` in any fix= text of pipeline/ and workers/ is an option of some subcommand."""
    parser = build_parser()
    known: set[str] = set()
    for action in parser._actions:  # the subcommands
        for sub in getattr(action, "choices", None) or {}:
            for a in action.choices[sub]._actions:  # type: ignore[index]
                known.update(a.option_strings)
    named: dict[str, str] = {}
    for path in [*REPO.glob("pipeline/**/*.py"), *REPO.glob("workers/*.py")]:
        text = path.read_text()
        for fix in re.findall(r"fix=(?:f?\"[^\"]*\"\s*)+", text):
            for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]+", fix):
                named[flag] = str(path.relative_to(REPO))
    missing = {f: p for f, p in named.items() if f not in known}
    assert named and not missing, missing


def test_a_fit_patch_larger_than_the_scene_is_refused_before_submission(
    client: Any, engine: Engine, dicnn: Path, tmp_path: Path
) -> None:
    store = small_store(tmp_path / "s.zarr", (64, 64), 32)
    before = fit_calls(client)
    cfg = RunConfig(
        inputs=(str(store.path),), output=str(tmp_path / "o.tif"), method="dicnn",
        weights=str(dicnn), sample={"patch": 128},
    )  # fmt: skip
    with pytest.raises(InputError, match="--fit-patch"):
        run_scene(cfg, engine=engine)
    assert fit_calls(client) == before


def test_an_input_error_on_a_worker_is_raised_once_not_retried(
    client: Any, engine: Engine, tmp_path: Path
) -> None:
    from pipeline.jobs import ClassicalTileTask

    store = small_store(tmp_path / "s.zarr", (64, 64), 32)
    store.create_output("x")
    coeffs = tmp_path / "coefficients.json"
    coeffs.write_text("{}")
    key = next(iter(store.grid.keys()))
    task = ClassicalTileTask(
        store=str(store.path), output="x", key=key, method="brovey",
        coefficients=str(coeffs), sha256="0" * 64,
    )  # fmt: skip
    with pytest.raises(StoreError, match="changed since the fit"):
        list(engine.infer_tiles([task]))
    logs = client.get_worker_logs()
    failed = [m for lines in logs.values() for _, m in lines if "changed since the fit" in m]
    assert failed == []  # no worker logged a failed attempt (4 identical tracebacks before)


def test_dry_run_checks_the_weights(dicnn: Path, tmp_path: Path) -> None:
    store = small_store(tmp_path / "s.zarr", (64, 64), 32)
    cfg = RunConfig(
        inputs=(str(store.path),), output=str(tmp_path / "o.tif"), method="fusionnet",
        weights=str(dicnn), dry_run=True,
    )  # fmt: skip
    with pytest.raises(CheckpointError, match="does not fit fusionnet"):
        run_scene(cfg)
    assert not (tmp_path / "o.work").exists()


def test_the_weights_are_checked_before_ingest(engine: Engine, tmp_path: Path) -> None:
    pan, ms = write_pair(tmp_path / "in")
    cfg = files_cfg([pan, ms], tmp_path / "o.tif", method="pnn", weights=str(tmp_path / "no.pt"))
    with pytest.raises(CheckpointError):
        run_scene(cfg, engine=engine)
    assert not RunPaths.of(cfg).store.exists()


def test_a_failed_run_never_blocks_the_corrected_rerun(engine: Engine, tmp_path: Path) -> None:
    pan, ms = write_pair(tmp_path / "in")
    out = tmp_path / "o.tif"
    with pytest.raises(Interrupt):
        run_scene(files_cfg([pan, ms], out, method="gsa"), engine=engine, progress=stop_after(1))
    store_meta = RunPaths.of(files_cfg([pan, ms], out)).store / "zarr.json"
    ingested = store_meta.stat().st_mtime_ns
    summary = run_scene(files_cfg([pan, ms], out, method="brovey"), engine=engine)
    assert summary["method"] == "brovey" and summary["infer"]["computed"] == 6 and out.is_file()
    assert store_meta.stat().st_mtime_ns == ingested  # same inputs: the store is kept
    assert "ingest" not in summary["timings"]


def test_an_interrupted_exports_temporaries_are_removed_by_the_rerun(
    engine: Engine, tmp_path: Path
) -> None:
    store = small_store(tmp_path / "s.zarr", (64, 64), 32)
    out = tmp_path / "o.tif"
    left = [tmp_path / ".o.tif.1a2b3c4d.stage.tif", tmp_path / ".o.tif.1a2b3c4d.partial.tif"]
    for p in left:
        p.write_bytes(b"half a GeoTIFF")
    other = tmp_path / ".other.tif.1a2b3c4d.stage.tif"  # another output's: kept
    other.write_bytes(b"x")
    cfg = RunConfig(inputs=(str(store.path),), output=str(out), method="brovey", quality_tiles=0)
    run_scene(cfg, engine=engine)
    assert out.is_file() and not any(p.exists() for p in left) and other.exists()


def test_run_accepts_every_ingest_option(
    client: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.store import SceneStore

    pan, ms = write_pair(tmp_path / "in")
    out = tmp_path / "o.tif"
    argv = ["run", str(pan), str(ms), "--sensor", "qb", "--method", "brovey", "-o", str(out),
            "--tile", "32", "--dn-max", "4095", "--nodata", "1", "--ms-decimate", "1",
            "--scheduler", client.scheduler.address, "--json"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    meta = SceneStore.open(summary["scene"]).meta
    assert (meta.dn_max, meta.nodata) == (4095.0, 1.0) and out.is_file()
    sensors = tmp_path / "sensors.yaml"
    sensors.write_text(
        "qbx:\n  title: QB copy\n  bands: [blue, green, red, nir]\n  rgb: [2, 1, 0]\n"
        "  ratio: 4\n  bit_depth: 11\n  mtf_ms: [0.34, 0.32, 0.3, 0.22]\n  mtf_pan: 0.15\n"
    )
    dry = ["run", str(pan), str(ms), "--sensor", "qbx", "--sensor-file", str(sensors),
           "--method", "brovey", "-o", str(tmp_path / "x.tif"), "--dry-run", "--json"]  # fmt: skip
    assert main(dry) == 0
    assert json.loads(capsys.readouterr().out)["sensor"] == "qbx"


# ----------------------------------------------------------------------------- export publishing


@pytest.fixture
def exportable(tmp_path: Path) -> Path:
    """A store with a written output array ``x`` (values in [0, 1])."""
    from pipeline.grid import Window

    store = small_store(tmp_path / "s.zarr", (64, 64), 32)
    store.create_output("x")
    rng = np.random.default_rng(0)
    store.write_region("x", Window(0, 64, 0, 64), rng.random((4, 64, 64), dtype=np.float32))
    store.mark_complete("x")
    return store.path


def _leftovers(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f".{name}.*"))


@pytest.mark.parametrize("where", ["during the COG copy", "after the COG copy"])
def test_a_failed_export_leaves_no_output_and_no_temporaries(
    exportable: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    import rasterio.shutil

    from pipeline.export import export_cog

    out = tmp_path / "o.tif"
    out.write_bytes(b"the previous product")

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("injected failure")

    if where == "during the COG copy":
        monkeypatch.setattr(rasterio.shutil, "copy", boom)
    else:
        real_copy = rasterio.shutil.copy

        def copy_then_fail_rename(*args: Any, **kwargs: Any) -> None:
            real_copy(*args, **kwargs)
            monkeypatch.setattr(os, "replace", boom)

        monkeypatch.setattr(rasterio.shutil, "copy", copy_then_fail_rename)
    with pytest.raises((OSError, StoreError), match="injected"):  # a write error: named
        export_cog(exportable, "x", out, overwrite=True)
    monkeypatch.undo()
    assert out.read_bytes() == b"the previous product"  # never half replaced
    assert _leftovers(tmp_path, "o.tif") == []


def test_the_cog_is_published_by_renaming_the_file_written(
    exportable: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The product is the very file the COG copy wrote (same inode), renamed: never a copy that
    a reader could see half written."""
    import rasterio.shutil

    from pipeline.export import export_cog

    written: list[int] = []
    real_copy = rasterio.shutil.copy

    def recording_copy(src: Any, dst: Any, **kwargs: Any) -> None:
        real_copy(src, dst, **kwargs)
        written.append(Path(dst).stat().st_ino)

    monkeypatch.setattr(rasterio.shutil, "copy", recording_copy)
    out = export_cog(exportable, "x", tmp_path / "o.tif")
    assert written == [Path(out).stat().st_ino]
    assert _leftovers(tmp_path, "o.tif") == []


def test_an_atomic_write_that_fails_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    from pipeline.files import write_atomic, write_json_atomic

    target = write_json_atomic(tmp_path / "j.json", {"a": 1})

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text('{"a": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, half_then_fail)
    assert json.loads(target.read_text()) == {"a": 1}
    assert _leftovers(tmp_path, "j.json") == []


def test_planning_imports_neither_torch_nor_distributed() -> None:
    """``pipeline.runner`` (RunConfig, plan of a classical run) stays light: the batch planner and
    the CLI import it without starting torch or distributed."""
    code = (
        "import sys\nimport pipeline, pipeline.runner, pipeline.cli\n"
        "print(sorted(m for m in ('torch', 'distributed') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
