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

The metadata record is :class:`~pipeline.store_meta.SceneMeta`; writing a store (ingest) is
:mod:`pipeline.ingest.write` (both re-exported here). :meth:`SceneStore.open` refuses a store
whose ``complete`` flag is unset (an interrupted ingest).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numpy.typing import NDArray

from .errors import StoreError
from .grid import TileGrid, Window
from .ingest.write import SourceReadError, create_store, write_scene
from .sensors import SensorSpec
from .store_meta import (
    ATTRS_KEY,
    INPUT_ARRAYS,
    UNITS,
    SceneMeta,
    SourceFile,
    fill_value,
    is_store_dir,
    scene_meta,
)

log = logging.getLogger(__name__)


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
        if not is_store_dir(path):
            raise StoreError(
                "No scene store found.",
                path=path,
                expected="a folder written by pantailor ingest",
                got="nothing" if not path.exists() else "no zarr.json inside",
                fix="run pantailor ingest first, or check the path.",
            )
        try:
            group = zarr.open_group(path, mode="r+", zarr_format=3)
            raw = group.attrs.get(ATTRS_KEY)
        except (ValueError, TypeError, KeyError, OSError) as exc:  # a damaged zarr.json
            raise _damaged(path, "its zarr.json cannot be read", exc) from exc
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
        except (ValueError, TypeError, OSError) as exc:  # a damaged NAME/zarr.json
            raise _damaged(
                self.path, f"the metadata of its array {name!r} cannot be read", exc
            ) from exc
        if arr is None or not hasattr(arr, "shape"):
            if (Path(self.path) / name).is_dir():
                folder = f"its array folder {name!r} has no readable zarr.json"
                raise _damaged(self.path, folder, None)
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
        return self._read("pan", window.slices)

    def read_ms(self, window: Window) -> NDArray[Any]:
        """MS pixels in ``window`` (MS coordinates): ``(B, h', w')`` source dtype."""
        return self._read("ms", (slice(None), *window.slices))

    def read_gt(self, window: Window) -> NDArray[Any]:
        """Reference pixels in ``window`` (PAN coordinates): ``(B, H', W')``."""
        return self._read("gt", (slice(None), *window.slices))

    def _read(self, name: str, key: tuple[slice, ...]) -> NDArray[Any]:
        """``array(name)[key]``; a chunk that cannot be decoded is a :class:`StoreError`."""
        arr = self.array(name)
        try:
            return np.asarray(arr[key])
        except (RuntimeError, ValueError, TypeError, OSError) as exc:  # codec errors
            raise _damaged(
                self.path, f"a chunk of its array {name!r} cannot be decoded", exc
            ) from exc

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
            return self._existing_output(name, shape, dt)
        t = self.meta.tile
        self._arrays.pop(name, None)
        return self._group.create_array(
            name,
            shape=shape,
            dtype=dt,
            chunks=(self.meta.n_bands, t, t),
            fill_value=fill_value(dt, self.meta.nodata),
            dimension_names=("band", "y", "x"),
            attributes={"units": units, "complete": False},
            overwrite=True,
            compressors=_output_codec(),
        )

    def _existing_output(self, name: str, shape: tuple[int, int, int], dt: np.dtype[Any]) -> Any:
        """The existing output ``name`` if it has ``shape`` and ``dt``, else a :class:`StoreError`."""
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

    def mark_complete(self, name: str) -> None:
        """Record that every tile of output ``name`` is written (export refuses it until then)."""
        self.array(name).attrs["complete"] = True

    def output_complete(self, name: str) -> bool:
        """Whether output ``name`` holds every tile: ``False`` only where ``create_output`` made
        it and no finished tile map has marked it since (outputs of older stores count as whole)."""
        return bool(self.array(name).attrs.get("complete", True))

    def verify_chunks(self) -> None:
        """A :class:`StoreError` if a chunk file of an input array is missing (deleted or lost
        after the ingest wrote it; stores whose ingest wrote every chunk say so: ``all_chunks``)."""
        for name in INPUT_ARRAYS:
            if not (self.path / name).is_dir():  # (not the group listing: it reads every
                continue  # member's metadata raw)
            arr = self.array(name)  # damaged metadata: a StoreError naming the store
            if not arr.attrs.get("all_chunks"):
                continue
            folder = self.path / name / "c"
            found = sum(len(files) for _, _, files in os.walk(folder))
            if found < arr.nchunks:
                raise _damaged(
                    self.path,
                    f"{arr.nchunks - found} of the {arr.nchunks} chunk files of its array "
                    f"{name!r} are missing",
                    None,
                )

    def require_complete(self, name: str) -> None:
        """A :class:`StoreError` unless output ``name`` is complete (:meth:`output_complete`)."""
        if not self.output_complete(name):
            raise StoreError(
                f"The output {name!r} is unfinished: its run stopped before every tile was "
                "written.",
                path=self.path,
                expected="an output whose tile map finished",
                got="tiles missing (they would export as no-data holes)",
                fix="rerun the same pantailor run command (it resumes and exports the COG "
                "itself), then export again if you need another file.",
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
        """Pixels of array ``name`` in ``window`` (its own grid's coordinates): ``(B, H', W')``."""
        return self._read(name, (slice(None), *window.slices))


def _damaged(path: Path, what: str, exc: BaseException | None) -> StoreError:
    """The error for a store whose files were damaged after it was written."""
    return StoreError(
        f"The scene store is damaged: {what}.",
        path=path,
        expected="the files pantailor wrote",
        got=f"{type(exc).__name__}: {exc}" if exc is not None else what,
        fix="ingest the scene again with pantailor ingest --overwrite (a run's own "
        "OUT.work/scene.zarr: run again with --overwrite).",
    )


def _output_codec() -> Any:
    """The codec of output arrays: LZ4 behind a byte shuffle (Blosc).

    Float products compress slowly and poorly under zarr's default zstd: a 512² x 8 float32
    tile is written 2.5x faster, read 3x faster and stored 10 % smaller this way, which halves a
    classical method's tile task (``benchmarks/results/speed_classical.md``).
    """
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")


def partial_stores(path: str | Path) -> Sequence[Path]:
    """Leftover temporary siblings of ``path`` from interrupted ingests (safe to delete)."""
    p = Path(path)
    return sorted(p.parent.glob(f".{p.name}.partial-*"))


__all__ = [
    "ATTRS_KEY",
    "INPUT_ARRAYS",
    "UNITS",
    "SceneMeta",
    "SceneStore",
    "SourceFile",
    "SourceReadError",
    "create_store",
    "fill_value",
    "is_store_dir",
    "partial_stores",
    "scene_meta",
    "write_scene",
]
