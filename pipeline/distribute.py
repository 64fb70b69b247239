"""The only Client-aware module of ``pipeline``: runs scene tasks and tile tasks on the cluster.

:class:`Engine` wraps a :class:`distributed.Client`. It registers the worker plugin that loads
the backbone once per worker (:class:`workers.plugin.ModelPlugin`), submits the once-per-scene
tasks (the fit) to one worker, and maps the tile kernel over tiles with retries, yielding results
as they complete (:func:`distributed.as_completed`) so the driver can journal each finished tile
at once. GPU clusters get ``resources={"GPU": 1}`` on every task. Tasks carry keys and paths only.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from workers.cluster import ClusterConfig, connect, has_gpu_workers, load_cluster_config
from workers.kernel import TileResult, TileTask, infer_tile
from workers.plugin import PLUGIN_NAME, ModelPlugin, ModelSpec

log = logging.getLogger(__name__)

T = TypeVar("T")


class Engine:
    """Run pantailor's tasks on a Dask cluster.

    Parameters
    ----------
    client
        A connected :class:`distributed.Client`.
    device
        What workers compute on: ``auto``, ``cpu`` or ``cuda``.
    retries
        Retries of a task whose worker died or which raised.
    amp
        Mixed precision for GPU tile forwards.
    workers
        Restrict every task to these worker addresses (``None``: any worker).
    """

    def __init__(
        self,
        client: Any,
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
        self._registered: tuple[ModelSpec, ...] | None = None
        self.token = uuid.uuid4().hex[:8]
        link = getattr(client, "dashboard_link", None)
        if link:
            log.info("Dask dashboard: %s", link)

    @property
    def resources(self) -> dict[str, int] | None:
        """Per-task resources: one GPU on a GPU cluster, none otherwise."""
        return {"GPU": 1} if self.gpu else None

    @property
    def n_workers(self) -> int:
        """Workers currently connected."""
        return len(self.client.scheduler_info(n_workers=-1).get("workers", {}))

    def prepare(self, *specs: ModelSpec) -> None:
        """Register the model plugin on every worker, preloading ``specs`` (idempotent)."""
        if self._registered == specs:
            return
        self.client.register_plugin(ModelPlugin(self.device, specs), name=PLUGIN_NAME)
        self._registered = specs

    def run_once(self, fn: Callable[..., T], *args: Any, name: str = "scene") -> T:
        """Run ``fn(*args)`` once on one worker (e.g. the per-scene fit) and return its result."""
        fut = self.client.submit(
            fn,
            *args,
            key=f"{name}-{self.token}-{uuid.uuid4().hex[:6]}",
            pure=False,
            retries=self.retries,
            resources=self.resources,
            workers=self.workers,
        )
        result: T = fut.result()
        return result

    def map_tiles(
        self, tasks: Sequence[TileTask], fn: Callable[[TileTask], T] | None = None
    ) -> Iterator[T]:
        """Run the tile kernel (or ``fn``) on every task; yield results as they complete.

        Workers that die are replaced and their tasks retried (``retries``); the first task
        that still fails raises here, after which the remaining futures are cancelled.
        """
        from distributed import as_completed

        if not tasks:
            return
        func = fn if fn is not None else infer_tile
        call = uuid.uuid4().hex[:6]
        name = getattr(func, "__name__", "task").replace("_", "-")
        keys = [f"{name}-{t.key}-{self.token}{call}" for t in tasks]
        futures = self.client.map(
            func,
            tasks,
            key=keys,
            pure=False,
            retries=self.retries,
            resources=self.resources,
            workers=self.workers,
        )
        try:
            for fut in as_completed(futures):
                yield fut.result()
        finally:
            self.client.cancel([f for f in futures if not f.done()])


@contextmanager
def open_engine(cluster: ClusterConfig | None = None) -> Iterator[Engine]:
    """Start (or connect to) the cluster ``cluster`` describes and yield an :class:`Engine`."""
    cfg = cluster if cluster is not None else load_cluster_config()
    with connect(cfg) as client:
        yield Engine(client, device=cfg.device, retries=cfg.retries, amp=cfg.amp)


def infer_all(engine: Engine, tasks: Sequence[TileTask]) -> Iterator[TileResult]:
    """:meth:`Engine.map_tiles` with the tile kernel (typed convenience)."""
    yield from engine.map_tiles(tasks, infer_tile)


__all__ = ["Engine", "infer_all", "open_engine"]
