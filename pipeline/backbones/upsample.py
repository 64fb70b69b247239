"""The one LMS upsampler: MS ``(N, B, h, w)`` -> ``(N, B, r*h, r*w)`` at PAN resolution.

Two methods, both separable and both placing MS pixel ``k`` at fine position ``r*k + r//2`` (the
sample :func:`pipeline.mtf.decimate` keeps), so upsampling undoes the Wald decimation's phase:

``"poly23"``
    The toolboxes' 23-tap polynomial interpolator, run as ``log2(r)`` stages of x2. Each stage
    zero-stuffs and filters with a symmetric 23-tap kernel whose even taps are ``(1, 0, ..., 0)``
    and whose odd taps ``h[±(2j+1)]`` are the weights of the degree-11 Lagrange polynomial through
    the 12 samples at ``±0.5, ±1.5, ..., ±5.5`` evaluated at 0 (the half-way point). These are
    exact dyadic rationals (``h[±1] = 160083/262144``, ..., ``h[±11] = -63/524288``) and
    reproduce the published 23-tap coefficients to every printed digit. The first stage puts
    coarse sample ``k`` at ``2k+1``, later stages at ``2k``, which composes to ``r*k + r//2``.
    Only powers of two are supported.
``"bicubic"``
    Keys' cubic convolution (``a = -0.5``, MATLAB's ``imresize``) evaluated at the same phase.

Borders are extended by whole-sample mirroring (``reflect``: ``x[-1] = x[1]``) of the coarse
input, for any input size, so a tile read with ``UPSAMPLER_SUPPORT_MS[method]`` extra MS pixels
each side and cropped reproduces the whole-image result exactly.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Final

import torch
import torch.nn.functional as F

from ..errors import ConfigError

METHODS: Final = ("poly23", "bicubic")
_POLY_ORDER = 12  # Lagrange nodes per half-band phase -> 2 * 12 - 1 = 23 taps
_KEYS_A = -0.5


def lagrange_halfband_taps(n_nodes: int = _POLY_ORDER) -> list[Fraction]:
    """Odd taps ``h[1], h[3], ..., h[2 n_nodes/2 - 1]`` of the half-band Lagrange interpolator.

    ``h[2j+1]`` is the weight of the sample at ``j + 1/2`` when the degree ``n_nodes - 1``
    Lagrange polynomial through the samples at ``±1/2, ±3/2, ...`` is evaluated at 0.
    """
    nodes = [Fraction(2 * k + 1, 2) for k in range(-n_nodes // 2, n_nodes // 2)]
    taps = []
    for xj in nodes[n_nodes // 2 :]:
        w = Fraction(1)
        for xm in nodes:
            if xm != xj:
                w *= (0 - xm) / (xj - xm)
        taps.append(w)
    return taps


def poly23_kernel() -> torch.Tensor:
    """The symmetric 23-tap x2 kernel (float64), centre tap 1, even taps 0, odd taps Lagrange."""
    odd = [float(t) for t in lagrange_halfband_taps()]
    half = [0.0] * (2 * len(odd) - 1)
    for j, t in enumerate(odd):
        half[2 * j] = t  # offset 2j+1 -> index 2j of the half beyond the centre
    return torch.tensor([*half[::-1], 1.0, *half], dtype=torch.float64)


def _keys(t: float) -> float:
    t = abs(t)
    a = _KEYS_A
    if t <= 1:
        return (a + 2) * t**3 - (a + 3) * t**2 + 1
    if t < 2:
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return 0.0


def _poly23_reach(n_stages: int) -> int:
    """Exact MS reach of ``n_stages`` x2 stages, by propagating dependencies back to MS pixels.

    At a stage whose coarse samples sit at fine ``2k + o``, fine ``f`` with ``f - o`` even is a
    copy of coarse ``(f - o) / 2``; otherwise it mixes the coarse samples at ``f + d`` for the odd
    offsets ``|d| <= 11`` of the kernel. Starting from the PAN pixels of MS pixel 0, the farthest
    MS pixel reached is the support.
    """
    half = 2 * _POLY_ORDER // 2 - 1  # 11: largest odd tap offset
    positions = set(range(2**n_stages))
    for s in reversed(range(n_stages)):
        o = 1 if s == 0 else 0
        deps: set[int] = set()
        for f in positions:
            if (f - o) % 2 == 0:
                deps.add((f - o) // 2)
            else:
                deps.update((f + d - o) // 2 for d in range(-half, half + 1, 2))
        positions = deps
    return max(-min(positions), max(positions))


def _n_stages(ratio: int) -> int:
    if ratio < 2 or ratio & (ratio - 1):
        raise ConfigError(
            "The 23-tap polynomial upsampler needs a power-of-two ratio.",
            expected="ratio 2, 4, 8, ...",
            got=ratio,
            fix="use method='bicubic' for this ratio.",
        )
    return int(math.log2(ratio))


#: MS pixels of context each side the upsampler's output at a PAN pixel depends on (ratio 4;
#: :func:`support_ms` gives it for other ratios).
UPSAMPLER_SUPPORT_MS: Final[dict[str, int]] = {
    "poly23": _poly23_reach(2),
    "bicubic": 2,
}


def support_ms(method: str, ratio: int) -> int:
    """MS pixels of context each side that ``upsample(method, ratio)`` needs."""
    _check_method(method)
    if method == "poly23":
        return _poly23_reach(_n_stages(ratio))
    return 2


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ConfigError(
            "Unknown LMS upsampling method.",
            expected=" or ".join(METHODS),
            got=repr(method),
            fix="choose one of the listed methods.",
        )


def reflect_index(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Indices ``-before .. n+after-1`` folded into ``0 .. n-1`` by whole-sample mirroring."""
    idx = torch.arange(-before, n + after, device=device)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = torch.remainder(idx, period)
    return torch.where(idx >= n, period - idx, idx)


