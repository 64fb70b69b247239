"""The Matlab pansharpening toolbox's building blocks, written from its definitions (NumPy, float64).

These are the operators the toolbox's full-resolution indices (``D_lambda_K.m``, ``D_s.m``,
``HQNR.m``, ``q2n.m`` in Vivone et al.'s benchmark toolbox, as shipped in DLPan-Toolbox) run on,
with the exact Matlab semantics; :mod:`.fast` holds their batched torch twins.

* :func:`mtf_kernel` (``MTF.m``): a Gaussian *frequency response* on a 41x41 grid whose value at
  the MS Nyquist frequency is the band's gain ``G`` (``alpha = sqrt((N fcut / 2)^2 / (-2 ln G))``
  grid steps, ``fcut = 1 / ratio``; ``fspecial('gaussian')`` then divided by its maximum), turned
  into a spatial filter by frequency sampling (``fsamp2``: ``fftshift(ifft2(ifftshift(Hd)))``) and
  multiplied by a *circularly symmetric* 2-D Kaiser window built from the 1-D ``kaiser(41)``
  (beta 0.5) by Huang's rotation (``fwind1(Hd, kaiser(N))``). Not separable, not renormalised.
  :func:`mtf_filter` applies it as ``imfilter(..., 'replicate')`` (edge pixels repeated).
* :func:`interp23tap` (``interp23tap.m``): ``log2(ratio)`` stages of x2 zero-stuffing (first stage
  at odd positions, later stages at even ones) each filtered by the 23-tap polynomial kernel (the
  12-digit coefficients the toolbox prints) with *circular* borders.
* :func:`imresize_bicubic` (Matlab ``imresize(x, 1/ratio)``): Keys' cubic (``a = -0.5``) stretched
  by ``1/scale`` when shrinking (antialiasing), weights normalised per output sample, input
  indices folded by symmetric extension (edge sample repeated).
* :func:`to_uint16`: ``uint16(x)`` as ``q2n.m`` applies to both its inputs: round half away from
  zero, saturate to ``[0, 65535]``, NaN -> 0.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from .inputs import FloatArray

MTF_SIZE = 41
KAISER_BETA = 0.5  # Matlab's kaiser(N) default
_CDF23_HALF = (
    0.5,
    0.305334091185,
    0.0,
    -0.072698593239,
    0.0,
    0.021809577942,
    0.0,
    -0.005192756653,
    0.0,
    0.000807762146,
    0.0,
    -0.000060081482,
)


def _check_ratio(ratio: int) -> int:
    if ratio < 2 or ratio & (ratio - 1):
        raise ConfigError(
            "The toolbox's 23-tap interpolator needs a power-of-two ratio.",
            expected="ratio 2, 4, 8, ...",
            got=ratio,
            fix="use convention='project' with upsampler='bicubic' for this ratio.",
        )
    return int(math.log2(ratio))


def interp23tap_taps() -> FloatArray:
    """The toolbox's 23-tap x2 kernel ``2 * [CDF23 mirrored]`` (centre tap 1), shape ``(23,)``."""
    half = 2.0 * np.asarray(_CDF23_HALF)
    return np.concatenate([half[1:][::-1], half])


@functools.cache
def _mtf_kernel_cached(gain: float, ratio: int, size: int) -> FloatArray:
    fcut = 1.0 / ratio
    alpha = math.sqrt(((size - 1) * fcut / 2.0) ** 2 / (-2.0 * math.log(gain)))  # genMTF.m
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2.0 * alpha * alpha))
    g[g < np.finfo(np.float64).eps * g.max()] = 0.0  # fspecial's cut
    g /= g.sum()
    hd = g / g.max()
    h = np.real(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(hd))))  # fsamp2
    t = np.linspace(-1.0, 1.0, size)
    radius = np.hypot(t[:, None], t[None, :])
    win = np.interp(radius, t, np.kaiser(size, KAISER_BETA))
    win[radius > 1.0] = 0.0  # Huang's circular window, fwind1
    return np.asarray(h * win, dtype=np.float64)


def mtf_kernel(gain: float, ratio: int, size: int = MTF_SIZE) -> FloatArray:
    """The toolbox's 2-D MTF filter of one band, ``(size, size)`` (see the module docstring).

    Parameters
    ----------
    gain
        MTF gain at the MS Nyquist frequency, in (0, 1).
    ratio
        PAN/MS resolution ratio.
    size
        Kernel edge (41 in the toolbox).
    """
    if not 0.0 < gain < 1.0:
        raise ConfigError("MTF gain must lie in (0, 1).", got=gain, fix="use e.g. 0.3.")
    if size % 2 == 0 or size < 3:
        raise ConfigError("MTF kernel size must be odd and >= 3.", got=size, fix="use 41.")
    return _mtf_kernel_cached(float(gain), int(ratio), int(size)).copy()


