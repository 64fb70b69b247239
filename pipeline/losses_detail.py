"""MTF-GLP detail prior: tie the tailored output's high-pass to the classical MTF-GLP product's.

MTF-GLP (``LMS_b + g_b (PAN - PAN_LP,b)``, regression gains, :mod:`pipeline.classical`) is the
classical method that wins the reduced-resolution ERGAS on the cross-sensor VHR pairs
(``benchmarks/results/cross_sensor.md``). This term asks the tailored network's details to
follow the MTF-GLP details of the same patch: ``mean |HP_b(out - GLP)|`` with ``HP_b(x) = x -
MTF_b(x)`` (the band's MTF-matched Gaussian, no decimation). The low frequencies are left to the
spectral and consistency terms (``HP`` removes what the MTF passes), so the term moves only the
injected detail. The MTF-GLP product of each fit patch is computed once per fit (NumPy, per
patch, its own regression gains).

Used by :func:`pipeline.fit._objective` when ``LossWeights.detail > 0``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .mtf import filter_torch
from .sensors import SensorSpec


def glp_target(ms: torch.Tensor, pan: torch.Tensor, sensor: SensorSpec) -> torch.Tensor:
    """MTF-GLP product of every patch, on the inputs' scale.

    Parameters
    ----------
    ms
        ``(N, B, h, w)`` MS patches (normalised, ``DN / dn_max``).
    pan
        ``(N, 1, H, W)`` PAN patches, ``H = ratio * h``.
    sensor
        Sensor of the scene (ratio, MTF gains).

    Returns
    -------
    torch.Tensor
        ``(N, B, H, W)`` float32 on ``ms``'s device, no gradient.
    """
    from .classical import pansharpen

    ms_np = ms.detach().to("cpu", torch.float64).numpy()
    pan_np = pan.detach().to("cpu", torch.float64).numpy()
    out = [pansharpen("mtf-glp", ms_np[i], pan_np[i, 0], sensor) for i in range(len(ms_np))]
    return torch.from_numpy(np.stack(out).astype(np.float32)).to(ms.device)


def high_pass(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """``x - MTF(x)``: ``(N, C, H, W)`` minus its band-wise MTF low-pass (``taps`` ``(C, K)``)."""
    return x - filter_torch(x, taps)


def detail_loss(
    out: torch.Tensor, target: torch.Tensor, taps: torch.Tensor, valid: torch.Tensor | None
) -> torch.Tensor:
    """``mean |HP(out - target)|`` over valid pixels (``valid`` ``(N, 1, H, W)`` or ``None``)."""
    diff = high_pass(out - target, taps).abs()
    if valid is None:
        return diff.mean()
    m = valid.to(diff.dtype).expand_as(diff)
    return (diff * m).sum() / m.sum().clamp_min(1.0)


def detail_term(
    ms: torch.Tensor,
    pan: torch.Tensor,
    valid: torch.Tensor | None,
    sensor: SensorSpec,
    weight: float,
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The detail prior as ``out -> loss`` (its MTF-GLP target computed once), or ``None``
    when ``weight`` is 0."""
    if weight <= 0:
        return None
    from .losses import mtf_taps

    target = glp_target(ms, pan, sensor)
    taps = mtf_taps(sensor.mtf_ms, sensor.ratio).to(ms.device)
    return lambda out: detail_loss(out, target, taps, valid)


__all__ = ["detail_loss", "detail_term", "glp_target", "high_pass"]
