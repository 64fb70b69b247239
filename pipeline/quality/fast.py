"""Batched torch engine of the toolbox's full-resolution indices (float64, any device).

The same operators as :mod:`.toolbox` and the same block statistics as :mod:`.indices`, arranged
so that every band (and every band pair) is processed by one tensor operation:

* the 41x41 MTF filters of all bands as one FFT product on the edge-replicated stack;
* ``interp23tap`` as depthwise separable convolutions with circular padding;
* ``imresize(P, 1/r)`` as one strided convolution on the symmetrically extended PAN (the
  antialiased bicubic weights of an integer shrink factor are the same for every output sample);
* block statistics on non-overlapping ``S x S`` blocks (the image mirror-completed to a multiple
  of ``S``, as :func:`pipeline.quality.indices.windows` does): block means, then the centred
  blocks' Gram matrices ``(blocks, B, B')`` by one batched matrix product, which give every UQI
  of a band pair (D_S, classic D_lambda) and every Q2n cross moment at once.

Equal to the NumPy path (:func:`pipeline.quality.full_resolution` with ``engine="numpy"``) to
1e-6 and several times faster (``benchmarks/quality.py``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .hypercomplex import padded_width
from .indices import _structure
from .toolbox import MTF_SIZE, imresize_weights, interp23tap_taps, mtf_kernel

_EPS = float(np.finfo(np.float64).eps)


def symmetric_pad(x: torch.Tensor, before: int, after: int, dim: int) -> torch.Tensor:
    """Extend ``dim`` by whole-sample-plus-edge mirroring (``x[-1] = x[0]``, NumPy "symmetric")."""
    n = x.shape[dim]
    idx = torch.arange(-before, n + after, device=x.device)
    m = torch.remainder(idx, 2 * n)
    return x.index_select(dim, torch.where(m >= n, 2 * n - 1 - m, m))


def mtf_filter(x: torch.Tensor, gains: Sequence[float], ratio: int) -> torch.Tensor:
    """``imfilter(x_b, h_b, 'replicate')`` for every band of ``(B, H, W)`` at once (FFT)."""
    h, w = x.shape[-2:]
    p = MTF_SIZE // 2
    xp = F.pad(x[None], (p, p, p, p), mode="replicate")[0]
    flipped = [np.ascontiguousarray(mtf_kernel(g, ratio)[::-1, ::-1]) for g in gains]
    k = torch.from_numpy(np.stack(flipped)).to(x)
    size = (h + 2 * p, w + 2 * p)
    y: torch.Tensor = torch.fft.irfft2(torch.fft.rfft2(xp) * torch.fft.rfft2(k, s=size), s=size)
    return y[:, 2 * p :, 2 * p :]


def _stage_axis(y: torch.Tensor, dim: int, first: bool, odd: torch.Tensor) -> torch.Tensor:
    """One x2 stage along ``dim`` (polyphase form of zero-stuffing + 23-tap circular filtering).

    The first stage keeps the coarse samples at odd fine positions, later stages at even ones;
    the other phase is ``sum_j odd[j] (y[k + a + j] + y[k + a - 1 - j])`` (circular).
    """
    a = 0 if first else 1
    interp = torch.zeros_like(y)
    for j in range(odd.numel()):
        interp += odd[j] * (
            torch.roll(y, -(a + j), dims=dim) + torch.roll(y, -(a - 1 - j), dims=dim)
        )
    pair = (interp, y) if first else (y, interp)
    out = torch.stack(pair, dim=dim + 1)
    shape = list(y.shape)
    shape[dim] *= 2
    return out.reshape(shape)


def interp23tap(ms: torch.Tensor, ratio: int) -> torch.Tensor:
    """The toolbox's ``interp23tap`` of ``(B, h, w)`` -> ``(B, r h, r w)`` (circular borders)."""
    taps = interp23tap_taps()
    odd = torch.from_numpy(taps[12::2].copy()).to(ms)  # offsets +1, +3, ..., +11
    y = ms
    for stage in range(int(math.log2(ratio))):
        y = _stage_axis(y, 1, stage == 0, odd)
        y = _stage_axis(y, 2, stage == 0, odd)
    return y


@functools.cache
def _shrink_taps(ratio: int) -> tuple[tuple[float, ...], int]:
    """Taps and first input index (0-based, may be < 0) of ``imresize``'s output sample 0."""
    n = 8 * ratio  # any size well beyond the kernel's reach gives the interior row
    row = imresize_weights(n, 1.0 / ratio)[2]  # output 2: no folding at this size
    nz = np.flatnonzero(row)
    first = int(nz[0]) - 2 * ratio
    return tuple(float(v) for v in row[nz[0] : nz[-1] + 1]), first


def imresize_shrink(pan: torch.Tensor, ratio: int) -> torch.Tensor:
    """Matlab ``imresize(pan, 1/ratio)`` (bicubic, antialiased) of ``(H, W)``; ``ceil(H/r)`` rows."""
    taps_t, first = _shrink_taps(ratio)
    taps = torch.tensor(taps_t, dtype=pan.dtype, device=pan.device)
    k = taps.numel()
    x = pan[None, None]
    for dim, n in ((2, pan.shape[0]), (3, pan.shape[1])):
        n_out = math.ceil(n / ratio)
        after = ratio * (n_out - 1) + first + k - n
        x = symmetric_pad(x, -first, max(after, 0), dim)
        shape = (1, 1, k, 1) if dim == 2 else (1, 1, 1, k)
        stride = (ratio, 1) if dim == 2 else (1, ratio)
        x = F.conv2d(x, taps.view(shape), stride=stride).narrow(dim, 0, n_out)
    return x[0, 0]


