"""Numerics of the classical methods: the LMS of a window as matrix products, NNLS, moments."""

from __future__ import annotations

import functools
import logging
import math
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from ..quality.full_resolution import interpolate

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
_MATMUL_MAX = 512  # MS pixels a side up to which the LMS is two matrix products per band
_EPS = 1e-12


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

    def add(self, x: FloatArray) -> None:
        """Add the pixels of ``x`` ``(k, n)``."""
        nb = x.shape[1]
        if nb == 0:
            return
        mb = x.mean(axis=1)
        xc = x - mb[:, None]
        cb = xc @ xc.T
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
