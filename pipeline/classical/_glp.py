"""MTF-GLP's (and HPM's) fit without the PAN-sized LMS and low-passes (:mod:`pipeline.classical`).

It uses that the LMS upsampler ``U`` is linear (rows ``A_y``, columns ``A_x``:
:mod:`pipeline.classical._banded`): the means and co-moments over a block's own PAN pixels of upsampled images ``U a``,
    ``U b`` are MS-grid sums: ``sum (U a) = u_y^T a u_x`` and ``sum (U a)(U b) =
    <a, G_y b G_x>`` with ``u = A^T 1`` and ``G = A^T A`` over the block's own rows
    (:func:`~pipeline.classical._banded.gram_band`), in float64, after centring each MS-grid
    image (``U`` keeps constants). Equal to the moments of the float32 PAN-sized images the
    reference computes, to their float32 rounding.

The reference path (``LMS`` given by the caller) stays in :mod:`pipeline.classical._core`.

The fusion could likewise be one upsampling, ``U(MS_i - g_i low_i) + g_i PAN`` (about 0.4 s
less on a 4000² scene), but its float32 rounding differs from ``LMS_i + g_i (PAN - P_LP,i)``
by enough to move the float32-vs-float64 index check of ``tests/test_quality_toolbox.py``
(``D_lambda^K`` on a GE1 crop, rounding-sensitive) past its 1e-6; the apply keeps the
definition's order (banded LMS and low-passes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from ._banded import apply2d, gram_band
from ._block import _Block, per_block
from ._stats import _EPS, FloatArray, merge_moments


class _CrossMoments:
    """Means of ``k`` variables and their co-moments with ``c`` of them, merged block by block
    (Chan et al.'s pairwise update, rectangular)."""

    def __init__(self, cols: Sequence[int]) -> None:
        self.cols = list(cols)
        self.n = 0
        self.mean: FloatArray = np.zeros(0)
        self.comoment: FloatArray = np.zeros((0, 0))

    def merge(self, nb: int, mb: FloatArray, cb: FloatArray) -> None:
        """Add a block of ``nb`` pixels with means ``mb`` ``(k,)`` and co-moments ``cb``
        ``(k, c)`` about them."""
        self.n, self.mean, self.comoment = merge_moments(
            (self.n, self.mean, self.comoment), (nb, mb, cb), self.cols
        )

    def cov(self, i: int, j: int) -> float:
        """Population covariance of variable ``i`` with variable ``cols[j]``."""
        return float(self.comoment[i, j] / max(self.n, 1))


def block_moments(
    b: _Block, x: FloatArray, cols: Sequence[int]
) -> tuple[int, FloatArray, FloatArray]:
    """``(n, means (k,), co-moments (k, c))`` over ``b``'s own PAN pixels of ``U x_k``, for
    the MS-grid images ``x`` ``(k, h', w')`` and the ``c`` variables ``cols``."""
    r, ups = b.spec.ratio, b.upsampler
    own = b.own.scaled(r)
    gy, uy = gram_band(x.shape[1], r, ups, own.y0, own.y1)
    gx, ux = gram_band(x.shape[2], r, ups, own.x0, own.x1)
    centre = x.mean(axis=(1, 2))
    xc = torch.from_numpy(x - centre[:, None, None])
    w = apply2d(xc[list(cols)], gy, gx)
    k, c = len(x), len(cols)
    cross = (xc.reshape(k, -1) @ w.reshape(c, -1).T).numpy()
    sums = (torch.from_numpy(uy) @ xc @ torch.from_numpy(ux)).numpy()
    n = own.shape_yx[0] * own.shape_yx[1]
    return n, centre + sums / n, cross - np.outer(sums, sums[list(cols)]) / n


def fit_glp(key: str, blocks: Iterable[_Block], n_bands: int, spec: Any) -> dict[str, Any]:
    """MTF-GLP's regression gains, or HPM's PAN mean, scales and band means (the fast fit)."""
    gains = list(dict.fromkeys(spec.mtf_ms))  # distinct MTF gains, in band order
    row = {g: n_bands + j for j, g in enumerate(gains)}
    cols = list(range(n_bands + len(gains))) if key != "mtf-glp" else list(row.values())
    acc, pan_sum, pan_n = _CrossMoments(cols), 0.0, 0

    def stats(b: _Block) -> tuple[tuple[int, FloatArray, FloatArray], float, int]:
        b.lows(gains)
        x = np.concatenate([b.m, np.stack([b.low(g) for g in gains])])
        p = b.own_pan(b.p)
        return block_moments(b, x, cols), float(p.sum(dtype=np.float64)), p.size

    for moments, p_sum, p_n in per_block(stats, blocks):  # merged in block order
        acc.merge(*moments)
        pan_sum, pan_n = pan_sum + p_sum, pan_n + p_n

    def cov(i: int, j: int) -> float:
        return acc.cov(i, cols.index(j))

    if key == "mtf-glp":
        return {"gains": [cov(i, row[g]) / max(cov(row[g], row[g]), _EPS) for i, g in
                          enumerate(spec.mtf_ms)]}  # fmt: skip

    def std(i: int) -> float:
        return float(np.sqrt(max(cov(i, i), 0.0)))

    return {
        "pan_mean": pan_sum / max(pan_n, 1),
        "scales": [std(i) / max(std(row[g]), _EPS) for i, g in enumerate(spec.mtf_ms)],
        "band_means": [float(acc.mean[i]) for i in range(n_bands)],
    }
