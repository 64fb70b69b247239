"""Make the Dask cluster from configuration: the same code on a laptop and on a cluster.

``kind`` selects where workers run:

``local``
    A :class:`distributed.LocalCluster` of worker *processes* (the embedded default).
``local-cuda``
    dask-cuda's ``LocalCUDACluster``: one worker process per visible GPU, each declaring the
    resource ``GPU=1`` (``pip install 'pantailor[gpu]'``).
``address``
    An existing scheduler (``tcp://host:8786``, or ``tls://host:8786`` with a ``security:``
    section); nothing is started.
``slurm``
    dask-jobqueue's ``SLURMCluster`` built from the ``slurm:`` section
    (``pip install 'pantailor[slurm]'``).
``kubernetes``
    dask-kubernetes' operator ``KubeCluster`` built from the ``kubernetes:`` section
    (``pip install 'pantailor[kubernetes]'``).
``auto``
    ``local-cuda`` where GPUs are visible and dask-cuda is installed, else ``local``.

Defaults live in ``workers/defaults.yaml``; a user YAML file overrides any key, keyword
overrides (the CLI flags) override both (checked in :mod:`workers.cluster_config`). Workers that
pantailor does not spawn itself (SLURM jobs, Kubernetes pods) get the environment of
:func:`nanny_environ_override`; each deployment is started for real or validated offline by
``tests/test_cluster_*.py``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import shlex
import time
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from pipeline.errors import ClusterError, ConfigError, MissingDependencyError

from .cluster_config import DEFAULTS_FILE, KINDS, ClusterConfig, load_cluster_config
from .device import cuda_count

log = logging.getLogger(__name__)

GPU_RESOURCE = "GPU"
_EXTRAS = {"dask_cuda": "gpu", "dask_jobqueue": "slurm", "dask_kubernetes": "kubernetes"}


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def require(module: str) -> Any:
    """Import an optional dependency or raise the exact install command."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = _EXTRAS.get(module.split(".")[0], "dev")
        raise MissingDependencyError(
            f"The optional dependency {module.split('.')[0]} is not installed.",
            expected=f"{module} importable",
            got=str(exc),
            fix=f"pip install 'pantailor[{extra}]'",
        ) from exc


def resolve_kind(cfg: ClusterConfig) -> str:
    """The concrete kind ``auto`` stands for on this machine."""
    if cfg.kind != "auto":
        return cfg.kind
    if cfg.device != "cpu" and cuda_count() > 0:
        if _has_module("dask_cuda"):
            return "local-cuda"
        log.warning(
            "GPUs are visible but dask-cuda is not installed; using CPU worker processes "
            "(pip install 'pantailor[gpu]' for one worker per GPU)"
        )
    return "local"


def security(cfg: ClusterConfig) -> Any:
    """The :class:`distributed.Security` of ``cfg``'s ``security:`` section (``None``: plain TCP).

    One certificate and key serve every role (client, scheduler and workers of a cluster that
    pantailor starts), all verified against ``tls_ca_file``; encryption is required.
    """
    if not cfg.security:
        return None
    from distributed import Security

    ca, cert, key = (cfg.security[k] for k in ("tls_ca_file", "tls_client_cert", "tls_client_key"))
    roles = {
        f"tls_{r}_{p}": v
        for r in ("client", "scheduler", "worker")
        for p, v in (("cert", cert), ("key", key))
    }
    return Security(require_encryption=True, tls_ca_file=ca, **roles)


