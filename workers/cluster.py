"""Make the Dask cluster from configuration: the same code on a laptop and on a cluster.

``kind`` selects where workers run:

``local``
    A :class:`distributed.LocalCluster` of worker *processes* (the embedded default).
``local-cuda``
    dask-cuda's ``LocalCUDACluster``: one worker process per visible GPU, each declaring the
    resource ``GPU=1`` (``pip install 'pantailor[gpu]'``).
``address``
    An existing scheduler (``tcp://host:8786``); nothing is started.
``slurm``
    dask-jobqueue's ``SLURMCluster`` built from the ``slurm:`` section
    (``pip install 'pantailor[slurm]'``).
``kubernetes``
    dask-kubernetes' operator ``KubeCluster`` built from the ``kubernetes:`` section
    (``pip install 'pantailor[kubernetes]'``).
``auto``
    ``local-cuda`` where GPUs are visible and dask-cuda is installed, else ``local``.

Defaults live in ``workers/defaults.yaml``; a user YAML file overrides any key, keyword
overrides (the CLI flags) override both.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ClusterError, ConfigError, MissingDependencyError

from .device import DEVICES, cuda_count

log = logging.getLogger(__name__)

DEFAULTS_FILE = Path(__file__).resolve().parent / "defaults.yaml"
KINDS = ("auto", "local", "local-cuda", "address", "slurm", "kubernetes")
GPU_RESOURCE = "GPU"
_EXTRAS = {"dask_cuda": "gpu", "dask_jobqueue": "slurm", "dask_kubernetes": "kubernetes"}


@dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    """Where and how the workers run (see ``workers/defaults.yaml`` for every key).

    Attributes
    ----------
    kind
        One of :data:`KINDS`.
    n_workers
        Local worker processes (``None``: cores // threads_per_worker, or one per GPU).
    threads_per_worker
        Dask threads per worker, also its torch intra-op threads.
    memory_limit
        Per worker process, e.g. ``"4GiB"`` (``None``: no limit).
    dashboard_address
        ``":0"`` for a free port, ``None`` for no dashboard.
    address
        Scheduler address for ``kind="address"``.
    device
        ``auto``, ``cpu`` or ``cuda``.
    amp
        Mixed precision for GPU forwards.
    retries
        Retries of a tile task whose worker died.
    slurm, kubernetes
        Sections passed (after translation) to dask-jobqueue / dask-kubernetes.
    """

    kind: str = "auto"
    n_workers: int | None = None
    threads_per_worker: int = 1
    memory_limit: str | None = "4GiB"
    dashboard_address: str | None = ":0"
    address: str | None = None
    device: str = "auto"
    amp: bool = False
    retries: int = 3
    slurm: Mapping[str, Any] = field(default_factory=dict)
    kubernetes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError("Unknown cluster kind.", expected=", ".join(KINDS), got=self.kind)
        if self.device not in DEVICES:
            raise ConfigError("Unknown device.", expected=", ".join(DEVICES), got=self.device)
        if self.threads_per_worker < 1 or (self.n_workers is not None and self.n_workers < 1):
            raise ConfigError(
                "Worker and thread counts must be >= 1.",
                got=f"n_workers={self.n_workers}, threads_per_worker={self.threads_per_worker}",
                fix="pass --workers N and --threads-per-worker K with N, K >= 1.",
            )
        if self.kind == "address" and not self.address:
            raise ConfigError(
                "kind 'address' needs a scheduler address.",
                expected="e.g. tcp://scheduler:8786",
                got="none",
                fix="pass --scheduler ADDRESS or set cluster.address in the config file.",
            )
        if self.retries < 0:
            raise ConfigError("retries must be >= 0.", got=self.retries)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(
            "Cannot read the cluster configuration.",
            path=path,
            expected="a YAML file with a top-level 'cluster:' mapping",
            got=str(exc).splitlines()[0],
            fix="check the path and the YAML syntax (see workers/defaults.yaml).",
        ) from exc
    section = raw.get("cluster", raw) if isinstance(raw, dict) else None
    if not isinstance(section, dict):
        raise ConfigError(
            "The cluster configuration is not a mapping.",
            path=path,
            expected="cluster: {kind: ..., n_workers: ...}",
            got=type(section).__name__,
        )
    return section


def _merge(base: dict[str, Any], extra: Mapping[str, Any], path: Path | None) -> dict[str, Any]:
    known = {f.name for f in fields(ClusterConfig)}
    unknown = sorted(set(extra) - known)
    if unknown:
        raise ConfigError(
            "Unknown cluster configuration keys.",
            path=path,
            expected=", ".join(sorted(known)),
            got=", ".join(unknown),
            fix="remove or rename them (see workers/defaults.yaml).",
        )
    for key in ("n_workers", "threads_per_worker", "retries"):
        value = extra.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(
                f"The cluster setting {key} must be a whole number.",
                path=path,
                expected="an integer, e.g. 2",
                got=repr(value),
                fix=f"write e.g. '{key}: 2' (no quotes).",
            )
    out = dict(base)
    for key, value in extra.items():
        if key in ("slurm", "kubernetes") and isinstance(value, Mapping):
            out[key] = {**out.get(key, {}), **value}
        else:
            out[key] = value
    return out


def load_cluster_config(path: str | Path | None = None, **overrides: Any) -> ClusterConfig:
    """Defaults, then the YAML file ``path`` (if any), then non-``None`` ``overrides``.

    Parameters
    ----------
    path
        A YAML file whose ``cluster:`` section overrides ``workers/defaults.yaml``.
    **overrides
        Field values (e.g. ``n_workers=2``); ``None`` values are ignored.
    """
    merged = _read_yaml(DEFAULTS_FILE)
    if path is not None:
        merged = _merge(merged, _read_yaml(Path(path)), Path(path))
    merged = _merge(merged, {k: v for k, v in overrides.items() if v is not None}, None)
    if overrides.get("address") and "kind" not in overrides:
        merged["kind"] = "address"
    try:
        return ClusterConfig(**merged)
    except ConfigError as exc:  # name the file the bad value came from
        if path is None or exc.paths:
            raise
        raise ConfigError(
            exc.problem, path=path, expected=exc.expected, got=exc.got, fix=exc.fix
        ) from exc


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


def local_kwargs(cfg: ClusterConfig) -> dict[str, Any]:
    """Arguments of :class:`distributed.LocalCluster` (worker processes)."""
    n = cfg.n_workers or max(1, (os.cpu_count() or 1) // cfg.threads_per_worker)
    return {
        "n_workers": n,
        "threads_per_worker": cfg.threads_per_worker,
        "processes": True,
        "memory_limit": cfg.memory_limit or 0,
        "dashboard_address": cfg.dashboard_address,
        "silence_logs": logging.WARNING,
    }


def slurm_kwargs(cfg: ClusterConfig) -> tuple[dict[str, Any], int]:
    """``(SLURMCluster arguments, number of jobs)`` from the ``slurm:`` section."""
    s = dict(cfg.slurm)
    jobs = int(s.pop("jobs", 1))
    gpus = int(s.pop("gpus_per_job", 0))
    processes = int(s.get("processes", 1))
    cores = int(s.get("cores", cfg.threads_per_worker * processes))
    extra = list(s.pop("job_extra_directives", []) or [])
    worker_args = list(s.pop("worker_extra_args", []) or [])
    if gpus:
        extra.append(f"--gres=gpu:{gpus}")
        worker_args += ["--resources", f"{GPU_RESOURCE}=1"]
    kwargs = {k: v for k, v in s.items() if v not in (None, [], "")}
    kwargs.update(cores=cores, processes=processes)
    if extra:
        kwargs["job_extra_directives"] = extra
    if worker_args:
        kwargs["worker_extra_args"] = worker_args
    return kwargs, jobs


def kubernetes_kwargs(cfg: ClusterConfig) -> dict[str, Any]:
    """Arguments of dask-kubernetes' ``make_cluster_spec`` from the ``kubernetes:`` section."""
    k = dict(cfg.kubernetes)
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
        "env": dict(k.get("env", {}) or {}),
        "worker_command": command,
    }


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
        return op.KubeCluster(custom_cluster_spec=op.make_cluster_spec(**kubernetes_kwargs(cfg)))
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
    from distributed import Client

    cluster = make_cluster(cfg)
    try:
        try:
            client = Client(cluster if cluster is not None else cfg.address, timeout="60s")
        except OSError as exc:
            raise ClusterError(
                "Could not connect to the Dask scheduler.",
                expected=f"a scheduler at {cfg.address}" if cluster is None else "a scheduler",
                got=str(exc),
                fix="check the address (--scheduler) and that the scheduler is running.",
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


__all__ = [
    "DEFAULTS_FILE",
    "GPU_RESOURCE",
    "KINDS",
    "ClusterConfig",
    "connect",
    "has_gpu_workers",
    "kubernetes_kwargs",
    "load_cluster_config",
    "local_kwargs",
    "make_cluster",
    "require",
    "resolve_kind",
    "slurm_kwargs",
]