def mtf_filter(img: FloatArray, gains: Sequence[float], ratio: int) -> FloatArray:
    """``imfilter(band, h_b, 'replicate')`` for each band of ``(B, H, W)`` (float64, FFT)."""
    from scipy.signal import fftconvolve

    x = np.asarray(img, dtype=np.float64)
    out = np.empty_like(x)
    pad = MTF_SIZE // 2
    for b, gain in enumerate(gains):
        xp = np.pad(x[b], pad, mode="edge")
        k = mtf_kernel(gain, ratio)
        out[b] = fftconvolve(xp, k[::-1, ::-1], mode="valid")  # correlation
    return out


def interp23tap(ms: FloatArray, ratio: int) -> FloatArray:
    """The toolbox's ``interp23tap``: ``(B, h, w)`` -> ``(B, r h, r w)`` (circular borders)."""
    n_stages = _check_ratio(ratio)
    taps = interp23tap_taps()
    y = np.asarray(ms, dtype=np.float64)
    for stage in range(n_stages):
        b, h, w = y.shape
        z = np.zeros((b, 2 * h, 2 * w))
        o = 1 if stage == 0 else 0
        z[:, o::2, o::2] = y
        for axis in (1, 2):
            acc = np.zeros_like(z)
            for k, c in enumerate(taps):
                if c != 0.0:
                    acc += c * np.roll(z, 11 - k, axis=axis)
            z = acc
        y = z
    return y


def imresize_weights(n_in: int, scale: float) -> FloatArray:
    """Matlab ``imresize``'s bicubic resampling matrix along one axis, ``(ceil(scale n), n)``.

    Row ``i`` holds the weights output sample ``i`` gives the input samples (antialiased when
    ``scale < 1``; contributions beyond the edges folded back by symmetric extension).
    """
    n_out = math.ceil(n_in * scale)
    width = 4.0 / scale if scale < 1 else 4.0
    s = scale if scale < 1 else 1.0
    u = np.arange(1, n_out + 1, dtype=np.float64) / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0)
    idx = left[:, None] + np.arange(math.ceil(width) + 2)[None, :]
    wts = s * _cubic(s * (u[:, None] - idx))
    wts /= wts.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(n_in), np.arange(n_in)[::-1]])
    cols = aux[np.mod(idx.astype(np.int64) - 1, 2 * n_in)]
    mat = np.zeros((n_out, n_in))
    np.add.at(mat, (np.repeat(np.arange(n_out), idx.shape[1]), cols.ravel()), wts.ravel())
    return mat


def _cubic(x: FloatArray) -> FloatArray:
    a = np.abs(x)
    a2, a3 = a * a, a * a * a
    inner = (1.5 * a3 - 2.5 * a2 + 1.0) * (a <= 1)
    outer = (-0.5 * a3 + 2.5 * a2 - 4.0 * a + 2.0) * ((a > 1) & (a <= 2))
    return np.asarray(inner + outer, dtype=np.float64)


def imresize_bicubic(img: FloatArray, scale: float) -> FloatArray:
    """Matlab ``imresize(img, scale)`` (bicubic, antialiased) of ``(H, W)`` or ``(B, H, W)``."""
    x = np.asarray(img, dtype=np.float64)
    rows = imresize_weights(x.shape[-2], scale)
    cols = imresize_weights(x.shape[-1], scale)
    return np.asarray(rows @ x @ cols.T, dtype=np.float64)


def to_uint16(x: FloatArray) -> FloatArray:
    """Matlab ``uint16(x)`` as float64: round half away from zero, clip to ``[0, 65535]``."""
    a = np.asarray(x, dtype=np.float64)
    r = np.where(np.isnan(a), 0.0, np.sign(a) * np.floor(np.abs(a) + 0.5))
    return np.asarray(np.clip(r, 0.0, 65535.0), dtype=np.float64)


def pan_low_pass(pan: FloatArray, ratio: int) -> FloatArray:
    """The toolbox's ``P_LP = interp23tap(imresize(P, 1/ratio), ratio)`` of ``(H, W)``."""
    low = imresize_bicubic(np.asarray(pan, dtype=np.float64), 1.0 / ratio)
    return np.asarray(interp23tap(low[None], ratio)[0], dtype=np.float64)


__all__ = [
    "MTF_SIZE",
    "imresize_bicubic",
    "imresize_weights",
    "interp23tap",
    "interp23tap_taps",
    "mtf_filter",
    "mtf_kernel",
    "pan_low_pass",
    "to_uint16",
]
