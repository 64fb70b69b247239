"""The only module of ``pipeline`` that knows Dask and imports :mod:`workers`.

:class:`Engine` wraps a :class:`distributed.Client`. Its typed methods are the whole seam between
the driver and the workers: :meth:`Engine.prepare` (the model plugin that loads a backbone once per
worker), :meth:`Engine.fit_once` / :meth:`Engine.fit_classical` / :meth:`Engine.fit_group` (one
fit on one worker; :meth:`Engine.fit_speculating` extracts the first tiles' features on the
others meanwhile, :mod:`workers.speculate`), :meth:`Engine.infer_tiles` (the tile map, results
yielded as they complete so the driver journals each tile at once) and :meth:`Engine.score_tiles`
(quality tiles). Everything crossing it is a frozen spec of :mod:`pipeline.jobs`. GPU clusters
get ``resources={"GPU": 1}`` on every task.

Deterministic input errors (:class:`pipeline.errors.PantailorError` raised by a task: a changed
file, a bad checkpoint) are not retried: retrying them only repeats the same traceback. Tasks
whose worker died are retried ``retries`` times.

One engine may serve several :func:`pipeline.runner.run_scene` calls at once, from several driver
threads: task keys are unique per call, the plugin is registered once under a lock, later models
are preloaded into the running plugins (re-registering would tear down other runs' models).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TypedDict, TypeVar, cast

from distributed import Client, Future, as_completed

from workers.cluster import (
    ClusterConfig,
    connect,
    has_gpu_workers,
    load_cluster_config,
    wait_stopped,
)
from workers.kernel import classical_tile, infer_tile
from workers.plugin import PLUGIN_NAME, ModelPlugin, preload
from workers.scene_tasks import fit_adapter, fit_group, tile_quality
from workers.scene_tasks import fit_classical as _fit_classical
from workers.speculate import (
    FeatureFuture,
    Speculation,
    extract_features,
    finish_tile,
    split_workers,
)

from .errors import PantailorError
from .jobs import (
    ClassicalFitJob,
    ClassicalFitOutcome,
    ClassicalTileTask,
    FeatureTask,
    FitJob,
    FitOutcome,
    GroupFitJob,
    ModelSpec,
    QualityJob,
    QualityResult,
    TileResult,
    TileTask,
)

log = logging.getLogger(__name__)

J = TypeVar("J")
R = TypeVar("R")


@dataclass(frozen=True)
class TaskFailed:
    """A task's deterministic input error, returned (not raised) so that Dask does not retry it."""

    error: PantailorError


class _Opts(TypedDict):  # every task's: not pure, retried, GPU resource, allowed workers
    pure: bool
    retries: int
    resources: dict[str, float] | None
    workers: list[str] | None


def _guarded(fn: Callable[[J], R], job: J) -> R | TaskFailed:
    """Run ``fn(job)`` on a worker, returning a :class:`PantailorError` instead of raising it."""
    try:
        return fn(job)
    except PantailorError as exc:
        return TaskFailed(exc)


def _unwrap(value: R | TaskFailed) -> R:
    """``value``, or the task's input error raised here, on the driver."""
    if isinstance(value, TaskFailed):
        raise value.error
    return value


def _tile_task(task: TileTask | ClassicalTileTask) -> TileResult:
    """One tile of either kind (the function the tile map ships)."""
    if isinstance(task, ClassicalTileTask):
        return classical_tile(task)
    return infer_tile(task)


def _finish(task: TileTask, feats: object) -> TileResult | TaskFailed:
    """A speculated tile: finished from ``feats`` (its extraction's result), guarded."""
    return _guarded(partial(finish_tile, feats=feats), task)


def _warm() -> None:
    """Import what a classical run's tasks need (unpickling this imports this module and
    :mod:`workers`: torch, zarr), on one worker: its share of the start-up."""
    import pipeline.classical  # noqa: F401


