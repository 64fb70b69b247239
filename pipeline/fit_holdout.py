"""The held-out score of a fit: the toolbox's HQNR on patches the fit does not train on.

:func:`patch_hqnr` is the toolbox-exact full-resolution HQNR (``HQNR.m``: ``D_lambda^K`` from
Q2n of the MTF-filtered product against the 23-tap interpolated MS, both cast to ``uint16``;
``D_S`` against ``P_LP = interp23tap(imresize(P, 1/r))``; 32-pixel blocks) of each patch, on the
batched torch operators of :mod:`pipeline.quality.fast`. :func:`holdout_check` turns a forward
pass on the held-out patches into the score :func:`pipeline.fit_stop._optimise` tracks (the
stopping rule and the identity fallback of :mod:`pipeline.fit`).

:class:`WaldScore` is the reduced-resolution self-check of the same patches (Wald's protocol one
scale down, reference-free at full resolution): the network runs on the held-out patches degraded
by the sensor's MTF and the ratio (:func:`pipeline.losses.degrade_inputs`, the degradation of the
consistency term) and its output is compared with the patches' own MS by ERGAS and SAM.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .quality import fast
from .sampling import PatchBatch
from .sensors import SensorSpec

BLOCK = 32  # the toolbox's block edge (PAN pixels)


class PatchHQNR:
    """Toolbox HQNR of products of fixed patches; what depends only on MS and PAN is computed once.

    Parameters
    ----------
    ms
        ``(N, B, H/r, W/r)`` MS, normalised (``DN / dn_max``).
    pan
        ``(N, 1, H, W)`` PAN, normalised.
    sensor
        Ratio (a power of two) and MS MTF gains.
    dn_max
        The DN of 1.0 (the toolbox's Q2n rounds to integer DN).
    block
        Block edge of Q and Q2n (PAN pixels).
    """

    def __init__(
        self,
        ms: torch.Tensor,
        pan: torch.Tensor,
        sensor: SensorSpec,
        dn_max: float,
        block: int = BLOCK,
    ) -> None:
        self.sensor, self.dn_max, self.block = sensor, dn_max, block
        r = sensor.ratio
        with torch.no_grad():
            m = ms.detach().to(torch.float64) * dn_max
            self.pan = pan.detach().to(torch.float64) * dn_max
            up = [fast.interp23tap(m[n], r) for n in range(m.shape[0])]
            self.up16 = [fast.to_uint16(u) for u in up]
            lows = [fast.pan_low_pass(self.pan[n, 0], r)[None] for n in range(m.shape[0])]
            self.q_low = [
                fast.uqi_pairs(u, lo, block)[:, 0] for u, lo in zip(up, lows, strict=True)
            ]

    def __call__(self, out: torch.Tensor) -> torch.Tensor:
        """``(N,)`` float64 HQNR of ``out`` ``(N, B, H, W)`` (normalised; clipped to [0, 1])."""
        n, b, h, w = out.shape
        with torch.no_grad():
            f = out.detach().to(torch.float64).clamp(0.0, 1.0) * self.dn_max
            gains = list(self.sensor.mtf_ms) * n
            lp = fast.mtf_filter(f.reshape(n * b, h, w), gains, self.sensor.ratio).view(n, b, h, w)
            scores = []
            for i in range(n):
                q2n = fast.q2n_blocks(fast.to_uint16(lp[i]), self.up16[i], self.block).mean()
                q_high = fast.uqi_pairs(f[i], self.pan[i], self.block)[:, 0]
                d_s = (q_high - self.q_low[i]).abs().mean()
                scores.append(q2n * (1.0 - d_s))
        return torch.stack(scores)


class WaldScore:
    """ERGAS and SAM of products of the Wald-degraded held-out patches against their MS.

    Parameters
    ----------
    ms
        ``(N, B, h, w)`` held-out MS (the reference one scale down), normalised.
    ratio
        The sensor's resolution ratio (ERGAS's ``100 / ratio``).
    valid
        ``(N, 1, h, w)`` validity of the MS pixels (``None``: all valid).
    """

    def __init__(self, ms: torch.Tensor, ratio: int, valid: torch.Tensor | None = None) -> None:
        self.ms, self.ratio = ms.detach().to(torch.float64), ratio
        v = torch.ones_like(self.ms[:, :1]) if valid is None else valid.to(torch.float64)
        self.valid = v.expand_as(self.ms)

    def __call__(self, out_d: torch.Tensor) -> tuple[float, float]:
        """``(ERGAS, SAM in degrees)`` of ``out_d`` ``(N, B, h, w)`` (all patches pooled)."""
        with torch.no_grad():
            v = self.valid
            f = out_d.detach().to(torch.float64).clamp(0.0, 1.0) * v
            ref = torch.nan_to_num(self.ms) * v
            n = v.sum(dim=(0, 2, 3)).clamp_min(1.0)
            rmse = ((f - ref).pow(2).sum(dim=(0, 2, 3)) / n).sqrt()
            mean = (ref.sum(dim=(0, 2, 3)) / n).clamp_min(1e-12)
            ergas = 100.0 / self.ratio * float((rmse / mean).pow(2).mean().sqrt())
            dot = (f * ref).sum(dim=1)
            norm = f.norm(dim=1) * ref.norm(dim=1)
            ok = (norm > 0) & (v[:, 0] > 0)
            cos = (dot[ok] / norm[ok]).clamp(-1.0, 1.0)
            sam = float(torch.rad2deg(torch.acos(cos)).mean()) if ok.any() else 0.0
        return ergas, sam


def patch_hqnr(
    out: torch.Tensor,
    ms: torch.Tensor,
    pan: torch.Tensor,
    sensor: SensorSpec,
    dn_max: float,
    block: int = BLOCK,
) -> torch.Tensor:
    """Toolbox HQNR of each patch ``(N,)``: :class:`PatchHQNR` of ``ms, pan`` applied to ``out``."""
    return PatchHQNR(ms, pan, sensor, dn_max, block)(out)


def holdout_check(
    held: PatchBatch | None,
    sensor: SensorSpec,
    forward: Callable[[], torch.Tensor],
) -> Callable[[], float] | None:
    """``() -> mean held-out HQNR`` of ``forward()`` (the model's output on ``held``).

    ``None`` when there are no held-out patches or the ratio is not a power of two (the
    toolbox's 23-tap interpolator needs one).
    """
    r = sensor.ratio
    if held is None or len(held) == 0 or r < 2 or r & (r - 1):
        return None

    score = PatchHQNR(held.ms, held.pan, sensor, sensor.dn_max)

    def check() -> float:
        with torch.no_grad():
            out = forward()
        return float(score(out).mean())

    return check


def wald_check(
    held: PatchBatch | None,
    sensor: SensorSpec,
    forward_degraded: Callable[[], torch.Tensor],
) -> Callable[[], tuple[float, float]] | None:
    """``() -> (ERGAS, SAM)`` of ``forward_degraded()`` (the model's output on the held-out
    patches degraded by :func:`pipeline.losses.degrade_inputs`) against their MS.

    ``None`` without held-out patches.
    """
    if held is None or len(held) == 0:
        return None
    score = WaldScore(held.ms, sensor.ratio, held.valid_ms)

    def check() -> tuple[float, float]:
        with torch.no_grad():
            out = forward_degraded()
        return score(out)

    return check


__all__ = ["BLOCK", "PatchHQNR", "WaldScore", "holdout_check", "patch_hqnr", "wald_check"]
