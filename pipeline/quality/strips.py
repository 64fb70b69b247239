"""Block moments of several image stacks in one pass, by strips of block rows (torch).

:func:`pipeline.quality.fast.block_moments` copies each whole image stack into a block layout
``(blocks, C, S*S)`` before its Gram product; at 2048² x 8 bands in float64 that is a 268 MB
write per stack, out of cache, and the dominant cost after the MTF filter. Here every stack is
written, already in block layout and float64, into one strip buffer of a few block rows (64 MB
at most: it stays in a server's cache, and the strips are few), with ``uint16`` rounding (``q2n.m``'s cast) fused into that write for the
stacks that need it; then one batched matrix product per group of stacks gives the block means
and raw second moments. Inputs may be float32 (converted in the write) and strided views (edge
cuts, the MTF filter's cropped FFT output): no whole-image copy is made.

Images whose size is not a multiple of ``S`` are mirror-completed on their bottom/right sides
(NumPy ``"symmetric"``), as :func:`pipeline.quality.indices.windows` does. Same moments as
:func:`pipeline.quality.fast.block_moments` (to float64 rounding).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import ConfigError

#: An image stack ``(C, H, W)`` and whether it is rounded to ``uint16`` first.
Stack = tuple[torch.Tensor, bool]
#: Target size of the float64 strip buffer: large enough that the per-strip operations are few
#: (each costs a thread synchronisation), small enough to stay in a server's L3 cache.
_STRIP_BYTES = 1 << 26


def mirror_index(n: int, n_out: int, device: torch.device) -> torch.Tensor:
    """Indices ``0..n_out-1`` of an axis of length ``n`` extended by symmetric mirroring."""
    m = torch.remainder(torch.arange(n_out, device=device), 2 * n)
    return torch.where(m >= n, 2 * n - 1 - m, m)


def _round_u16(x: torch.Tensor, nan: bool) -> None:
    """Matlab ``uint16`` in place on ``x`` (which holds ``value + 0.5``); ``nan``: map NaN to 0
    (otherwise NaN stays NaN: a pass saved where no NaN can be)."""
    x.floor_().clamp_(0.0, 65535.0)
    if nan:
        x.nan_to_num_(nan=0.0)


def _flush(strip: torch.Tensor, run: tuple[int, int] | None, nan: bool) -> None:
    """Round the channels ``run`` of ``strip`` ``(k, nx, C, S, S)`` (one pass for the run)."""
    if run is not None:
        _round_u16(strip[:, :, run[0] : run[1]], nan)


def _write(
    dst: torch.Tensor, src: torch.Tensor, rows: tuple[int, int], idx: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    """Rows ``rows`` of the mirror-completed ``src`` ``(C, H, W)`` into ``dst`` ``(k, nx, C, S, S)``."""
    r0, r1 = rows
    row_idx, col_idx = idx
    h, w = src.shape[-2:]
    x = src[:, r0:r1] if r1 <= h else src.index_select(1, row_idx[r0:r1])
    if col_idx.numel() != w:
        x = x.index_select(2, col_idx)
    k, nx, _, s, _ = dst.shape
    out: torch.Tensor = x.unflatten(1, (k, s)).unflatten(3, (nx, s)).permute(1, 3, 0, 2, 4)
    return out


def _cross_moments(xb: torch.Tensor, cut: int, out: torch.Tensor) -> None:
    """``out (n, C, C)``: cross sums of channels ``< cut`` with ``>= cut``, the diagonal, NaN
    elsewhere (``xb (n, C, m)``)."""
    out.fill_(float("nan"))
    out[:, :cut, cut:] = torch.bmm(xb[:, :cut], xb[:, cut:].transpose(1, 2))
    norm = torch.linalg.vector_norm(xb, dim=-1)  # a pass without a (n, C, m) temporary
    torch.diagonal(out, dim1=1, dim2=2).copy_(norm.square_())


def strip_moments(
    groups: Sequence[Sequence[Stack]], block: int, split: Sequence[int | None] = ()
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Block means ``(nb, C_g)`` and raw second moments ``(nb, C_g, C_g)`` of each group.

    Parameters
    ----------
    groups
        Groups of image stacks ``(C_i, H, W)`` (any float dtype, any strides, all of one size
        and device), each with a flag: round to ``uint16`` (Matlab's cast) before the moments.
        The stacks of a group are concatenated along channels, in order.
    block
        Block edge ``S``; blocks are numbered row-major over the mirror-completed image.
    split
        Per group (missing: ``None``): a channel count ``c`` where only the cross moments of
        channels ``< c`` with channels ``>= c`` and every channel's own second moment are needed
        (Q2n's); the other entries of that group's ``second`` are NaN. A quarter of the
        matrix product when the two halves are equal.

    Returns
    -------
    list of (mean, second)
        float64, one pair per group, as :func:`pipeline.quality.fast.block_moments` gives them.
    """
    out = _strip_moments(groups, block, split, nan=False)
    rounded = any(r for g in groups for _, r in g)
    if rounded and not all(bool(torch.isfinite(mean).all()) for mean, _ in out):
        out = _strip_moments(groups, block, split, nan=True)  # NaN in a rounded stack: -> 0
    return out


