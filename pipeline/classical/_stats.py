"""Numerics of the classical methods: the LMS of a window as matrix products, NNLS, moments."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from ..quality.full_resolution import interpolate

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
_MATMUL_MAX = 512  # MS pixels a side up to which the LMS is two matrix products per band
_EPS = 1e-12
_CHUNK = 1 << 14  # columns per centred block of _Moments.add


@functools.lru_cache(maxsize=16)
def _axis_matrix(n: int, ratio: int, upsampler: str) -> torch.Tensor:
    """The upsampler along one axis of ``n`` samples as a ``(ratio n, n)`` float32 matrix.

    Built in float64 by upsampling the identity (the mirrored edges are folded in), so
    ``A_y @ ms_b @ A_x.T`` is :func:`pipeline.backbones.upsample` of band ``b`` (separable).
    """
    from ..backbones import upsample

    eye = torch.eye(n, dtype=torch.float64).view(1, n, n, 1)
    return upsample(eye, ratio, upsampler)[0, :, :, 0].T.to(torch.float32).contiguous()


def _lms_of(m: FloatArray, ratio: int, upsampler: str) -> NDArray[np.floating[Any]]:
    """The LMS of a window: two dense matrix products per band up to :data:`_MATMUL_MAX` MS
    pixels a side (about 4x faster than the filter bank on a tile, same values to float32
    rounding, below 2e-3 DN on 11-bit data), else :func:`interpolate`."""
    h, w = m.shape[1:]
    if max(h, w) > _MATMUL_MAX:
        return interpolate(m, ratio, upsampler)
    x = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))
    up = _axis_matrix(h, ratio, upsampler) @ x @ _axis_matrix(w, ratio, upsampler).T
    return np.asarray(up.numpy())  # float32: the fit's statistics promote it, Brovey keeps it


@functools.lru_cache(maxsize=32)
def _degrade_matrix(n: int, ratio: int, gain: float) -> torch.Tensor:
    """MTF filtering (edges replicated) then decimation along one axis of ``n`` samples, as a
    ``(ceil((n - r//2) / r), n)`` float32 matrix: row ``i`` holds the 41 taps centred on sample
    ``r//2 + i r`` (:func:`pipeline.mtf.degrade_torch` along that axis)."""
    from ..mtf import kernel_1d

    taps = kernel_1d(gain, ratio)
    k, rows = len(taps), np.arange(ratio // 2, n, ratio)
    cols = np.clip(rows[:, None] + np.arange(k)[None, :] - k // 2, 0, n - 1)
    m = np.zeros((len(rows), n))
    np.add.at(m, (np.repeat(np.arange(len(rows)), k), cols.ravel()), np.tile(taps, len(rows)))
    return torch.from_numpy(m).to(torch.float32)


def _low_of(p: NDArray[Any], gains: tuple[float, ...], ratio: int) -> NDArray[np.float32]:
    """The PAN ``(H, W)`` MTF-filtered with each gain's kernel and decimated by ``ratio``:
    ``(G, h, w)`` float32, :func:`pipeline.mtf.degrade_f32` of each gain to float32 rounding.

    Up to :data:`_MATMUL_MAX` MS pixels a side, two matrix products per gain (batched), several
    times faster than strided depthwise convolutions on a tile; else those convolutions.
    """
    h, w = p.shape
    if max(h, w) > _MATMUL_MAX * ratio:
        from ..mtf import degrade_f32

        stack = np.broadcast_to(np.asarray(p, dtype=np.float32), (len(gains), h, w))
        return np.asarray(degrade_f32(stack, gains, ratio), dtype=np.float32)
    x = torch.from_numpy(np.ascontiguousarray(p, dtype=np.float32))
    return np.asarray(
        (_degrade_stack(h, ratio, gains) @ x @ _degrade_stack(w, ratio, gains).mT).numpy()
    )


@functools.lru_cache(maxsize=32)
def _degrade_stack(n: int, ratio: int, gains: tuple[float, ...]) -> torch.Tensor:
    """:func:`_degrade_matrix` of each gain, stacked ``(G, n_out, n)``."""
    return torch.stack([_degrade_matrix(n, ratio, g) for g in gains])


def _nnls(a: FloatArray, b: FloatArray) -> FloatArray:
    """``argmin ||a x - b||`` subject to ``x >= 0`` (Lawson & Hanson's active set method).

    On the ``n x n`` triangle ``r`` of ``a = q r`` (same minimiser: ``||a x - b||^2 =
    ||r x - q^T b||^2 + const``), so each inner solve is ``n x n`` whatever the sample count.
    scipy's ``nnls`` solves the same problem; importing ``scipy.optimize`` costs a fresh worker
    about 0.6 s, more than this whole fit.
    """
    q, r = np.linalg.qr(a)
    c = q.T @ b
    n = r.shape[1]
    tol = 10 * np.finfo(np.float64).eps * np.abs(r).sum(axis=0).max() * n
    x, passive = np.zeros(n), np.zeros(n, dtype=bool)
    for _ in range(3 * n):
        grad = r.T @ (c - r @ x)
        if passive.all() or grad[~passive].max() <= tol:
            break
        passive[int(np.argmax(np.where(passive, -np.inf, grad)))] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(r[:, passive], c, rcond=None)[0]
            if (z[passive] > tol).all():
                break
            neg = passive & (z <= tol)
            alpha = float(np.min(x[neg] / (x[neg] - z[neg])))
            x = x + alpha * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
        x = z
    return x


def _nnls_weights(x: FloatArray, y: FloatArray) -> FloatArray:
    w = _nnls(x, y)
    if not np.any(w > 0):
        log.warning("Brovey weight fit gave all zeros; using equal weights.")
        w = np.full(x.shape[1], 1.0 / x.shape[1])
    return np.asarray(w, dtype=np.float64)


class _Moments:
    """Means and co-moments of ``k`` variables accumulated over blocks (Chan et al.'s update)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: FloatArray = np.zeros(0)
        self.comoment: FloatArray = np.zeros((0, 0))

    def add(self, x: NDArray[Any] | Sequence[NDArray[Any]]) -> None:
        """Add the pixels of ``x`` ``(k, n)``, or of row blocks ``(k_i, n)`` / ``(n,)`` stacked."""
        parts = [x] if isinstance(x, np.ndarray) else [np.atleast_2d(a) for a in x]
        nb = parts[0].shape[1]
        if nb == 0:
            return
        mb = np.concatenate([a.mean(axis=1, dtype=np.float64) for a in parts])
        cb = np.zeros((len(mb), len(mb)))
        for c in range(0, nb, _CHUNK):  # centred in cache-sized chunks: no (k, n) temporary
            xc = np.concatenate([a[:, c : c + _CHUNK] for a in parts], dtype=np.float64)
            xc -= mb[:, None]
            cb += xc @ xc.T
        if self.n == 0:
            self.n, self.mean, self.comoment = nb, mb, cb
            return
        n = self.n + nb
        d = mb - self.mean
        self.mean = self.mean + d * (nb / n)
        self.comoment = self.comoment + cb + np.outer(d, d) * (self.n * nb / n)
        self.n = n

    @property
    def cov(self) -> FloatArray:
        """Population covariance matrix (``ddof = 0``, as ``np.std``)."""
        return self.comoment / max(self.n, 1)


def _gain(cov: FloatArray, i: int, ref: int) -> float:
    """``cov(x_i, x_ref) / var(x_ref)``."""
    return float(cov[i, ref] / max(float(cov[ref, ref]), _EPS))


def _std(cov: FloatArray, i: int) -> float:
    return math.sqrt(max(float(cov[i, i]), 0.0))
