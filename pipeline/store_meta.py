"""The scene store's metadata record (group attribute ``pantailor``) and its layout facts.

See :mod:`pipeline.store` for the layout. :class:`SceneMeta` is everything a worker needs to know
about a scene - grid, radiometry, no-data, the whole sensor spec - so that tasks carry only the
store's path.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import StoreError
from .ingest import Scene, Transform
from .sensors import SensorSpec, get_sensor

ATTRS_KEY = "pantailor"
INPUT_ARRAYS = ("pan", "ms", "gt")
UNITS = ("normalised", "dn")
_HASH_BLOCK = 1 << 22


@dataclass(frozen=True, kw_only=True)
class SourceFile:
    """One input file: its path, size in bytes and SHA-256 hex digest."""

    path: str
    bytes: int
    sha256: str

    @classmethod
    def of(cls, path: str | Path) -> SourceFile:
        """Describe ``path`` (reads it once, streaming, to hash it)."""
        p = Path(path)
        digest = hashlib.sha256()
        with p.open("rb") as fh:
            for block in iter(lambda: fh.read(_HASH_BLOCK), b""):
                digest.update(block)
        return cls(path=str(p.resolve()), bytes=p.stat().st_size, sha256=digest.hexdigest())


@dataclass(frozen=True, kw_only=True)
class SceneMeta:
    """Everything a store records about its scene (the group attribute ``pantailor``).

    Attributes
    ----------
    version
        pantailor version that wrote the store.
    sensor
        Canonical sensor name.
    ratio
        PAN/MS pixel-size ratio.
    tile
        Tile edge ``T`` in PAN pixels (PAN chunks ``(T, T)``, MS chunks ``(B, T/r, T/r)``).
    pan_shape_yx
        ``(H, W)`` of the PAN; the MS is ``(B, H/r, W/r)``.
    n_bands
        Number of MS bands ``B``.
    crs
        CRS as WKT, or ``None`` for a scene on a plain pixel grid.
    pan_transform, ms_transform
        Affine coefficients ``(a, b, c, d, e, f)`` of the PAN and MS grids.
    alignment
        ``"corner"`` or ``"centre"`` (see :class:`pipeline.scene.Scene`).
    nodata
        The no-data DN, or ``None``.
    dtype
        MS source dtype (the default export dtype).
    pan_dtype
        PAN source dtype.
    dn_max
        DN mapped to 1.0 when scaling to float.
    bands
        MS band names.
    has_gt
        Whether a reference ``gt`` array is stored.
    sources
        Input files with sizes and checksums.
    complete
        ``True`` only once everything else has been written.
    sensor_spec
        The whole :class:`~pipeline.sensors.SensorSpec` (its :meth:`~SensorSpec.to_attrs`):
        workers read the sensor from here, so a custom sensor (``--sensor-file``) runs anywhere.
        ``None`` in stores written before it existed (then looked up by name).
    radiometry
        What the ingest's radiometry check found and did (statistics of PAN and MS, the final
        ``dn_max`` and where it came from, ``actions``: automatic normalisations), for the report.
    """

    version: str
    sensor: str
    ratio: int
    tile: int
    pan_shape_yx: tuple[int, int]
    n_bands: int
    crs: str | None
    pan_transform: Transform
    ms_transform: Transform
    alignment: str
    nodata: float | None
    dtype: str
    pan_dtype: str
    dn_max: float
    bands: tuple[str, ...]
    has_gt: bool = False
    sources: tuple[SourceFile, ...] = ()
    complete: bool = False
    sensor_spec: dict[str, Any] | None = None
    radiometry: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> SensorSpec:
        """The scene's sensor, from the stored spec (by name for old stores)."""
        if self.sensor_spec is None:
            return get_sensor(self.sensor)
        return SensorSpec.from_attrs(self.sensor_spec)

    @property
    def ms_shape_yx(self) -> tuple[int, int]:
        """``(h, w)`` of the MS."""
        return (self.pan_shape_yx[0] // self.ratio, self.pan_shape_yx[1] // self.ratio)

    @property
    def georeferenced(self) -> bool:
        """Whether the scene has a CRS."""
        return self.crs is not None

    def to_attrs(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_attrs(cls, raw: dict[str, Any], path: str | Path = "") -> SceneMeta:
        """Inverse of :meth:`to_attrs`; raises :class:`StoreError` on a malformed record."""
        try:
            return cls(
                **{
                    **raw,
                    "pan_shape_yx": tuple(raw["pan_shape_yx"]),
                    "pan_transform": tuple(raw["pan_transform"]),
                    "ms_transform": tuple(raw["ms_transform"]),
                    "bands": tuple(raw["bands"]),
                    "sources": tuple(SourceFile(**s) for s in raw.get("sources", ())),
                }
            )
        except (KeyError, TypeError) as exc:
            raise StoreError(
                "The scene store's metadata is malformed.",
                path=path,
                expected="the 'pantailor' group attributes written by pantailor ingest",
                got=str(exc),
                fix="re-ingest the scene with pantailor ingest --overwrite.",
            ) from exc


def scene_meta(scene: Scene, tile: int, *, hash_sources: bool = True) -> SceneMeta:
    """The metadata of ``scene`` stored with tile edge ``tile`` (``complete=False``)."""
    sources = tuple(
        SourceFile.of(p) if hash_sources else SourceFile(path=str(p), bytes=0, sha256="")
        for p in scene.sources
    )
    return SceneMeta(
        version=__version__,
        sensor=scene.sensor.name,
        ratio=scene.ratio,
        tile=tile,
        pan_shape_yx=scene.pan_shape_yx,
        n_bands=scene.n_bands,
        crs=scene.crs,
        pan_transform=scene.pan_transform,
        ms_transform=scene.ms_transform,
        alignment=scene.alignment,
        nodata=scene.nodata,
        dtype=str(np.dtype(scene.ms.dtype)),
        pan_dtype=str(np.dtype(scene.pan.dtype)),
        dn_max=float(scene.dn_max),
        bands=tuple(scene.sensor.bands),
        has_gt=scene.gt is not None,
        sources=sources,
        sensor_spec=scene.sensor.to_attrs(),
        radiometry={"dn_max": float(scene.dn_max), "dn_max_from": scene.dn_max_from},
    )


def fill_value(dtype: np.dtype[Any], nodata: float | None) -> float | int:
    if np.issubdtype(dtype, np.floating):
        return float("nan") if nodata is None else float(nodata)
    return 0 if nodata is None else int(nodata)


def is_store_dir(path: Path) -> bool:
    return path.is_dir() and (path / "zarr.json").is_file()


__all__ = [
    "ATTRS_KEY",
    "INPUT_ARRAYS",
    "UNITS",
    "SceneMeta",
    "SourceFile",
    "fill_value",
    "is_store_dir",
    "scene_meta",
]
