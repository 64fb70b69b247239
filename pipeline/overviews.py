"""Overview levels of a raster computed while it streams past, for the COG export.

GDAL's COG driver, given a source without overviews, builds them after the fact: it reads the
whole full-resolution image back, averages it level by level into a temporary compressed file
and reads that again. :class:`Pyramid` instead takes every full-resolution window as the export
writes it, and produces each overview level's window at once (2 x 2 block means of the level
above, nodata and NaN excluded from the means): one pass,
in numpy, memory bounded by one window, for images whose sides are multiples of ``2**levels``
(:func:`aligned`; other sizes keep GDAL's overviews). The levels are written as tiled GeoTIFFs beside the
full-resolution stage file and attached to it as the overviews of a VRT
(:func:`vrt_with_overviews`), which the COG driver copies as they are. The export's other staging
helpers live here too (:func:`to_dn`, :func:`read_ahead`, :func:`stage_paths`).

The full resolution is never touched here. The levels are GDAL's own ``AVERAGE`` overviews: each
from the rounded level above, integer means rounded half away from zero (in integers when no
pixel is masked; ``tests/test_overviews.py`` compares them with GDAL's).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import uuid
import warnings
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


def aligned(shape_yx: tuple[int, int], step: int, n_levels: int) -> bool:
    """Whether the levels are exact ``2 x 2`` block means of each other, window by window.

    The image sides and the window step must be multiples of ``2**n_levels``: GDAL maps an odd
    side onto its overview with a non-integer factor (203 rows -> 102 overview rows, each
    averaging about 1.99 rows), which is left to GDAL (the export falls back to it).
    """
    f = 1 << n_levels
    return n_levels == 0 or (step % f == 0 and shape_yx[0] % f == 0 and shape_yx[1] % f == 0)


def _sum2(x: NDArray[Any]) -> NDArray[Any]:
    """Sums over 2 x 2 blocks of the last two axes (even sizes)."""
    s = x[..., 0::2, :] + x[..., 1::2, :]
    out: NDArray[Any] = s[..., 0::2] + s[..., 1::2]
    return out


def _half_int(block: NDArray[Any], dtype: np.dtype[Any]) -> NDArray[Any]:
    """2 x 2 means of an integer block with every pixel valid, in integers (no float64 copy).

    Rounded half away from zero, as GDAL's ``AVERAGE`` and the float path:
    ``(s + 2) // 4`` for a sum ``s >= 0``, ``-((2 - s) // 4)`` below.
    """
    acc = np.int32 if block.dtype.itemsize <= 2 else np.int64  # 4 samples cannot overflow
    s = block[..., 0::2, :].astype(acc) + block[..., 1::2, :]
    t = s[..., 0::2] + s[..., 1::2]
    if np.issubdtype(block.dtype, np.signedinteger) and (t < 0).any():
        t = np.sign(t) * ((np.abs(t) + 2) // 4)
    else:
        t += 2
        t //= 4
    out: NDArray[Any] = t.astype(dtype)
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
        """The level's pixels: integer means rounded half away from zero (GDAL's), empty
        blocks -> nodata."""
        if np.issubdtype(self.dtype, np.integer):
            info = np.iinfo(self.dtype)
            half_away = np.where(mean < 0, np.ceil(mean - 0.5), np.floor(mean + 0.5))
            mean = np.clip(half_away, info.min, info.max)
        if empty is not None:
            fill = self.nodata if self.nodata is not None else float("nan")
            mean[empty] = fill if np.issubdtype(self.dtype, np.floating) else (fill or 0)
        return mean.astype(self.dtype)

    def _half(self, block: NDArray[Any]) -> NDArray[Any]:
        """The next level of ``block``: the mean of the valid pixels of each 2 x 2 block."""
        valid = self._valid(block)
        if valid is None and np.issubdtype(block.dtype, np.integer) and block.dtype.itemsize <= 4:
            return _half_int(block, self.dtype)
        x = block.astype(np.float64)
        if valid is None:
            return self._cast(_sum2(x) / 4.0, None)
        x[~valid] = 0.0
        n = _sum2(valid.astype(np.float64))
        empty = n == 0
        return self._cast(_sum2(x) / np.where(empty, 1.0, n), empty)

    def add(self, block: NDArray[Any], window: Window) -> None:
        """Take the full-resolution ``block`` ``(B, h, w)`` at ``window`` (origin aligned).

        Each level is made from the (rounded) level above, as GDAL's ``AVERAGE`` does.
        """
        for level in range(1, self.n_levels + 1):
            block = self._half(block)
            f = 1 << level
            win = Window(window.y0 // f, -(-window.y1 // f), window.x0 // f, -(-window.x1 // f))
            self.write(level, win, block)


#: Values converted at a time by :func:`to_dn` (a float64 buffer of 512 KiB, cache-resident).
TO_DN_CHUNK = 1 << 16


def to_dn(
    block: NDArray[Any], scale: float, dtype: np.dtype[Any], nodata: float | None
) -> NDArray[Any]:
    """Scale to DN (float64), round and clip to ``dtype``; NaN -> ``nodata``.

    Integer output is converted :data:`TO_DN_CHUNK` values at a time through one reused float64
    buffer (the same operations on each value as on a whole-block float64 copy, without its
    memory traffic: about twice as fast on a 512² x 8 tile).
    """
    if scale == 1.0 and block.dtype == dtype:
        if np.issubdtype(dtype, np.floating) and nodata is not None and not np.isnan(nodata):
            return np.where(np.isnan(block), dtype.type(nodata), block)
        return block
    if np.issubdtype(dtype, np.integer):
        return _to_int(np.ascontiguousarray(block), scale, np.dtype(dtype), nodata)
    y = np.asarray(block, dtype=np.float64) * scale if scale != 1.0 else block
    y = np.array(y, dtype=dtype)
    if nodata is not None:
        y[np.isnan(y)] = nodata
    return y


def _to_int(
    block: NDArray[Any], scale: float, dtype: np.dtype[Any], nodata: float | None
) -> NDArray[Any]:
    """:func:`to_dn` to an integer ``dtype``: per value ``x = float64(v) * scale``, NaN -> 0,
    ``rint``, clip to the dtype's range, cast; NaN -> ``nodata`` (0 if ``None``) after."""
    info = np.iinfo(dtype)
    src, out = block.reshape(-1), np.empty(block.shape, dtype=dtype)
    dst = out.reshape(-1)
    n = min(TO_DN_CHUNK, src.size)
    buf, nan = np.empty(n, np.float64), np.empty(n, bool)
    fill = 0 if nodata is None else nodata
    for i0 in range(0, src.size, n):
        i1 = min(i0 + n, src.size)
        x, m = buf[: i1 - i0], nan[: i1 - i0]
        if scale != 1.0:
            np.multiply(src[i0:i1], scale, out=x, dtype=np.float64)
        else:
            np.copyto(x, src[i0:i1], casting="unsafe")
        np.isnan(x, out=m)
        has_nan = bool(m.any())
        if has_nan:
            x[m] = 0.0
        np.rint(x, out=x)
        np.clip(x, info.min, info.max, out=x)
        np.copyto(dst[i0:i1], x, casting="unsafe")
        if has_nan:
            dst[i0:i1][m] = fill
    return out


