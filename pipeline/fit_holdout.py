"""The held-out score of a fit: the toolbox's HQNR on patches the fit does not train on.

:func:`patch_hqnr` is the toolbox-exact full-resolution HQNR (``HQNR.m``: ``D_lambda^K`` from
Q2n of the MTF-filtered product against the 23-tap interpolated MS, both cast to ``uint16``;
``D_S`` against ``P_LP = interp23tap(imresize(P, 1/r))``; 32-pixel blocks) of each patch, on the
batched torch operators of :mod:`pipeline.quality.fast`. :func:`holdout_check` turns a forward
pass on the held-out patches into the score :func:`pipeline.fit_stop._optimise` tracks (the
stopping rule and the identity fallback of :mod:`pipeline.fit`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .quality import fast
from .sampling import PatchBatch
from .sensors import SensorSpec

BLOCK = 32  # the toolbox's block edge (PAN pixels)


def patch_hqnr(
    out: torch.Tensor,
    ms: torch.Tensor,
    pan: torch.Tensor,
    sensor: SensorSpec,
    dn_max: float,
    block: int = BLOCK,
) -> torch.Tensor:
    """Toolbox HQNR of each patch.

    Parameters
    ----------
    out
        ``(N, B, H, W)`` product, normalised (``DN / dn_max``); clipped to ``[0, 1]`` as the
        product is.
    ms
        ``(N, B, H/r, W/r)`` MS, normalised.
    pan
        ``(N, 1, H, W)`` PAN, normalised.
    sensor
        Ratio (a power of two) and MS MTF gains.
    dn_max
        The DN of 1.0 (the toolbox's Q2n rounds to integer DN).
    block
        Block edge of Q and Q2n (PAN pixels).

    Returns
    -------
    torch.Tensor
        ``(N,)`` float64 HQNR values.
    """
    r = sensor.ratio
    with torch.no_grad():
        f = out.detach().to(torch.float64).clamp(0.0, 1.0) * dn_max
        m = ms.detach().to(torch.float64) * dn_max
        p = pan.detach().to(torch.float64) * dn_max
        scores = []
        for n in range(f.shape[0]):
            up = fast.interp23tap(m[n], r)
            lp = fast.mtf_filter(f[n], sensor.mtf_ms, r)
            q2n = fast.q2n_blocks(fast.to_uint16(lp), fast.to_uint16(up), block).mean()
            p_lp = fast.pan_low_pass(p[n, 0], r)
            q_high = fast.uqi_pairs(f[n], p[n], block)[:, 0]
            q_low = fast.uqi_pairs(up, p_lp[None], block)[:, 0]
            d_s = (q_high - q_low).abs().mean()
            scores.append(q2n * (1.0 - d_s))
    return torch.stack(scores)


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

    def check() -> float:
        with torch.no_grad():
            out = forward()
        return float(patch_hqnr(out, held.ms, held.pan, sensor, sensor.dn_max).mean())

    return check


__all__ = ["BLOCK", "holdout_check", "patch_hqnr"]
