"""A running scheduler, started the way a multi-host deployment starts one.

``dask scheduler`` and two ``dask worker`` processes (``DASK_CONFIG`` = ``deploy/scheduler.yaml``
/ ``deploy/worker.yaml``, as the image uses them) on 127.0.0.1; ``pantailor run --scheduler``
joins them, one worker host is killed (its whole process group, nanny included) while tiles are
running, and the COG must still equal the local run's byte for byte. ``pantailor batch
--scheduler`` of a two-scene manifest on the same deployment writes the same COGs as a local batch
and as ``pantailor run``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clusters import (
    REPO,
    RUN_ARGS,
    Procs,
    assert_product_of_the_tailor,
    read_scheduler_file,
    run_argv,
    summary_of,
    tool,
    wait_until,
)

pytestmark = pytest.mark.slow

SCHEDULER_ENV = {"DASK_CONFIG": str(REPO / "deploy" / "scheduler.yaml")}
WORKER_ENV = {"DASK_CONFIG": str(REPO / "deploy" / "worker.yaml")}


@pytest.fixture
def running_scheduler(tmp_path: Path) -> Iterator[tuple[str, Procs]]:
    """``tcp://127.0.0.1:PORT`` of a ``dask scheduler`` with workers ``worker0``, ``worker1``."""
    procs = Procs(tmp_path / "logs")
    try:
        file = tmp_path / "scheduler.json"
        procs.start("scheduler", [tool("dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                                  "--no-dashboard", "--scheduler-file", str(file)],
                    SCHEDULER_ENV)  # fmt: skip
        address = read_scheduler_file(file, procs, "scheduler")
        for i in range(2):
            procs.start(f"worker{i}", [tool("dask"), "worker", address, "--name", f"worker{i}",
                                       "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard",
                                       "--memory-limit", "2GiB"], WORKER_ENV)  # fmt: skip
        yield address, procs
    finally:
        procs.close()


def test_run_on_a_running_scheduler_survives_a_worker_host_killed_mid_run(
    running_scheduler: tuple[str, Procs],
    cluster_scene: tuple[Path, Path],
    local_reference: bytes,
    in_process: dict[str, Any],
    tmp_path: Path,
) -> None:
    from distributed import Client

    address, procs = running_scheduler
    out, log = tmp_path / "sched.tif", tmp_path / "run.log"
    with Client(address, timeout="30s") as client:
        client.wait_for_workers(2, timeout=120)
        # deploy/worker.yaml drops distributed's MALLOC_TRIM_THRESHOLD_ (3-4x slower fits)
        env = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_", "unset"))
        assert list(env.values()) == ["unset", "unset"]
        names = {a: w["name"] for a, w in client.scheduler_info(n_workers=-1)["workers"].items()}

        def tile_progress(dask_scheduler: Any) -> tuple[int, list[str]]:
            """(tiles finished, workers running a tile now), inside the scheduler process."""
            from dask.utils import key_split

            prefix = dask_scheduler.task_prefixes.get("infer-tile")
            done = prefix.state_counts["memory"] if prefix is not None else 0
            busy = [
                ws.address
                for ws in dask_scheduler.workers.values()
                if any(key_split(ts.key) == "infer-tile" for ts in ws.processing)
            ]
            return done, busy  # a nested function: pickled by value for the scheduler

        def progress() -> tuple[int, list[str]] | None:
            if run.poll() is not None:  # fail fast instead of waiting out the timeout
                raise AssertionError(
                    "the run ended before a worker could be killed mid-run:\n"
                    + log.read_text()[-3000:]
                )
            done, busy = client.run_on_scheduler(tile_progress)
            return (done, busy) if done >= 1 and busy else None

        with open(tmp_path / "run.json", "w") as stdout, open(log, "w") as stderr:
            run = subprocess.Popen(
                run_argv(*cluster_scene, out, "--scheduler", address), stdout=stdout, stderr=stderr
            )
            try:
                done, busy = wait_until("a tile running after the first tile finished",
                                        progress, timeout=240, poll=0.05)  # fmt: skip
                victim = str(names[busy[0]])
                procs.kill(victim)  # SIGKILL of the host's process group, tile in flight
                rc = run.wait(timeout=300)
            finally:
                if run.poll() is None:
                    run.kill()
                    run.wait()
        survivors = [w["name"] for w in client.scheduler_info(n_workers=-1)["workers"].values()]
    result = subprocess.CompletedProcess(run.args, rc, (tmp_path / "run.json").read_text(),
                                         log.read_text())  # fmt: skip
    summary = summary_of(result)
    assert 1 <= done < 24, done  # killed mid-run: tiles were finished and tiles were left
    assert victim not in survivors and len(survivors) == 1, survivors
    assert summary["infer"]["computed"] == 24
    assert_product_of_the_tailor(out, in_process["tailored"], in_process["untailored"])
    assert out.read_bytes() == local_reference


def _flipped_copy(pan: Path, ms: Path, folder: Path) -> tuple[Path, Path]:
    """A second, different scene on the same grid: ``pan`` and ``ms`` flipped left-right."""
    import rasterio

    folder.mkdir()
    copies = []
    for src in (pan, ms):
        with rasterio.open(src) as f:
            profile, data = f.profile, f.read()
        with rasterio.open(folder / src.name, "w", **profile) as f:
            f.write(data[:, :, ::-1])
        copies.append(folder / src.name)
    return copies[0], copies[1]


def test_batch_on_a_running_scheduler_equals_a_local_batch_and_run(
    running_scheduler: tuple[str, Procs],
    cluster_scene: tuple[Path, Path],
    local_reference: bytes,
    in_process: dict[str, Any],
    tmp_path: Path,
) -> None:
    address, _ = running_scheduler
    scenes = {"a": cluster_scene, "b": _flipped_copy(*cluster_scene, tmp_path / "b")}
    manifest = tmp_path / "archive.csv"
    manifest.write_text(
        "id,inputs\n" + "".join(f"{k},{pan};{ms}\n" for k, (pan, ms) in scenes.items())
    )
    settings = (*(a for a in RUN_ARGS if a != "--json"), "--quality-tiles", "1")
    products = {}
    for where, extra in (("local", ("--workers", "2")), ("sched", ("--scheduler", address))):
        argv = [tool("pantailor"), "batch", str(manifest), "-o", str(tmp_path / where),
                *settings, *extra, "--json"]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert sorted(json.loads(proc.stdout)["done"]) == ["a", "b"]
        products[where] = {k: (tmp_path / where / k / f"{k}.tif").read_bytes() for k in scenes}
    from distributed import Client

    with Client(address, timeout="30s") as client:  # the tiles did run on that scheduler
        prefixes = client.run_on_scheduler(
            lambda dask_scheduler: list(dask_scheduler.task_prefixes)
        )
    assert "infer-tile" in prefixes, prefixes
    assert products["sched"] == products["local"]  # byte-identical COGs, scene by scene
    assert products["sched"]["a"] != products["sched"]["b"]
    assert products["sched"]["a"] == local_reference  # and what `pantailor run` writes
    assert_product_of_the_tailor(
        tmp_path / "sched" / "a" / "a.tif", in_process["tailored"], in_process["untailored"]
    )
