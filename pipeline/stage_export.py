"""The export stage of a run: the COG streamed beside the tile map, then the quicklook.

:func:`start_export` (called by the infer stage) opens a :class:`pipeline.export_stream.
ExportStream` that writes each tile into the COG's stage files as the tile map journals it;
:func:`run_export` (the export stage) finishes it, so only the last tiles' share and GDAL's COG
assembly remain after the last tile. ``STREAM_EXPORT = False`` exports after the tile map instead
(:func:`pipeline.export.export_cog`): the same bytes (``tests/test_export_stream.py``); the
default, ``"auto"``, streams where the driver has a core of its own.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .journal import Journal

if TYPE_CHECKING:
    from .export_stream import ExportStream
    from .stages import RunState

#: Export the COG while the tiles are computed: ``True``, ``False`` (after them), or ``"auto"``:
#: only where the driver has a core no local worker thread uses
#: (:meth:`pipeline.distribute.Engine.driver_has_a_spare_core`). On 2 cores busy with 2 workers
#: the stream's reads and writes slow the tiles by more than they save after the last one
#: (``benchmarks/results/engine_e2e.md``: 36.98 vs 35.72 s at 4000²); with a core of its own
#: (``engine_e2e_spare.md``) it takes the export's first part off the critical path.
STREAM_EXPORT: bool | str = "auto"


def start_export(state: RunState) -> ExportStream | None:
    """Start the run's COG export beside the tile map (:mod:`pipeline.export_stream`), fed the
    tiles a resumed run journaled already; :func:`run_export` finishes it. A failed run aborts
    it (its temporaries go; nothing appears at the output path)."""
    from .export_stream import ExportStream
    from .grid import TileKey

    if not STREAM_EXPORT or (
        STREAM_EXPORT == "auto" and not state.engine.driver_has_a_spare_core()
    ):
        return None
    journal = _claim_outputs(state)
    stream = ExportStream(
        state.scene_store.path, journal.output_array, state.paths.cog, overwrite=True
    )
    state.export = stream
    state.exits.callback(stream.abort)
    stream.add(TileKey.parse(k) for k in journal.tiles)
    return stream


def run_export(state: RunState) -> None:
    """Write the COG (after removing what an interrupted export left) and the quicklook."""
    from .export import export_cog
    from .report import quicklook

    paths, journal = state.paths, state.journal
    t0 = time.perf_counter()
    if state.export is not None:  # streamed during the tile map: the rest, and the COG
        stream, state.export = state.export, None
        state.timings["export_overlapped"] = stream.written_seconds
        stream.finish()
    else:
        parts: dict[str, float] = {}
        export_cog(
            state.scene_store.path,
            _claim_outputs(state).output_array,
            paths.cog,
            overwrite=True,
            timings=parts,
        )
        state.timings["export_assemble"] = parts["assemble"]  # GDAL's COG copy, of "export"
    state.timings["export"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    quicklook(state.scene_store, journal.output_array, paths.quicklook)
    state.timings["quicklook"] = time.perf_counter() - t0


def _claim_outputs(state: RunState) -> Journal:
    """Journal the COG and quicklook as this run's (before writing them); remove what an
    interrupted export of them left."""
    from .files import remove_temporaries

    for p in (state.paths.cog, state.paths.quicklook):
        remove_temporaries(p)
        state.journal.creates(p)
    return state.journal


__all__ = ["STREAM_EXPORT", "run_export", "start_export"]
