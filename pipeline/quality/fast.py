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
from numpy.typing import NDArray

from . import toolbox
from .hypercomplex import padded_width
from .indices import _structure
from .toolbox import MTF_SIZE, imresize_weights, mtf_kernel

_EPS = float(np.finfo(np.float64).eps)


def symmetric_pad(x: torch.Tensor, before: int, after: int, dim: int) -> torch.Tensor:
    """Extend ``dim`` by whole-sample-plus-edge mirroring (``x[-1] = x[0]``, NumPy "symmetric")."""
    n = x.shape[dim]
    idx = torch.arange(-before, n + after, device=x.device)
    m = torch.remainder(idx, 2 * n)
    return x.index_select(dim, torch.where(m >= n, 2 * n - 1 - m, m))


@functools.cache
def _kernel_spectra(
    gains: tuple[float, ...], ratio: int, size: tuple[int, int], dtype: torch.dtype
) -> torch.Tensor:
    """``rfft2`` of every band's correlation kernel at ``size``, ``(B, size0, size1 // 2 + 1)``."""
    k = np.stack([mtf_kernel(g, ratio)[::-1, ::-1] for g in gains])  # correlation
    spectra: torch.Tensor = torch.fft.rfft2(torch.from_numpy(np.ascontiguousarray(k)), s=size)
    return spectra.to(torch.complex64 if dtype == torch.float32 else torch.complex128)


def _replicate_into(
    x: torch.Tensor, size: tuple[int, int], p: int, dtype: torch.dtype
) -> torch.Tensor:
    """``(B, H, W)`` edge-replicated by ``p`` on every side into a zero-tailed ``(B, *size)`` of
    ``dtype`` (converted in the writes: no converted copy of ``x`` first)."""
    b, h, w = x.shape
    out = torch.empty((b, *size), dtype=dtype, device=x.device)
    out[:, p : p + h, p : p + w] = x
    out[:, p : p + h, :p] = x[:, :, :1]
    out[:, p : p + h, p + w : w + 2 * p] = x[:, :, -1:]
    out[:, :p, : w + 2 * p] = out[:, p : p + 1, : w + 2 * p]
    out[:, p + h : h + 2 * p, : w + 2 * p] = out[:, p + h - 1 : p + h, : w + 2 * p]
    out[:, h + 2 * p :] = 0.0  # the FFT's zero padding (never reaches the kept samples)
    out[:, : h + 2 * p, w + 2 * p :] = 0.0
    return out