def level_profile(profile: dict[str, Any], shape_yx: tuple[int, int], level: int) -> dict[str, Any]:
    """The rasterio profile of a level's stage file: the full resolution's, resized, no georef."""
    h, w = level_shape(shape_yx, level)
    out = {k: v for k, v in profile.items() if k not in ("crs", "transform")}
    return {**out, "width": w, "height": h}


def rio_window(w: Window) -> Any:
    """``w`` as a :class:`rasterio.windows.Window`."""
    import rasterio.windows

    return rasterio.windows.Window(w.x0, w.y0, w.x1 - w.x0, w.y1 - w.y0)


def stage_writer(
    stack: contextlib.ExitStack[Any],
    tmp: Path,
    profile: dict[str, Any],
    dtype: np.dtype[Any],
    nodata: float | None,
    levels: Sequence[Path],
) -> tuple[Any, Pyramid]:
    """Open the stage GeoTIFF ``tmp`` and one file per overview level for writing (closed by
    ``stack``); the stage dataset and the :class:`Pyramid` that writes the levels from its
    blocks."""
    import rasterio

    shape_yx = (int(profile["height"]), int(profile["width"]))
    with warnings.catch_warnings():  # a pixel-grid scene has no geotransform, on purpose
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        dst = stack.enter_context(rasterio.open(tmp, "w", **profile))
        outs = [
            stack.enter_context(rasterio.open(p, "w", **level_profile(profile, shape_yx, k)))
            for k, p in enumerate(levels, start=1)
        ]

    def write_level(level: int, w: Window, block: NDArray[Any]) -> None:
        outs[level - 1].write(block, window=rio_window(w))

    return dst, Pyramid(len(levels), dtype, nodata, write_level)


def stage_paths(out: Path, n_levels: int) -> tuple[Path, Path, Path, list[Path]]:
    """Temporary files of one export of ``out``: stage GTiff, VRT, partial COG, one per level."""
    base = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}")
    levels = [Path(f"{base}.ov{k}.tif") for k in range(1, n_levels + 1)]
    return Path(f"{base}.stage.tif"), Path(f"{base}.stage.vrt"), Path(f"{base}.partial.tif"), levels


def remove_stage(paths: Iterable[Path]) -> None:
    """Remove an export's temporaries: their names go at once, their blocks are freed on a
    background thread.

    Unlinking a file of a few hundred MiB just written costs the unlinking thread about 0.3 s
    on ext4 (freeing its extents and cached pages; 4000² x 8 uint16: the 256 MiB stage file,
    the levels, the partial COG's name). An open descriptor keeps the file alive past the
    unlink, so the cost moves to the descriptor's close, done here on a daemon thread (a
    process that exits first has the kernel close it: nothing is left on disk either way).
    """
    held: list[int] = []
    for p in paths:
        try:
            held.append(os.open(p, os.O_RDONLY))
        except OSError:  # no such file (never written, or renamed to the output)
            continue
        p.unlink(missing_ok=True)
    if held:
        threading.Thread(target=_close_all, args=(held,), name="free-stage", daemon=True).start()


def _close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


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


def raster_windows(shape_yx: tuple[int, int], step: int) -> Iterator[Window]:
    """``step``-sized windows of a ``shape_yx`` raster in raster order (the last ones clipped)."""
    h, w = shape_yx
    for y0 in range(0, h, step):
        for x0 in range(0, w, step):
            yield Window(y0, min(y0 + step, h), x0, min(x0 + step, w))


__all__ = [
    "Pyramid",
    "aligned",
    "level_count",
    "level_profile",
    "level_shape",
    "raster_windows",
    "read_ahead",
    "remove_stage",
    "rio_window",
    "stage_paths",
    "stage_writer",
    "to_dn",
    "vrt_with_overviews",
]
