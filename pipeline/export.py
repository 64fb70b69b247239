"""Store array -> Cloud-Optimized GeoTIFF, streaming.

The array is copied tile by tile (read and converted ahead on threads) into a temporary tiled,
uncompressed GeoTIFF next to the target; while it streams, the overview levels are averaged from
the same blocks (:mod:`pipeline.overviews`) into one stage file each. GDAL's COG driver then
copies full resolution and levels into the final layout (tiled, compressed with a predictor,
internal overviews) without rebuilding the overviews. Memory does not depend on the scene size;
the stage files need about the output's uncompressed size on disk while the export runs. The COG
is written under a temporary name and renamed at the end: a failed export never looks complete.

Values are written in DN: outputs stored ``"normalised"`` are multiplied by ``dn_max``. The
default output dtype is the MS source dtype (rounded and clipped; NaN becomes nodata).

``ms_up`` names the MS replicated onto the PAN grid (nearest neighbour): the placeholder product
before any fusion has run, computed on the fly unless the store holds an array of that name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import ConfigError, StoreError
from .files import publishing
from .grid import Window
from .overviews import (
    aligned,
    level_count,
    raster_windows,
    read_ahead,
    remove_stage,
    rio_window,
    stage_paths,
    stage_writer,
    vrt_with_overviews,
)
from .overviews import to_dn as _convert
from .store import INPUT_ARRAYS, SceneStore

log = logging.getLogger(__name__)

MS_UP = "ms_up"
COMPRESSIONS = ("deflate", "zstd", "lzw")
RESAMPLINGS = ("average", "nearest", "bilinear", "cubic", "mode")
_THREADS = 2  # read + convert threads of the export (zarr and numpy release the GIL)
_AHEAD = 4  # windows read ahead at most
_STREAM_OVERVIEWS = True  # False: GDAL builds them (benchmarks/speed.py's A/B)


@dataclass(frozen=True, kw_only=True)
class CogOptions:
    """How the COG is written.

    Attributes
    ----------
    dtype
        Output dtype; ``None`` = the MS source dtype (the PAN's for ``pan``).
    compress
        ``"deflate"``, ``"zstd"`` or ``"lzw"`` (always with a predictor).
    level
        Deflate/zstd level; ``None`` = GDAL's default (6 for deflate). The default 1 costs a
        third of level 6's CPU for files about 4 % larger (4000² x 8 uint16:
        ``benchmarks/results/speed.md``).
    blocksize
        Internal tile edge in pixels (a multiple of 16, at least 128).
    overview_resampling
        Resampling of the internal overviews.
    cache_mb
        GDAL block cache during the export, MiB (bounds memory; GDAL's default is 5% of RAM).
    """

    dtype: str | None = None
    compress: str = "deflate"
    level: int | None = 1
    blocksize: int = 512
    overview_resampling: str = "average"
    cache_mb: int = 256

    def __post_init__(self) -> None:
        if self.compress not in COMPRESSIONS:
            raise ConfigError(
                "Unknown compression.", expected=" or ".join(COMPRESSIONS), got=self.compress
            )
        if self.blocksize < 128 or self.blocksize % 16:
            raise ConfigError(
                "The COG block size must be a multiple of 16, at least 128 (GDAL's COG driver).",
                got=self.blocksize,
                fix="use 256 or 512.",
            )
        if self.overview_resampling not in RESAMPLINGS:
            raise ConfigError(
                "Unknown overview resampling.",
                expected=", ".join(RESAMPLINGS),
                got=self.overview_resampling,
            )
        if self.dtype is not None and not _is_pixel_dtype(self.dtype):
            raise ConfigError(
                "Unknown output dtype.",
                expected="one of " + ", ".join(PIXEL_DTYPES),
                got=repr(self.dtype),
                fix="pass e.g. --dtype uint16 or --dtype float32.",
            )


PIXEL_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")


def _is_pixel_dtype(name: str) -> bool:
    try:
        return np.dtype(name).name in PIXEL_DTYPES
    except TypeError:
        return False


@dataclass(frozen=True, kw_only=True)
class _Source:
    """A readable (B, H, W) band stack with its grid."""

    shape: tuple[int, int, int]
    dtype: np.dtype[Any]
    transform: tuple[float, ...]
    scale: float  # multiply to get DN
    step: int  # rows/cols per read
    read: Callable[[Window], NDArray[Any]]


def ms_up_window(store: SceneStore, window: Window) -> NDArray[Any]:
    """MS replicated onto the PAN grid in ``window`` (PAN pixels): ``(B, H', W')``, source DN."""
    r = store.meta.ratio
    ms_win = Window(window.y0 // r, -(-window.y1 // r), window.x0 // r, -(-window.x1 // r))
    ms = store.read_ms(ms_win)
    up = np.repeat(np.repeat(ms, r, axis=1), r, axis=2)
    inner = window.relative_to(ms_win.scaled(r))
    return up[(slice(None), *inner.slices)]


def _source(store: SceneStore, name: str, *, whole: bool = True) -> _Source:
    """How to read array ``name``; ``whole``: an output must be finished (not while streamed)."""
    meta = store.meta
    t = meta.tile
    if name == MS_UP and MS_UP not in store.array_names:
        return _Source(
            shape=(meta.n_bands, *meta.pan_shape_yx),
            dtype=np.dtype(meta.dtype),
            transform=meta.pan_transform,
            scale=1.0,
            step=t,
            read=lambda w: ms_up_window(store, w),
        )
    arr = store.array(name)
    if whole and name not in INPUT_ARRAYS:
        store.require_complete(name)
    if name == "pan":
        return _Source(
            shape=(1, *meta.pan_shape_yx),
            dtype=np.dtype(meta.pan_dtype),
            transform=meta.pan_transform,
            scale=1.0,
            step=t,
            read=lambda w: store.read_pan(w)[None],
        )
    on_ms = name == "ms"
    units = store.units(name)
    return _Source(
        shape=tuple(int(s) for s in arr.shape),  # type: ignore[arg-type]
        dtype=np.dtype(arr.dtype) if name in INPUT_ARRAYS else np.dtype(meta.dtype),
        transform=meta.ms_transform if on_ms else meta.pan_transform,
        scale=meta.dn_max if units == "normalised" else 1.0,
        step=t // meta.ratio if on_ms else t,
        read=lambda w: store.read_output(name, w),  # a damaged chunk: StoreError
    )


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise StoreError(
            "The output file already exists.",
            path=out,
            expected="a path that does not exist yet",
            got="an existing file",
            fix="choose another -o path or pass --overwrite.",
        )
    if not out.parent.is_dir():
        raise StoreError(
            "The output folder does not exist.",
            path=out.parent,
            expected="an existing folder",
            got="no such folder",
            fix="create it first.",
        )


def _output_dtype(opts: CogOptions, src: _Source, path: Path) -> np.dtype[Any]:
    try:
        return np.dtype(opts.dtype) if opts.dtype else src.dtype
    except TypeError as exc:
        raise ConfigError(
            "Unknown output dtype.", path=path, got=opts.dtype, fix="use e.g. uint16 or float32."
        ) from exc


def _prefetch(
    src: _Source, dtype: np.dtype[Any], nodata: float | None
) -> Iterator[tuple[Window, NDArray[Any]]]:
    """``(window, converted block)`` in raster order, read and converted ahead on threads."""

    def job(w: Window) -> NDArray[Any]:
        return _convert(src.read(w), src.scale, dtype, nodata)

    return read_ahead(raster_windows(src.shape[1:], src.step), job, _THREADS, _AHEAD)


def _write_intermediate(
    src: _Source,
    tmp: Path,
    profile: dict[str, Any],
    dtype: np.dtype[Any],
    nodata: float | None,
    describe: Callable[[Any], None],
    levels: Sequence[Path] = (),
) -> None:
    """Full resolution into ``tmp`` and, as it streams, the overview ``levels`` (one file each)."""
    with contextlib.ExitStack() as stack:
        dst, pyramid = stage_writer(stack, tmp, profile, dtype, nodata, levels)
        describe(dst)
        for w, block in _prefetch(src, dtype, nodata):
            dst.write(block, window=rio_window(w))
            pyramid.add(block, w)


def output_nodata(nodata: float | None, dtype: np.dtype[Any]) -> float | None:
    """The product's no-data value: the store's, else NaN for a floating-point product."""
    return float("nan") if nodata is None and np.issubdtype(dtype, np.floating) else nodata


def export_cog(
    store_path: str | Path,
    array_name: str,
    out_path: str | Path,
    *,
    options: CogOptions | None = None,
    overwrite: bool = False,
    timings: dict[str, float] | None = None,
) -> Path:
    """Write a store array as a Cloud-Optimized GeoTIFF.

    Parameters
    ----------
    store_path
        A complete scene store.
    array_name
        ``ms_up``, an output name, or ``pan``/``ms``/``gt``. Outputs and ``ms_up`` are
        ``(B, H, W)`` on the PAN grid; ``ms`` is written on the MS grid.
    out_path
        Target ``.tif``.
    options
        Dtype, compression, block size, overview resampling (:class:`CogOptions`).
    overwrite
        Replace an existing file.
    timings
        Filled with the seconds of the two parts: ``stage`` (read, convert, write the stage
        files and overview levels) and ``assemble`` (GDAL's COG copy: compression, layout).

    Returns
    -------
    Path
        ``out_path``.
    """
    import rasterio

    opts = options or CogOptions()
    out = Path(out_path)
    _check_out(out, overwrite)
    store = SceneStore.open(store_path)
    store.verify_chunks()
    src = _source(store, array_name)
    dtype = _output_dtype(opts, src, out)
    nodata = output_nodata(store.meta.nodata, dtype)
    profile = _profile(src, dtype, nodata, store.meta.crs, opts)
    tmp, vrt, part, levels = stage_paths(out, _streamed_levels(src, opts))
    parts = timings if timings is not None else {}
    try:
        with rasterio.Env(GDAL_CACHEMAX=opts.cache_mb * 1024 * 1024), publishing(out):
            t0 = time.perf_counter()
            _write_intermediate(
                src, tmp, profile, dtype, nodata, lambda d: _describe(d, store, array_name), levels
            )
            t1 = time.perf_counter()
            _assemble(
                tmp, vrt, part, levels, _cog_creation(opts, dtype, own_overviews=bool(levels))
            )
            parts.update(stage=t1 - t0, assemble=time.perf_counter() - t1)
        os.replace(part, out)
    finally:
        remove_stage((tmp, vrt, part, *levels))
    log.info("exported %s/%s -> %s (%s)", store.path, array_name, out, dtype)
    return out


def _streamed_levels(src: _Source, opts: CogOptions) -> int:
    """Overview levels averaged while the blocks stream (0: GDAL's COG driver builds them)."""
    n = level_count(src.shape[1:], opts.blocksize)
    own = opts.overview_resampling == "average" and aligned(src.shape[1:], src.step, n)
    return n if own and _STREAM_OVERVIEWS else 0


def _assemble(tmp: Path, vrt: Path, part: Path, levels: Sequence[Path], co: dict[str, Any]) -> None:
    """GDAL's COG driver copies the stage file (with its streamed ``levels``) into ``part``."""
    import rasterio
    import rasterio.shutil

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        source = tmp
        if levels:
            rasterio.shutil.copy(tmp, vrt, driver="VRT")
            vrt_with_overviews(vrt, levels)
            source = vrt
        rasterio.shutil.copy(source, part, driver="COG", **co)


def _profile(
    src: _Source, dtype: np.dtype[Any], nodata: float | None, crs: str | None, opts: CogOptions
) -> dict[str, Any]:
    from affine import Affine

    b, h, w = src.shape
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": b,
        "dtype": dtype.name,
        "nodata": nodata,
        "tiled": True,
        "blockxsize": opts.blocksize,
        "blockysize": opts.blocksize,
        "bigtiff": "if_safer",
        # the stage files take the (B, h, w) blocks as they are; the COG driver interleaves
        # once while it copies (same COG bytes, ~8 % less export CPU than pixel-interleaved
        # stage files, which GDAL interleaves on the write and de-interleaves on the read)
        "interleave": "band",
    }
    if crs is not None:
        profile["crs"] = crs
        profile["transform"] = Affine(*src.transform[:6])
    else:
        log.warning("the scene is not georeferenced: exporting without CRS or geotransform")
    return profile


def _cog_creation(
    opts: CogOptions, dtype: np.dtype[Any], *, own_overviews: bool = False
) -> dict[str, Any]:
    co: dict[str, Any] = {
        "COMPRESS": opts.compress.upper(),
        "PREDICTOR": "YES",
        "BLOCKSIZE": opts.blocksize,
        "OVERVIEWS": "FORCE_USE_EXISTING" if own_overviews else "AUTO",
        "OVERVIEW_RESAMPLING": opts.overview_resampling.upper(),
        "BIGTIFF": "IF_SAFER",
        "NUM_THREADS": "ALL_CPUS",
    }
    if opts.level is not None and opts.compress != "lzw":
        co["LEVEL"] = opts.level
    return co


def _describe(dst: Any, store: SceneStore, array_name: str) -> None:
    """Band names and provenance tags on the open intermediate (the COG copy keeps them)."""
    names = ["pan"] if array_name == "pan" else list(store.meta.bands)
    for i, name in enumerate(names[: dst.count], start=1):
        dst.set_band_description(i, name)
    # A run's array is named by its run key, which includes the output path; the product's
    # bytes must not depend on where it was written, so the tag keeps the kind only.
    label = array_name.split("-", 1)[0] if array_name.startswith("fused-") else array_name
    dst.update_tags(
        pantailor_version=store.meta.version,
        sensor=store.meta.sensor,
        array=label,
        dn_max=str(store.meta.dn_max),
    )


__all__ = ["MS_UP", "CogOptions", "export_cog", "ms_up_window"]
