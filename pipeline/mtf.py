"""MTF-matched Gaussian filters and the degradation operator (filter, then decimate).

The toolboxes design the MS filter in the frequency domain: a Gaussian frequency response whose
value at the MS Nyquist frequency (``1/ratio`` of the PAN Nyquist) equals the sensor's Nyquist
gain ``G``, sampled on a 41x41 grid and turned into a spatial filter with a Kaiser window. A
Gaussian frequency response ``exp(-2 pi^2 sigma^2 nu^2)`` (``nu`` in cycles/pixel) equals ``G`` at
``nu = 1 / (2 ratio)`` when ``sigma = ratio * sqrt(-2 ln G) / pi`` (PAN pixels): that is the
spatial Gaussian built here, truncated to ``size`` taps, windowed by a Kaiser window (MATLAB's
default beta 0.5) and normalised to sum 1. It is separable, so filtering runs as two 1-D passes.

Decimation keeps the pixel at offset ``ratio // 2`` of every ``ratio`` block, as MATLAB's
``imresize(..., 1/ratio, 'nearest')`` does in the toolboxes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from .errors import ConfigError

KAISER_BETA = 0.5
DEFAULT_SIZE = 41


def gaussian_sigma(gain: float, ratio: int) -> float:
    """Spatial standard deviation (in fine pixels) of the MTF-matched Gaussian.

    Parameters
    ----------
    gain
        MTF gain at the coarse grid's Nyquist frequency, in (0, 1).
    ratio
        Resolution ratio between the fine and the coarse grid.
    """
    if not 0.0 < gain < 1.0:
        raise ConfigError("MTF gain must lie in (0, 1).", got=gain, fix="use e.g. 0.3.")
    return float(ratio * np.sqrt(-2.0 * np.log(gain)) / np.pi)


def kernel_1d(gain: float, ratio: int, size: int = DEFAULT_SIZE) -> NDArray[np.float64]:
    """1-D taps of the separable MTF filter, shape ``(size,)``, summing to 1."""
    if size % 2 == 0 or size < 3:
        raise ConfigError("MTF kernel size must be odd and >= 3.", got=size, fix="use 41.")
    sigma = gaussian_sigma(gain, ratio)
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    taps = np.exp(-0.5 * (x / sigma) ** 2) * np.kaiser(size, KAISER_BETA)
    return np.asarray(taps / taps.sum(), dtype=np.float64)


def kernel_2d(gain: float, ratio: int, size: int = DEFAULT_SIZE) -> NDArray[np.float64]:
    """2-D MTF filter, shape ``(size, size)``, summing to 1 (outer product of :func:`kernel_1d`)."""
    k = kernel_1d(gain, ratio, size)
    return np.asarray(np.outer(k, k), dtype=np.float64)


def kernels_1d(gains: Sequence[float], ratio: int, size: int = DEFAULT_SIZE) -> NDArray[np.float64]:
    """Stacked 1-D taps for several bands, shape ``(len(gains), size)``."""
    return np.stack([kernel_1d(g, ratio, size) for g in gains])


def filter_np(
    img: NDArray[np.floating], gains: Sequence[float], ratio: int, size: int = DEFAULT_SIZE
) -> NDArray[np.float64]:
    """Filter each band of ``img`` ``(B, H, W)`` with its MTF kernel (edges replicated)."""
    from scipy.ndimage import correlate1d

    arr = np.asarray(img, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.shape[0] != len(gains):
        raise ConfigError(
            "One MTF gain per band is required.", expected=arr.shape[0], got=len(gains)
        )
    out = np.empty_like(arr)
    for b, taps in enumerate(kernels_1d(gains, ratio, size)):
        tmp = correlate1d(arr[b], taps, axis=0, mode="nearest")
        out[b] = correlate1d(tmp, taps, axis=1, mode="nearest")
    return out


def filter_torch(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Depthwise separable filtering with replicate padding.

    Parameters
    ----------
    x
        ``(N, C, H, W)`` images.
    taps
        ``(C, K)`` 1-D taps per channel (K odd), e.g. from :func:`kernels_1d`.

    Returns
    -------
    torch.Tensor
        ``(N, C, H, W)``, same dtype and device as ``x``.
    """
    c, k = taps.shape
    taps = taps.to(dtype=x.dtype, device=x.device)
    pad = k // 2
    y = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    y = F.conv2d(y, taps.view(c, 1, k, 1), groups=c)
    return F.conv2d(y, taps.view(c, 1, 1, k), groups=c)


def decimate(x: torch.Tensor, ratio: int) -> torch.Tensor:
    """Keep pixel ``ratio // 2`` of each ``ratio`` block: ``(..., H, W) -> (..., H/r, W/r)``."""
    o = ratio // 2
    return x[..., o::ratio, o::ratio]


def degrade_torch(x: torch.Tensor, taps: torch.Tensor, ratio: int) -> torch.Tensor:
    """MTF-filter then decimate ``(N, C, H, W)`` by ``ratio`` (the Wald-protocol degradation).

    The one implementation of the degradation (the tailor's losses and the quality indices use
    it): it computes only the kept samples, with strided separable convolutions (``ratio**2``
    times fewer products than filtering then decimating), and equals
    ``decimate(filter_torch(x, taps), ratio)``.

    Parameters
    ----------
    x
        ``(N, C, H, W)`` images.
    taps
        ``(C, K)`` 1-D taps per channel (``K`` odd), or ``(1, K)`` shared by all channels.
    ratio
        Decimation factor; the kept sample of each block is ``ratio // 2``.

    Returns
    -------
    torch.Tensor
        ``(N, C, ceil((H - r//2) / r), ceil((W - r//2) / r))``, same dtype and device as ``x``.
    """
    c, k = x.shape[1], taps.shape[-1]
    t = taps.to(dtype=x.dtype, device=x.device)
    if t.shape[0] == 1 and c > 1:
        t = t.expand(c, k)
    pad, o = k // 2, ratio // 2
    xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")[..., o:, o:]
    y = F.conv2d(xp, t.reshape(c, 1, k, 1), stride=(ratio, 1), groups=c)
    return F.conv2d(y, t.reshape(c, 1, 1, k), stride=(1, ratio), groups=c)


def degrade_f32(
    img: NDArray[np.floating], gains: Sequence[float], ratio: int, size: int = DEFAULT_SIZE
) -> NDArray[np.float64]:
    """:func:`degrade_torch` on a NumPy ``(B, H, W)`` in float32 (fast on CPU); float64 out.

    Equals :func:`degrade_np` to float32 precision.
    """
    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None]
    taps = torch.from_numpy(kernels_1d(gains, ratio, size)).to(torch.float32)
    with torch.no_grad():
        y = degrade_torch(x, taps, ratio)[0]
    return np.asarray(y.numpy(), dtype=np.float64)


def degrade_np(
    img: NDArray[np.floating], gains: Sequence[float], ratio: int, size: int = DEFAULT_SIZE
) -> NDArray[np.float64]:
    """NumPy twin of :func:`degrade_torch` on ``(B, H, W)``."""
    o = ratio // 2
    return filter_np(img, gains, ratio, size)[:, o::ratio, o::ratio]


__all__ = [
    "DEFAULT_SIZE",
    "decimate",
    "degrade_f32",
    "degrade_np",
    "degrade_torch",
    "filter_np",
    "filter_torch",
    "gaussian_sigma",
    "kernel_1d",
    "kernel_2d",
    "kernels_1d",
]
