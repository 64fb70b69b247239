"""Seeded synthetic scenes: a high-resolution multispectral 'truth', its PAN and its MS.

Used by the tests, the benchmarks and ``pantailor demo``. The truth is a sum of smooth random
fields and sharp-edged patches (fields, roads, roofs) with band-dependent reflectance; the PAN is
a weighted band sum (plus noise) and the MS is the truth MTF-degraded by the ratio (Wald
protocol), so the pair is physically consistent and pansharpening has something to recover.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter, zoom

from .mtf import degrade_np
from .sensors import SensorSpec, get_sensor


@dataclass(frozen=True)
class SyntheticScene:
    """A synthetic pair with its truth.

    Attributes
    ----------
    pan
        ``(H, W)`` PAN in DN of ``dtype``.
    ms
        ``(B, H/r, W/r)`` MS in DN.
    truth
        ``(B, H, W)`` float64 high-resolution MS in DN (the reference).
    sensor
        The sensor whose band count, ratio, MTF and scale were used.
    """

    pan: NDArray[np.generic]
    ms: NDArray[np.generic]
    truth: NDArray[np.float64]
    sensor: SensorSpec


def _structures(rng: np.random.Generator, shape_yx: tuple[int, int]) -> NDArray[np.float64]:
    """Four ``(H, W)`` components in [0, 1]: parcels, vegetation, roads, buildings."""
    h, w = shape_yx
    # fields/parcels: piecewise-constant cells a few dozen pixels across
    cell = max(8, min(h, w) // 24)
    coarse = rng.random((h // cell + 2, w // cell + 2))
    parcels = zoom(coarse, cell, order=0)[:h, :w]
    smooth = gaussian_filter(rng.standard_normal((h, w)), sigma=max(h, w) / 24)
    smooth = (smooth - smooth.min()) / (np.ptp(smooth) + 1e-12)
    texture = gaussian_filter(rng.standard_normal((h, w)), sigma=1.5)
    vegetation = np.clip(smooth + 0.15 * texture / (texture.std() + 1e-12), 0.0, 1.0)
    roads = np.zeros((h, w))
    for _ in range(max(2, (h + w) // 256)):
        half = int(rng.integers(1, 3))
        if rng.random() < 0.5:
            y = int(rng.integers(0, h))
            roads[max(0, y - half) : y + half + 1, :] = 1.0
        else:
            x = int(rng.integers(0, w))
            roads[:, max(0, x - half) : x + half + 1] = 1.0
    buildings = np.zeros((h, w))
    for _ in range(h * w // 2000):  # small bright/dark roofs
        by, bx = int(rng.integers(0, h)), int(rng.integers(0, w))
        sy, sx = (int(v) for v in rng.integers(3, 14, size=2))
        buildings[by : by + sy, bx : bx + sx] = rng.uniform(0.3, 1.0)
    return np.stack([parcels, vegetation, roads, buildings])


def make_scene(
    pan_shape_yx: tuple[int, int],
    sensor: str | SensorSpec = "wv3",
    *,
    seed: int = 0,
    dtype: str = "uint16",
    noise: float = 0.005,
) -> SyntheticScene:
    """Build a synthetic PAN/MS pair of ``sensor``'s band count, ratio and MTF.

    Parameters
    ----------
    pan_shape_yx
        ``(H, W)``; both must be multiples of the sensor's ratio.
    sensor
        Sensor name or spec.
    seed
        Random seed: the same seed gives the same scene.
    dtype
        Output DN dtype (``uint16`` or ``uint8``; float types are allowed).
    noise
        PAN noise standard deviation as a fraction of the DN range.
    """
    spec = get_sensor(sensor)
    rng = np.random.default_rng(seed)
    h, w = pan_shape_yx
    comps = _structures(rng, (h, w))  # (3, H, W) in [0, 1]
    nb = spec.n_bands
    mix = rng.uniform(0.1, 0.9, size=(nb, comps.shape[0]))
    mix[:, 2] *= 0.5
    mix[-1, 1] = 0.95  # vegetation is bright in the NIR band
    base = rng.uniform(0.05, 0.2, size=(nb, 1, 1))
    refl = base + np.einsum("bk,kyx->byx", mix, comps) / comps.shape[0]
    refl = np.clip(refl, 0.0, 1.0) * 0.8
    truth = refl * spec.dn_max
    weights = rng.uniform(0.5, 1.0, size=nb)
    weights /= weights.sum()
    pan_f = np.einsum("b,byx->yx", weights, truth)
    pan_f = pan_f + rng.normal(0.0, noise * spec.dn_max, size=pan_f.shape)
    ms_f = degrade_np(truth, spec.mtf_ms, spec.ratio)
    np_dtype = np.dtype(dtype)
    if np.issubdtype(np_dtype, np.integer):
        hi = min(float(np.iinfo(np_dtype).max), spec.dn_max)
        pan = np.clip(np.rint(pan_f), 0, hi).astype(np_dtype)
        ms = np.clip(np.rint(ms_f), 0, hi).astype(np_dtype)
    else:
        pan, ms = pan_f.astype(np_dtype), ms_f.astype(np_dtype)
    return SyntheticScene(pan=pan, ms=ms, truth=truth, sensor=spec)


__all__ = ["SyntheticScene", "make_scene"]
