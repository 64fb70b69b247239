"""The toolbox's D_S relation as a loss (the ``"toolbox"`` spatial target of :mod:`pipeline.losses`).

The Matlab toolbox's ``D_S`` compares, band by band, the block UQI of the product with PAN,
``Q(F_b, P)``, with the one the MS has one scale down, ``Q(MS~_b, P_LP)``: ``MS~`` the 23-tap
interpolation of the MS and ``P_LP`` the 23-tap interpolation of the antialiased bicubic
``imresize(P, 1/ratio)``, with the toolbox's borders (symmetric for ``imresize``, circular for
the interpolation). :func:`toolbox_spatial_loss` asks the same of the product window by window
(UQI over sliding ``Q_BLOCK`` windows), against the fixed :func:`toolbox_spatial_target` of the
fit patches. The operators are the batched torch ones of :mod:`pipeline.quality.fast`
(differentiable), applied patch by patch, so each patch is treated as the toolbox treats an image.
"""

from __future__ import annotations

import torch

from .window_stats import WindowStats, box_mean, local_uqi

Q_BLOCK = 32  # PAN pixels: the toolbox's block edge of D_S


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype).expand_as(x)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def toolbox_interp(ms: torch.Tensor, ratio: int) -> torch.Tensor:
    """The toolbox's 23-tap interpolation ``MS~`` of ``(N, B, h, w)`` -> ``(N, B, r h, r w)``.

    Circular borders per patch, as ``interp23tap.m`` treats an image (torch, differentiable;
    :func:`pipeline.quality.fast.interp23tap`). ``ratio`` must be a power of two.
    """
    from .quality import fast

    n, b, h, w = ms.shape
    return fast.interp23tap(ms.reshape(n * b, h, w), ratio).reshape(n, b, ratio * h, ratio * w)


def toolbox_pan_low_pass(pan: torch.Tensor, ratio: int) -> torch.Tensor:
    """The toolbox's ``P_LP = interp23tap(imresize(P, 1/ratio))`` of each ``(N, 1, H, W)`` patch.

    Antialiased bicubic shrink (symmetric borders) then the 23-tap interpolation (circular
    borders), per patch (:func:`pipeline.quality.fast.pan_low_pass`); torch, differentiable.
    """
    from .quality import fast

    return torch.stack([fast.pan_low_pass(p[0], ratio) for p in pan])[:, None]


def toolbox_spatial_target(
    ms: torch.Tensor, pan: torch.Tensor, ratio: int, block: int = Q_BLOCK, stride: int = 8
) -> torch.Tensor:
    """``Q(MS~_b, P_LP)`` per window: what :func:`toolbox_spatial_loss` matches.

    ``ms`` ``(N, B, h, w)``, ``pan`` ``(N, 1, r h, r w)`` -> ``(N, B, nh, nw)`` windows
    (:func:`pipeline.window_stats.local_uqi` with ``block``, ``stride``).
    """
    return local_uqi(toolbox_interp(ms, ratio), toolbox_pan_low_pass(pan, ratio), block, stride)


def toolbox_spatial_loss(
    out: torch.Tensor,
    pan: torch.Tensor | WindowStats,
    target: torch.Tensor,
    block: int = Q_BLOCK,
    stride: int = 8,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The toolbox's D_S relation window by window: ``mean |Q(out_b, P) - target_b|``.

    Parameters
    ----------
    out
        ``(N, B, H, W)`` fused output.
    pan
        ``(N, 1, H, W)`` PAN, or its :class:`WindowStats` over ``block`` (then its window is used).
    target
        :func:`toolbox_spatial_target` of the patches (fixed during a fit).
    block, stride
        UQI window edge and step (PAN pixels).
    mask
        ``(N, 1, H, W)`` validity; a window counts only if all its pixels are valid.
    """
    q = local_uqi(out, pan, block, stride)
    wmask = None
    if mask is not None:
        w = pan.window if isinstance(pan, WindowStats) else block
        wmask = (box_mean(mask.to(out.dtype), w) > 1.0 - 1e-6)[..., ::stride, ::stride]
    return _masked_mean((q - target).abs(), wmask)


__all__ = [
    "Q_BLOCK",
    "toolbox_interp",
    "toolbox_pan_low_pass",
    "toolbox_spatial_loss",
    "toolbox_spatial_target",
]