class Engine:
    """Run pantailor's tasks on a Dask cluster.

    Parameters
    ----------
    client
        A connected :class:`distributed.Client`.
    device
        What workers compute on: ``auto``, ``cpu`` or ``cuda``.
    retries
        Retries of a task whose worker died (input errors are not retried).
    amp
        Mixed precision for GPU tile forwards.
    workers
        Restrict every task to these worker addresses (``None``: any worker).
    """

    def __init__(
        self,
        client: Client,
        *,
        device: str = "auto",
        retries: int = 3,
        amp: bool = False,
        workers: Sequence[str] | None = None,
    ) -> None:
        self.client = client
        self.device = device
        self.retries = retries
        self.amp = amp
        self.workers = list(workers) if workers else None
        self.gpu = has_gpu_workers(client)
        self.token = uuid.uuid4().hex[:8]
        self._lock = threading.Lock()
        self._registered = False
        self._preloaded: set[ModelSpec] = set()
        self._maps = 0  # tile maps and speculations running (no speculation meanwhile)
        self._warm = False
        link = getattr(client, "dashboard_link", None)
        if link:
            log.info("Dask dashboard: %s", link)

    @property
    def resources(self) -> dict[str, float] | None:
        """Per-task resources: one GPU on a GPU cluster, none otherwise."""
        return {"GPU": 1} if self.gpu else None

    @property
    def n_workers(self) -> int:
        """Workers currently connected."""
        return len(self.client.scheduler_info(n_workers=-1).get("workers", {}))

    def prepare(self, *specs: ModelSpec) -> None:
        """Register the model plugin on every worker once and preload ``specs`` (thread-safe)."""
        with self._lock:
            new = [s for s in specs if s not in self._preloaded]
            if not self._registered:
                self.client.register_plugin(ModelPlugin(self.device, specs), name=PLUGIN_NAME)
                self._registered = True
            elif new:
                self.client.run(preload, new, workers=self.workers)
            self._preloaded.update(specs)

    def warm(self) -> None:
        """Import the task code on every worker once (a run without a backbone to preload): a
        fresh worker otherwise pays its imports (about a second) inside its first task."""
        with self._lock:
            if self._warm:
                return
            self._warm = True
        self.client.run(_warm, workers=self.workers)

    def _key(self, name: str) -> str:
        return f"{name}-{self.token}-{uuid.uuid4().hex[:8]}"

    def _opts(self) -> _Opts:
        return _Opts(
            pure=False, retries=self.retries, resources=self.resources, workers=self.workers
        )

    def _future(self, fn: Callable[[J], R], job: J, name: str) -> Future[R | TaskFailed]:
        return self.client.submit(partial(_guarded, fn), job, key=self._key(name), **self._opts())

    def _submit(self, fn: Callable[[J], R], job: J, name: str) -> R:
        return _unwrap(self._future(fn, job, name).result())

    def idle(self) -> bool:
        """No tile map or speculation of any run is using the workers now."""
        with self._lock:
            return not self._maps

    def fit_once(self, job: FitJob) -> FitOutcome:
        """Fit the scene's adapter once, on one worker, with that worker's own threads.

        Never with more (idle workers' threads lent at run time): a fit's result depends on its
        torch thread count (reductions in the backward pass; ``benchmarks/fit_threads.py``),
        so the count must follow from the cluster's configuration alone, not from the engine's
        state or the host's load, or a rerun could fit a different tailor.
        """
        return self._submit(fit_adapter, job, "fit")

    def fit_speculating(
        self, job: FitJob, tasks: Sequence[FeatureTask]
    ) -> tuple[FitOutcome, Speculation | None]:
        """:meth:`fit_once` on the first worker while the others extract ``tasks``' features
        (submitted after the fit, so it starts first; it keeps its own threads). Only on an
        otherwise idle engine (another scene's tasks would queue the pinned fit): else a plain
        :meth:`fit_once` and no speculation."""
        with self._lock:
            alone = not self._maps and bool(tasks)
            self._maps += alone  # the extracting workers are busy: no other scene's pinned fit
        if not alone:
            return self.fit_once(job), None
        (fit_at, others), opts = self._split(), self._opts()
        opts["workers"] = list(fit_at)  # loose: another worker if this one dies
        fn = partial(_guarded, fit_adapter)
        fut = self.client.submit(fn, job, key=self._key("fit"), allow_other_workers=True, **opts)
        spec = self._speculate(tasks, list(others))
        try:
            return _unwrap(fut.result()), spec
        except BaseException:
            spec.release()
            raise

    def fit_group(self, job: GroupFitJob) -> FitOutcome:
        """Fit one adapter for a group of scenes (``batch --tailor-scope group``), on one worker
        with its own threads (as :meth:`fit_once`)."""
        return self._submit(fit_group, job, "fit-group")

    def _split(self) -> tuple[dict[str, int], dict[str, int]]:
        info = self.client.scheduler_info(n_workers=-1).get("workers", {})
        return split_workers(info, self.workers, gpu=self.gpu)

    def driver_has_a_spare_core(self) -> bool:
        """Whether this host has a core no local worker thread uses (or the work is on GPUs or
        other hosts): work beside the tile map (the streamed export) then slows no tile."""
        if self.gpu:
            return True
        info = self.client.scheduler_info(n_workers=-1).get("workers", {})
        local = {"127.0.0.1", "localhost", "::1"}
        with contextlib.suppress(OSError):
            local.add(socket.gethostbyname(socket.gethostname()))
        threads = sum(int(w.get("nthreads", 1)) for w in info.values() if w.get("host") in local)
        return threads < (os.cpu_count() or 1)

    def spare_slots(self) -> int:
        """Task slots left while one runs the fit (0 on one single-threaded worker)."""
        fit_at, others = self._split()
        return max(0, sum(others.values()) - (1 if others == fit_at else 0))

    def _speculate(self, tasks: Sequence[FeatureTask], workers: list[str]) -> Speculation:
        """Extract ``tasks``' features on ``workers`` (:mod:`workers.speculate`); releasing the
        result frees the engine (see :meth:`fit_speculating`)."""
        call, fn, opts = uuid.uuid4().hex[:6], partial(_guarded, extract_features), self._opts()
        opts["workers"] = workers
        keys = [f"extract-{t.key}-{self.token}{call}" for t in tasks]
        futures = self.client.map(fn, list(tasks), key=keys, allow_other_workers=True, **opts)
        by_key = {t.key: cast(FeatureFuture, f) for t, f in zip(tasks, futures, strict=True)}
        return Speculation(self.client, by_key, lambda: self._busy(-1))

    def _busy(self, step: int) -> None:
        with self._lock:
            self._maps += step

    def fit_classical(self, job: ClassicalFitJob) -> ClassicalFitOutcome:
        """Fit a classical method's global coefficients once, on one worker."""
        return self._submit(_fit_classical, job, "fit-classical")

    def infer_tiles(
        self,
        tasks: Sequence[TileTask | ClassicalTileTask],
        speculation: Speculation | None = None,
    ) -> Iterator[TileResult]:
        """Compute every tile task; yield results as they complete (see :meth:`_map`). Tiles
        whose features ``speculation`` holds are finished from them; it is released at the end."""
        try:
            extra = speculation.take(tasks) if speculation is not None else None
            yield from self._map(_tile_task, tasks, "infer-tile", extra)
        finally:
            if speculation is not None:
                speculation.release()

    def score_tiles(self, jobs: Sequence[QualityJob]) -> list[QualityResult]:
        """Score every quality job; results in the order of ``jobs``."""
        by_key = {r.key: r for r in self._map(tile_quality, jobs, "quality-tile")}
        return [by_key[j.key] for j in jobs]

    def _map(
        self,
        fn: Callable[[J], R],
        jobs: Sequence[J],
        name: str,
        features: dict[int, FeatureFuture] | None = None,
    ) -> Iterator[R]:
        """Run ``fn`` on every job (job ``i`` from ``features[i]``: :func:`_finish`); yield
        results as they complete. Workers that die are replaced and their tasks retried
        (``retries``); the first task that still fails raises here, the rest are cancelled (and
        those already running waited for)."""
        if not jobs:
            return
        call = uuid.uuid4().hex[:6]
        keys = [f"{name}-{getattr(j, 'key', i)}-{self.token}{call}" for i, j in enumerate(jobs)]
        feats = features or {}
        plain = [i for i in range(len(jobs)) if i not in feats]
        fn_, plain_jobs, plain_keys = (
            partial(_guarded, fn),
            [jobs[i] for i in plain],
            [keys[i] for i in plain],
        )
        rest: list[Future[R | TaskFailed]] = self.client.map(
            fn_, plain_jobs, key=plain_keys, **self._opts()
        )
        futures = self._finishes(jobs, keys, feats) + rest  # finishes first: cheap, free memory
        self._busy(+1)
        try:
            for fut in as_completed(futures):
                out: R | TaskFailed = fut.result()
                yield _unwrap(out)
        finally:
            self._busy(-1)
            if undone := [f for f in futures if not f.done()]:  # failed or stopped early
                self.client.cancel(undone)
                wait_stopped(self.client, [f.key for f in undone])  # their writes end first

    def _finishes(
        self, jobs: Sequence[J], keys: list[str], feats: dict[int, FeatureFuture]
    ) -> list[Future[R | TaskFailed]]:
        """Tasks finishing ``jobs[i]`` from ``feats[i]``, on the worker holding them (loose: the
        features move if it dies), first in line; popped: freed once the tile is finished."""
        holders = self.client.who_has(list(feats.values())) if feats else {}
        out = []
        for i in sorted(feats):
            f, opts = feats.pop(i), self._opts()
            at = list(holders.get(f.key, ()))  # none yet: Dask's own choice, by data
            opts["workers"] = at or self.workers
            loose = bool(at)
            fut = self.client.submit(
                _finish, jobs[i], f, key=keys[i], priority=1, allow_other_workers=loose, **opts
            )
            out.append(cast("Future[R | TaskFailed]", fut))  # R is TileResult here
        return out


@contextmanager
def open_engine(cluster: ClusterConfig | None = None) -> Iterator[Engine]:
    """Start (or connect to) the cluster ``cluster`` describes and yield an :class:`Engine`."""
    cfg = cluster if cluster is not None else load_cluster_config()
    with connect(cfg) as client:
        yield Engine(client, device=cfg.device, retries=cfg.retries, amp=cfg.amp)


def performance_report(engine: object, path: Path) -> AbstractContextManager[object]:
    """Dask's performance report (HTML at ``path``) of what runs inside; a no-op without a client."""
    if getattr(engine, "client", None) is None:
        return nullcontext()
    from distributed import performance_report as report

    ctx: AbstractContextManager[object] = report(filename=str(path))
    return ctx


def load_cluster(path: str | None = None, **overrides: object) -> ClusterConfig:
    """:func:`workers.cluster.load_cluster_config` for the CLI (which may not import workers)."""
    return load_cluster_config(path, **overrides)


__all__ = [
    "ClusterConfig",
    "Engine",
    "PantailorError",
    "Speculation",
    "load_cluster",
    "open_engine",
    "performance_report",
]
