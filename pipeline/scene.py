"""Open a PAN + MS pair (GeoTIFFs or research containers) and validate it on the client.

Inputs
------
* A PAN GeoTIFF plus one multi-band MS GeoTIFF, or plus several MS GeoTIFFs whose bands are
  stacked in the order given (Landsat ships one file per band). Read lazily with rioxarray as
  Dask arrays chunked by rows.
* Research containers: MATLAB ``.mat`` v5 (scipy), v7.3 (HDF5, h5py) and plain ``.h5``, with the
  key conventions ``I_PAN``/``I_MS_LR``/``I_MS``, ``pan``/``lrms``/``ms``/``gt`` and
  ``cropped_gray``/``cropped_im`` (PAN and MS may sit in two files). MATLAB arrays are
  ``H x W x B``; they are returned as ``(B, H, W)``. Containers are not georeferenced: the PAN
  grid is the pixel grid (identity transform), the MS grid has pixel size ``ratio``.

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

Scaling
-------
Models see ``DN / dn_max``; :func:`to_float` and :func:`to_dn` are exact inverses on integer DN.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import GridMismatchError, InputError
from .sensors import SensorSpec, get_sensor

log = logging.getLogger(__name__)

Transform = tuple[float, float, float, float, float, float]
"""Affine coefficients ``(a, b, c, d, e, f)``: ``x = a*col + b*row + c``, ``y = d*col + e*row + f``."""

SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
GEOTIFF_SUFFIXES = (".tif", ".tiff")
CONTAINER_SUFFIXES = (".mat", ".h5", ".hdf5", ".he5")
PAN_KEYS = ("I_PAN", "pan", "PAN", "cropped_gray")
MS_KEYS = ("I_MS_LR", "lrms", "ms", "MS", "I_MS", "cropped_im")
GT_KEYS = ("gt", "GT", "I_GT")
DEFAULT_TOLERANCE = 0.25
_IDENTITY: Transform = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@dataclass(frozen=True, kw_only=True)
class Scene:
    """A validated PAN/MS pair, lazily readable.

    Attributes
    ----------
    pan
        ``(H, W)`` PAN in source DN (a Dask or NumPy array).
    ms
        ``(B, h, w)`` low-resolution MS in source DN with ``H = ratio*h``, ``W = ratio*w``.
    sensor
        The sensor (band count and ratio were checked against it).
    crs
        CRS as WKT, or ``None`` for a scene on a plain pixel grid.
    pan_transform, ms_transform
        Affine coefficients of the PAN and MS grids (pixel grid: PAN identity, MS ``ratio``).
    nodata
        The no-data DN, or ``None``.
    dn_max
        The DN mapped to 1.0 when scaling to float (the sensor's, or overridden for this scene).
    alignment
        ``"corner"`` (each PAN ``ratio x ratio`` block lies under one MS pixel) or ``"centre"``
        (PAN pixel centres fall on MS pixel centres, as in Landsat products).
    gt
        ``(B, H, W)`` reference MS of a reduced-resolution container, else ``None``.
    sources
        The files read.
    """

    pan: Any
    ms: Any
    sensor: SensorSpec
    crs: str | None
    pan_transform: Transform
    ms_transform: Transform
    nodata: float | None
    dn_max: float
    alignment: str = "corner"
    gt: Any = None
    sources: tuple[Path, ...] = ()

    @property
    def ratio(self) -> int:
        """PAN/MS pixel-size ratio."""
        return self.sensor.ratio

    @property
    def pan_shape_yx(self) -> tuple[int, int]:
        """``(H, W)`` of the PAN."""
        return (int(self.pan.shape[0]), int(self.pan.shape[1]))

    @property
    def n_bands(self) -> int:
        """Number of MS bands."""
        return int(self.ms.shape[0])


@dataclass(frozen=True, kw_only=True)
class _Raster:
    """One input before validation: data ``(B, H, W)`` plus its grid."""

    paths: tuple[Path, ...]
    data: Any
    crs: Any  # rasterio CRS or None
    transform: Transform
    nodata: float | None

    @property
    def shape_yx(self) -> tuple[int, int]:
        return (int(self.data.shape[-2]), int(self.data.shape[-1]))


# ----------------------------------------------------------------------------- scaling


def to_float(dn: NDArray[Any], dn_max: float, nodata: float | None = None) -> NDArray[np.float32]:
    """DN -> normalised float32 ``dn / dn_max``; ``nodata`` pixels become NaN. Any shape."""
    x = np.asarray(dn, dtype=np.float32) / np.float32(dn_max)
    if nodata is not None:
        x[np.asarray(dn) == nodata] = np.nan
    return x


def to_dn(
    x: NDArray[Any], dn_max: float, dtype: str | np.dtype[Any], nodata: float | None = None
) -> NDArray[Any]:
    """Normalised float -> DN of ``dtype`` (inverse of :func:`to_float`). Any shape.

    Integer dtypes are rounded and clipped to the dtype's range; NaN becomes ``nodata`` (or 0).
    """
    dt = np.dtype(dtype)
    y = np.asarray(x, dtype=np.float64) * float(dn_max)
    nan = np.isnan(y)
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        y = np.clip(np.rint(np.where(nan, 0.0, y)), info.min, info.max)
    if nan.any():
        y = np.where(nan, np.nan if nodata is None else nodata, y)
        if np.issubdtype(dt, np.integer):
            y = np.where(np.isnan(y), 0, y)
    return y.astype(dt)


# ----------------------------------------------------------------------------- GeoTIFF reading


def _read_geotiff(path: Path, rows: int) -> _Raster:
    import rasterio
    import rioxarray

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            arr: Any = rioxarray.open_rasterio(
                path, chunks={"band": -1, "y": max(rows, 1), "x": -1}, lock=False, cache=False
            )
    except (OSError, rasterio.errors.RasterioError) as exc:
        raise InputError(
            "Cannot read the GeoTIFF.",
            path=path,
            expected="a readable GeoTIFF",
            got=str(exc),
            fix="check the path and that the file is a raster GDAL can open.",
        ) from exc
    t = arr.rio.transform()
    return _Raster(
        paths=(path,),
        data=arr.data,
        crs=arr.rio.crs,
        transform=(t.a, t.b, t.c, t.d, t.e, t.f),
        nodata=None if arr.rio.nodata is None else float(arr.rio.nodata),
    )


def _stack_ms(parts: Sequence[_Raster]) -> _Raster:
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
        _check_dtype(p.data.dtype, p.paths)
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


# ----------------------------------------------------------------------------- containers


def _is_matlab_v73(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(19) == b"MATLAB 7.3 MAT-file"


def _load_container(path: Path) -> dict[str, NDArray[Any]]:
    """All arrays of a container, MATLAB axis order (``H x W x B``, ``N x H x W x B``)."""
    import h5py
    import scipy.io

    try:
        if path.suffix.lower() == ".mat" and not h5py.is_hdf5(path):
            raw = scipy.io.loadmat(path)
            return {k: v for k, v in raw.items() if isinstance(v, np.ndarray) and v.ndim >= 2}
        reverse = _is_matlab_v73(path)  # v7.3 stores MATLAB arrays with reversed axes
        out: dict[str, NDArray[Any]] = {}
        with h5py.File(path, "r") as f:
            for k, v in f.items():
                if isinstance(v, h5py.Dataset) and v.ndim >= 2:
                    a = np.asarray(v[()])
                    out[k] = a.transpose() if reverse else _channels_last(a)
        return out
    except (OSError, ValueError) as exc:
        raise InputError(
            "Cannot read the container.",
            path=path,
            expected="a MATLAB .mat (v5 or v7.3) or HDF5 .h5 file",
            got=str(exc),
            fix="check the path and the file format.",
        ) from exc


def _channels_last(a: NDArray[Any]) -> NDArray[Any]:
    """Plain .h5 files (PanCollection) store ``(N, C, H, W)`` / ``(C, H, W)``: move C last."""
    if a.ndim == 4 or (a.ndim == 3 and a.shape[0] < min(a.shape[1:])):
        return np.moveaxis(a, -3, -1)
    return a


def _pick(arrays: dict[str, NDArray[Any]], keys: Sequence[str]) -> tuple[str, NDArray[Any]] | None:
    for k in keys:
        if k in arrays:
            return k, arrays[k]
    return None


def _to_bhw(a: NDArray[Any], key: str, path: Path, patch: int | None, pan: bool) -> NDArray[Any]:
    """Container array (MATLAB order, optionally with a leading patch axis) -> ``(B, H, W)``."""
    nd_single = 2 if pan else 3
    if pan and a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if pan and a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == nd_single + 1:
        if patch is None or not 0 <= patch < a.shape[0]:
            raise InputError(
                f"Array {key!r} holds {a.shape[0]} patches.",
                path=path,
                expected=f"a patch index 0..{a.shape[0] - 1}",
                got=patch,
                fix="pass patch=<index> (--patch).",
            )
        a = a[patch]
    if a.ndim != nd_single:
        raise InputError(
            f"Array {key!r} has an unexpected number of axes.",
            path=path,
            expected="H x W" if pan else "H x W x B",
            got=a.shape,
            fix="pass a container with the standard layout.",
        )
    return a[None] if pan else np.ascontiguousarray(a.transpose(2, 0, 1))


def _read_containers(paths: Sequence[Path], patch: int | None) -> tuple[_Raster, _Raster, Any]:
    arrays: dict[str, NDArray[Any]] = {}
    origin: dict[str, Path] = {}
    for p in paths:
        for k, v in _load_container(p).items():
            arrays.setdefault(k, v)
            origin.setdefault(k, p)
    found = {"PAN": _pick(arrays, PAN_KEYS), "MS": _pick(arrays, MS_KEYS)}
    for what, hit in found.items():
        if hit is None:
            raise InputError(
                f"No {what} array found in the container(s).",
                path=list(paths),
                expected="one of " + ", ".join(PAN_KEYS if what == "PAN" else MS_KEYS),
                got=", ".join(sorted(arrays)) or "no arrays",
                fix="pass a container with the standard keys (or PAN and MS files together).",
            )
    (pk, pa), (mk, ma) = found["PAN"], found["MS"]  # type: ignore[misc]
    pan = _to_bhw(pa, pk, origin[pk], patch, pan=True)
    ms = _to_bhw(ma, mk, origin[mk], patch, pan=False)
    g = _pick(arrays, GT_KEYS)
    gt = None if g is None else _to_bhw(g[1], g[0], origin[g[0]], patch, pan=False)
    log.info("container keys: PAN %r, MS %r, reference %r", pk, mk, g and g[0])
    mk_raster = _Raster(paths=(origin[mk],), data=ms, crs=None, transform=_IDENTITY, nodata=None)
    pk_raster = _Raster(paths=(origin[pk],), data=pan, crs=None, transform=_IDENTITY, nodata=None)
    return pk_raster, mk_raster, gt


def _container_dn_max(paths: Sequence[Path]) -> float | None:
    """The scale a GRIP-style container states itself (key ``L``: bit depth), else ``None``."""
    import scipy.io

    for p in paths:
        if p.suffix.lower() == ".mat":
            try:
                bits = scipy.io.loadmat(p, variable_names=["L"]).get("L")
            except (OSError, ValueError, NotImplementedError):
                continue
            if bits is not None and np.size(bits) == 1:
                return float(2 ** int(np.asarray(bits).ravel()[0]) - 1)
    return None


# ----------------------------------------------------------------------------- validation


def _check_dtype(dtype: Any, paths: Sequence[Path]) -> None:
    if str(np.dtype(dtype)) not in SUPPORTED_DTYPES:
        raise InputError(
            "Unsupported pixel data type.",
            path=list(paths),
            expected="one of " + ", ".join(SUPPORTED_DTYPES),
            got=str(np.dtype(dtype)),
            fix="convert the file, e.g. gdal_translate -ot UInt16 (or Float32).",
        )


def _check_crs(pan: _Raster, ms: _Raster) -> None:
    if pan.crs == ms.crs:
        return
    raise GridMismatchError(
        "PAN and MS have different coordinate reference systems.",
        path=[*pan.paths, *ms.paths],
        expected=f"the PAN CRS {pan.crs}",
        got=f"MS CRS {ms.crs}",
        fix="reproject one onto the other's CRS (gdalwarp -t_srs) keeping the pixel sizes.",
    )


def _pixel_grid(raster: _Raster) -> bool:
    return raster.crs is None and np.allclose(raster.transform, _IDENTITY)


def _check_ratio(pan: _Raster, ms: _Raster, ratio: int) -> None:
    pa, pb, _, pd, pe, _ = pan.transform
    ma, mb, _, md, me, _ = ms.transform
    pairs = [(m, p) for m, p in ((ma, pa), (mb, pb), (md, pd), (me, pe)) if abs(p) > 0]
    got = [m / p for m, p in pairs]
    ok = all(abs(g - ratio) <= 1e-3 * ratio for g in got) and all(
        abs(m) <= 1e-9 * abs(ma) for m, p in ((mb, pb), (md, pd)) if p == 0
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


def _origin_offset(pan: _Raster, ms: _Raster, ratio: int) -> tuple[float, float]:
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


def _check_alignment(pan: _Raster, ms: _Raster, ratio: int, tol: float) -> str:
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


def _fit_extent(pan: _Raster, ms: _Raster, ratio: int) -> _Raster:
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
        pan.paths[0],
    )
    return replace(pan, data=pan.data[..., : ratio * hm, : ratio * wm])


def _check_bands(ms: _Raster, sensor: SensorSpec) -> None:
    if int(ms.data.shape[0]) != sensor.n_bands:
        raise InputError(
            f"The MS band count does not match {sensor.title}.",
            path=list(ms.paths),
            expected=f"{sensor.n_bands} bands ({', '.join(sensor.bands)})",
            got=f"{ms.data.shape[0]} bands",
            fix="pass all MS band files in order, or the sensor that matches (--sensor).",
        )


def _resolve_nodata(pan: _Raster, ms: _Raster, given: float | None) -> float | None:
    if given is not None:
        return float(given)
    if pan.nodata is not None and ms.nodata is not None and pan.nodata != ms.nodata:
        raise InputError(
            "PAN and MS declare different nodata values.",
            path=[*pan.paths, *ms.paths],
            expected="one nodata value",
            got=f"PAN {pan.nodata}, MS {ms.nodata}",
            fix="pass the value to use (--nodata).",
        )
    return pan.nodata if pan.nodata is not None else ms.nodata


def _decimate(ms: _Raster, k: int) -> _Raster:
    """Keep every ``k``-th MS pixel (data stored nearest-upsampled by ``k``, e.g. SpaceNet)."""
    if k == 1:
        return ms
    if k < 1:
        raise InputError("The MS decimation must be >= 1.", got=k, fix="use e.g. 2.")
    a, b, c, d, e, f = ms.transform
    t = (a, b, c, d, e, f) if _pixel_grid(ms) else (a * k, b * k, c, d * k, e * k, f)
    return replace(ms, data=ms.data[:, ::k, ::k], transform=t)


def _validate(
    pan: _Raster, ms: _Raster, sensor: SensorSpec, tol: float
) -> tuple[_Raster, _Raster, str]:
    """All grid checks; returns (pan, ms with final transforms, alignment)."""
    _check_dtype(pan.data.dtype, pan.paths)
    _check_dtype(ms.data.dtype, ms.paths)
    _check_bands(ms, sensor)
    if _pixel_grid(pan) != _pixel_grid(ms):
        raise GridMismatchError(
            "Only one of PAN and MS is georeferenced.",
            path=[*pan.paths, *ms.paths],
            expected="both georeferenced or both on a plain pixel grid",
            got=f"PAN transform {pan.transform}, MS transform {ms.transform}",
            fix="georeference both files (or neither).",
        )
    _check_crs(pan, ms)
    r = sensor.ratio
    if _pixel_grid(pan):
        ms = replace(ms, transform=(float(r), 0.0, 0.0, 0.0, float(r), 0.0))
        return _fit_extent(pan, ms, r), ms, "corner"
    _check_ratio(pan, ms, r)
    alignment = _check_alignment(pan, ms, r, tol)
    return _fit_extent(pan, ms, r), ms, alignment


# ----------------------------------------------------------------------------- entry point


def open_scene(
    paths: str | Path | Sequence[str | Path],
    sensor: str | SensorSpec,
    *,
    nodata: float | None = None,
    dn_max: float | None = None,
    ms_decimate: int = 1,
    patch: int | None = None,
    rows: int = 512,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Scene:
    """Open and validate a PAN/MS pair.

    Parameters
    ----------
    paths
        ``[PAN.tif, MS.tif]`` or ``[PAN.tif, MS_B1.tif, MS_B2.tif, ...]`` (bands stacked in
        order), or one container ``SCENE.mat`` / ``.h5``, or ``[PAN.mat, MS.mat]``.
    sensor
        Sensor name or spec; fixes the ratio and the band count.
    nodata
        No-data DN overriding the files' (GeoTIFF nodata tags).
    dn_max
        DN mapped to 1.0, overriding the sensor's (e.g. 255 for 8-bit deliveries).
    ms_decimate
        Keep every ``k``-th MS pixel, for MS stored nearest-upsampled by ``k`` (SpaceNet: 2).
        Never guessed.
    patch
        Patch index for containers holding a stack of patches ``(N, H, W, B)``.
    rows
        PAN rows per Dask chunk of GeoTIFF reads (use the tile size).
    tolerance
        Allowed grid misregistration in PAN pixels.

    Returns
    -------
    Scene
        Validated; PAN ``(H, W)``, MS ``(B, H/r, W/r)``.

    Raises
    ------
    InputError, GridMismatchError
        Naming the file(s), what was expected, what was found and the fix.
    """
    spec = get_sensor(sensor)
    files = [Path(p) for p in ([paths] if isinstance(paths, str | Path) else paths)]
    pan, ms, gt, scale = _read_inputs(files, spec, patch, rows)
    ms = _decimate(ms, ms_decimate)
    pan, ms, alignment = _validate(pan, ms, spec, tolerance)
    if gt is not None and tuple(gt.shape) != (spec.n_bands, *pan.shape_yx):
        raise InputError(
            "The reference (gt) does not match the PAN grid.",
            path=list(files),
            expected=(spec.n_bands, *pan.shape_yx),
            got=tuple(gt.shape),
            fix="use a container whose gt is at PAN resolution.",
        )
    if gt is not None:
        _check_dtype(gt.dtype, files)
    crs = None if pan.crs is None else str(pan.crs.to_wkt())
    scale = float(dn_max if dn_max is not None else (scale or spec.dn_max))
    _warn_if_already_normalised(ms, scale)
    return Scene(
        pan=pan.data[0],
        ms=ms.data,
        sensor=spec,
        crs=crs,
        pan_transform=pan.transform,
        ms_transform=ms.transform,
        nodata=_resolve_nodata(pan, ms, nodata),
        dn_max=scale,
        alignment=alignment,
        gt=gt,
        sources=tuple(f.resolve() for f in files),
    )


def _warn_if_already_normalised(ms: _Raster, dn_max: float) -> None:
    """Containers holding floats in [0, 1] (e.g. the cdif sets) want ``dn_max=1``: say so."""
    data = ms.data
    in_memory_float = isinstance(data, np.ndarray) and np.issubdtype(data.dtype, np.floating)
    if in_memory_float and dn_max > 1 and data.size and float(np.nanmax(data)) <= 1.0:
        log.warning(
            "%s holds floats in [0, 1] but dn_max is %g: pass dn_max=1 (--dn-max 1) if the "
            "values are already normalised",
            ms.paths[0],
            dn_max,
        )


def _read_inputs(
    files: Sequence[Path], spec: SensorSpec, patch: int | None, rows: int
) -> tuple[_Raster, _Raster, Any, float | None]:
    """Read the files by kind: ``(pan, ms, gt or None, container-stated dn_max or None)``."""
    missing = [f for f in files if not f.exists()]
    if missing or not files:
        raise InputError(
            "Input file not found.",
            path=missing,
            expected="existing PAN and MS files",
            got="no such file" if missing else "no files",
            fix="check the paths.",
        )
    suffixes = {f.suffix.lower() for f in files}
    if suffixes <= set(CONTAINER_SUFFIXES):
        pan, ms, gt = _read_containers(files, patch)
        return pan, ms, gt, _container_dn_max(files)
    if suffixes <= set(GEOTIFF_SUFFIXES) and len(files) >= 2:
        pan = _read_geotiff(files[0], rows)
        ms = _stack_ms([_read_geotiff(f, max(rows // spec.ratio, 1)) for f in files[1:]])
        if int(pan.data.shape[0]) != 1:
            raise InputError(
                "The PAN file must have one band.",
                path=files[0],
                expected="1 band",
                got=f"{pan.data.shape[0]} bands",
                fix="pass the PAN first, then the MS file(s).",
            )
        return pan, ms, None, None
    raise InputError(
        "Unrecognised input files.",
        path=list(files),
        expected="PAN.tif MS.tif [MS2.tif ...], or one or two .mat/.h5 containers",
        got=", ".join(f.name for f in files),
        fix="pass GeoTIFFs (PAN first) or research containers.",
    )


__all__ = [
    "SUPPORTED_DTYPES",
    "Scene",
    "Transform",
    "open_scene",
    "to_dn",
    "to_float",
]
