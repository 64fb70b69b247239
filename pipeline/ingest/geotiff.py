"""GeoTIFF reader: a PAN GeoTIFF plus one multi-band MS GeoTIFF, or several MS band files.

Read lazily with rioxarray as Dask arrays chunked by rows. A truncated file opens fine (GDAL reads
the header only) and fails when its last blocks are read, possibly much later on a worker; so the
reader probes the last row of every band on open and names the file if it cannot be read.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GridMismatchError, InputError
from ..sensors import SensorSpec
from .checks import check_dtype
from .model import Inputs, Raster

SUFFIXES = (".tif", ".tiff")


def _unreadable(path: Path, exc: BaseException) -> InputError:
    return InputError(
        "Cannot read the GeoTIFF.",
        path=path,
        expected="a complete raster GDAL can read",
        got=str(exc),
        fix="check the path; if the file is truncated (an interrupted copy or download), "
        "fetch it again (gdalinfo -checksum FILE reads every block).",
    )


def probe(path: Path) -> None:
    """Read the last row of every band of ``path``: a truncated file fails here, not later."""
    import rasterio
    from rasterio.windows import Window

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                src.read(window=Window(0, src.height - 1, src.width, 1))
    except (OSError, rasterio.errors.RasterioError) as exc:
        raise _unreadable(path, exc) from exc


def read_geotiff(path: Path, rows: int) -> Raster:
    """Open one GeoTIFF lazily (Dask, ``rows`` rows per chunk) after probing it."""
    import rasterio
    import rioxarray

    probe(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            arr: Any = rioxarray.open_rasterio(
                path, chunks={"band": -1, "y": max(rows, 1), "x": -1}, lock=False, cache=False
            )
    except (OSError, rasterio.errors.RasterioError) as exc:
        raise _unreadable(path, exc) from exc
    t = arr.rio.transform()
    return Raster(
        paths=(path,),
        data=arr.data,
        crs=arr.rio.crs,
        transform=(t.a, t.b, t.c, t.d, t.e, t.f),
        nodata=None if arr.rio.nodata is None else float(arr.rio.nodata),
    )


def stack_ms(parts: Sequence[Raster]) -> Raster:
    """Stack several MS files (each ``(b_i, h, w)``) into one ``(sum b_i, h, w)`` raster."""
    import dask.array as da

    first = parts[0]
    for p in parts[1:]:
        same = (
            p.crs == first.crs
            and p.shape_yx == first.shape_yx
            and np.allclose(
                p.transform, first.transform, rtol=0, atol=1e-6 * abs(first.transform[0])
            )
        )
        if not same:
            raise GridMismatchError(
                "The MS files do not share one grid.",
                path=[first.paths[0], p.paths[0]],
                expected=f"{first.shape_yx} px, transform {first.transform}, CRS {first.crs}",
                got=f"{p.shape_yx} px, transform {p.transform}, CRS {p.crs}",
                fix="pass MS band files of the same product and resolution.",
            )
        check_dtype(p.data.dtype, p.paths)
        if np.dtype(p.data.dtype) != np.dtype(first.data.dtype):
            raise InputError(
                "The MS files have different data types.",
                path=[first.paths[0], p.paths[0]],
                expected=str(first.data.dtype),
                got=str(p.data.dtype),
                fix="convert them to one data type.",
            )
    nodatas = {p.nodata for p in parts}
    return replace(
        first,
        paths=tuple(q for p in parts for q in p.paths),
        data=da.concatenate([p.data for p in parts], axis=0),
        nodata=nodatas.pop() if len(nodatas) == 1 else first.nodata,
    )


class GeoTiffReader:
    """``PAN.tif MS.tif`` or ``PAN.tif B1.tif B2.tif ...`` (bands stacked in the order given)."""

    name = "geotiff"

    def accepts(self, files: Sequence[Path]) -> bool:
        """Two or more ``.tif``/``.tiff`` files."""
        return len(files) >= 2 and {f.suffix.lower() for f in files} <= set(SUFFIXES)

    def read(
        self, files: Sequence[Path], sensor: SensorSpec, *, patch: int | None, rows: int
    ) -> Inputs:
        """Open PAN (``files[0]``) and MS (the rest) lazily."""
        pan = read_geotiff(files[0], rows)
        ms = stack_ms([read_geotiff(f, max(rows // sensor.ratio, 1)) for f in files[1:]])
        if int(pan.data.shape[0]) != 1:
            raise InputError(
                "The PAN file must have one band.",
                path=files[0],
                expected="1 band",
                got=f"{pan.data.shape[0]} bands",
                fix="pass the PAN first, then the MS file(s).",
            )
        return Inputs(pan=pan, ms=ms)


__all__ = ["SUFFIXES", "GeoTiffReader", "probe", "read_geotiff", "stack_ms"]
