"""Block-wise universal image quality index (UQI, Wang & Bovik 2002) and its hypercomplex
extension Q2n (Garzelli & Nencini 2009), written from their definitions.

Blocks
------
Both indices are computed on ``S x S`` windows moved by ``stride`` and averaged over the windows.
With ``stride == S`` (the default, non-overlapping blocks, as the pansharpening toolboxes do) the
image is first completed on its bottom/right sides by mirroring (``numpy.pad`` ``"symmetric"``) to
a multiple of ``S``, so that every pixel counts; with ``stride < S`` (sliding windows, the
convention of general image-quality libraries) only complete windows are used.

UQI of one window
-----------------
``Q = 4 s_xy m_x m_y / ((s_x^2 + s_y^2)(m_x^2 + m_y^2))`` with window means ``m``, variances
``s^2`` and covariance ``s_xy`` (the normalisation of the moments cancels). Degenerate windows:
both flat -> ``2 m_x m_y / (m_x^2 + m_y^2)``; both means zero -> ``2 s_xy / (s_x^2 + s_y^2)``;
both flat and zero -> 1.

Q2n of one block
----------------
Each pixel's band vector is a hypercomplex number (:mod:`.hypercomplex`; bands zero-padded to
``n = 2**k``). In each block and band both images are normalised with the *reference's* block
mean ``mu`` and standard deviation ``t`` (``x -> (x - mu) / t + 1``; ``t = 1`` where the reference
band is flat), which puts all bands on one scale; then, with ``z1`` the reference, ``z2`` the test
image, ``m`` block means, ``s^2 = E|z - m|^2`` and ``s_12 = E[(z1 - m1)(z2 - m2)*]``::

    Q2n = 4 |s_12| |m1| |m2| / ((s_1^2 + s_2^2)(|m1|^2 + |m2|^2))

(both flat: ``2 |m1| |m2| / (|m1|^2 + |m2|^2)``). For one band this is the UQI of the normalised
block. The image's Q2n is the mean over blocks.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import ConfigError
from .hypercomplex import conjugate, multiply, norm, pad_components
from .inputs import FloatArray, as_bands, same_shape, to_numpy

DEFAULT_BLOCK = 32
_STRIP_ELEMENTS = 1 << 22  # values per band-stack strip processed at once by Q2n (~32 MB)


def _check_block(block: int, stride: int) -> None:
    if block < 2 or stride < 1 or stride > block:
        raise ConfigError(
            "Invalid quality block size or stride.",
            expected="block >= 2 and 1 <= stride <= block",
            got=f"block={block}, stride={stride}",
            fix="use block=32 (stride = block).",
        )


def pad_to_blocks(x: FloatArray, block: int) -> FloatArray:
    """Mirror-pad the bottom/right of ``x`` ``(..., H, W)`` to multiples of ``block``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % block, (-w) % block
    if ph == 0 and pw == 0:
        return x
    widths = [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(x, widths, mode="symmetric")


def windows(x: FloatArray, block: int, stride: int | None = None) -> FloatArray:
    """Windows of ``x`` ``(..., H, W)`` as a view ``(..., ny, nx, block, block)``.

    ``stride = block`` (default): non-overlapping blocks covering the mirror-padded image;
    ``stride < block``: complete sliding windows only.
    """
    step = block if stride is None else stride
    _check_block(block, step)
    if step == block:
        x = pad_to_blocks(x, block)
    elif min(x.shape[-2:]) < block:
        raise ConfigError(
            "The image is smaller than one window.", expected=f">= {block} px", got=x.shape[-2:]
        )
    view = sliding_window_view(x, (block, block), axis=(-2, -1))
    return np.asarray(view[..., ::step, ::step, :, :])


def _uqi_from_moments(
    mx: FloatArray, my: FloatArray, vx: FloatArray, vy: FloatArray, cxy: FloatArray
) -> FloatArray:
    den_v, den_m = vx + vy, mx * mx + my * my
    with np.errstate(divide="ignore", invalid="ignore"):
        full = 4.0 * cxy * mx * my / (den_v * den_m)
        lum = 2.0 * mx * my / den_m
        con = 2.0 * cxy / den_v
    q = np.where(den_v > 0, np.where(den_m > 0, full, con), np.where(den_m > 0, lum, 1.0))
    return np.asarray(q, dtype=np.float64)


def uqi_map(x: Any, y: Any, block: int = DEFAULT_BLOCK, stride: int | None = None) -> FloatArray:
    """UQI of each window: ``(H, W)`` images (or ``(B, H, W)``, band by band) -> ``(..., ny, nx)``.

    Symmetric in ``x`` and ``y``; see the module docstring for blocks and degenerate windows.
    """
    xa, ya = to_numpy(x), to_numpy(y)
    a, b = as_bands(xa, "x"), as_bands(ya, "y")
    same_shape(a, b, ("x", "y"))
    wa, wb = windows(a, block, stride), windows(b, block, stride)
    ma, mb = wa.mean(axis=(-2, -1)), wb.mean(axis=(-2, -1))
    da, db = wa - ma[..., None, None], wb - mb[..., None, None]
    va, vb = (da * da).mean(axis=(-2, -1)), (db * db).mean(axis=(-2, -1))
    cab = (da * db).mean(axis=(-2, -1))
    q = _uqi_from_moments(ma, mb, va, vb, cab)
    return q[0] if xa.ndim == 2 else q


def uqi(x: Any, y: Any, block: int = DEFAULT_BLOCK, stride: int | None = None) -> float:
    """Mean UQI over the windows of two ``(H, W)`` images (or all bands of ``(B, H, W)`` stacks).

    Parameters
    ----------
    x, y
        Images of one shape (NumPy, xarray, Dask or torch), any units (DN on the toolboxes).
    block
        Window edge ``S`` in pixels (32 for the pansharpening indices).
    stride
        Window step; ``None`` = ``block`` (non-overlapping, mirror-completed blocks).

    Returns
    -------
    float
        In ``[-1, 1]``; 1 iff the images are identical (up to degenerate windows).
    """
    return float(np.mean(uqi_map(x, y, block, stride)))


def q2n_map(
    fused: Any, reference: Any, block: int = DEFAULT_BLOCK, flat: str = "unit"
) -> FloatArray:
    """Q2n of each non-overlapping ``block x block`` block: ``(B, H, W)`` pair -> ``(ny, nx)``.

    ``reference`` supplies the per-block band normalisation (see the module docstring).
    ``flat`` is the scale of a reference band that is flat in a block: ``"unit"`` (1) or
    ``"toolbox"`` (``eps``, or 1 where the band's block mean is 0, as ``q2n.m`` does).
    Processed in strips of block rows so that memory stays bounded on large scenes.
    """
    f, r = as_bands(fused, "fused"), as_bands(reference, "reference")
    same_shape(f, r, ("fused", "reference"))
    _check_block(block, block)
    f, r = pad_components(pad_to_blocks(f, block)), pad_components(pad_to_blocks(r, block))
    n, h, w = r.shape
    rows = max(1, _STRIP_ELEMENTS // (n * block * w)) * block
    out = [
        _q2n_strip(f[:, y : y + rows], r[:, y : y + rows], block, flat) for y in range(0, h, rows)
    ]
    return np.concatenate(out, axis=0)


def _blocks(x: FloatArray, block: int) -> FloatArray:
    """``(n, H, W)`` -> ``(n, ny, nx, block*block)`` (H, W multiples of ``block``)."""
    n, h, w = x.shape
    b = x.reshape(n, h // block, block, w // block, block).transpose(0, 1, 3, 2, 4)
    return b.reshape(n, h // block, w // block, block * block)


@functools.cache
def _structure(n: int) -> FloatArray:
    """``T[i, j, k]``: component ``i`` of ``e_j e_k*`` for the basis units ``e`` (``(n, n, n)``)."""
    eye = np.eye(n)
    ej = np.broadcast_to(eye[:, :, None], (n, n, n))
    ek = np.broadcast_to(eye[:, None, :], (n, n, n))
    return multiply(ej, conjugate(ek))


def _block_product_mean(z1: FloatArray, z2: FloatArray) -> FloatArray:
    """Block means of ``z1 z2*`` for ``(n, ..., M)`` arrays -> ``(n, ...)``.

    The product is bilinear, so its mean is the structure tensor applied to the block
    cross-moment matrices ``E[z1_j z2_k]`` (one batched matrix product: BLAS speed).
    """
    n, m = z1.shape[0], z1.shape[-1]
    a = np.moveaxis(z1.reshape(n, -1, m), 0, 1)  # (blocks, n, M)
    b = np.moveaxis(z2.reshape(n, -1, m), 0, 1)
    cross = np.matmul(a, b.transpose(0, 2, 1)) / m  # (blocks, n, n)
    out = np.einsum("ijk,bjk->ib", _structure(n), cross)
    return np.asarray(out.reshape(n, *z1.shape[1:-1]), dtype=np.float64)


def _q2n_strip(f: FloatArray, r: FloatArray, block: int, flat: str = "unit") -> FloatArray:
    fb, rb = _blocks(f, block), _blocks(r, block)
    mu_r, mu_f = rb.mean(axis=-1), fb.mean(axis=-1)
    sd = rb.std(axis=-1, ddof=1)
    if flat == "toolbox":
        t = np.where(sd > 0, sd, np.where(mu_r == 0, 1.0, np.finfo(np.float64).eps))
    else:
        t = np.where(sd > 0, sd, 1.0)
    z1 = (rb - mu_r[..., None]) / t[..., None]  # centred, normalised reference
    z2 = (fb - mu_f[..., None]) / t[..., None]  # centred test image, same normalisation
    m1 = np.sqrt(float(r.shape[0]))  # |(1, 1, ..., 1)|: every normalised band has mean 1
    m2 = norm((mu_f - mu_r) / t + 1.0)
    var = (z1 * z1).mean(axis=-1).sum(axis=0) + (z2 * z2).mean(axis=-1).sum(axis=0)
    cov = norm(_block_product_mean(z1, z2))
    lum = 2.0 * m1 * m2 / (m1 * m1 + m2 * m2)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(var > 0, 2.0 * cov / var * lum, lum)
    return np.asarray(q, dtype=np.float64)


def q2n(fused: Any, reference: Any, block: int = DEFAULT_BLOCK) -> float:
    """Q2n (Q4 for 4 bands, Q8 for 8) of ``fused`` against ``reference``, both ``(B, H, W)``.

    Parameters
    ----------
    fused
        Image under test, ``(B, H, W)`` (any array type; DN on the toolboxes).
    reference
        Reference image of the same shape; its block statistics normalise both images.
    block
        Block edge ``S`` (32).

    Returns
    -------
    float
        Mean over blocks, in ``[0, 1]``; 1 for identical images.
    """
    return float(np.mean(q2n_map(fused, reference, block)))


__all__ = ["DEFAULT_BLOCK", "pad_to_blocks", "q2n", "q2n_map", "uqi", "uqi_map", "windows"]