def _strip_moments(
    groups: Sequence[Sequence[Stack]], block: int, split: Sequence[int | None], nan: bool
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`strip_moments`; ``nan``: map NaN to 0 in the rounded stacks (an extra pass)."""
    first = groups[0][0][0]
    h, w = first.shape[-2:]
    if any(x.shape[-2:] != (h, w) for g in groups for x, _ in g):
        raise ConfigError("Stacks of one block-moment pass need one size.", expected=(h, w))
    dev = first.device
    ny, nx = -(-h // block), -(-w // block)
    idx = (mirror_index(h, ny * block, dev), mirror_index(w, nx * block, dev))
    sizes = [sum(x.shape[0] for x, _ in g) for g in groups]
    c_all, m = sum(sizes), block * block
    k = max(1, min(ny, _STRIP_BYTES // (8 * c_all * m * nx)))  # block rows per strip
    f64 = torch.float64
    means = [torch.empty((ny * nx, c), dtype=f64, device=dev) for c in sizes]
    seconds = [torch.empty((ny * nx, c, c), dtype=f64, device=dev) for c in sizes]
    buf = torch.empty((k, nx, c_all, block, block), dtype=f64, device=dev)
    for y0 in range(0, ny, k):
        kk = min(k, ny - y0)
        strip = buf[:kk]
        at, run = 0, None  # run: channels [start, end) of consecutive rounded stacks
        for g in groups:
            for x, rounded in g:
                c = x.shape[0]
                dst = strip[:, :, at : at + c]
                src = _write(dst, x, (y0 * block, (y0 + kk) * block), idx)
                if rounded:
                    torch.add(src, 0.5, out=dst)
                    run = (run[0] if run else at, at + c)
                else:
                    dst.copy_(src)
                    _flush(strip, run, nan)
                    run = None
                at += c
        _flush(strip, run, nan)
        flat = strip.view(kk * nx, c_all, m)
        at, sl = 0, slice(y0 * nx, (y0 + kk) * nx)
        for gi, c in enumerate(sizes):
            xb = flat[:, at : at + c]
            torch.mean(xb, -1, out=means[gi][sl])
            cut = split[gi] if gi < len(split) else None
            if cut is None:
                torch.bmm(xb, xb.transpose(1, 2), out=seconds[gi][sl])
            else:
                _cross_moments(xb, cut, seconds[gi][sl])
            at += c
    for s2 in seconds:
        s2.div_(m)
    return list(zip(means, seconds, strict=True))


__all__ = ["Stack", "mirror_index", "strip_moments"]
