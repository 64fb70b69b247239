"""The linear operators of the classical methods along one image axis, as banded matrices.

The LMS upsampler (:func:`pipeline.backbones.upsample`) and the MTF degradation (filter, then
decimate: :func:`pipeline.mtf.degrade_torch`) are separable and linear, with edges folded in
(mirrored, replicated): along one axis each is an ``(n_out, n_in)`` matrix whose row ``i`` is
nonzero only on a short run of columns. :class:`Band` holds those runs (``lo[i]`` and ``width``
values a row), and applies the matrix as dense products of row blocks against the columns they
touch (:func:`along_rows`, :func:`along_cols`): BLAS speed with a few times the filter's own
multiply count, instead of the filter bank's depthwise convolutions, interleaving and padding
copies.

The rows are exact: the upsampler's are read from the upsampler itself (the float64 responses
of a comb of unit impulses, :func:`upsampler_band`), the degradation's from its taps with the
edge replication (:func:`degrade_band`). :func:`gram_band` gives ``A[rows]^T A[rows]``: the
second moments of an upsampled image over any run of its rows, computed on the MS grid.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

IntArray = NDArray[np.int64]
_ROWS = 64  # output rows per block product


@dataclass(frozen=True, kw_only=True, eq=False)
class Band:
    """``G`` stacked ``(m, n_in)`` matrices: row ``i`` of matrix ``g`` is ``vals[g, i]`` at
    columns ``lo[i] .. lo[i] + W`` (the same columns for every ``g``).

    ``lo`` ``(m,)`` is non-decreasing and ``0 <= lo[i] <= n_in - W``; ``vals`` ``(G, m, W)``
    float64.
    """

    lo: IntArray
    vals: NDArray[np.float64]
    n_in: int
    rows: int = _ROWS  #: output rows per block product (its columns grow with it)

    @property
    def n_out(self) -> int:
        return int(self.vals.shape[1])

    def dense(self) -> NDArray[np.float64]:
        """The matrices ``(G, m, n_in)`` (tests, small sizes)."""
        g, m, w = self.vals.shape
        out = np.zeros((g, m, self.n_in))
        cols = self.lo[:, None] + np.arange(w)
        for k in range(g):
            np.add.at(out[k], (np.repeat(np.arange(m), w), cols.ravel()), self.vals[k].ravel())
        return out

    @functools.cached_property
    def _blocks64(self) -> list[tuple[int, int, int, torch.Tensor]]:
        return self._blocks(torch.float64)

    @functools.cached_property
    def _blocks32(self) -> list[tuple[int, int, int, torch.Tensor]]:
        return self._blocks(torch.float32)

    def blocks(self, dtype: torch.dtype) -> list[tuple[int, int, int, torch.Tensor]]:
        """``(i0, i1, c0, B)``: rows ``i0:i1`` of matrix ``g`` are ``B[g] @ x[c0 : c0 + K]``."""
        return self._blocks64 if dtype == torch.float64 else self._blocks32

    def _blocks(self, dtype: torch.dtype) -> list[tuple[int, int, int, torch.Tensor]]:
        g, m, w = self.vals.shape
        out = []
        for i0 in range(0, m, self.rows):
            i1 = min(i0 + self.rows, m)
            c0, c1 = int(self.lo[i0]), int(self.lo[i1 - 1]) + w
            b = np.zeros((g, i1 - i0, c1 - c0))
            rows = np.repeat(np.arange(i1 - i0), w)
            cols = (self.lo[i0:i1, None] - c0 + np.arange(w)).ravel()
            for k in range(g):
                b[k, rows, cols] = self.vals[k, i0:i1].ravel()
            out.append((i0, i1, c0, torch.from_numpy(b).to(dtype)))
        return out


def along_rows(x: torch.Tensor, band: Band) -> torch.Tensor:
    """Each matrix of ``band`` times ``x`` along the second to last axis:
    ``(..., n_in, W) -> (..., G, m, W)`` (``(..., m, W)`` for one matrix)."""
    g = band.vals.shape[0]
    if g == 1 and x.dim() <= 3:  # products written in place, band by band: no copy
        out = x.new_empty((*x.shape[:-2], band.n_out, x.shape[-1]))
        planes = zip(x.view(-1, *x.shape[-2:]), out.view(-1, *out.shape[-2:]), strict=True)
        for xi, oi in planes:
            for i0, i1, c0, b in band.blocks(x.dtype):
                torch.matmul(b[0], xi[c0 : c0 + b.shape[-1]], out=oi[i0:i1])
        return out
    out = x.new_empty((*x.shape[:-2], g, band.n_out, x.shape[-1]))
    for i0, i1, c0, b in band.blocks(x.dtype):
        k = b.shape[-1]
        res = torch.matmul(b.reshape(g * (i1 - i0), k), x[..., c0 : c0 + k, :])
        out[..., i0:i1, :] = res.view(*res.shape[:-2], g, i1 - i0, res.shape[-1])
    return out[..., 0, :, :] if g == 1 else out


def along_cols(x: torch.Tensor, band: Band) -> torch.Tensor:
    """``x @ band[g].T`` along the last axis: ``(..., G, H, n_in) -> (..., G, H, m)`` (matrix
    ``g`` on slice ``g`` of the third to last axis; any leading shape for one matrix)."""
    g = band.vals.shape[0]
    out = x.new_empty((*x.shape[:-1], band.n_out))
    for i0, i1, c0, b in band.blocks(x.dtype):
        bt = b.transpose(-1, -2) if g > 1 else b[0].T
        out[..., i0:i1] = torch.matmul(x[..., c0 : c0 + b.shape[-1]], bt)
    return out


def apply2d(x: torch.Tensor, rows: Band, cols: Band) -> torch.Tensor:
    """``rows @ x @ cols.T`` on the last two axes (the narrower product first)."""
    return along_rows(along_cols(x, cols), rows)


def _window_lo(centre: IntArray, reach: int, n_in: int) -> tuple[IntArray, int]:
    width = min(2 * reach + 1, n_in)
    return np.clip(centre - reach, 0, n_in - width).astype(np.int64), width


@functools.lru_cache(maxsize=64)
def upsampler_band(n: int, ratio: int, upsampler: str) -> Band:
    """The LMS upsampler along one axis of ``n`` MS samples: an ``(ratio n, n)`` :class:`Band`.

    Column ``j`` is nonzero only within the upsampler's MS reach (plus one) of output row
    ``i``'s MS position ``i // ratio``; with ``S = 2 reach + 1`` impulses per period, each
    residue class of columns is upsampled at once (float64) and row ``i`` read off the
    responses.
    """
    from ..backbones import support_ms, upsample

    reach = support_ms(upsampler, ratio) + 1
    lo, width = _window_lo(np.arange(ratio * n) // ratio, reach, n)
    comb = torch.zeros(width, n, dtype=torch.float64)
    for s in range(width):
        comb[s, s::width] = 1.0
    resp = upsample(comb.view(1, width, n, 1), ratio, upsampler)[0, :, :, 0].numpy()
    cols = lo[:, None] + np.arange(width)  # every residue mod width exactly once per row
    vals = resp[cols % width, np.arange(ratio * n)[:, None]]
    return Band(lo=lo, vals=np.ascontiguousarray(vals)[None], n_in=n)


@functools.lru_cache(maxsize=64)
def degrade_band(n: int, ratio: int, gains: tuple[float, ...]) -> Band:
    """MTF filtering (edges replicated) then decimation, along one axis of ``n`` PAN samples,
    one ``(m, n)`` matrix per gain, ``m = ceil((n - r//2) / r)``.

    Row ``i`` of gain ``g`` holds the 41 taps centred on sample ``r//2 + i r``
    (:func:`pipeline.mtf.degrade_torch` along that axis).
    """
    from ..mtf import kernel_1d

    centre = np.arange(ratio // 2, n, ratio)
    k = len(kernel_1d(gains[0], ratio))
    lo, width = _window_lo(centre, k // 2, n)
    src = np.clip(centre[:, None] + np.arange(k) - k // 2, 0, n - 1) - lo[:, None]
    parts = []
    for g in gains:
        vals = np.zeros((len(centre), width))
        rows = np.repeat(np.arange(len(centre)), k)
        np.add.at(vals, (rows, src.ravel()), np.tile(kernel_1d(g, ratio), len(centre)))
        parts.append(vals)
    return Band(lo=lo, vals=np.stack(parts), n_in=n, rows=16)  # 16 rows read 101 columns


@functools.lru_cache(maxsize=256)
def gram_band(
    n: int, ratio: int, upsampler: str, r0: int, r1: int
) -> tuple[Band, NDArray[np.float64]]:
    """``A^T A`` and ``A^T 1`` for ``A`` the rows ``r0:r1`` of :func:`upsampler_band`.

    For MS images ``a``, ``b`` (``n`` rows): ``sum over those rows of (A a) (A b) =
    a^T (A^T A) b`` and ``sum (A a) = (A^T 1)^T a``.
    """
    a = upsampler_band(n, ratio, upsampler)
    lo, vals = a.lo[r0:r1], a.vals[0, r0:r1]
    w = vals.shape[1]
    reach = w - 1  # columns j, j' sharing a row lie within width - 1 of each other
    glo, gw = _window_lo(np.arange(n), reach, n)
    j = lo[:, None] + np.arange(w)  # (rows, w) columns of each row's values
    flat_j = np.broadcast_to(j[:, :, None], (len(lo), w, w))
    flat_k = np.broadcast_to(j[:, None, :], (len(lo), w, w))
    idx = flat_j * gw + (flat_k - glo[flat_j])
    prod = vals[:, :, None] * vals[:, None, :]
    g = np.bincount(idx.ravel(), prod.ravel(), minlength=n * gw).astype(np.float64)
    ones = np.bincount(j.ravel(), vals.ravel(), minlength=n).astype(np.float64)
    return Band(lo=glo, vals=g.reshape(1, n, gw), n_in=n), ones
