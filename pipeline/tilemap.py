"""The tile-map stages: infer every tile of a scene, score a sample of tiles.

:func:`stage_infer` builds one task per tile not yet in the journal (a network's
:class:`pipeline.jobs.TileTask` or a classical method's :class:`pipeline.jobs.ClassicalTileTask`),
runs them through :meth:`pipeline.distribute.Engine.infer_tiles` and journals each tile as it
completes. :func:`stage_quality` scores a seeded sample of full tiles of the product, and of the
unadapted backbone beside it, and averages them weighted by pixel count.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .config import RunConfig
from .grid import TileGrid, TileKey
from .jobs import ClassicalSpec, ClassicalTileTask, ModelSpec, QualityJob, QualityResult, TileTask
from .journal import Journal
from .store import SceneStore

if TYPE_CHECKING:  # the engine imports distributed and workers: only when a run starts one
    from .distribute import Engine, Speculation

log = logging.getLogger(__name__)

#: The output array of a bare :func:`stage_infer` call (runs use their own, keyed name).
OUTPUT = "fused"

Progress = Callable[[str, int, int], None]

#: Submit the full tiles before the clipped ones of the last row and column (the A/B of
#: ``benchmarks/engine.py --e2e-only``; the bytes do not depend on the order).
LARGEST_FIRST = True


def _pixels(grid: TileGrid, key: TileKey) -> int:
    h, w = grid.pan_window(key).shape_yx
    return h * w


def report_progress(progress: Progress | None, stage: str, done: int, total: int) -> None:
    """Call ``progress``, or log every tenth of the way."""
    if progress is not None:
        progress(stage, done, total)
    elif total and (done == total or done % max(1, total // 10) == 0):
        log.info("%s: %d/%d", stage, done, total)


def _tasks(
    store: SceneStore,
    output: str,
    todo: Sequence[TileKey],
    spec: ModelSpec | ClassicalSpec,
    amp: bool,
    clip: bool,
) -> list[TileTask | ClassicalTileTask]:
    if isinstance(spec, ClassicalSpec):
        return [
            ClassicalTileTask(
                store=str(store.path),
                output=output,
                key=k,
                method=spec.method,
                coefficients=spec.path,
                sha256=spec.sha256,
                clip=clip,
            )
            for k in todo
        ]
    return [
        TileTask(store=str(store.path), output=output, key=k, model=spec, amp=amp, clip=clip)
        for k in todo
    ]


def stage_infer(
    journal: Journal,
    engine: Engine,
    store: SceneStore,
    spec: ModelSpec | ClassicalSpec,
    *,
    output: str = OUTPUT,
    amp: bool = False,
    clip: bool = True,
    progress: Progress | None = None,
    speculation: Speculation | None = None,
    on_tile: Callable[[TileKey], None] | None = None,
) -> dict[str, Any]:
    """Infer every tile not yet in the journal into ``output``; journal each as it completes.

    ``spec`` is a network's :class:`ModelSpec` or a classical method's :class:`ClassicalSpec`;
    both run through the same tile map. The output array is created empty when the journal has
    no finished tile. Tiles whose features ``speculation`` holds (extracted during the fit) are
    finished from them, and journaled like any other. ``on_tile(key)`` is called for each tile
    once it is journaled (the run's streamed export: :mod:`pipeline.export_stream`).

    Returns
    -------
    dict
        seconds, tail_seconds (from the first worker's last tile to the end: the tile map's
        tail), tiles, computed, skipped, speculative, forward_seconds, peak_rss_bytes,
        workers_used.
    """
    store.create_output(output, "float32", overwrite=not journal.tiles)
    grid = store.grid
    todo = [k for k in grid.keys() if str(k) not in journal.tiles]  # noqa: SIM118
    if LARGEST_FIRST:  # the clipped edge tiles last: a shorter tail (stable: raster order else)
        todo.sort(key=lambda k: -_pixels(grid, k))
    tasks = _tasks(store, output, todo, spec, amp, clip)
    total, done = len(grid), len(grid) - len(todo)
    report_progress(progress, "infer", done, total)
    t0 = time.perf_counter()
    peak: dict[int, int] = {}
    last: dict[int, float] = {}  # when each worker's last tile came back
    forward, speculative = 0.0, 0
    try:
        for res in engine.infer_tiles(tasks, speculation):
            journal.finish_tile(res.key, res.sha256)
            if on_tile is not None:
                on_tile(res.key)
            peak[res.pid] = max(peak.get(res.pid, 0), res.peak_rss)
            last[res.pid] = time.perf_counter()
            forward += res.seconds.get("forward", 0.0)
            speculative += res.speculative
            done += 1
            report_progress(progress, "infer", done, total)
    finally:
        journal.flush(force=True)
    if done == total:
        store.mark_complete(output)
    end = time.perf_counter()
    return {
        "seconds": end - t0,
        "tail_seconds": end - min(last.values()) if len(last) > 1 else 0.0,
        "tiles": total,
        "computed": len(tasks),
        "skipped": total - len(tasks),
        "speculative": speculative,
        "forward_seconds": forward,
        "peak_rss_bytes": max(peak.values(), default=0),
        "workers_used": len(peak),
    }


def quality_keys(grid: TileGrid, n: int, seed: int) -> list[TileKey]:
    """A seeded sample of ``n`` full tiles (any tiles if the scene has no full one)."""
    full = [k for k in grid.keys() if grid.pan_window(k).shape_yx == (grid.tile, grid.tile)]  # noqa: SIM118
    pool = full or list(grid.keys())
    return sorted(random.Random(seed).sample(pool, min(n, len(pool))))


def weighted(results: Sequence[dict[str, float] | None], pixels: Sequence[int]) -> dict[str, float]:
    """Pixel-weighted means of the per-tile indices (tiles without them are left out)."""
    rows = [(r, p) for r, p in zip(results, pixels, strict=True) if r]
    if not rows:
        return {}
    w = np.asarray([p for _, p in rows], dtype=np.float64)
    return {k: float(np.average([r[k] for r, _ in rows], weights=w)) for k in rows[0][0]}


def stage_quality(
    cfg: RunConfig,
    engine: Engine,
    store: SceneStore,
    baseline: ModelSpec | None,
    *,
    output: str = OUTPUT,
) -> dict[str, Any]:
    """Quality indices on a sample of tiles: the product, and ``baseline`` beside it if given."""
    if cfg.quality_tiles <= 0:
        return {}
    t0 = time.perf_counter()
    keys = quality_keys(store.grid, cfg.quality_tiles, cfg.seed)
    jobs = [
        QualityJob(store=str(store.path), output=output, key=k, baseline=baseline) for k in keys
    ]
    results: list[QualityResult] = engine.score_tiles(jobs)
    pixels = [r.pixels for r in results]
    from .quality import conventions

    out: dict[str, Any] = {
        "conventions": conventions(),
        "tiles": [str(k) for k in keys],
        "product": weighted([r.product for r in results], pixels),
        "seconds": time.perf_counter() - t0,
    }
    if baseline is not None:
        out["baseline"] = weighted([r.baseline for r in results], pixels)
    return out


__all__ = ["OUTPUT", "Progress", "quality_keys", "report_progress", "stage_infer", "stage_quality"]
