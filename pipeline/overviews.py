"""Overview levels of a raster computed while it streams past, for the COG export.

GDAL's COG driver, given a source without overviews, builds them after the fact: it reads the
whole full-resolution image back, averages it level by level into a temporary compressed file
and reads that again. :class:`Pyramid` instead takes every full-resolution window as the export
writes it, and produces each overview level's window at once (2 x 2 block means of the level
above, ``ceil`` sizes at odd edges as GDAL's, nodata and NaN excluded from the means): one pass,
in numpy, memory bounded by one window. The levels are written as tiled GeoTIFFs beside the
full-resolution stage file and attached to it as the overviews of a VRT
(:func:`vrt_with_overviews`), which the COG driver copies as they are.

The full resolution is never touched here; only the overview pixels may differ from GDAL's own
``AVERAGE`` overviews (rounding of the integer means: round half to even of the exact mean of the
valid pixels of the ``2^k x 2^k`` block, where GDAL averages the rounded level above).
"""

from __future__ import annotations

import logging
import math
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from .grid import Window

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

#: Writes one level's window: ``(level >= 1, window in that level's pixels, block (B, h, w))``.
LevelWriter = Callable[[int, Window, NDArray[Any]], None]


def level_count(shape_yx: tuple[int, int], blocksize: int) -> int:
    """Overview levels GDAL's COG driver makes with ``OVERVIEWS=AUTO``.

    Halve (rounding up) until the image fits in one ``blocksize`` block.
    """
    h, w = shape_yx
    n = 0
    while h > blocksize or w > blocksize:
        h, w, n = -(-h // 2), -(-w // 2), n + 1
    return n


def level_shape(shape_yx: tuple[int, int], level: int) -> tuple[int, int]:
    """``(h, w)`` of overview ``level`` (``ceil`` of the size over ``2**level``)."""
    f = 1 << level
    return -(-shape_yx[0] // f), -(-shape_yx[1] // f)


def aligned(step: int, n_levels: int) -> bool:
    """Whether windows of ``step`` pixels map onto whole pixels of every level."""
    return n_levels == 0 or step % (1 << n_levels) == 0


def _sum2(x: NDArray[Any]) -> NDArray[Any]:
    """Sums over 2 x 2 blocks of the last two axes (a missing odd edge row/column counts 0)."""
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        pad = [(0, 0)] * (x.ndim - 2) + [(0, h % 2), (0, w % 2)]
        x = np.pad(x, pad)
    s = x[..., 0::2, :] + x[..., 1::2, :]
    out: NDArray[Any] = s[..., 0::2] + s[..., 1::2]
    return out


class Pyramid:
    """Streaming ``2 x 2`` mean pyramid of a ``(B, H, W)`` raster.

    Parameters
    ----------
    n_levels
        Overview levels to make (level ``k`` is ``2**k`` times smaller).
    dtype
        Output dtype of the levels (the full resolution's).
    nodata
        Value excluded from the means and written where a block holds no valid pixel (NaN too,
        for float output); ``None``: every pixel is valid (NaN still excluded for floats).
    write
        Receives each level's window as soon as it is known.
    """

    def __init__(
        self, n_levels: int, dtype: np.dtype[Any], nodata: float | None, write: LevelWriter
    ) -> None:
        self.n_levels, self.dtype, self.nodata, self.write = n_levels, dtype, nodata, write

    def _valid(self, block: NDArray[Any]) -> NDArray[np.bool_] | None:
        valid: NDArray[np.bool_] | None = None
        if np.issubdtype(block.dtype, np.floating):
            nan = np.isnan(block)
            valid = ~nan if nan.any() else None
        if self.nodata is not None and not math.isnan(self.nodata):
            nod = block == block.dtype.type(self.nodata)
            if nod.any():
                valid = ~nod if valid is None else valid & ~nod
        return valid

    def _cast(self, mean: NDArray[np.float64], empty: NDArray[np.bool_] | None) -> NDArray[Any]:
        if np.issubdtype(self.dtype, np.integer):
            info = np.iinfo(self.dtype)
            mean = np.clip(np.rint(mean), info.min, info.max)
        if empty is not None:
            fill = self.nodata if self.nodata is not None else float("nan")
            mean[empty] = fill if np.issubdtype(self.dtype, np.floating) else (fill or 0)
        return mean.astype(self.dtype)

    def add(self, block: NDArray[Any], window: Window) -> None:
        """Take the full-resolution ``block`` ``(B, h, w)`` at ``window`` (origin aligned)."""
        if self.n_levels == 0:
            return
        valid = self._valid(block)
        x = block.astype(np.float64)
        if valid is not None:
            x[~valid] = 0.0
            count: NDArray[np.float64] | None = valid.astype(np.float64)
        else:
            count = None
        total, n = x, count
        for level in range(1, self.n_levels + 1):
            total = _sum2(total)
            n = _sum2(n) if n is not None else None
            if n is None:  # every pixel valid: partial edge blocks hold fewer pixels
                n_eff = _edge_counts(window, level, total.shape[-2:])
                mean, empty = total / n_eff, None
            else:
                empty = n == 0
                with np.errstate(invalid="ignore", divide="ignore"):
                    mean = total / np.where(empty, 1.0, n)
            f = 1 << level
            win = Window(window.y0 // f, -(-window.y1 // f), window.x0 // f, -(-window.x1 // f))
            self.write(level, win, self._cast(mean, empty))


def _edge_counts(window: Window, level: int, shape: tuple[int, ...]) -> NDArray[np.float64]:
    """Pixels each level-``level`` pixel of ``window`` averages (fewer at odd right/bottom edges)."""
    f = 1 << level
    ys = np.minimum(np.arange(shape[0]) * f + f, window.y1 - window.y0) - np.arange(shape[0]) * f
    xs = np.minimum(np.arange(shape[1]) * f + f, window.x1 - window.x0) - np.arange(shape[1]) * f
    return np.outer(ys, xs).astype(np.float64)


def level_profile(profile: dict[str, Any], shape_yx: tuple[int, int], level: int) -> dict[str, Any]:
    """The rasterio profile of a level's stage file: the full resolution's, resized, no georef."""
    h, w = level_shape(shape_yx, level)
    out = {k: v for k, v in profile.items() if k not in ("crs", "transform")}
    return {**out, "width": w, "height": h}


def stage_paths(out: Path, n_levels: int) -> tuple[Path, Path, Path, list[Path]]:
    """Temporary files of one export of ``out``: stage GTiff, VRT, partial COG, one per level."""
    base = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}")
    levels = [Path(f"{base}.ov{k}.tif") for k in range(1, n_levels + 1)]
    return Path(f"{base}.stage.tif"), Path(f"{base}.stage.vrt"), Path(f"{base}.partial.tif"), levels


def read_ahead(
    items: Iterable[T], job: Callable[[T], R], threads: int, ahead: int
) -> Iterator[tuple[T, R]]:
    """``(item, job(item))`` in order, with up to ``ahead`` jobs running on ``threads`` threads.

    For I/O and numpy work that releases the GIL (zarr decompression, array conversion), so
    reading the next windows overlaps GDAL's writing of the current one.
    """
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending: deque[tuple[T, Future[R]]] = deque()
        try:
            for item in items:
                pending.append((item, pool.submit(job, item)))
                if len(pending) > ahead:
                    first, fut = pending.popleft()
                    yield first, fut.result()
            while pending:
                first, fut = pending.popleft()
                yield first, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()


def vrt_with_overviews(base_vrt: Path, levels: Sequence[Path]) -> None:
    """Attach ``levels`` (one GeoTIFF per overview level, same bands) to every band of a VRT.

    ``base_vrt`` is the VRT GDAL wrote for the full-resolution file (``driver="VRT"`` copy); it is
    rewritten in place with one ``<Overview>`` per level and band.
    """
    tree = ET.parse(base_vrt)
    for band in tree.getroot().iter("VRTRasterBand"):
        index = band.get("band")
        for path in levels:
            ov = ET.SubElement(band, "Overview")
            src = ET.SubElement(ov, "SourceFilename", relativeToVRT="0")
            src.text = str(path)
            ET.SubElement(ov, "SourceBand").text = str(index)
    tree.write(base_vrt)


__all__ = [
    "Pyramid",
    "aligned",
    "level_count",
    "level_profile",
    "level_shape",
    "read_ahead",
    "stage_paths",
    "vrt_with_overviews",
]