def pad_reflect(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Mirror-pad the last two axes of ``x`` by ``pad`` (any size, unlike ``F.pad``)."""
    if pad == 0:
        return x
    iy = reflect_index(x.shape[-2], pad, pad, x.device)
    ix = reflect_index(x.shape[-1], pad, pad, x.device)
    return x.index_select(-2, iy).index_select(-1, ix)


def _filter_sep(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Valid separable depthwise filtering of ``(N, C, H, W)`` with 1-D ``taps`` ``(K,)``."""
    c, k = x.shape[1], taps.numel()
    t = taps.to(dtype=x.dtype, device=x.device)
    x = F.conv2d(x, t.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, t.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def _poly23_axis(xp: torch.Tensor, dim: int, n: int, first: bool) -> torch.Tensor:
    """One x2 stage along ``dim`` (2 or 3) of the mirror-padded ``xp`` (``p = 6`` each side).

    Polyphase form of zero-stuffing + the 23-tap kernel: the coarse samples are copied (centre
    tap 1, the other even taps 0) and the half-way samples are the 12 odd taps applied to the
    coarse samples, so no product with a stuffed zero is computed. ``first``: coarse ``k`` at
    fine ``2k + 1`` (the half-way sample comes first), else at ``2k``.
    """
    p = _POLY_ORDER // 2
    odd = poly23_kernel()[::2].to(dtype=xp.dtype, device=xp.device)  # the 12 odd taps
    c, k = xp.shape[1], odd.numel()
    start = 0 if first else 1
    src = xp.narrow(dim, start, n + k - 1)
    view = (1, 1, k, 1) if dim == 2 else (1, 1, 1, k)
    half = F.conv2d(src, odd.view(view).expand(c, *view[1:]), groups=c)
    copy = xp.narrow(dim, p, n)
    parts = (half, copy) if first else (copy, half)
    shape = list(half.shape)
    shape[dim] = 2 * n
    return torch.stack(parts, dim=dim + 1).reshape(shape)


def _poly23_stage(x: torch.Tensor, first: bool) -> torch.Tensor:
    h, w = x.shape[-2:]
    xp = pad_reflect(x, _POLY_ORDER // 2)  # 6 coarse samples cover the 11-sample half width
    rows = _poly23_axis(xp, 2, h, first)
    return _poly23_axis(rows, 3, w, first)


def _bicubic(x: torch.Tensor, ratio: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    p = 2
    xp = pad_reflect(x, p)
    off = ratio // 2
    # fine pixel r*k + off + d (0 <= d < r) lies between coarse k and k+1 at fraction d/r;
    # build one 4-tap filter per phase and interleave (polyphase).
    outs_y = []
    for phase in range(ratio):
        frac = (phase - off) / ratio  # position relative to coarse k, in coarse pixels
        base = math.floor(frac)
        t = frac - base
        taps = torch.tensor([_keys(t + 1), _keys(t), _keys(1 - t), _keys(2 - t)])
        outs_y.append((base, taps))
    rows = _polyphase(xp, outs_y, dim=2, n_out=h, pad=p)
    return _polyphase(rows, outs_y, dim=3, n_out=w, pad=p)


def _polyphase(
    x: torch.Tensor, phases: list[tuple[int, torch.Tensor]], dim: int, n_out: int, pad: int
) -> torch.Tensor:
    """Apply one 4-tap filter per output phase along ``dim`` and interleave the phases."""
    parts = []
    for base, taps in phases:
        start = pad + base - 1
        acc = x.narrow(dim, start, n_out) * float(taps[0])
        for j in range(1, 4):
            acc = acc + x.narrow(dim, start + j, n_out) * float(taps[j])
        parts.append(acc)
    stacked = torch.stack(parts, dim=dim + 1)  # (..., n_out, ratio, ...)
    shape = list(x.shape)
    shape[dim] = n_out * len(phases)
    return stacked.reshape(shape)


def upsample(ms: torch.Tensor, ratio: int, method: str = "poly23") -> torch.Tensor:
    """Upsample MS to PAN resolution (the network's ``lms`` input).

    Parameters
    ----------
    ms
        ``(N, B, h, w)`` MS, any float dtype, any device.
    ratio
        PAN/MS ratio (a power of two for ``"poly23"``).
    method
        ``"poly23"`` or ``"bicubic"``.

    Returns
    -------
    torch.Tensor
        ``(N, B, ratio*h, ratio*w)``, same dtype and device; ``out[..., r*k + r//2, r*l + r//2]``
        equals ``ms[..., k, l]`` (both methods interpolate).
    """
    _check_method(method)
    if ms.dim() != 4:
        raise ConfigError("upsample expects an (N, B, h, w) tensor.", got=tuple(ms.shape))
    if method == "bicubic":
        if ratio < 1:
            raise ConfigError("The ratio must be a positive integer.", got=ratio)
        return _bicubic(ms, ratio)
    y = ms
    for s in range(_n_stages(ratio)):
        y = _poly23_stage(y, first=s == 0)
    return y


__all__ = [
    "METHODS",
    "UPSAMPLER_SUPPORT_MS",
    "lagrange_halfband_taps",
    "pad_reflect",
    "poly23_kernel",
    "reflect_index",
    "support_ms",
    "upsample",
]