def mtf_filter(
    x: torch.Tensor, gains: Sequence[float], ratio: int, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """``imfilter(x_b, h_b, 'replicate')`` for every band of ``(B, H, W)`` at once (FFT).

    Linear convolution of the edge-replicated stack by FFT on a 5-smooth size; the wrapped-around
    part falls in the discarded margin. ``dtype``: the FFT's precision (default ``x``'s);
    ``float32`` is 1.5x cheaper and, on DN data, off by ~5e-4 DN at most (a uint16 rounding of
    ~1 pixel in 20 000 differs by one DN: the toolbox indices move by < 1e-7). Returns a
    strided view into the FFT's output (``.contiguous()`` it to keep it long).
    """
    from scipy.fft import next_fast_len

    h, w = x.shape[-2:]
    p = MTF_SIZE // 2
    dt = dtype or x.dtype
    size = (next_fast_len(h + 2 * p, real=True), next_fast_len(w + 2 * p, real=True))
    spec = torch.fft.rfft2(_replicate_into(x, size, p, dt))
    spec *= _kernel_spectra(tuple(float(g) for g in gains), ratio, size, dt).to(spec.device)
    y = _irfft2(spec, size)
    return y[:, 2 * p : 2 * p + h, 2 * p : 2 * p + w]


def _irfft2(spec: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``irfft2`` that may overwrite ``spec``: on the CPU SciPy's (pocketfft, in place, torch's
    threads), ~1.5x faster than torch's MKL ``c2r``, which copies its input first (measured,
    ``docs/notes/quality.md``); float64 either way (complex64 gives float32)."""
    if spec.device.type != "cpu" or spec.requires_grad:
        out: torch.Tensor = torch.fft.irfft2(spec, s=size)
        return out
    import scipy.fft

    y: NDArray[np.floating] = scipy.fft.irfft2(
        spec.numpy(), s=size, workers=torch.get_num_threads(), overwrite_x=True
    )
    return torch.from_numpy(y)


@functools.cache
def _interp_phases(ratio: int) -> tuple[NDArray[np.float64], int]:
    """``interp23tap``'s 1-D operator in polyphase form: ``W (ratio, 2J+1)`` and ``J``.

    Fine sample ``r k + p`` is ``sum_j W[p, j + J] y[k + j]`` (circular); read off the NumPy
    operator's response to unit impulses, so the two cannot drift apart.
    """
    n = 64
    eye = np.zeros((n, n, 1))
    eye[np.arange(n), np.arange(n), 0] = 1.0
    resp = toolbox.interp23tap(eye, ratio)[:, :, 0]  # (impulse k, fine position) at column 0
    k0 = n // 2
    w = np.stack([resp[k0 + np.arange(-k0, k0), ratio * k0 + p] for p in range(ratio)])
    used = np.flatnonzero(np.abs(w).max(axis=0) > 0)
    reach = int(max(k0 - used[0], used[-1] - k0))
    return np.ascontiguousarray(w[:, k0 - reach : k0 + reach + 1]), reach


_CHUNK = 16  # coarse samples per banded-matrix block of the interpolator


@functools.cache
def _interp_chunk_matrix(ratio: int) -> NDArray[np.float64]:
    """``(CHUNK + 2J, ratio * CHUNK)``: one block of the banded circulant interpolation matrix."""
    w, reach = _interp_phases(ratio)
    k = 2 * reach + 1
    a = np.zeros((_CHUNK + k - 1, ratio * _CHUNK))
    for i in range(_CHUNK):
        a[i : i + k, ratio * i : ratio * (i + 1)] = w.T
    return a


def _interp_last(y: torch.Tensor, ratio: int) -> torch.Tensor:
    """Interpolate the last axis by ``ratio`` (circular), as blocked banded matrix products."""
    _, reach = _interp_phases(ratio)
    n = y.shape[-1]
    n_pad = -(-n // _CHUNK) * _CHUNK
    idx = torch.remainder(torch.arange(-reach, n_pad + reach, device=y.device), n)
    win = y.index_select(-1, idx).unfold(-1, _CHUNK + 2 * reach, _CHUNK)
    out = win @ torch.from_numpy(_interp_chunk_matrix(ratio)).to(y)
    return out.reshape(*y.shape[:-1], ratio * n_pad)[..., : ratio * n]


def _interp_rows(y: torch.Tensor, ratio: int) -> torch.Tensor:
    """Interpolate axis -2 of ``(B, h, W)`` by ``ratio`` (circular): ``A @ chunk`` per row block."""
    _, reach = _interp_phases(ratio)
    b, n, w = y.shape
    n_chunks = -(-n // _CHUNK)
    k = _CHUNK + 2 * reach
    starts = torch.arange(n_chunks, device=y.device)[:, None] * _CHUNK - reach
    idx = torch.remainder(starts + torch.arange(k, device=y.device)[None, :], n).reshape(-1)
    win = y.index_select(1, idx).view(b, n_chunks, k, w)
    a_t = torch.from_numpy(np.ascontiguousarray(_interp_chunk_matrix(ratio).T)).to(y)
    out = torch.matmul(a_t, win)  # (B, n_chunks, r CHUNK, W)
    return out.reshape(b, n_chunks * ratio * _CHUNK, w)[:, : ratio * n]


def interp23tap(ms: torch.Tensor, ratio: int) -> torch.Tensor:
    """The toolbox's ``interp23tap`` of ``(B, h, w)`` -> ``(B, r h, r w)`` (circular borders).

    Both x2 stages at once, as one polyphase filter per axis (blocked matrix products); the
    columns first, on the coarse rows (the row pass gathers whole rows, the column pass single
    samples: the gather runs on the smaller array).
    """
    return _interp_rows(_interp_last(ms, ratio), ratio)


@functools.cache
def _shrink_taps(ratio: int) -> tuple[tuple[float, ...], int]:
    """Taps and first input index (0-based, may be < 0) of ``imresize``'s output sample 0."""
    n = 8 * ratio  # any size well beyond the kernel's reach gives the interior row
    row = imresize_weights(n, 1.0 / ratio)[2]  # output 2: no folding at this size
    nz = np.flatnonzero(row)
    first = int(nz[0]) - 2 * ratio
    return tuple(float(v) for v in row[nz[0] : nz[-1] + 1]), first