def pan_low_pass(pan: torch.Tensor, ratio: int) -> torch.Tensor:
    """``interp23tap(imresize(P, 1/ratio))`` of ``(H, W)``."""
    return interp23tap(imresize_shrink(pan, ratio)[None], ratio)[0]


def to_uint16(x: torch.Tensor) -> torch.Tensor:
    """Matlab ``uint16(x)``: round half away from zero, saturate to ``[0, 65535]``, NaN -> 0."""
    r = torch.sign(x) * torch.floor(torch.abs(x) + 0.5)
    return torch.nan_to_num(r, nan=0.0).clamp(0.0, 65535.0)


def blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    """``(C, H, W)`` -> ``(nblocks, C, block*block)`` (mirror-completed to multiples of ``block``)."""
    h, w = x.shape[-2:]
    if h % block:
        x = symmetric_pad(x, 0, (-h) % block, 1)
    if w % block:
        x = symmetric_pad(x, 0, (-w) % block, 2)
    c, hh, ww = x.shape
    b = x.reshape(c, hh // block, block, ww // block, block).permute(1, 3, 0, 2, 4)
    return b.reshape(-1, c, block * block)


def _uqi(
    mx: torch.Tensor, my: torch.Tensor, vx: torch.Tensor, vy: torch.Tensor, cxy: torch.Tensor
) -> torch.Tensor:
    den_v, den_m = vx + vy, mx * mx + my * my
    full = 4.0 * cxy * mx * my / torch.where(den_v * den_m > 0, den_v * den_m, 1.0)
    lum = 2.0 * mx * my / torch.where(den_m > 0, den_m, 1.0)
    con = 2.0 * cxy / torch.where(den_v > 0, den_v, 1.0)
    one = torch.ones_like(full)
    return torch.where(
        den_v > 0, torch.where(den_m > 0, full, con), torch.where(den_m > 0, lum, one)
    )


def uqi_pairs(a: torch.Tensor, b: torch.Tensor, block: int) -> torch.Tensor:
    """Mean block UQI of every band of ``a`` ``(A, H, W)`` with every band of ``b`` -> ``(A, B)``."""
    xa, xb = blocks(a, block), blocks(b, block)
    ma, mb = xa.mean(-1), xb.mean(-1)  # (n, A), (n, B)
    ca, cb = xa - ma[..., None], xb - mb[..., None]
    m = xa.shape[-1]
    va, vb = (ca * ca).sum(-1) / m, (cb * cb).sum(-1) / m
    cov = torch.bmm(ca, cb.transpose(1, 2)) / m  # (n, A, B)
    q = _uqi(ma[:, :, None], mb[:, None, :], va[:, :, None], vb[:, None, :], cov)
    return q.mean(0)


def q2n_blocks(fused: torch.Tensor, reference: torch.Tensor, block: int) -> torch.Tensor:
    """Q2n of each block, ``(B, H, W)`` pair -> ``(nblocks,)``, with the toolbox's flat-block rule.

    A reference band that is flat in a block is scaled by ``eps`` (``norm_blocco``), or not at all
    where its block mean is 0 (``onions_quality``'s ``s == 0`` branch).
    """
    n = padded_width(reference.shape[0])
    extra = n - reference.shape[0]
    if extra:
        zeros = reference.new_zeros((extra, *reference.shape[1:]))
        fused, reference = torch.cat([fused, zeros]), torch.cat([reference, zeros])
    fb, rb = blocks(fused, block), blocks(reference, block)  # (nb, n, M)
    m = rb.shape[-1]
    mu_r, mu_f = rb.mean(-1), fb.mean(-1)
    sd = rb.std(-1, unbiased=True) if m > 1 else torch.zeros_like(mu_r)
    t = torch.where(sd > 0, sd, torch.where(mu_r == 0, 1.0, _EPS))
    z1 = (rb - mu_r[..., None]) / t[..., None]
    z2 = (fb - mu_f[..., None]) / t[..., None]
    m1 = math.sqrt(n)
    m2 = torch.linalg.vector_norm((mu_f - mu_r) / t + 1.0, dim=-1)
    var = (z1 * z1).sum((-2, -1)) / m + (z2 * z2).sum((-2, -1)) / m
    cross = torch.bmm(z1, z2.transpose(1, 2)) / m  # (nb, n, n): E[z1_j z2_k]
    struct = torch.from_numpy(_structure(n)).to(cross)
    cov = torch.linalg.vector_norm(torch.einsum("ijk,bjk->bi", struct, cross), dim=-1)
    lum = 2.0 * m1 * m2 / (m1 * m1 + m2 * m2)
    return torch.where(var > 0, 2.0 * cov / torch.where(var > 0, var, 1.0) * lum, lum)


__all__ = [
    "blocks",
    "imresize_shrink",
    "interp23tap",
    "mtf_filter",
    "pan_low_pass",
    "q2n_blocks",
    "symmetric_pad",
    "to_uint16",
    "uqi_pairs",
]
