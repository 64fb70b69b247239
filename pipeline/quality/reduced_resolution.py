"""Reduced-resolution indices (Wald protocol: a reference at the fused resolution exists).

* SAM: mean spectral angle between the band vectors of fused and reference pixels, in degrees
  (pixels where either vector is zero are left out).
* ERGAS: ``100 / ratio * sqrt(mean_b (RMSE_b / mean_b(reference))^2)``, ``ratio`` the PAN/MS
  ratio (4 for 1:4 sensors; ``sewar.ergas``'s ``r`` is ``1 / ratio``).
* Q2n: :func:`pipeline.quality.indices.q2n` on 32x32 blocks.
* SCC: spatial correlation coefficient (Zhou et al. 1998): both images high-passed with the
  8-neighbour Laplacian ``[[-1,-1,-1],[-1,8,-1],[-1,-1,-1]]`` (edges replicated), then the
  Pearson correlation of the high-passed bands over all pixels, averaged over bands.

All take ``(fused, reference)`` in that order, ``(B, H, W)`` arrays of any kind, in DN.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.ndimage import convolve

from ..sensors import SensorSpec, get_sensor
from .indices import DEFAULT_BLOCK, q2n
from .inputs import FloatArray, as_bands, cut_edges, same_shape

LAPLACIAN = np.array([[-1.0, -1.0, -1.0], [-1.0, 8.0, -1.0], [-1.0, -1.0, -1.0]])


def _pair(fused: Any, reference: Any) -> tuple[FloatArray, FloatArray]:
    f, r = as_bands(fused, "fused"), as_bands(reference, "reference")
    same_shape(f, r, ("fused", "reference"))
    return f, r


def sam_map(fused: Any, reference: Any) -> FloatArray:
    """Spectral angle per pixel in degrees, ``(H, W)``; NaN where either vector is zero."""
    f, r = _pair(fused, reference)
    dot = np.einsum("byx,byx->yx", f, r)
    den = np.sqrt(np.einsum("byx,byx->yx", f, f) * np.einsum("byx,byx->yx", r, r))
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.where(den > 0, dot / den, np.nan)
    return np.asarray(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))), dtype=np.float64)


def sam(fused: Any, reference: Any) -> float:
    """Spectral angle mapper: mean angle in degrees over pixels with non-zero spectra.

    Parameters
    ----------
    fused, reference
        ``(B, H, W)`` images (any array type).

    Returns
    -------
    float
        Degrees, 0 for proportional spectra; NaN if no pixel has two non-zero spectra.
    """
    angles = sam_map(fused, reference)
    valid = np.isfinite(angles)
    return float(angles[valid].mean()) if valid.any() else float("nan")


def ergas(fused: Any, reference: Any, ratio: int = 4) -> float:
    """ERGAS of ``fused`` against ``reference`` ``(B, H, W)``; lower is better, 0 if equal.

    Parameters
    ----------
    fused, reference
        ``(B, H, W)`` images in DN.
    ratio
        PAN/MS resolution ratio (high over low ground sample distance inverted: 4 for 1:4).
    """
    f, r = _pair(fused, reference)
    rmse = np.sqrt(np.mean((f - r) ** 2, axis=(1, 2)))
    mean = r.mean(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(rmse > 0, rmse / mean, 0.0)
    return float(100.0 / ratio * np.sqrt(np.mean(rel**2)))


def high_pass(x: FloatArray) -> FloatArray:
    """8-neighbour Laplacian of each band of ``(B, H, W)`` (edges replicated)."""
    return np.stack([convolve(band, LAPLACIAN, mode="nearest") for band in x])


def scc(fused: Any, reference: Any) -> float:
    """Spatial correlation coefficient of the Laplacian-high-passed bands, mean over bands.

    Returns
    -------
    float
        In ``[-1, 1]``, 1 when each fused band's details are an increasing affine map of the
        reference's (a band whose details are flat in both scores 1, in one only 0).
    """
    f, r = _pair(fused, reference)
    hf, hr = high_pass(f), high_pass(r)
    hf -= hf.mean(axis=(1, 2), keepdims=True)
    hr -= hr.mean(axis=(1, 2), keepdims=True)
    num = np.sum(hf * hr, axis=(1, 2))
    den = np.sqrt(np.sum(hf * hf, axis=(1, 2)) * np.sum(hr * hr, axis=(1, 2)))
    flat_f, flat_r = ~np.any(hf, axis=(1, 2)), ~np.any(hr, axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        cc = np.where(den > 0, num / den, np.where(flat_f & flat_r, 1.0, 0.0))
    return float(np.mean(cc))


def reduced_resolution(
    fused: Any,
    reference: Any,
    sensor: str | SensorSpec | None = None,
    *,
    ratio: int | None = None,
    block: int = DEFAULT_BLOCK,
    edge: int = 0,
) -> dict[str, float]:
    """All reduced-resolution indices of ``fused`` against the reference ``(B, H, W)``.

    Parameters
    ----------
    fused, reference
        ``(B, H, W)`` in DN (any array type).
    sensor
        Sensor name or spec; gives the ratio for ERGAS (``ratio`` overrides it; default 4).
    ratio
        PAN/MS ratio for ERGAS.
    block
        Q2n block edge (32).
    edge
        Pixels cut from every side before computing.

    Returns
    -------
    dict
        ``{"sam": degrees, "ergas", "q2n", "scc"}``.
    """
    f, r = _pair(fused, reference)
    f, r = cut_edges(f, edge), cut_edges(r, edge)
    if ratio is None:
        ratio = get_sensor(sensor).ratio if sensor is not None else 4
    return {
        "sam": sam(f, r),
        "ergas": ergas(f, r, ratio),
        "q2n": q2n(f, r, block),
        "scc": scc(f, r),
    }


__all__ = ["LAPLACIAN", "ergas", "high_pass", "reduced_resolution", "sam", "sam_map", "scc"]
