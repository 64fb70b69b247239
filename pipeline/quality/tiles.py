"""Quality on a sample of tiles: the fast path of the engine's report.

Each tile is scored on its own arrays (edges mirrored inside the tile) and the per-tile indices
are averaged with weights proportional to the tile's PAN pixel count. On tiles of a few hundred
pixels this estimates the whole-scene figures at a fraction of the cost; tiles smaller than two
blocks give noisy block statistics.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from ..sensors import SensorSpec, get_sensor
from .full_resolution import DEFAULT_CONVENTION, DEFAULT_UPSAMPLER, full_resolution
from .indices import DEFAULT_BLOCK
from .inputs import as_bands
from .reduced_resolution import reduced_resolution


def _weighted_mean(scores: Sequence[dict[str, float]], weights: Sequence[int]) -> dict[str, float]:
    if not scores:
        raise InputError(
            "No tiles to score.", expected="at least one tile", got=0, fix="sample some tiles."
        )
    w = np.asarray(weights, dtype=np.float64)
    out = {k: float(np.average([s[k] for s in scores], weights=w)) for k in scores[0]}
    out["n_tiles"] = float(len(scores))
    return out


def full_resolution_tiles(
    tiles: Iterable[tuple[Any, Any, Any]],
    sensor: str | SensorSpec,
    *,
    block: int = DEFAULT_BLOCK,
    edge: int = 0,
    upsampler: str = DEFAULT_UPSAMPLER,
    convention: str = DEFAULT_CONVENTION,
) -> dict[str, float]:
    """Pixel-weighted mean of :func:`full_resolution` over ``(fused, ms, pan)`` tiles.

    Parameters
    ----------
    tiles
        ``(fused (B, T, T'), ms (B, T/r, T'/r), pan (T, T'))`` triples in DN.
    sensor, block, edge, upsampler, convention
        As for :func:`pipeline.quality.full_resolution`.

    Returns
    -------
    dict
        The indices of :func:`full_resolution` plus ``"n_tiles"``.
    """
    spec = get_sensor(sensor)
    scores, weights = [], []
    for fused, ms, pan in tiles:
        f = as_bands(fused, "fused")
        scores.append(
            full_resolution(
                f, ms, pan, spec, block=block, edge=edge, upsampler=upsampler, convention=convention
            )
        )
        weights.append(f.shape[1] * f.shape[2])
    return _weighted_mean(scores, weights)


def reduced_resolution_tiles(
    tiles: Iterable[tuple[Any, Any]],
    sensor: str | SensorSpec | None = None,
    *,
    ratio: int | None = None,
    block: int = DEFAULT_BLOCK,
    edge: int = 0,
) -> dict[str, float]:
    """Pixel-weighted mean of :func:`reduced_resolution` over ``(fused, reference)`` tiles."""
    scores, weights = [], []
    for fused, reference in tiles:
        f = as_bands(fused, "fused")
        scores.append(reduced_resolution(f, reference, sensor, ratio=ratio, block=block, edge=edge))
        weights.append(f.shape[1] * f.shape[2])
    return _weighted_mean(scores, weights)


CLEAN_TILE = 128  # PAN pixels: 4 x 4 blocks at full resolution, one at MS scale (ratio 4)


def invalid_pixels(
    fused: Any, ms: Any, pan: Any, ratio: int, nodata: float | None
) -> NDArray[np.bool_]:
    """``(H, W)`` on the PAN grid: ``nodata`` or non-finite in the PAN, under an invalid MS pixel,
    or non-finite in any band of the product ``(B, H, W)``."""
    from ..infer import invalid_mask

    bad = invalid_mask(np.asarray(pan), np.asarray(ms), ratio, nodata)
    return np.asarray(bad | ~np.isfinite(np.asarray(fused)).all(axis=0), dtype=bool)


def clean_origins(bad: NDArray[np.bool_], tile: int = CLEAN_TILE) -> list[tuple[int, int]]:
    """Origins ``(y, x)`` of the ``tile x tile`` tiles of the grid holding no ``bad`` pixel."""
    h, w = bad.shape
    return [
        (y, x)
        for y in range(0, h - tile + 1, tile)
        for x in range(0, w - tile + 1, tile)
        if not bad[y : y + tile, x : x + tile].any()
    ]


def clean_tiles(
    fused: Any, ms: Any, pan: Any, ratio: int, nodata: float | None, tile: int = CLEAN_TILE
) -> list[tuple[Any, Any, Any]]:
    """``(fused, ms, pan)`` tiles of ``tile`` PAN pixels free of invalid pixels (for
    :func:`full_resolution_tiles`: the indices have no mask, so a no-data fill is left out)."""
    t, k = tile, tile // ratio
    origins = clean_origins(invalid_pixels(fused, ms, pan, ratio, nodata), tile)
    return [
        (
            fused[:, y : y + t, x : x + t],
            ms[:, y // ratio : y // ratio + k, x // ratio : x // ratio + k],
            pan[y : y + t, x : x + t],
        )
        for y, x in origins
    ]


__all__ = [
    "CLEAN_TILE",
    "clean_origins",
    "clean_tiles",
    "full_resolution_tiles",
    "invalid_pixels",
    "reduced_resolution_tiles",
]
