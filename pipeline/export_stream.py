"""The COG export of a run's output, written while its tiles are still being computed.

:class:`ExportStream` is :func:`pipeline.export.export_cog` turned inside out: instead of reading
the finished array in raster order, it takes each tile as the tile map journals it
(:meth:`ExportStream.add`, in any order) and, on one writer thread of the driver, reads it back
from the store, converts it to DN and writes it into the uncompressed stage GeoTIFF and the
streamed overview levels (:class:`pipeline.overviews.Pyramid`: every window is averaged on its
own, so the order the tiles arrive in does not matter). When the last tile is in,
:meth:`ExportStream.finish` writes what is still queued and hands the stage files to GDAL's COG
driver exactly as :func:`~pipeline.export.export_cog` does: the same pixels, the same options,
hence the same bytes (``tests/test_export_stream.py``).

The COG is written under a temporary name and renamed at the end; :meth:`ExportStream.abort`
(and :meth:`ExportStream.finish`, whatever happens) removes every temporary, so a failed run never
leaves a file that looks complete at the output path (a killed process's temporaries are hidden
``.NAME.*`` files that the next run removes first: :func:`pipeline.files.remove_temporaries`).
A run streams its export only where the driver has a core of its own
(:mod:`pipeline.stage_export`): on cores the tiles keep busy it slows them by more than it saves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import numpy as np

from .errors import StoreError
from .export import (
    CogOptions,
    _assemble,
    _check_out,
    _cog_creation,
    _describe,
    _output_dtype,
    _profile,
    _source,
    _streamed_levels,
    output_nodata,
)
from .files import publishing
from .grid import TileKey
from .overviews import remove_stage, rio_window, stage_paths, stage_writer
from .overviews import to_dn as _convert
from .store import SceneStore

log = logging.getLogger(__name__)

_DONE = object()  # queue sentinel: every tile is in, assemble the COG
#: Default niceness of the writer thread (``benchmarks/engine.py --e2e-only`` measures it).
NICE = 0


def _lower_priority(nice: int) -> None:
    """Add ``nice`` to the calling thread's niceness (Linux threads have their own; elsewhere,
    or if refused, the thread keeps its priority)."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError as exc:
        log.debug("the export writer keeps its priority: %s", exc)