def imresize_shrink(pan: torch.Tensor, ratio: int) -> torch.Tensor:
    """Matlab ``imresize(pan, 1/ratio)`` (bicubic, antialiased) of ``(H, W)``; ``ceil(H/r)`` rows.

    Per axis, output ``i`` is ``sum_t taps[t] x[ratio i + t]`` of the symmetrically extended
    input: one strided multiply-add per tap (float64 direct convolution is slow in torch).
    """
    taps, first = _shrink_taps(ratio)
    k = len(taps)
    x = pan
    for dim, n in ((0, pan.shape[0]), (1, pan.shape[1])):
        n_out = math.ceil(n / ratio)
        after = ratio * (n_out - 1) + first + k - n
        x = symmetric_pad(x, -first, max(after, 0), dim)
        span = ratio * (n_out - 1) + 1
        y = x.narrow(dim, 0, span)[::ratio] if dim == 0 else x.narrow(dim, 0, span)[:, ::ratio]
        y = y * taps[0]
        for t in range(1, k):
            xt = x.narrow(dim, t, span)
            y.add_(xt[::ratio] if dim == 0 else xt[:, ::ratio], alpha=taps[t])
        x = y
    return x


def pan_low_pass(pan: torch.Tensor, ratio: int) -> torch.Tensor:
    """``interp23tap(imresize(P, 1/ratio))`` of ``(H, W)``."""
    return interp23tap(imresize_shrink(pan, ratio)[None], ratio)[0]


def to_uint16(x: torch.Tensor, *, inplace: bool = False) -> torch.Tensor:
    """Matlab ``uint16(x)``: round half away from zero, saturate to ``[0, 65535]``, NaN -> 0.

    ``inplace``: overwrite ``x`` (a temporary) instead of allocating.
    """
    r = x.add_(0.5) if inplace else x + 0.5  # negatives saturate to 0 either way
    r.floor_().clamp_(0.0, 65535.0)
    return r.nan_to_num_(nan=0.0)


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


def blocks_of(images: Sequence[torch.Tensor], block: int) -> torch.Tensor:
    """:func:`blocks` of the channel concatenation of ``(C_i, H, W)`` images, one copy each."""
    h, w = images[0].shape[-2:]
    if h % block or w % block:
        return blocks(torch.cat(list(images)), block)
    c = sum(im.shape[0] for im in images)
    ny, nx = h // block, w // block
    out = images[0].new_empty((ny, nx, c, block, block))
    at = 0
    for im in images:
        k = im.shape[0]
        src = im.reshape(k, ny, block, nx, block).permute(1, 3, 0, 2, 4)
        out[:, :, at : at + k].copy_(src)
        at += k
    return out.view(ny * nx, c, block * block)


