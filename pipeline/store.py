"""The scene store: one Zarr v3 group per scene holding the inputs, the outputs and their metadata.

Layout (``T`` = tile edge in PAN pixels, ``r`` = ratio)::

    scene.zarr/
      zarr.json          group attrs ``pantailor``: SceneMeta (``complete`` is written last)
      pan                (H, W)      source dtype, chunks (T, T)
      ms                 (B, h, w)   source dtype, chunks (B, T/r, T/r)
      gt                 (B, H, W)   optional reference of a reduced-resolution scene, chunks (B, T, T)
      <output>           (B, H, W)   created by ``create_output``, chunks (B, T, T), fill NaN

PAN and MS chunk grids are aligned with :class:`~pipeline.grid.TileGrid`, so one tile task reads
one aligned window of each and writes exactly one output chunk.

An ingest writes into a hidden temporary sibling (``.scene.zarr.partial-<id>``), marks it
complete and renames it into place at the very end: an interrupted ingest never leaves anything
at the target path, and :meth:`SceneStore.open` refuses a store whose ``complete`` flag is unset.
Ingest streams one tile row at a time, so peak memory depends on the tile size and the scene
width, not on the scene height.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numpy.typing import NDArray

from . import __version__
from .errors import InputError, StoreError
from .grid import TileGrid, Window
from .ingest import Scene, Transform
from .ingest.radiometry import Levels, assess, output_nodata
from .sensors import SensorSpec, get_sensor

log = logging.getLogger(__name__)

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


def _fill(dtype: np.dtype[Any], nodata: float | None) -> float | int:
    if np.issubdtype(dtype, np.floating):
        return float("nan") if nodata is None else float(nodata)
    return 0 if nodata is None else int(nodata)


def _is_store_dir(path: Path) -> bool:
    return path.is_dir() and (path / "zarr.json").is_file()


def _check_target(path: Path, overwrite: bool) -> None:
    if not path.exists():
        return
    if not overwrite:
        raise StoreError(
            "The output store already exists.",
            path=path,
            expected="a path that does not exist yet",
            got="an existing " + ("store" if _is_store_dir(path) else "file or folder"),
            fix="choose another -o path or pass --overwrite.",
        )
    if not _is_store_dir(path):
        raise StoreError(
            "Refusing to overwrite something that is not a Zarr store.",
            path=path,
            expected="a Zarr store (a folder with zarr.json) or nothing",
            got="a file or a folder without zarr.json",
            fix="remove it yourself or choose another -o path.",
        )


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Rename the finished ``tmp`` to ``path``, replacing an old store if allowed."""
    _check_target(path, overwrite)
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
        path.rename(old)
    tmp.rename(path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _row_bands(n: int, step: int) -> Iterator[tuple[int, int]]:
    for y0 in range(0, n, step):
        yield y0, min(y0 + step, n)


def _stream_copy(dst: Any, src: Any, step: int, levels: Levels | None = None) -> None:
    """Copy ``src`` into ``dst`` one band of ``step`` rows (axis -2) at a time (and feed
    ``levels``, the radiometry statistics, with each band)."""
    lead = (slice(None),) * (len(dst.shape) - 2)
    for y0, y1 in _row_bands(int(dst.shape[-2]), step):
        sel = (*lead, slice(y0, y1), slice(None))
        try:
            block = np.asarray(src[sel], dtype=dst.dtype)
        except OSError as exc:  # rasterio's read errors are OSErrors too
            raise SourceReadError(
                "Cannot read the input pixels (the files opened, a read failed).",
                expected="complete rasters",
                got=str(exc),
                fix="the file may be truncated (an interrupted copy or download): fetch it "
                "again; gdalinfo -checksum FILE reads every block.",
            ) from exc
        if levels is not None:
            levels.add(block)
        dst[sel] = block


class SourceReadError(InputError):
    """An input opened but a read of its pixels failed during the ingest (truncated file)."""


Check = Callable[[SceneMeta, dict[str, Levels]], SceneMeta]
"""Called with the metadata and the streamed statistics of ``pan`` and ``ms`` before the store
is published; returns the final metadata or raises (nothing is left at the target then)."""


def create_store(
    path: str | Path,
    meta: SceneMeta,
    *,
    pan: Any,
    ms: Any,
    gt: Any = None,
    overwrite: bool = False,
    check: Check | None = None,
) -> SceneStore:
    """Write a complete store from array-likes, streaming one tile row at a time.

    Parameters
    ----------
    path
        Target ``*.zarr`` folder.
    meta
        Scene metadata (``complete`` is ignored and set last).
    pan, ms, gt
        ``(H, W)``, ``(B, h, w)`` and optional ``(B, H, W)`` sliceable arrays (NumPy, Dask, Zarr):
        only one row band of ``tile`` PAN rows is materialised at a time.
    overwrite
        Replace an existing store at ``path``.
    check
        Radiometry check run on the streamed statistics before publishing (:data:`Check`).

    Raises
    ------
    StoreError
        If ``path`` exists and ``overwrite`` is false (checked before any work).
    """
    path = Path(path)
    _check_target(path, overwrite)
    grid = TileGrid(meta.pan_shape_yx, meta.ratio, meta.tile)  # validates the shapes
    _check_shapes(meta, pan, ms, gt, path)
    tmp = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        group = zarr.open_group(tmp, mode="w-", zarr_format=3)
        group.attrs[ATTRS_KEY] = replace(meta, complete=False).to_attrs()
        t, tm, b = meta.tile, grid.ms_tile, meta.n_bands
        arrays: list[tuple[str, Any, tuple[int, ...], int]] = [
            ("pan", pan, (t, t), t),
            ("ms", ms, (b, tm, tm), tm),
        ]
        if gt is not None:
            arrays.append(("gt", gt, (b, t, t), t))
        levels = {n: Levels(dn_max=meta.dn_max, nodata=meta.nodata) for n in ("pan", "ms")}
        for name, src, chunks, step in arrays:
            dtype = np.dtype(src.dtype)
            dst = group.create_array(
                name,
                shape=tuple(int(s) for s in src.shape),
                dtype=dtype,
                chunks=chunks,
                fill_value=_fill(dtype, meta.nodata),
                dimension_names=("y", "x") if name == "pan" else ("band", "y", "x"),
            )
            _stream_copy(dst, src, step, levels.get(name))
        if check is not None:
            meta = check(meta, levels)
        group.attrs[ATTRS_KEY] = replace(meta, complete=True).to_attrs()
        _publish(tmp, path, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote scene store %s (%s x %s PAN, tile %d)", path, *meta.pan_shape_yx, meta.tile)
    return SceneStore.open(path)


def _check_shapes(meta: SceneMeta, pan: Any, ms: Any, gt: Any, path: Path) -> None:
    h, w = meta.pan_shape_yx
    want = {
        "pan": (h, w),
        "ms": (meta.n_bands, *meta.ms_shape_yx),
        "gt": (meta.n_bands, h, w),
    }
    for name, arr in (("pan", pan), ("ms", ms), ("gt", gt)):
        if arr is not None and tuple(int(s) for s in arr.shape) != want[name]:
            raise StoreError(
                f"The {name} array does not match the scene metadata.",
                path=path,
                expected=want[name],
                got=tuple(arr.shape),
                fix="build the metadata from the same scene (pipeline.store.scene_meta).",
            )


def write_scene(
    scene: Scene,
    path: str | Path,
    *,
    tile: int = 512,
    overwrite: bool = False,
    hash_sources: bool = True,
    gdal_cache_mb: int = 64,
    check_radiometry: bool = True,
) -> SceneStore:
    """Ingest ``scene`` into a new store at ``path`` (streaming; see :func:`create_store`).

    Parameters
    ----------
    scene
        A validated scene from :mod:`pipeline.scene`.
    path
        Target ``*.zarr`` folder.
    tile
        Tile edge in PAN pixels; a multiple of the ratio.
    overwrite
        Replace an existing store.
    hash_sources
        Record SHA-256 checksums of the source files (reads each file once).
    gdal_cache_mb
        GDAL block cache while reading GeoTIFF sources, MiB (keeps memory independent of the
        scene size).
    check_radiometry
        Check value ranges and PAN/MS levels (:mod:`pipeline.ingest.radiometry`): normalise
        where unambiguous (recorded in ``meta.radiometry``), else refuse with the fix.

    Raises
    ------
    InputError
        Inconsistent radiometry, or an input that opened but cannot be read (truncated).
    """
    import rasterio

    _check_target(Path(path), overwrite)  # fail before hashing
    meta = scene_meta(scene, tile, hash_sources=hash_sources)
    check = _radiometry_check(scene) if check_radiometry else None
    # GDAL's block cache defaults to 5% of RAM and would keep every GeoTIFF block read
    try:
        with rasterio.Env(GDAL_CACHEMAX=gdal_cache_mb * 1024 * 1024):
            return create_store(
                path,
                meta,
                pan=scene.pan,
                ms=scene.ms,
                gt=scene.gt,
                overwrite=overwrite,
                check=check,
            )
    except SourceReadError as exc:  # name the files
        raise SourceReadError(
            exc.problem, path=list(scene.sources), expected=exc.expected, got=exc.got, fix=exc.fix
        ) from exc.__cause__


def _radiometry_check(scene: Scene) -> Check:
    """The ingest's :data:`Check`: :func:`pipeline.ingest.radiometry.assess`, then the no-data
    value a product needs when the inputs hold non-finite values but declare none."""

    def check(meta: SceneMeta, levels: dict[str, Levels]) -> SceneMeta:
        pan, ms = levels["pan"], levels["ms"]
        record = assess(
            pan,
            ms,
            dn_max=meta.dn_max,
            dn_max_from=scene.dn_max_from,
            dtypes=(meta.pan_dtype, meta.dtype),
            paths=scene.sources,
        )
        nodata = meta.nodata
        if nodata is None and (pan.invalid or ms.invalid):
            nodata = output_nodata(meta.dtype, record["dn_max"])
            record["actions"].append(
                f"{pan.invalid + ms.invalid} non-finite input values and no nodata value: "
                + ("products use NaN" if nodata is None else f"products use nodata {nodata:g}")
            )
        return replace(meta, dn_max=record["dn_max"], nodata=nodata, radiometry=record)

    return check


@dataclass
class SceneStore:
    """An opened, complete scene store. Create with :meth:`open`; picklable (reopens by path).

    Attributes
    ----------
    path
        The store folder.
    meta
        The scene metadata.
    """

    path: Path
    meta: SceneMeta
    _group: Any = field(repr=False)
    _arrays: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def open(cls, path: str | Path) -> SceneStore:
        """Open the store at ``path``.

        Raises
        ------
        StoreError
            If there is no store at ``path`` or it is incomplete (an interrupted ingest).
        """
        path = Path(path)
        if not _is_store_dir(path):
            raise StoreError(
                "No scene store found.",
                path=path,
                expected="a folder written by pantailor ingest",
                got="nothing" if not path.exists() else "no zarr.json inside",
                fix="run pantailor ingest first, or check the path.",
            )
        group = zarr.open_group(path, mode="r+", zarr_format=3)
        raw = group.attrs.get(ATTRS_KEY)
        if not isinstance(raw, dict):
            raise StoreError(
                "The Zarr group is not a pantailor scene store.",
                path=path,
                expected=f"group attribute {ATTRS_KEY!r}",
                got="none",
                fix="ingest the scene with pantailor ingest.",
            )
        meta = SceneMeta.from_attrs(raw, path)
        if not meta.complete:
            raise StoreError(
                "The scene store is incomplete (its ingest did not finish).",
                path=path,
                expected="complete = true",
                got="complete = false",
                fix="re-run pantailor ingest with --overwrite.",
            )
        return cls(path=path, meta=meta, _group=group)

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return (SceneStore.open, (self.path,))

    @property
    def sensor(self) -> SensorSpec:
        """The scene's sensor as stored (custom sensors included; no lookup by name)."""
        return self.meta.spec

    @property
    def grid(self) -> TileGrid:
        """The tile grid of this store (tile edge = the chunk edge)."""
        return TileGrid(self.meta.pan_shape_yx, self.meta.ratio, self.meta.tile)

    @property
    def array_names(self) -> list[str]:
        """Names of all arrays in the store (inputs and outputs), sorted."""
        return sorted(name for name, _ in self._group.arrays())

    @property
    def outputs(self) -> list[str]:
        """Names of the output arrays."""
        return [n for n in self.array_names if n not in INPUT_ARRAYS]

    def array(self, name: str) -> Any:
        """The Zarr array ``name`` (raises :class:`StoreError` naming the arrays present)."""
        cached = self._arrays.get(name)
        if cached is not None:
            return cached
        try:
            arr = self._group[name]
        except KeyError:
            arr = None
        if arr is None or not hasattr(arr, "shape"):
            raise StoreError(
                f"The store has no array {name!r}.",
                path=self.path,
                expected="one of " + ", ".join(self.array_names),
                got=repr(name),
                fix="check the array name (outputs are created by pantailor run).",
            )
        self._arrays[name] = arr
        return arr

    def read_pan(self, window: Window) -> NDArray[Any]:
        """PAN pixels in ``window`` (PAN coordinates): ``(H', W')`` source dtype."""
        return np.asarray(self.array("pan")[window.slices])

    def read_ms(self, window: Window) -> NDArray[Any]:
        """MS pixels in ``window`` (MS coordinates): ``(B, h', w')`` source dtype."""
        return np.asarray(self.array("ms")[(slice(None), *window.slices)])

    def read_gt(self, window: Window) -> NDArray[Any]:
        """Reference pixels in ``window`` (PAN coordinates): ``(B, H', W')``."""
        return np.asarray(self.array("gt")[(slice(None), *window.slices)])

    def create_output(
        self,
        name: str,
        dtype: str | np.dtype[Any] = "float32",
        *,
        units: str = "normalised",
        overwrite: bool = False,
    ) -> Any:
        """Create (or reuse) the output array ``name``: ``(B, H, W)``, chunks ``(B, T, T)``.

        Idempotent: an existing output of the same shape and dtype is kept (with what was
        already written) unless ``overwrite``; one of another dtype is an error.
        Float outputs are filled with NaN, integer outputs with the nodata value (or 0).

        Parameters
        ----------
        name
            Output array name (not ``pan``, ``ms`` or ``gt``).
        dtype
            Stored dtype.
        units
            ``"normalised"`` (``DN / dn_max``, what models produce) or ``"dn"``; recorded in the
            array attribute ``units`` so that export converts back to DN correctly.
        overwrite
            Replace an existing output of that name.
        """
        if units not in UNITS:
            raise StoreError("Unknown output units.", expected=" or ".join(UNITS), got=repr(units))
        if name in INPUT_ARRAYS:
            raise StoreError(
                f"{name!r} is an input array name.",
                path=self.path,
                expected="an output name other than " + ", ".join(INPUT_ARRAYS),
                got=repr(name),
                fix="choose another output name.",
            )
        dt = np.dtype(dtype)
        h, w = self.meta.pan_shape_yx
        shape = (self.meta.n_bands, h, w)
        if name in self.array_names and not overwrite:
            arr = self._group[name]
            if tuple(arr.shape) == shape and np.dtype(arr.dtype) == dt:
                return arr
            raise StoreError(
                f"Output {name!r} exists with another shape or dtype.",
                path=self.path,
                expected=f"{shape} {dt}",
                got=f"{tuple(arr.shape)} {arr.dtype}",
                fix="pass overwrite=True (--overwrite) or another output name.",
            )
        t = self.meta.tile
        self._arrays.pop(name, None)
        return self._group.create_array(
            name,
            shape=shape,
            dtype=dt,
            chunks=(self.meta.n_bands, t, t),
            fill_value=_fill(dt, self.meta.nodata),
            dimension_names=("band", "y", "x"),
            attributes={"units": units},
            overwrite=True,
        )

    def units(self, name: str) -> str:
        """``"normalised"`` or ``"dn"`` for an output; inputs are always ``"dn"``."""
        return "dn" if name in INPUT_ARRAYS else str(self.array(name).attrs.get("units", "dn"))

    def write_region(self, name: str, window: Window, data: NDArray[Any]) -> None:
        """Write ``data`` ``(B, H', W')`` into output ``name`` at ``window`` (PAN coordinates).

        Windows on tile boundaries (as given by :class:`TileGrid`) touch whole chunks only, so
        concurrent writers of different tiles never write the same chunk.
        """
        arr = self.array(name)
        want = (self.meta.n_bands, *window.shape_yx)
        if tuple(data.shape) != want:
            raise StoreError(
                f"Region data for {name!r} has the wrong shape.",
                path=self.path,
                expected=want,
                got=tuple(data.shape),
                fix="pass (bands, window height, window width) data.",
            )
        arr[(slice(None), *window.slices)] = np.asarray(data, dtype=arr.dtype)

    def read_output(self, name: str, window: Window) -> NDArray[Any]:
        """Output pixels of ``name`` in ``window`` (PAN coordinates): ``(B, H', W')``."""
        return np.asarray(self.array(name)[(slice(None), *window.slices)])


def partial_stores(path: str | Path) -> Sequence[Path]:
    """Leftover temporary siblings of ``path`` from interrupted ingests (safe to delete)."""
    p = Path(path)
    return sorted(p.parent.glob(f".{p.name}.partial-*"))


__all__ = [
    "ATTRS_KEY",
    "SceneMeta",
    "SceneStore",
    "SourceFile",
    "SourceReadError",
    "create_store",
    "partial_stores",
    "scene_meta",
    "write_scene",
]