def local_kwargs(cfg: ClusterConfig) -> dict[str, Any]:
    """Arguments of :class:`distributed.LocalCluster` (worker processes)."""
    n = cfg.n_workers or max(1, (os.cpu_count() or 1) // cfg.threads_per_worker)
    kwargs = {
        "n_workers": n,
        "threads_per_worker": cfg.threads_per_worker,
        "processes": True,
        "memory_limit": cfg.memory_limit or 0,
        "dashboard_address": cfg.dashboard_address,
        "silence_logs": logging.WARNING,
    }
    if cfg.security:
        kwargs.update(security=security(cfg), protocol="tls://", host="127.0.0.1")
    return kwargs


def nanny_environ_override() -> dict[str, str]:
    """The environment that makes a ``dask worker`` nanny drop ``MALLOC_TRIM_THRESHOLD_``.

    For workers pantailor does not spawn itself (SLURM jobs, Kubernetes pods): Dask reads the
    variable as configuration, and a ``None`` entry of ``pre-spawn-environ`` is not set in the
    worker process (see :func:`torch_friendly_worker_environ` for why it matters).
    """
    return {"DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON": repr({"MALLOC_TRIM_THRESHOLD_": None})}


def slurm_kwargs(cfg: ClusterConfig) -> tuple[dict[str, Any], int]:
    """``(SLURMCluster arguments, number of jobs)`` from the ``slurm:`` section."""
    s = dict(cfg.slurm)
    jobs = int(s.pop("jobs", 1))
    gpus = int(s.pop("gpus_per_job", 0))
    processes = int(s.get("processes", 1))
    cores = int(s.get("cores", cfg.threads_per_worker * processes))
    extra = list(s.pop("job_extra_directives", []) or [])
    worker_args = list(s.pop("worker_extra_args", []) or [])
    prologue = list(s.pop("job_script_prologue", []) or [])
    prologue += [f"export {k}={shlex.quote(v)}" for k, v in nanny_environ_override().items()]
    if _injected_malloc_trim():  # sbatch exports the driver's environment: drop Dask's copy
        prologue.append("unset MALLOC_TRIM_THRESHOLD_")
    if gpus:
        extra.append(f"--gres=gpu:{gpus}")
        worker_args += ["--resources", f"{GPU_RESOURCE}=1"]
    kwargs = {k: v for k, v in s.items() if v not in (None, [], "")}
    kwargs["job_script_prologue"] = prologue
    kwargs.update(cores=cores, processes=processes)
    if extra:
        kwargs["job_extra_directives"] = extra
    if worker_args:
        kwargs["worker_extra_args"] = worker_args
    return kwargs, jobs


def kubernetes_kwargs(cfg: ClusterConfig) -> dict[str, Any]:
    """Arguments of dask-kubernetes' ``make_cluster_spec`` from the ``kubernetes:`` section."""
    k = dict(cfg.kubernetes)
    env = dict(k.get("env", {}) or {})
    cpu, memory, gpus = str(k.get("cpu", "2")), str(k.get("memory", "8Gi")), int(k.get("gpus", 0))
    limits: dict[str, str] = {"cpu": cpu, "memory": memory}
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    command = ["dask-worker", "--nthreads", str(cfg.threads_per_worker)]
    if gpus:
        command += ["--resources", f"{GPU_RESOURCE}=1"]
    return {
        "name": str(k.get("name", "pantailor")),
        "image": str(k.get("image", "pantailor:latest")),
        "n_workers": int(k.get("n_workers", 2)),
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": limits},
        "env": {**nanny_environ_override(), **{str(n): str(v) for n, v in env.items()}},
        "worker_command": command,
    }


def add_kubernetes_volumes(spec: dict[str, Any], cfg: ClusterConfig) -> dict[str, Any]:
    """Mount the ``kubernetes:`` section's ``volumes`` (Kubernetes ``Volume`` objects) at its
    ``volume_mounts`` in the scheduler and worker pods of a ``DaskCluster`` spec, in place.

    ``make_cluster_spec`` has no volumes, yet the workers must reach the scene store.
    """
    volumes = list(cfg.kubernetes.get("volumes") or [])
    mounts = list(cfg.kubernetes.get("volume_mounts") or [])
    if volumes or mounts:
        for role in ("scheduler", "worker"):
            pod = spec["spec"][role]["spec"]
            pod["volumes"] = volumes
            for container in pod["containers"]:
                container["volumeMounts"] = mounts
    return spec


def _injected_malloc_trim() -> bool:
    """Whether this process holds the ``MALLOC_TRIM_THRESHOLD_`` a Dask nanny put there."""
    import dask

    environ = dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {}
    injected = environ.get("MALLOC_TRIM_THRESHOLD_")
    return injected is not None and os.environ.get("MALLOC_TRIM_THRESHOLD_") == str(injected)


@contextlib.contextmanager
def torch_friendly_worker_environ() -> Iterator[None]:
    """Spawn nanny workers without distributed's ``MALLOC_TRIM_THRESHOLD_``.

    distributed sets ``MALLOC_TRIM_THRESHOLD_=65536`` in every worker it spawns, which also turns
    off glibc's dynamic mmap threshold: each large torch buffer is then mmapped and unmapped per
    use, and the tailor's fit ran 3-4x slower in a worker than in a plain process (3.3 s vs
    12 s for the default 512² fit; reproduced in one process by setting that variable). The
    other pre-spawn variables (one OpenMP/BLAS thread; the thread policy raises torch's count)
    are kept.
    """
    import dask

    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    injected = environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    # a nanny started earlier in this process (e.g. a plain LocalCluster) copied the variable into
    # os.environ, from where every later worker would inherit it; a user's own value stays
    if injected is not None and os.environ.get("MALLOC_TRIM_THRESHOLD_") == str(injected):
        del os.environ["MALLOC_TRIM_THRESHOLD_"]
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        yield


def make_cluster(cfg: ClusterConfig | None = None, **overrides: Any) -> Any:
    """Start the cluster ``cfg`` describes; ``None`` for ``kind="address"`` (nothing to start).

    Raises
    ------
    MissingDependencyError
        With the exact ``pip install 'pantailor[...]'`` command for an optional backend.
    ClusterError
        If the cluster cannot be started.
    """
    cfg = replace(cfg, **overrides) if cfg is not None else load_cluster_config(**overrides)
    kind = resolve_kind(cfg)
    log.info("starting a %s cluster", kind)
    try:
        if kind == "address":
            return None
        if kind == "local":
            from distributed import LocalCluster

            with torch_friendly_worker_environ():
                return LocalCluster(**local_kwargs(cfg))
        if kind == "local-cuda":
            mod = require("dask_cuda")
            kw = local_kwargs(cfg)
            kw["n_workers"] = cfg.n_workers or cuda_count() or None
            with torch_friendly_worker_environ():
                return mod.LocalCUDACluster(**kw, resources={GPU_RESOURCE: 1})
        if kind == "slurm":
            kwargs, jobs = slurm_kwargs(cfg)
            cluster = require("dask_jobqueue").SLURMCluster(**kwargs)
            cluster.scale(jobs=jobs)
            return cluster
        op = require("dask_kubernetes.operator")
        spec = add_kubernetes_volumes(op.make_cluster_spec(**kubernetes_kwargs(cfg)), cfg)
        return op.KubeCluster(custom_cluster_spec=spec)
    except (MissingDependencyError, ConfigError):
        raise
    except Exception as exc:
        raise ClusterError(
            f"Could not start the {kind} cluster.",
            expected="a running Dask cluster",
            got=f"{type(exc).__name__}: {exc}",
            fix="check the cluster section of the config (see workers/defaults.yaml).",
        ) from exc


@contextlib.contextmanager
def connect(cfg: ClusterConfig) -> Iterator[Any]:
    """A :class:`distributed.Client` on the cluster ``cfg`` describes; closes what it started."""
    import dask
    from distributed import Client

    cluster = make_cluster(cfg)
    scheduler_before = dask.config.get("scheduler", None)
    try:
        try:
            client = Client(
                cluster if cluster is not None else cfg.address,
                timeout="60s",
                security=security(cfg),
            )
        except (OSError, TypeError, ValueError) as exc:
            # a Client that failed to connect leaves scheduler="dask.distributed" set for the
            # whole process (dask then refuses to compute anything without a client): undo it
            if scheduler_before is None:
                dask.config.config.pop("scheduler", None)
            else:
                dask.config.set(scheduler=scheduler_before)
            tls = "--cluster-config with a security: section (TLS files) for a tls:// scheduler"
            raise ClusterError(
                "Could not connect to the Dask scheduler.",
                expected=f"a scheduler at {cfg.address}" if cluster is None else "a scheduler",
                got=f"{type(exc).__name__}: {exc}",
                fix=f"check the address (--scheduler), that the scheduler is running, and {tls}.",
            ) from exc
        with client:
            if client.dashboard_link:
                log.warning("Dask dashboard: %s", client.dashboard_link)
            yield client
    finally:
        if cluster is not None:
            cluster.close()


def has_gpu_workers(client: Any) -> bool:
    """Whether any worker of ``client``'s cluster declares the ``GPU`` resource."""
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return any(GPU_RESOURCE in (w.get("resources") or {}) for w in workers.values())


#: Worker task states in which the task's function may still be running on a worker thread.
_LIVE = frozenset({"executing", "long-running", "cancelled", "resumed"})


def _running(keys: list[Hashable], dask_worker: Any = None) -> list[Hashable]:
    """Which of ``keys`` this worker may still be executing (run by ``Client.run``)."""
    tasks = dask_worker.state.tasks
    return [k for k in keys if (ts := tasks.get(k)) is not None and ts.state in _LIVE]


def wait_stopped(client: Any, keys: Sequence[Hashable], timeout: float = 120.0) -> list[Hashable]:
    """Block until no worker runs any task of ``keys`` any more; the keys still running at
    ``timeout`` (logged).

    Cancelling a future does not stop a task that already runs: its worker thread finishes it
    (and its writes) and drops the result. A failed tile map waits here before it returns, so
    that a corrected rerun never races the failed run's last writes into the scene store.
    """
    deadline, left = time.monotonic() + timeout, list(keys)
    while left:
        found = client.run(_running, left, on_error="ignore")
        left = list(dict.fromkeys(k for ks in found.values() for k in ks))
        if left and time.monotonic() > deadline:
            log.warning("%d cancelled task(s) still running after %.0f s", len(left), timeout)
            break
        if left:
            time.sleep(0.05)
    return left


__all__ = [
    "DEFAULTS_FILE",
    "GPU_RESOURCE",
    "KINDS",
    "ClusterConfig",
    "add_kubernetes_volumes",
    "connect",
    "has_gpu_workers",
    "kubernetes_kwargs",
    "load_cluster_config",
    "local_kwargs",
    "make_cluster",
    "nanny_environ_override",
    "require",
    "resolve_kind",
    "security",
    "slurm_kwargs",
    "wait_stopped",
]
