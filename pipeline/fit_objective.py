"""The fit's objective with everything constant across steps computed once (:mod:`pipeline.fit`).

The loss terms are those of :mod:`pipeline.losses` (their functions remain the definitions; a test
compares the two on real patches, values and gradients). A fit evaluates them some 60 times on
the same few patches, where the profile of the plain functions (``benchmarks/results/
fit_speed.md``) was dominated by per-call overhead: replicate padding and grouped strided
convolutions (and their backward) for the MTF degradation, running sums, flips and slicing for
the 32-pixel UQI windows of which only a 5 x 5 grid per patch is kept. Here both are small
matrix products with precomputed matrices:

- the degradation (MTF filter with replicate borders, then decimation) of an ``H x W`` image is
  ``A_H X A_W^T`` per band, ``A`` of shape ``(H / r, H)`` holding the band's taps at the kept
  rows (the replicated border taps summed into the edge columns);
- the windowed means of the toolbox UQI at stride ``s`` are ``B_H X B_W^T``, ``B`` of shape
  ``(n, H)`` with ``1 / window`` on each window's rows; the output's three window statistics
  (``a``, ``a P``, ``a^2``) go through one pair of products, PAN's are computed once;
- the masks and their counts, the MTF taps and the UQI target are fixed at construction.

The results equal the plain functions' to float rounding (sums taken in another order).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .backbones import upsample
from .losses import (
    LossWeights,
    WindowStats,
    angle_loss,
    consistency_loss,
    degrade,
    lowres_correlation,
    mtf_taps,
    spatial_loss,
    spatial_match_loss,
    spectral_chord,
    spectral_loss,
    tailor_penalty,
    toolbox_spatial_loss,
    toolbox_spatial_target,
)
from .losses_rr import band_means, rr_loss
from .sensors import SensorSpec
from .window_stats import EPS, box_mean


def degrade_matrix(taps: torch.Tensor, ratio: int, size: int) -> torch.Tensor:
    """Per-channel matrices of :func:`pipeline.mtf.degrade_torch` along one axis.

    Parameters
    ----------
    taps
        ``(C, K)`` 1-D taps (``K`` odd).
    ratio
        Decimation factor; the kept sample of each block is ``ratio // 2``.
    size
        Length of the axis (a multiple of ``ratio``).

    Returns
    -------
    torch.Tensor
        ``(C, size / ratio, size)`` float64: row ``i`` holds the taps centred on sample
        ``ratio // 2 + i ratio``, those beyond the edges added to the edge sample (replicate).
    """
    t = taps.detach().to("cpu", torch.float64).numpy()
    c, k = t.shape
    pad, o = k // 2, ratio // 2
    a = np.zeros((c, size // ratio, size))
    for i in range(size // ratio):
        cols = np.clip(o + i * ratio + np.arange(k) - pad, 0, size - 1)
        for ch in range(c):
            np.add.at(a[ch, i], cols, t[ch])
    return torch.from_numpy(a)


def window_matrix(size: int, window: int, stride: int) -> torch.Tensor:
    """``(n, size)`` float64 with ``1 / window`` on rows ``j stride .. j stride + window - 1``.

    ``B X B^T`` is the mean over ``window x window`` boxes at stride ``stride`` (no padding),
    ``box_mean(X, window)[..., ::stride, ::stride]``; no rows (no window) when ``size < window``.
    """
    n = max((size - window) // stride + 1, 0)
    b = torch.zeros(n, size, dtype=torch.float64)
    for j in range(n):
        b[j, j * stride : j * stride + window] = 1.0 / window
    return b


def _sandwich(left: torch.Tensor, x: torch.Tensor, right_t: torch.Tensor) -> torch.Tensor:
    """``left @ x @ right_t`` over the last two axes of ``x`` (broadcast over the others)."""
    return torch.matmul(left, torch.matmul(x, right_t))


class _Masked:
    """Mean over a fixed mask: :func:`pipeline.losses.masked_mean` with the mask expanded once."""

    def __init__(self, mask: torch.Tensor | None, shape: torch.Size, dtype: torch.dtype) -> None:
        self.m = None if mask is None else mask.to(dtype).expand(shape).contiguous()
        self.count = None if self.m is None else self.m.sum().clamp_min(1.0)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.m is None or self.count is None:
            return x.mean()
        return (x * self.m).sum() / self.count


class ToolboxUQI:
    """``mean |Q(out_b, P) - target_b|`` over fully valid windows (the ``"toolbox"`` term).

    Equals :func:`pipeline.losses.toolbox_spatial_loss` with PAN's window statistics, the
    window mask and the target fixed.

    Parameters
    ----------
    pan
        ``(N, 1, H, W)`` PAN of the fit patches.
    target
        :func:`pipeline.losses.toolbox_spatial_target` of the patches ``(N, B, nh, nw)``.
    block, stride
        UQI window edge and step (PAN pixels).
    mask
        ``(N, 1, H, W)`` validity, or ``None``.
    """

    def __init__(
        self,
        pan: torch.Tensor,
        target: torch.Tensor,
        block: int,
        stride: int,
        mask: torch.Tensor | None,
    ) -> None:
        h, w = pan.shape[-2:]
        dt, dev = pan.dtype, pan.device
        self.bh = window_matrix(h, block, stride).to(dev, dt)
        self.bwt = window_matrix(w, block, stride).to(dev, dt).T.contiguous()
        # moments of centred images: E[x^2] - E[x]^2 in float32 loses ~1e-3 of a flat
        # window's variance to cancellation; centring on a per-patch constant keeps the same
        # math (covariances are shift-invariant, the means are shifted back)
        self.pan_shift = pan.mean((-2, -1), keepdim=True)
        self.pan = pan - self.pan_shift
        stats = _sandwich(self.bh, torch.cat([self.pan, self.pan * self.pan], 1), self.bwt)
        self.mean_pc = stats[:, :1]
        self.mean_p = self.mean_pc + self.pan_shift
        self.var_p = (stats[:, 1:] - self.mean_pc**2).clamp_min(0.0)
        self.target = target
        wmask = None
        if mask is not None:
            wmask = (box_mean(mask.to(dt), block) > 1.0 - 1e-6)[..., ::stride, ::stride]
        self.mean = _Masked(wmask, target.shape, dt)

    def __call__(self, out: torch.Tensor) -> torch.Tensor:
        """The loss of ``out`` ``(N, B, H, W)``."""
        b = out.shape[1]
        shift = out.detach().mean((-2, -1), keepdim=True)
        oc = out - shift
        s = _sandwich(self.bh, torch.cat([oc, oc * self.pan, oc * oc], 1), self.bwt)
        mean_ac = s[:, :b]
        cov = s[:, b : 2 * b] - mean_ac * self.mean_pc
        var_a = (s[:, 2 * b :] - mean_ac**2).clamp_min(0.0)
        mean_a, mean_b = mean_ac + shift, self.mean_p
        den = (var_a + self.var_p) * (mean_a**2 + mean_b**2)
        q = 4.0 * cov * mean_a * mean_b / (den + EPS * EPS)
        return self.mean((q - self.target).abs())


def spatial_term(
    ms: torch.Tensor,
    lms: torch.Tensor,
    pan: torch.Tensor,
    pan_d: torch.Tensor,
    valid: torch.Tensor | None,
    upsampler: str,
    ratio: int,
    w: LossWeights,
    fused: bool = True,
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The spatial loss of ``w.spatial_target`` as ``out -> loss``, its fixed parts computed once.

    ``"toolbox"`` needs a power-of-two ratio (the 23-tap interpolator); other ratios use the
    ``"lowres"`` relation. ``None`` when ``w.spatial`` is 0. ``fused=False``: the toolbox term
    through :func:`pipeline.losses.toolbox_spatial_loss` instead of :class:`ToolboxUQI`.
    """
    if w.spatial <= 0:
        return None
    r, target = ratio, w.spatial_target
    if target == "toolbox" and r >= 2 and not r & (r - 1):
        tb = toolbox_spatial_target(ms, pan, r, w.q_block, w.q_stride)
        if fused:
            return ToolboxUQI(pan, tb, w.q_block, w.q_stride, valid)
        st = WindowStats.of(pan, w.q_block)
        return lambda out: toolbox_spatial_loss(out, st, tb, w.q_block, w.q_stride, valid)
    stats = WindowStats.of(pan, w.lcc_window)
    if target == "pan":
        return lambda out: spatial_loss(out, stats, w.lcc_window, valid)
    lowres = lowres_correlation(lms, upsample(pan_d, r, upsampler), w.lcc_window)
    return lambda out: spatial_match_loss(out, stats, lowres, w.lcc_window, valid)


