"""A running scheduler, started the way a multi-host deployment starts one.

``dask scheduler`` and two ``dask worker`` processes (``DASK_CONFIG`` = ``deploy/scheduler.yaml``
/ ``deploy/worker.yaml``, as the image uses them) on 127.0.0.1; ``pantailor run --scheduler``
joins them, one worker host is killed (its whole process group, nanny included) while tiles are
running, and the COG must still equal the local run's byte for byte.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clusters import (
    REPO,
    Procs,
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
                raise AssertionError("the run ended before a worker could be killed mid-run")
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
    assert out.read_bytes() == local_reference
