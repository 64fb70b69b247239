"""SLURM for real: a one-node cluster (munged, slurmctld, slurmd) on this host. The driver job
``deploy/slurm/run_scene.sbatch`` runs ``pantailor run --cluster-config deploy/slurm/cluster.yaml``,
whose workers are SLURM jobs submitted by dask-jobqueue from inside the driver job; the product
equals the local run byte for byte. (One end-to-end run covers both: a second one straight from
the test process took another 30 s of CI and proved nothing more.)

SLURM and MUNGE are installed by ``deploy/slurm/ci_setup.sh`` where they are missing and this
is root with apt-get (Debian); elsewhere the module skips with the reason, except in CI
(``CI=true``), where it fails instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clusters import (
    REPO,
    RUN_ARGS,
    SENSOR,
    SLURM_SETUP,
    Procs,
    assert_product_of_the_tailor,
    one_node_slurm,
    slurm_missing,
    squeue,
    summary_of,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

CONFIG = REPO / "deploy" / "slurm" / "cluster.yaml"
SBATCH = REPO / "deploy" / "slurm" / "run_scene.sbatch"


def _install_or_skip(missing: list[str]) -> None:
    if os.geteuid() == 0 and shutil.which("apt-get"):
        proc = subprocess.run(["bash", str(SLURM_SETUP)], capture_output=True, text=True,
                              timeout=900, check=False)  # fmt: skip
        if proc.returncode == 0 and not slurm_missing():
            return
        reason = f"{SLURM_SETUP.name} failed ({proc.returncode}): {proc.stderr[-2000:]}"
    else:
        reason = (f"SLURM is not installed ({', '.join(missing)} missing) and cannot be "
                  f"installed here (needs root and apt-get): run {SLURM_SETUP} as root")  # fmt: skip
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment (``SLURM_CONF``) of a running one-node SLURM cluster."""
    missing = slurm_missing()
    if missing:
        _install_or_skip(missing)
    with one_node_slurm(Procs(tmp_path_factory.mktemp("slurm-logs"))) as env:
        yield env


class JobWatch:
    """Records every job ``squeue`` shows (id -> name, state) while a run is going on."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env, self._stop = env, threading.Event()
        self.seen: dict[str, tuple[str, str]] = {}
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            for job, name, state in squeue(self.env, "%i", "%j", "%T"):
                if self.seen.get(job, ("", ""))[1] != "RUNNING":
                    self.seen[job] = (name, state)
            time.sleep(0.2)

    def __enter__(self) -> JobWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def running(self, name: str) -> set[str]:
        return {j for j, (n, s) in self.seen.items() if n == name and s == "RUNNING"}


def test_workers_are_slurm_jobs_started_without_malloc_trim_threshold(
    slurm: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.cluster import connect, load_cluster_config

    monkeypatch.setenv("SLURM_CONF", slurm["SLURM_CONF"])
    monkeypatch.chdir(tmp_path)  # the jobs' slurm-*.out files land here
    with connect(load_cluster_config(CONFIG)) as client:
        client.wait_for_workers(2, timeout=120)
        jobs = squeue(slurm, "%j", "%T")
        env = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_", "unset"))
    assert jobs == [["dask-worker", "RUNNING"]] * 2
    assert list(env.values()) == ["unset", "unset"]  # the nanny dropped distributed's setting
    wait_until("the worker jobs to end", lambda: not squeue(slurm, "%i"), 60)


def test_driver_job_runs_the_slurm_config_and_equals_the_local_run(
    slurm: dict[str, str],
    cluster_scene: tuple[Path, Path],
    local_reference: bytes,
    in_process: dict[str, Any],
    tmp_path: Path,
) -> None:
    pan, ms = cluster_scene
    out = tmp_path / "driver.tif"
    extra = [a for a in RUN_ARGS if a not in ("--sensor", SENSOR, "--json")]
    env = {**os.environ, **slurm, "PAN": str(pan), "MS": str(ms), "SENSOR": SENSOR,
           "OUT": str(out), "PANTAILOR_VENV": sys.prefix, "CLUSTER_CONFIG": str(CONFIG),
           "PANTAILOR_ARGS": " ".join(extra)}  # fmt: skip
    log = tmp_path / "driver.out"
    with JobWatch(slurm) as watch:
        job = subprocess.run(
            ["sbatch", "--parsable", f"--chdir={tmp_path}", f"--output={log}", str(SBATCH)],
            capture_output=True, text=True, env=env, check=True,
        ).stdout.strip()  # fmt: skip
        wait_until("the driver job to finish",
                   lambda: [job] not in squeue(slurm, "%i"), 400, poll=0.5)  # fmt: skip
    assert job in watch.running("pantailor-driver"), watch.seen
    assert len(watch.running("dask-worker")) == 2, watch.seen  # submitted from inside the job
    summary_file = tmp_path / "driver.summary.json"
    text = summary_file.read_text() if summary_file.is_file() else ""
    assert text.strip(), log.read_text(errors="replace")[-3000:]  # the job's own log
    result = subprocess.CompletedProcess([], 0, text, "")
    summary = summary_of(result)
    assert summary["infer"]["computed"] == 24 and summary["infer"]["workers_used"] == 2
    assert_product_of_the_tailor(out, in_process["tailored"], in_process["untailored"])
    assert out.read_bytes() == local_reference
    wait_until("the worker jobs to be cancelled", lambda: not squeue(slurm, "%i"), 60)
