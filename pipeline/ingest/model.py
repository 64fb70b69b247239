"""What every reader produces: :class:`Raster` inputs, the validated :class:`Scene`, the protocol.

A reader (one per format: :mod:`.geotiff`, :mod:`.containers`; STAC is one more file) turns a
list of files into :class:`Inputs` - a PAN and an MS :class:`Raster`, an optional reference and
the scale the files state themselves. :func:`pipeline.ingest.open_scene` picks the reader, then
:mod:`.checks` validates the grids and returns a :class:`Scene`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ..sensors import SensorSpec

Transform = tuple[float, float, float, float, float, float]
"""Affine coefficients ``(a, b, c, d, e, f)``: ``x = a*col + b*row + c``, ``y = d*col + e*row + f``."""

IDENTITY: Transform = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
DN_MAX_SOURCES = ("sensor", "container", "option")


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
    dn_max_from
        Where ``dn_max`` came from: ``"sensor"``, ``"container"`` (a bit depth the file states)
        or ``"option"`` (given by the user); the radiometry check may only correct the first.
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
    dn_max_from: str = "sensor"
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
class Raster:
    """One input before validation: data ``(B, H, W)`` plus its grid."""

    paths: tuple[Path, ...]
    data: Any
    crs: Any  # rasterio CRS or None
    transform: Transform
    nodata: float | None

    @property
    def shape_yx(self) -> tuple[int, int]:
        """``(H, W)``."""
        return (int(self.data.shape[-2]), int(self.data.shape[-1]))


@dataclass(frozen=True, kw_only=True)
class Inputs:
    """What a reader returns: PAN ``(1, H, W)``, MS ``(B, h, w)``, optional reference, scale.

    Attributes
    ----------
    pan, ms
        The rasters as read (not validated yet).
    gt
        ``(B, H, W)`` reference of a reduced-resolution container, or ``None``.
    dn_max
        The scale the files state themselves (a container's bit depth), or ``None``.
    """

    pan: Raster
    ms: Raster
    gt: Any = None
    dn_max: float | None = None


class Reader(Protocol):
    """One input format. ``accepts`` decides from the file names; ``read`` opens them lazily."""

    name: str

    def accepts(self, files: Sequence[Path]) -> bool:
        """Whether these files are this reader's format."""
        ...

    def read(
        self, files: Sequence[Path], sensor: SensorSpec, *, patch: int | None, rows: int
    ) -> Inputs:
        """Open ``files`` (PAN first) for ``sensor``; errors name the file."""
        ...


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


__all__ = [
    "DN_MAX_SOURCES",
    "IDENTITY",
    "Inputs",
    "Raster",
    "Reader",
    "Scene",
    "Transform",
    "to_dn",
    "to_float",
]
