"""Real clusters for the tests: process groups, a synthetic GeoTIFF scene, a one-node SLURM.

Everything started here runs in its own process group (``start_new_session``) and is stopped
by :meth:`Procs.close` (SIGTERM, then SIGKILL of the whole group), which the fixtures call in
``finally`` so that no worker, scheduler or daemon outlives its test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
#: Step budget of the cluster runs' tailor fit. On the cluster scene a fit of 5 steps or fewer
#: keeps its initial (identity) tailor, whose product equals the backbone's: a tailor dropped on
#: the way to the workers would go unseen. 10 steps move the product by up to 16 DN on 3/4 of
#: the pixels (test_cluster_tailor.py asserts that the products tell fits apart).
FIT_STEPS = 10
SENSOR, TILE = "qb", 64
#: The scene and the run settings every cluster test uses (and the local reference run).
RUN_ARGS = ("--sensor", SENSOR, "--tile", str(TILE), "--steps", str(FIT_STEPS), "--json")
SCENE_PAN_YX = (256, 384)  # 4 x 6 = 24 tiles of 64 px


def tool(name: str) -> str:
    """A console script of this environment (``dask``, ``pantailor``), else the PATH's."""
    local = BIN / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def write_scene(folder: Path) -> tuple[Path, Path]:
    """A seeded synthetic QuickBird-like PAN/MS pair as georeferenced GeoTIFFs (UTM 33N)."""
    import rasterio
    from rasterio.transform import from_origin

    from pipeline.synthetic import make_scene

    syn = make_scene(SCENE_PAN_YX, SENSOR, seed=5)
    r, (b, h, w) = syn.sensor.ratio, syn.ms.shape
    pan, ms = folder / "pan.tif", folder / "ms.tif"
    common = {"driver": "GTiff", "dtype": "uint16", "crs": "EPSG:32633"}
    with rasterio.open(
        pan, "w", height=SCENE_PAN_YX[0], width=SCENE_PAN_YX[1], count=1,
        transform=from_origin(500000.0, 4200000.0, 0.6, 0.6), **common,
    ) as ds:  # fmt: skip
        ds.write(np.asarray(syn.pan, dtype=np.uint16), 1)
    with rasterio.open(
        ms, "w", height=h, width=w, count=b,
        transform=from_origin(500000.0, 4200000.0, 0.6 * r, 0.6 * r), **common,
    ) as ds:  # fmt: skip
        ds.write(np.asarray(syn.ms, dtype=np.uint16))
    return pan, ms