class FitObjective:
    """The weighted loss of a fit and its unweighted terms, constants computed once.

    Parameters
    ----------
    ms, lms, pan, pan_d
        The fit patches: ``(N, B, h, w)`` MS, its ``(N, B, H, W)`` interpolation, ``(N, 1, H,
        W)`` PAN and the PAN degraded by the ratio (only for the ``"lowres"`` spatial target).
    valid, valid_ms
        Validity at PAN and at MS resolution, or ``None``.
    upsampler
        The backbone's MS interpolator (``"lowres"`` target).
    sensor
        Ratio and MS MTF gains.
    w
        The loss weights.
    fused
        ``False``: every term through the plain functions of :mod:`pipeline.losses` (the
        reference implementation: tests, and the "before" row of ``benchmarks/fit_speed.py``).
    """

    def __init__(
        self,
        ms: torch.Tensor,
        lms: torch.Tensor,
        pan: torch.Tensor,
        pan_d: torch.Tensor,
        valid: torch.Tensor | None,
        valid_ms: torch.Tensor | None,
        upsampler: str,
        sensor: SensorSpec,
        w: LossWeights,
        fused: bool = True,
    ) -> None:
        r, (h, wd), dt = sensor.ratio, pan.shape[-2:], ms.dtype
        taps = mtf_taps(sensor.mtf_ms, r)
        self.plain = None if fused else (taps.to(ms.device), r, valid_ms)
        self.ah = degrade_matrix(taps, r, h).to(ms.device, dt)
        self.awt = degrade_matrix(taps, r, wd).to(ms.device, dt).transpose(1, 2).contiguous()
        self.ms, self.w = ms, w
        self.mean_ms = _Masked(valid_ms, ms.shape, dt)
        self.mean_px = _Masked(valid_ms, ms[:, :1].shape, dt)
        self.valid_ms = valid_ms
        self.rr_means = band_means(ms, valid_ms) if w.rr > 0 else None
        self.spatial = spatial_term(ms, lms, pan, pan_d, valid, upsampler, r, w, fused)

    def degrade(self, out: torch.Tensor) -> torch.Tensor:
        """:func:`pipeline.losses.degrade` of ``out`` ``(N, B, H, W)`` -> ``(N, B, h, w)``."""
        return _sandwich(self.ah, out, self.awt)

    def _plain_terms(
        self, out: torch.Tensor, out_d: torch.Tensor | None, delta: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """:meth:`terms` through the functions of :mod:`pipeline.losses`."""
        assert self.plain is not None
        (taps, r, mask), w, terms = self.plain, self.w, {}
        if w.spectral > 0 or w.angle > 0:
            deg = degrade(out, taps, r)
            if w.spectral > 0:
                terms["spectral"] = spectral_loss(out, self.ms, taps, r, mask, degraded=deg)
            if w.angle > 0:
                terms["angle"] = angle_loss(out, self.ms, taps, r, mask, degraded=deg)
        if self.spatial is not None:
            terms["spatial"] = self.spatial(out)
        if w.consistency > 0 and out_d is not None:
            terms["consistency"] = consistency_loss(out_d, self.ms, mask)
        if w.rr > 0 and out_d is not None:
            terms["rr"] = rr_loss(out_d, self.ms, mask)
        if w.penalty > 0 and delta is not None:
            terms["penalty"] = tailor_penalty(delta)
        return terms

    def terms(
        self, out: torch.Tensor, out_d: torch.Tensor | None, delta: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """The unweighted terms whose weight is > 0 (in the order the total sums them)."""
        if self.plain is not None:
            return self._plain_terms(out, out_d, delta)
        w, terms = self.w, {}
        if w.spectral > 0 or w.angle > 0:
            deg = self.degrade(out)
            if w.spectral > 0:
                terms["spectral"] = self.mean_ms((deg - self.ms).abs())
            if w.angle > 0:
                terms["angle"] = self.mean_px(spectral_chord(deg, self.ms))
        if self.spatial is not None:
            terms["spatial"] = self.spatial(out)
        if w.consistency > 0 and out_d is not None:
            terms["consistency"] = self.mean_ms((out_d - self.ms).abs())
        if w.rr > 0 and out_d is not None:
            terms["rr"] = rr_loss(out_d, self.ms, self.valid_ms, means=self.rr_means)
        if w.penalty > 0 and delta is not None:
            terms["penalty"] = tailor_penalty(delta)
        return terms

    def __call__(
        self, out: torch.Tensor, out_d: torch.Tensor | None, delta: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """``(weighted total, {term: value, "total": value})``."""
        terms = self.terms(out, out_d, delta)
        loss = sum((getattr(self.w, k) * v for k, v in terms.items()), start=torch.zeros(()))
        report = {k: float(v.detach()) for k, v in terms.items()}
        report["total"] = float(loss.detach())
        return loss, report


__all__ = ["FitObjective", "ToolboxUQI", "degrade_matrix", "spatial_term", "window_matrix"]
