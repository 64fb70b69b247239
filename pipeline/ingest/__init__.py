"""Open a PAN + MS pair and validate it on the client: one reader per format, then the checks.

Readers (:class:`~.model.Reader`): :class:`~.geotiff.GeoTiffReader` (PAN GeoTIFF plus one
multi-band MS GeoTIFF or several band files) and :class:`~.containers.ContainerReader`
(``.mat``/``.h5`` research containers). A new format (STAC) is one more module and one more
entry in :data:`READERS`. Grid checks live in :mod:`.checks`; the radiometry checks
(:mod:`.radiometry`) run while the store is written, because they need every pixel.

Models see ``DN / dn_max``; :func:`to_float` and :func:`to_dn` are exact inverses on integer DN.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..sensors import SensorSpec, get_sensor
from .checks import DEFAULT_TOLERANCE, SUPPORTED_DTYPES, check_dtype, decimate, validate
from .checks import resolve_nodata as _resolve_nodata
from .containers import ContainerReader
from .geotiff import GeoTiffReader
from .model import Inputs, Raster, Reader, Scene, Transform, to_dn, to_float

log = logging.getLogger(__name__)

READERS: tuple[Reader, ...] = (ContainerReader(), GeoTiffReader())
"""Tried in order; the first whose ``accepts`` says yes reads the files."""


def read_inputs(
    files: Sequence[Path], spec: SensorSpec, *, patch: int | None = None, rows: int = 512
) -> Inputs:
    """Read ``files`` with the first reader that accepts them (errors name the files)."""
    missing = [f for f in files if not f.exists()]
    if missing or not files:
        raise InputError(
            "Input file not found.",
            path=missing,
            expected="existing PAN and MS files",
            got="no such file" if missing else "no files",
            fix="check the paths.",
        )
    folders = [f for f in files if f.is_dir()]
    if folders:
        raise InputError(
            "An input is a folder, not a file.",
            path=folders,
            expected="PAN and MS image files (a scene store is a run's only input)",
            got="a folder",
            fix="pass the image files inside it, e.g. FOLDER/PAN.tif FOLDER/MS.tif.",
        )
    for reader in READERS:
        if reader.accepts(files):
            return reader.read(files, spec, patch=patch, rows=rows)
    lone_tif = len(files) == 1 and files[0].suffix.lower() in (".tif", ".tiff")
    raise InputError(
        "Only one GeoTIFF: a scene needs the PAN and the MS." if lone_tif
        else "Unrecognised input files.",
        path=list(files),
        expected="PAN.tif MS.tif [MS2.tif ...], or one or two .mat/.h5 containers",
        got=("1 GeoTIFF: " if lone_tif else "") + ", ".join(f.name for f in files),
        fix="pass the PAN GeoTIFF, then the MS file(s)"
        + (" (metrics: FUSED.tif PAN.tif MS.tif)" if lone_tif else ", or research containers")
        + ".",
    )  # fmt: skip


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
        Validated; PAN ``(H, W)``, MS ``(B, H/r, W/r)``. The radiometry is checked when the
        scene is written (:func:`pipeline.store.write_scene`).

    Raises
    ------
    InputError, GridMismatchError
        Naming the file(s), what was expected, what was found and the fix.
    """
    spec = get_sensor(sensor)
    files = [Path(p) for p in ([paths] if isinstance(paths, str | Path) else paths)]
    got = read_inputs(files, spec, patch=patch, rows=rows)
    pan, ms, alignment = validate(got.pan, decimate(got.ms, ms_decimate), spec, tolerance)
    _check_gt(got.gt, spec, pan.shape_yx, files)
    scale, source = _scale(dn_max, got.dn_max, spec)
    return Scene(
        pan=pan.data[0],
        ms=ms.data,
        sensor=spec,
        crs=None if pan.crs is None else str(pan.crs.to_wkt()),
        pan_transform=pan.transform,
        ms_transform=ms.transform,
        nodata=_resolve_nodata(pan, ms, nodata),
        dn_max=float(scale),
        dn_max_from=source,
        alignment=alignment,
        gt=got.gt,
        sources=tuple(f.resolve() for f in files),
    )


def _check_gt(gt: Any, spec: SensorSpec, pan_yx: tuple[int, int], files: Sequence[Path]) -> None:
    if gt is None:
        return
    if tuple(gt.shape) != (spec.n_bands, *pan_yx):
        raise InputError(
            "The reference (gt) does not match the PAN grid.",
            path=list(files),
            expected=(spec.n_bands, *pan_yx),
            got=tuple(gt.shape),
            fix="use a container whose gt is at PAN resolution.",
        )
    check_dtype(gt.dtype, files)


def _scale(given: float | None, stated: float | None, spec: SensorSpec) -> tuple[float, str]:
    """``(dn_max, where it came from)``: the option, else the file's own, else the sensor's."""
    if given is not None:
        if not given > 0:
            raise InputError("dn_max must be > 0.", got=given, fix="pass e.g. --dn-max 2047.")
        return float(given), "option"
    if stated is not None:
        return float(stated), "container"
    return float(spec.dn_max), "sensor"


__all__ = [
    "READERS",
    "SUPPORTED_DTYPES",
    "Inputs",
    "Raster",
    "Reader",
    "Scene",
    "Transform",
    "open_scene",
    "read_inputs",
    "to_dn",
    "to_float",
]
