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

from ..errors import InputError
from ..sensors import SensorSpec, get_sensor
from .full_resolution import DEFAULT_UPSAMPLER, full_resolution
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
) -> dict[str, float]:
    """Pixel-weighted mean of :func:`full_resolution` over ``(fused, ms, pan)`` tiles.

    Parameters
    ----------
    tiles
        ``(fused (B, T, T'), ms (B, T/r, T'/r), pan (T, T'))`` triples in DN.
    sensor, block, edge, upsampler
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
            full_resolution(f, ms, pan, spec, block=block, edge=edge, upsampler=upsampler)
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


__all__ = ["full_resolution_tiles", "reduced_resolution_tiles"]
