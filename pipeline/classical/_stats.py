"""Numerics of the classical methods: the LMS of a window as matrix products, NNLS, moments."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
_EPS = 1e-12
_CHUNK = 1 << 14  # columns per centred block of _Moments.add


def _lms_of(m: FloatArray, ratio: int, upsampler: str) -> NDArray[np.floating[Any]]:
    """The LMS of a window ``(B, h, w)`` -> ``(B, r h, r w)`` float32: the upsampler's banded
    row and column matrices (:func:`~pipeline.classical._banded.upsampler_band`), same values
    as :func:`pipeline.quality.interpolate` to float32 rounding (below 2e-3 DN on 11-bit
    data), over ten times faster on a whole scene."""
    from ._banded import apply2d, upsampler_band

    h, w = m.shape[1:]
    x = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))
    up = apply2d(x, upsampler_band(h, ratio, upsampler), upsampler_band(w, ratio, upsampler))
    return np.asarray(up.numpy())  # float32: the fit's statistics promote it, Brovey keeps it


def _low_of(p: NDArray[Any], gains: tuple[float, ...], ratio: int) -> NDArray[np.float32]:
    """The PAN ``(H, W)`` MTF-filtered with each gain's kernel and decimated by ``ratio``:
    ``(G, h, w)`` float32, :func:`pipeline.mtf.degrade_f32` of each gain to float32 rounding.

    The degradation's banded matrices (:func:`~pipeline.classical._banded.degrade_band`, the
    gains stacked in one product per row block): several times faster than the strided
    depthwise convolutions.
    """
    from ._banded import along_cols, along_rows, degrade_band

    h, w = p.shape
    x = torch.from_numpy(np.ascontiguousarray(p, dtype=np.float32))
    y = along_cols(along_rows(x, degrade_band(h, ratio, gains)), degrade_band(w, ratio, gains))
    return np.asarray(y.reshape(len(gains), *y.shape[-2:]).numpy())


def _nnls(a: FloatArray, b: FloatArray) -> FloatArray:
    """``argmin ||a x - b||`` subject to ``x >= 0`` (Lawson & Hanson's active set method).

    On the ``n x n`` triangle ``r`` of ``a = q r`` (same minimiser: ``||a x - b||^2 =
    ||r x - q^T b||^2 + const``), so each inner solve is ``n x n`` whatever the sample count.
    ``r`` and ``q^T b`` are the triangle of ``[a | b]`` (its first ``n`` columns, and the top of
    its last one), so ``q`` is never formed: half the QR's CPU (0.15 s instead of 0.30 on
    Brovey's 333,334 x 8 design at 4000²).
    scipy's ``nnls`` solves the same problem; importing ``scipy.optimize`` costs a fresh worker
    about 0.6 s, more than this whole fit.
    """
    n = a.shape[1]
    k = min(a.shape[0], n)
    tri = np.asarray(np.linalg.qr(np.column_stack([a, b]), mode="r"))
    r, c = tri[:k, :n], tri[:k, n]
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


Moments = tuple[int, FloatArray, FloatArray]
"""``(n, means (k,), co-moments about them (k, c))`` of ``n`` samples."""


def merge_moments(a: Moments, b: Moments, cols: Sequence[int] | None = None) -> Moments:
    """Chan et al.'s pairwise merge of two sample sets' means and co-moments.

    ``cols`` picks the variables of the co-moment columns (all of them by default).
    """
    (na, ma, ca), (nb, mb, cb) = a, b
    if nb == 0:
        return a
    if na == 0:
        return b
    n = na + nb
    d = mb - ma
    dc = d if cols is None else d[list(cols)]
    return n, ma + d * (nb / n), ca + cb + np.outer(d, dc) * (na * nb / n)


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
        self.n, self.mean, self.comoment = merge_moments(
            (self.n, self.mean, self.comoment), (nb, mb, cb)
        )

    @property
    def cov(self) -> FloatArray:
        """Population covariance matrix (``ddof = 0``, as ``np.std``)."""
        return self.comoment / max(self.n, 1)


def _gain(cov: FloatArray, i: int, ref: int) -> float:
    """``cov(x_i, x_ref) / var(x_ref)``."""
    return float(cov[i, ref] / max(float(cov[ref, ref]), _EPS))


def _std(cov: FloatArray, i: int) -> float:
    return math.sqrt(max(float(cov[i, i]), 0.0))
