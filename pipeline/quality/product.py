"""Score a fused product read from disk: what ``pantailor metrics`` runs.

The product is a GeoTIFF ``(B, H, W)`` in DN, or an array of a scene store (outputs stored
``"normalised"`` are multiplied by the store's ``dn_max``). The inputs are read as
:func:`pipeline.scene.open_scene` reads them (GeoTIFFs, research containers) or taken from a
scene store. Full-resolution indices are always computed; reduced-resolution ones when the
inputs carry a reference (``gt``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..sensors import SensorSpec, get_sensor
from .full_resolution import CONVENTION_NOTES, DEFAULT_CONVENTION, full_resolution
from .indices import DEFAULT_BLOCK
from .inputs import FloatArray, as_bands, as_plane
from .reduced_resolution import reduced_resolution
from .tiles import (
    CLEAN_TILE,
    clean_origins,
    clean_tiles,
    full_resolution_tiles,
    invalid_pixels,
    reduced_resolution_tiles,
)

_STORE_INPUTS = ("pan", "ms", "gt")


@dataclass(frozen=True)
class ProductInputs:
    """Observed inputs of a product, in DN.

    Attributes
    ----------
    ms
        ``(B, h, w)`` MS.
    pan
        ``(H, W)`` PAN.
    sensor
        The sensor.
    gt
        ``(B, H, W)`` reference, or ``None``.
    nodata
        No-data DN of the inputs (from the files' tags or ``--nodata``), or ``None``.
    """

    ms: FloatArray
    pan: FloatArray
    sensor: SensorSpec
    gt: FloatArray | None = None
    nodata: float | None = None


def _is_store(path: Path) -> bool:
    return path.is_dir() and (path / "zarr.json").exists()


def load_fused(path: str | Path, *, array: str | None = None, scale: float = 1.0) -> FloatArray:
    """Read a fused product ``(B, H, W)`` in DN from a GeoTIFF or a scene-store array.

    Parameters
    ----------
    path
        ``.tif`` file, or a scene store folder.
    array
        Store array name (default: the store's only output).
    scale
        Factor applied to the values read (e.g. ``dn_max`` for a normalised GeoTIFF).
    """
    p = Path(path)
    if _is_store(p):
        from ..store import SceneStore

        store = SceneStore.open(p)
        name = array or _only_output(store.outputs, p)
        data = np.asarray(store.array(name)[...], dtype=np.float64)
        if store.units(name) == "normalised":
            data = data * store.meta.dn_max
        return as_bands(data * scale, "fused")
    if not p.is_file():
        raise InputError(
            "Fused product not found.",
            path=p,
            expected="a GeoTIFF or a scene store",
            got="no such file",
            fix="check the path.",
        )
    import rasterio

    with rasterio.open(p) as src:
        data = src.read().astype(np.float64)
    return as_bands(data * scale, "fused")


def _only_output(outputs: Sequence[str], path: Path) -> str:
    if len(outputs) != 1:
        raise InputError(
            "Which store array is the product?",
            path=path,
            expected="exactly one output array, or --array NAME",
            got=", ".join(outputs) or "no outputs",
            fix="pass --array NAME.",
        )
    return outputs[0]


def load_inputs(
    inputs: Sequence[str | Path],
    sensor: str | SensorSpec | None,
    **open_options: Any,
) -> ProductInputs:
    """Read the MS, PAN (and ``gt``) of a product: one scene store, or files for ``open_scene``.

    ``open_options`` go to :func:`pipeline.scene.open_scene` (``dn_max``, ``patch``, ...).
    """
    if len(inputs) == 1 and _is_store(Path(inputs[0])):
        from ..store import SceneStore

        store = SceneStore.open(inputs[0])
        spec = get_sensor(sensor if sensor is not None else store.meta.sensor)
        arrays = {n: store.array(n)[...] for n in _STORE_INPUTS if n in store.array_names}
        gt = arrays.get("gt")
        return ProductInputs(
            ms=as_bands(arrays["ms"], "ms"),
            pan=as_plane(arrays["pan"], "pan"),
            sensor=spec,
            gt=None if gt is None else as_bands(gt, "gt"),
        )
    if sensor is None:
        raise InputError(
            "The sensor is needed to read these inputs.",
            path=[str(i) for i in inputs],
            expected="--sensor NAME",
            got="none",
            fix="pass --sensor, e.g. --sensor wv3.",
        )
    from ..scene import open_scene

    scene = open_scene(list(inputs), sensor, **open_options)
    return ProductInputs(
        ms=as_bands(scene.ms, "ms"),
        pan=as_plane(scene.pan, "pan"),
        sensor=scene.sensor,
        gt=None if scene.gt is None else as_bands(scene.gt, "gt"),
        nodata=scene.nodata,
    )


def evaluate(
    fused: Any,
    inputs: ProductInputs,
    *,
    block: int = DEFAULT_BLOCK,
    edge: int = 0,
    convention: str = DEFAULT_CONVENTION,
    files: Sequence[str] = (),
) -> dict[str, Any]:
    """All indices of ``fused`` ``(B, H, W)`` (DN) given its inputs, with timings (``files``:
    the product's and the inputs' paths, named by the shape-mismatch error).

    Returns
    -------
    dict
        ``{"sensor", "timings": {"full_resolution": s[, "reduced_resolution": s]},
        "metrics": {name: value}, "conventions": {"full_resolution": note}}``.
    """
    f = as_bands(fused, "fused")
    want = (inputs.ms.shape[0], *inputs.pan.shape)
    if f.shape != want:
        raise InputError(
            "The fused product does not match the inputs.",
            path=list(files) or None,
            expected=want,
            got=tuple(f.shape),
            fix="pass the product made from these inputs.",
        )
    timings: dict[str, float] = {}
    masked = inputs.nodata is not None or not bool(np.isfinite(f).all())
    t0 = time.perf_counter()
    if masked:  # the indices have no mask: score the tiles free of no-data (tiles.clean_tiles)
        r, t = inputs.sensor.ratio, CLEAN_TILE
        tiles = clean_tiles(f, inputs.ms, inputs.pan, r, inputs.nodata)
        metrics = full_resolution_tiles(
            tiles, inputs.sensor, block=block, edge=edge, convention=convention
        )
    else:
        metrics = full_resolution(
            f, inputs.ms, inputs.pan, inputs.sensor, block=block, edge=edge, convention=convention
        )
    timings["full_resolution"] = time.perf_counter() - t0
    if inputs.gt is not None:
        t0 = time.perf_counter()
        if masked:
            bad = invalid_pixels(f, inputs.ms, inputs.pan, r, inputs.nodata)
            pairs = [
                (f[:, y : y + t, x : x + t], inputs.gt[:, y : y + t, x : x + t])
                for y, x in clean_origins(bad, t)
            ]
            rr = reduced_resolution_tiles(pairs, inputs.sensor, block=block, edge=edge)
        else:
            rr = reduced_resolution(f, inputs.gt, inputs.sensor, block=block, edge=edge)
        metrics.update(rr)
        timings["reduced_resolution"] = time.perf_counter() - t0
    conventions = {"full_resolution": f"{convention}: {CONVENTION_NOTES[convention]}"}
    return {
        "sensor": inputs.sensor.name,
        "timings": timings,
        "metrics": metrics,
        "conventions": conventions,
    }


__all__ = ["ProductInputs", "evaluate", "load_fused", "load_inputs"]