def block_moments(
    x: torch.Tensor | Sequence[torch.Tensor], block: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Block means ``(nb, C)`` and raw second moments ``E[x_i x_j]`` ``(nb, C, C)``.

    ``x``: a ``(C, H, W)`` stack, or several whose channels are concatenated. One batched matrix
    product gives every channel pair's cross moment at once; centring is done on these moments
    (float64: the cancellation costs ~5 of 16 digits on DN data).
    """
    xb = blocks_of([x] if isinstance(x, torch.Tensor) else x, block)
    m = xb.shape[-1]
    return xb.mean(-1), torch.bmm(xb, xb.transpose(1, 2)) / m


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


def uqi_matrix(mean: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Mean block UQI of every channel pair ``(C, C)`` from :func:`block_moments`' output."""
    cov = second - mean[:, :, None] * mean[:, None, :]
    var = torch.diagonal(cov, dim1=1, dim2=2).clamp_min(0.0)
    cov = cov * (var[:, :, None] > 0) * (var[:, None, :] > 0)  # exact zeros for flat blocks
    q = _uqi(mean[:, :, None], mean[:, None, :], var[:, :, None], var[:, None, :], cov)
    return q.mean(0)


def uqi_pairs(a: torch.Tensor, b: torch.Tensor, block: int) -> torch.Tensor:
    """Mean block UQI of every band of ``a`` ``(A, H, W)`` with every band of ``b`` -> ``(A, B)``."""
    mean, second = block_moments([a, b], block)
    return uqi_matrix(mean, second)[: a.shape[0], a.shape[0] :]


def q2n_blocks(
    fused: torch.Tensor, reference: torch.Tensor, block: int, flat: str = "toolbox"
) -> torch.Tensor:
    """Q2n of each block, ``(B, H, W)`` pair -> ``(nblocks,)``, with the toolbox's flat-block rule.

    A reference band that is flat in a block is scaled by ``eps`` (``norm_blocco``), or not at all
    where its block mean is 0 (``onions_quality``'s ``s == 0`` branch); ``flat="unit"``: by 1
    (:func:`pipeline.quality.indices.q2n_map`'s default). Zero bands pad the count to a power
    of two; they normalise to 1 in both images.
    """
    mean, second = block_moments([reference, fused], block)
    return q2n_from_moments(mean, second, reference.shape[0], block * block, flat)


def q2n_from_moments(
    mean: torch.Tensor, second: torch.Tensor, c: int, m: int, flat: str = "toolbox"
) -> torch.Tensor:
    """:func:`q2n_blocks` from the block moments of ``[reference, fused]`` (``c`` bands each).

    ``mean (nb, 2c)`` and ``second (nb, 2c, 2c)`` as :func:`block_moments` gives them; ``m`` is
    the number of pixels of a block. Returns ``(nb,)``.
    """
    n = padded_width(c)
    mu_r, mu_f = mean[:, :c], mean[:, c:]
    cov = second - mean[:, :, None] * mean[:, None, :]
    var_r = torch.diagonal(cov[:, :c, :c], dim1=1, dim2=2).clamp_min(0.0)
    var_f = torch.diagonal(cov[:, c:, c:], dim1=1, dim2=2).clamp_min(0.0)
    sd = torch.sqrt(var_r * (m / (m - 1)))
    flat_scale = torch.where(mu_r == 0, 1.0, _EPS) if flat == "toolbox" else torch.ones_like(sd)
    t = torch.where(var_r > 0, sd, flat_scale)
    cross = cov[:, :c, c:] / (t[:, :, None] * t[:, None, :])  # E[z1_j z2_k]
    var = (var_r / t**2).sum(-1) + (var_f / t**2).sum(-1)
    m2 = torch.linalg.vector_norm((mu_f - mu_r) / t + 1.0, dim=-1)
    m2 = torch.sqrt(m2 * m2 + (n - c))  # padded bands are 1 after normalisation
    m1 = math.sqrt(n)
    full = cross.new_zeros((cross.shape[0], n, n))
    full[:, :c, :c] = cross
    struct = torch.from_numpy(_structure(n)).to(cross)
    qcov = torch.linalg.vector_norm(torch.einsum("ijk,bjk->bi", struct, full), dim=-1)
    lum = 2.0 * m1 * m2 / (m1 * m1 + m2 * m2)
    return torch.where(var > 0, 2.0 * qcov / torch.where(var > 0, var, 1.0) * lum, lum)


__all__ = [
    "block_moments",
    "blocks",
    "imresize_shrink",
    "interp23tap",
    "mtf_filter",
    "pan_low_pass",
    "q2n_blocks",
    "q2n_from_moments",
    "symmetric_pad",
    "to_uint16",
    "uqi_matrix",
    "uqi_pairs",
]