class ExportStream:
    """Export a store output to a COG tile by tile, while the tile map still runs.

    Parameters
    ----------
    store_path
        A complete scene store.
    array_name
        The output array ``(B, H, W)`` on the PAN grid (chunks of the store's tile).
    out_path
        Target ``.tif``; replaced when :meth:`finish` succeeds (``overwrite``).
    options
        As for :func:`pipeline.export.export_cog`.
    overwrite
        Replace an existing file.
    nice
        Niceness added to the writer thread (Linux; ``None``: :data:`NICE`): the tile tasks
        keep the cores, the writer takes what they leave idle and catches up in :meth:`finish`.

    Notes
    -----
    One writer thread owns the stage datasets (GDAL's configuration, e.g. its block cache, is
    per thread); :meth:`add` only queues tile keys.
    """

    def __init__(
        self,
        store_path: str | Path,
        array_name: str,
        out_path: str | Path,
        *,
        options: CogOptions | None = None,
        overwrite: bool = False,
        nice: int | None = None,
    ) -> None:
        self.opts = options or CogOptions()
        self.out = Path(out_path)
        _check_out(self.out, overwrite)
        self.store = SceneStore.open(store_path)
        self.grid = self.store.grid
        self.array_name = array_name
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._seen: set[TileKey] = set()
        self._error: BaseException | None = None
        self._finished = self._aborted = False
        self._busy = 0.0
        self._paths: tuple[Path, ...] = ()
        self._dtype = np.dtype("float32")
        self.nice = NICE if nice is None else nice
        self._thread = threading.Thread(target=self._run, name="export-stream", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ driver side

    def add(self, keys: Iterable[TileKey]) -> None:
        """Queue finished tiles (each once; the writer reads them back from the store)."""
        for key in keys:
            if key not in self._seen:
                self._seen.add(key)
                self._queue.put(key)

    @property
    def written_seconds(self) -> float:
        """Seconds the writer has spent on tiles so far (before :meth:`finish`: the overlap)."""
        return self._busy

    def finish(self) -> Path:
        """Write what is queued, assemble the COG (on this thread, at its priority) and publish
        it at the output path; every temporary is removed, whatever happens.

        Raises the writer's error if it failed, and a :class:`~pipeline.errors.StoreError` if
        tiles are missing.
        """
        import rasterio

        missing = len(self.grid) - len(self._seen)
        if missing:
            self.abort()
            raise StoreError(
                "The export was finished before every tile of the output was written.",
                path=self.store.path,
                expected=f"{len(self.grid)} tiles of {self.array_name}",
                got=f"{len(self._seen)}",
                fix="rerun: the run resumes and computes the missing tiles.",
            )
        self._queue.put(_DONE)
        self._thread.join()
        try:
            with publishing(self.out):  # the writer's failed stage writes too
                if self._error is not None:
                    raise self._error
                tmp, vrt, part, *levels = self._paths
                co = _cog_creation(self.opts, self._dtype, own_overviews=bool(levels))
                with rasterio.Env(GDAL_CACHEMAX=self.opts.cache_mb * 1024 * 1024):
                    _assemble(tmp, vrt, part, levels, co)
                os.replace(part, self.out)
            self._finished = True
        finally:
            self._remove()
        log.info("exported %s/%s -> %s (streamed)", self.store.path, self.array_name, self.out)
        return self.out

    def abort(self) -> None:
        """Stop the writer and remove every temporary (a no-op once finished)."""
        if self._finished or self._aborted:
            return
        self._aborted = True
        self._queue.put(None)
        self._thread.join()
        self._remove()

    def _remove(self) -> None:
        remove_stage(self._paths)

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        """The writer: waits for the first tile (the output array exists by then), sets up the
        stage files and writes every tile until :meth:`finish` (or an abort)."""
        import rasterio

        _lower_priority(self.nice)
        try:
            first = self._queue.get()
            if first is None:
                return
            src = _source(self.store, self.array_name, whole=False)  # tiles arrive as it runs
            if src.shape[1:] != self.grid.pan_shape_yx or src.step != self.grid.tile:
                raise StoreError(
                    "Only a tiled output on the PAN grid can be exported while it is computed.",
                    path=self.store.path,
                    expected="an output array of the run",
                    got=self.array_name,
                    fix="export it afterwards with `pantailor export`.",
                )
            tmp, vrt, part, levels = stage_paths(self.out, _streamed_levels(src, self.opts))
            self._paths = (tmp, vrt, part, *levels)
            self._dtype = _output_dtype(self.opts, src, self.out)
            with rasterio.Env(GDAL_CACHEMAX=self.opts.cache_mb * 1024 * 1024):
                self._write_stage(src, self._dtype, first, tmp, levels)
        except BaseException as exc:  # re-raised on the driver by finish()
            self._error = exc

    def _write_stage(
        self, src: Any, dtype: np.dtype[Any], first: object, tmp: Path, levels: list[Path]
    ) -> bool:
        """Write tiles as they are queued until the sentinel (True) or an abort (False)."""
        nodata = output_nodata(self.store.meta.nodata, dtype)
        profile = _profile(src, dtype, nodata, self.store.meta.crs, self.opts)
        with contextlib.ExitStack() as stack:
            dst, pyramid = stage_writer(stack, tmp, profile, dtype, nodata, levels)
            _describe(dst, self.store, self.array_name)
            item = first
            while item is not _DONE:
                if item is None or self._aborted:
                    return False
                t0 = time.perf_counter()
                w = self.grid.pan_window(cast(TileKey, item))  # keys and sentinels only
                block = _convert(src.read(w), src.scale, dtype, nodata)
                dst.write(block, window=rio_window(w))
                pyramid.add(block, w)
                self._busy += time.perf_counter() - t0
                item = self._queue.get()
            return True


__all__ = ["ExportStream"]