def in_process_product(
    pan: Path, ms: Path, *, adapt: str = "tailor", steps: int = FIT_STEPS, seed: int = 0
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """The product of ``pantailor run PAN MS <RUN_ARGS>`` computed in this process, no cluster.

    :mod:`pipeline.xr` fits the tailor on the same patches with the same seed as the run does
    and applies it tile by tile (``TILE``, same halo) with Dask's synchronous scheduler; the
    float32 DN are converted to the COG's uint16 as the export does. Returns the ``(B, H, W)``
    uint16 pixels and the fitted tailor's state dict (``None`` without a tailor).
    """
    import dask
    import rioxarray

    from pipeline import xr as pxr
    from pipeline.scene import to_dn

    pan_da, ms_da = rioxarray.open_rasterio(pan), rioxarray.open_rasterio(ms)
    with dask.config.set(scheduler="synchronous"):
        fitted = pxr.fit_scene(pan_da, ms_da, sensor=SENSOR, adapt_mode=adapt, seed=seed,
                               fit_fields={"steps": steps})  # fmt: skip
        dn = pxr.apply(fitted, pan_da, ms_da, tile=TILE).values
    tailor = getattr(fitted.model, "tailor", None)
    state = None if tailor is None else dict(tailor.state_dict())
    return to_dn(dn / fitted.dn_max, fitted.dn_max, "uint16"), state


def cog_pixels(path: Path) -> np.ndarray:
    """The ``(B, H, W)`` pixels of a COG."""
    import rasterio

    with rasterio.open(path) as ds:
        return ds.read()


def assert_product_of_the_tailor(out: Path, tailored: np.ndarray, untailored: np.ndarray) -> None:
    """``out`` (a run's COG) has the pixels of the in-process product with the same tailor.

    The failure says whether the product is the untailored one (the tailor was dropped on the way
    to the workers) or something else, with the largest difference in DN.
    """
    got = cog_pixels(out).astype(np.int64)
    if np.array_equal(got, tailored):
        return
    off = int(np.abs(got - tailored).max())
    if np.array_equal(got, untailored):
        raise AssertionError(f"{out.name} is the product WITHOUT the tailor (off by {off} DN): "
                             "the fitted tailor did not reach the workers")  # fmt: skip
    raise AssertionError(f"{out.name} differs from the in-process product by up to {off} DN")


def run_argv(pan: Path, ms: Path, out: Path, *extra: str) -> list[str]:
    """``pantailor run PAN MS <RUN_ARGS> -o OUT <extra>``."""
    return [tool("pantailor"), "run", str(pan), str(ms), *RUN_ARGS, "-o", str(out), *extra]


def summary_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The ``--json`` summary a finished ``pantailor run`` printed (asserting it succeeded)."""
    assert proc.returncode == 0, f"pantailor failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def wait_until(what: str, check: Callable[[], Any], timeout: float, poll: float = 0.1) -> Any:
    """Poll ``check()`` until it returns something truthy; fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def host_environ() -> dict[str, str]:
    """This process's environment as a fresh shell on another host would have it.

    A Dask nanny started earlier in the test session (an in-process LocalCluster) leaves its
    ``MALLOC_TRIM_THRESHOLD_`` in ``os.environ``; a process started on a real host never sees it.
    """
    return {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}


class Procs:
    """Subprocesses started in their own process groups, logged to files, always stopped."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.logs.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, **kw: Any
    ) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**host_environ(), **(env or {})},
            start_new_session=True,
            **kw,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def kill(self, name: str) -> None:
        """SIGKILL the process group of ``name``: the whole host dies, nanny included."""
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None

    def close(self) -> None:
        """SIGTERM every group, wait, then SIGKILL what is left (children included)."""
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        end = time.monotonic() + 15
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, end - time.monotonic()))
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group: also orphaned children
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


def read_scheduler_file(path: Path, procs: Procs, name: str, timeout: float = 60) -> str:
    """The address a ``dask scheduler --scheduler-file PATH`` wrote (fails if it died)."""

    def address() -> str | None:
        if not procs.alive(name):
            raise RuntimeError(f"{name} exited:\n{procs.log(name)[-3000:]}")
        if path.is_file():
            with contextlib.suppress(ValueError):
                return str(json.loads(path.read_text())["address"])
        return None

    addr: str = wait_until(f"{name} to write {path.name}", address, timeout)
    return addr


# --------------------------------------------------------------------------- one-node SLURM

SLURM_BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "munged")
SLURM_SETUP = REPO / "deploy" / "slurm" / "ci_setup.sh"


def slurm_missing() -> list[str]:
    return [b for b in SLURM_BINARIES if shutil.which(b) is None]


def _slurm_conf(root: Path, node: str, cpus: int, mem_mb: int, sock: Path) -> str:
    ports = free_port(), free_port()
    return f"""# one-node test cluster of tests/test_cluster_slurm.py (slurm 22.05)
ClusterName=pantailor-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ports[0]}
SlurmdPort={ports[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
# FORCE:4 lets up to 4 jobs share a core: the driver job and its worker jobs on a 2-core box
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


@contextlib.contextmanager
def one_node_slurm(procs: Procs) -> Iterator[dict[str, str]]:
    """munged, slurmctld and slurmd for this host; yields the environment for the clients.

    Everything lives in a fresh folder under /tmp (munged refuses sockets below folders that
    others cannot traverse, such as pytest's); jobs still queued at the end are cancelled.
    """
    root = Path(tempfile.mkdtemp(prefix="pantailor-slurm-"))
    root.chmod(0o755)
    for sub in ("state", "spool", "munge", "sock"):
        (root / sub).mkdir()
    (root / "munge").chmod(0o700)
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o600)
    sock = root / "sock" / "munge.socket"
    node = subprocess.run(["hostname", "-s"], capture_output=True, text=True, check=True)
    node_name = node.stdout.strip()
    mem_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.8)
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, node_name, os.cpu_count() or 1, mem_mb, sock))
    env = {"SLURM_CONF": str(conf)}
    try:
        procs.start("munged", ["munged", "-F", f"--socket={sock}", f"--key-file={key}",
                               f"--pid-file={root}/munge/munged.pid",
                               f"--seed-file={root}/munge/seed", f"--log-file={root}/munge/log"])  # fmt: skip
        wait_until("munged's socket", sock.exists, 20)
        procs.start("slurmctld", ["slurmctld", "-D", "-f", str(conf)], env)
        procs.start("slurmd", ["slurmd", "-D", "-f", str(conf)], env)

        def idle() -> bool:
            for name in ("slurmctld", "slurmd"):
                if not procs.alive(name):
                    raise RuntimeError(f"{name} exited:\n{procs.log(name)[-3000:]}")
            out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                                 env={**os.environ, **env})  # fmt: skip
            return out.stdout.strip() == "idle"

        wait_until("the SLURM node to be idle", idle, 60, poll=0.25)
        yield env
    finally:
        try:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(["scancel", "--full", "--user", str(os.getuid())],
                               env={**os.environ, **env}, timeout=10, check=False)  # fmt: skip
        finally:
            procs.close()
            shutil.rmtree(root, ignore_errors=True)


def squeue(env: Mapping[str, str], *fmt: str) -> list[list[str]]:
    """Rows of ``squeue -h -o FMT`` (one field per ``fmt`` item) on the test cluster."""
    out = subprocess.run(["squeue", "-h", "-o", "|".join(fmt)], capture_output=True, text=True,
                         env={**os.environ, **env}, check=True)  # fmt: skip
    return [line.split("|") for line in out.stdout.splitlines() if line.strip()]
