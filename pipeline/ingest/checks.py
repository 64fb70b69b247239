"""Client-side checks of a PAN/MS pair before anything is computed: dtype, bands, CRS, ratio,
alignment, extent and no-data (the radiometry has its own module, :mod:`.radiometry`).

Grid check
----------
With ``r`` the sensor ratio, PAN pixel size ``p`` and MS pixel size ``r p`` (checked), let
``delta`` be the PAN origin in PAN pixels of the MS grid (per axis). Two co-registrations exist:

* **corner-aligned** (``delta = 0``): each ``r x r`` PAN block lies exactly under one MS pixel;
* **centre-aligned** (``delta = +-1/2, +-3/2, ...`` up to ``(r-1)/2``, ``r`` even): PAN pixel
  centres fall on MS pixel centres. Landsat products have ``delta = -1/2`` (the PAN starts half a
  PAN pixel before the MS).

Any other offset means the grids are not co-registered. Extents must then agree, i.e.
``H = r h`` (a PAN remainder of fewer than ``r`` trailing rows/columns is cropped with a warning).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GridMismatchError, InputError
from ..sensors import SensorSpec
from .model import IDENTITY, Raster

log = logging.getLogger(__name__)

SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
DEFAULT_TOLERANCE = 0.25


def check_dtype(dtype: Any, paths: Sequence[Path]) -> None:
    if str(np.dtype(dtype)) not in SUPPORTED_DTYPES:
        raise InputError(
            "Unsupported pixel data type.",
            path=list(paths),
            expected="one of " + ", ".join(SUPPORTED_DTYPES),
            got=str(np.dtype(dtype)),
            fix="convert the file, e.g. gdal_translate -ot UInt16 (or Float32).",
        )


def _check_crs(pan: Raster, ms: Raster) -> None:
    if pan.crs == ms.crs:
        return
    raise GridMismatchError(
        "PAN and MS have different coordinate reference systems.",
        path=[*pan.paths, *ms.paths],
        expected=f"the PAN CRS {pan.crs}",
        got=f"MS CRS {ms.crs}",
        fix="reproject one onto the other's CRS (gdalwarp -t_srs) keeping the pixel sizes.",
    )


def pixel_grid(raster: Raster) -> bool:
    return raster.crs is None and np.allclose(raster.transform, IDENTITY)


def _check_ratio(pan: Raster, ms: Raster, ratio: int) -> None:
    pa, pb, _, pd, pe, _ = pan.transform
    ma, mb, _, md, me, _ = ms.transform
    pairs = [(m, p) for m, p in ((ma, pa), (mb, pb), (md, pd), (me, pe)) if abs(p) > 0]
    got = [m / p for m, p in pairs]
    ok = all(abs(g - ratio) <= 1e-3 * ratio for g in got) and all(
        abs(m) <= 1e-9 * abs(ma) for m, p in ((mb, pb), (md, pd)) if p == 0
    )
    turned = [(n, r, a) for n, r in (("PAN", pan), ("MS", ms)) if (a := _rotation(r)) is not None]
    if turned != [] and not ok:
        name, raster, angle = turned[0]
        raise GridMismatchError(
            f"The {name} grid is rotated or skewed; the other is not the same way.",
            path=raster.paths,
            expected="north-up grids (no rotation or skew terms), or both turned alike",
            got=f"{name} rotated by {angle:.4g} degrees (transform {raster.transform[:6]})",
            fix="warp the rotated raster north-up (gdalwarp -t_srs its own CRS) or both alike.",
        )
    if not ok:
        raise GridMismatchError(
            "The MS/PAN pixel-size ratio does not match the sensor.",
            path=[*pan.paths, *ms.paths],
            expected=f"MS pixels exactly {ratio} times the PAN pixels",
            got=f"ratios {', '.join(f'{g:.4g}' for g in got)} (PAN {pan.transform[:5:4]}, "
            f"MS {ms.transform[:5:4]})",
            fix="pass the sensor whose ratio matches, or resample the MS to ratio x the PAN pixel.",
        )


def _rotation(raster: Raster) -> float | None:
    """The angle in degrees of the grid's first axis from east where it has rotation or skew
    terms (``b`` or ``d`` of the affine transform), else ``None``."""
    a, b, _, d, _, _ = raster.transform[:6]
    if b == 0 and d == 0:
        return None
    return math.degrees(math.atan2(d, a))


def _origin_offset(pan: Raster, ms: Raster, ratio: int) -> tuple[float, float]:
    """PAN origin in PAN pixels of the MS grid: ``(dx, dy)``."""
    a, b, c, d, e, f = ms.transform
    x, y = pan.transform[2] - c, pan.transform[5] - f
    det = a * e - b * d
    col, row = (e * x - b * y) / det, (a * y - d * x) / det  # inverse of [[a, b], [d, e]]
    return (col * ratio, row * ratio)


def _alignment_of(delta: float, ratio: int, tol: float) -> str | None:
    if abs(delta) <= tol:
        return "corner"
    frac = delta - math.floor(delta)
    if ratio % 2 == 0 and abs(frac - 0.5) <= tol and abs(delta) <= (ratio - 1) / 2 + tol:
        return "centre"
    return None


def _check_alignment(pan: Raster, ms: Raster, ratio: int, tol: float) -> str:
    dx, dy = _origin_offset(pan, ms, ratio)
    kinds = {_alignment_of(dx, ratio, tol), _alignment_of(dy, ratio, tol)}
    if len(kinds) == 1 and None not in kinds:
        return kinds.pop()  # type: ignore[return-value]
    raise GridMismatchError(
        "PAN and MS grids are not co-registered (their origins disagree).",
        path=[*pan.paths, *ms.paths],
        expected=f"the PAN origin at 0 PAN pixels from the MS origin (corner-aligned) or at "
        f"+-1/2 ... +-{(ratio - 1) / 2} (centre-aligned), within {tol}",
        got=f"offset x {dx:.3f}, y {dy:.3f} PAN pixels",
        fix="crop both to a common extent on the MS pixel grid (gdal_translate -projwin).",
    )


def _fit_extent(pan: Raster, ms: Raster, ratio: int) -> Raster:
    """Return ``pan`` cropped so that its shape is exactly ``ratio`` x the MS shape."""
    (hp, wp), (hm, wm) = pan.shape_yx, ms.shape_yx
    extra = (hp - ratio * hm, wp - ratio * wm)
    if extra == (0, 0):
        return pan
    if not all(0 <= e < ratio for e in extra):
        raise GridMismatchError(
            "PAN and MS extents differ.",
            path=[*pan.paths, *ms.paths],
            expected=f"PAN {ratio * hm} x {ratio * wm} for MS {hm} x {wm} (ratio {ratio})",
            got=f"PAN {hp} x {wp}",
            fix="crop both to their common extent, or check that the files belong together.",
        )
    log.warning(
        "cropping %d trailing PAN rows and %d columns to fit the MS grid (%s)",
        *extra,
        pan.paths[0] if pan.paths else "PAN",
    )
    return replace(pan, data=pan.data[..., : ratio * hm, : ratio * wm])


def _check_bands(ms: Raster, sensor: SensorSpec) -> None:
    if int(ms.data.shape[0]) != sensor.n_bands:
        raise InputError(
            f"The MS band count does not match {sensor.title}.",
            path=list(ms.paths),
            expected=f"{sensor.n_bands} bands ({', '.join(sensor.bands)})",
            got=f"{ms.data.shape[0]} bands",
            fix="pass all MS band files in order, or the sensor that matches (--sensor).",
        )


def resolve_nodata(pan: Raster, ms: Raster, given: float | None) -> float | None:
    if given is not None:
        return _holdable(float(given), "--nodata", pan, ms)
    if pan.nodata is not None and ms.nodata is not None and pan.nodata != ms.nodata:
        raise InputError(
            "PAN and MS declare different nodata values.",
            path=[*pan.paths, *ms.paths],
            expected="one nodata value",
            got=f"PAN {pan.nodata}, MS {ms.nodata}",
            fix="pass the value to use (--nodata).",
        )
    found = pan.nodata if pan.nodata is not None else ms.nodata
    return None if found is None else _holdable(float(found), "the files' nodata", pan, ms)


def _holdable(value: float, what: str, *rasters: Raster) -> float:
    """``value`` if every integer input can hold it (else it could never mark a pixel)."""
    for r in rasters:
        dt = np.dtype(r.data.dtype)
        if not np.issubdtype(dt, np.integer):
            continue
        info = np.iinfo(dt)
        if not (math.isfinite(value) and value.is_integer() and info.min <= value <= info.max):
            raise InputError(
                f"The no-data value cannot occur in a {dt} input.",
                path=list(r.paths),
                expected=f"a whole number in [{info.min}, {info.max}]",
                got=f"{what} {value}",
                fix="pass the value the files use for no-data (--nodata), or none: "
                "NaN and +-Inf are always no-data in float inputs.",
            )
    return value


def decimate(ms: Raster, k: int) -> Raster:
    """Keep every ``k``-th MS pixel (data stored nearest-upsampled by ``k``, e.g. SpaceNet)."""
    if k == 1:
        return ms
    if k < 1:
        raise InputError("The MS decimation must be >= 1.", got=k, fix="use e.g. 2.")
    a, b, c, d, e, f = ms.transform
    t = (a, b, c, d, e, f) if pixel_grid(ms) else (a * k, b * k, c, d * k, e * k, f)
    return replace(ms, data=ms.data[:, ::k, ::k], transform=t)


def validate(pan: Raster, ms: Raster, sensor: SensorSpec, tol: float) -> tuple[Raster, Raster, str]:
    """All grid checks; returns (pan, ms with final transforms, alignment)."""
    check_dtype(pan.data.dtype, pan.paths)
    check_dtype(ms.data.dtype, ms.paths)
    _check_bands(ms, sensor)
    if pixel_grid(pan) != pixel_grid(ms):
        raise GridMismatchError(
            "Only one of PAN and MS is georeferenced.",
            path=[*pan.paths, *ms.paths],
            expected="both georeferenced or both on a plain pixel grid",
            got=f"PAN transform {pan.transform}, MS transform {ms.transform}",
            fix="georeference both files (or neither).",
        )
    _check_crs(pan, ms)
    r = sensor.ratio
    if pixel_grid(pan):
        ms = replace(ms, transform=(float(r), 0.0, 0.0, 0.0, float(r), 0.0))
        return _fit_extent(pan, ms, r), ms, "corner"
    _check_ratio(pan, ms, r)
    alignment = _check_alignment(pan, ms, r, tol)
    return _fit_extent(pan, ms, r), ms, alignment


__all__ = [
    "DEFAULT_TOLERANCE",
    "SUPPORTED_DTYPES",
    "check_dtype",
    "decimate",
    "pixel_grid",
    "resolve_nodata",
    "validate",
]
