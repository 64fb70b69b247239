"""Least-squares start of the feature tailor's last layer (an option of :func:`pipeline.fit.fit_tailor`).

Measured (``benchmarks/fit_speed.py``, imgWV2 512² with the WV3 FusionNet, 2 seeds): the start
lowers the total loss from 0.096 to 0.066-0.076, but Adam from there improves it little and HQNR
stays 0.005-0.04 below the 60-step zero start's, so ``FitConfig.ls_start`` is 0 by default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from .backbones import Backbone
from .losses import degrade, mtf_taps
from .sensors import SensorSpec
from .tailor import FeatureTailor

if TYPE_CHECKING:
    from .fit import FitConfig, _Inputs

log = logging.getLogger(__name__)


def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    return sum((torch.sum(u * v) for u, v in zip(a, b, strict=True)), start=torch.zeros(()))


def ls_start(
    tailor: FeatureTailor,
    backbone: Backbone,
    x: _Inputs,
    feats: torch.Tensor,
    feats_d: torch.Tensor | None,
    sensor: SensorSpec,
    cfg: FitConfig,
    objective: Callable[[], tuple[torch.Tensor, dict[str, float]]],
) -> bool:
    """Least-squares start of the tailor's last layer ``conv_b`` (zero on entry).

    With ``conv_a`` fixed, the tailored output is affine in ``conv_b``'s parameters ``θ`` for an
    affine mapper (FusionNet's: ``lms + tail(F')``), and so are the residuals of the spectral
    and consistency terms, ``r(θ) = [sqrt(w_s) (degrade(out) - ms), sqrt(w_c) (out_d - ms)]``
    over valid MS pixels. ``θ`` minimising ``||r||²`` (the L2 version of those two L1 terms)
    solves ``JᵀJ θ = -Jᵀ r(0)`` (:func:`_conjugate_gradient`, ``cfg.ls_start`` iterations,
    ``conv_a``'s activations cached). Kept only if it lowers the fit's total loss; returns that.
    """
    w = cfg.weights
    taps = mtf_taps(sensor.mtf_ms, sensor.ratio).to(x.ms.device)
    conv_b = tailor.conv_b
    params = [p for p in conv_b.parameters()]
    with torch.no_grad():
        hid = torch.nn.functional.leaky_relu(tailor.conv_a(feats), 0.1)
        hid_d = (
            None if feats_d is None else torch.nn.functional.leaky_relu(tailor.conv_a(feats_d), 0.1)
        )

    def residual() -> torch.Tensor:
        out = backbone.map(feats + conv_b(hid), x.ms, x.lms, x.pan)
        parts = [w.spectral**0.5 * _masked(degrade(out, taps, sensor.ratio) - x.ms, x.valid_ms)]
        if hid_d is not None and feats_d is not None and w.consistency > 0:
            out_d = backbone.map(feats_d + conv_b(hid_d), x.ms_d, x.lms_d, x.pan_d)
            parts.append(w.consistency**0.5 * _masked(out_d - x.ms, x.valid_ms))
        return torch.cat([p.flatten() for p in parts])

    def grad_half_sq(shift: torch.Tensor | None) -> list[torch.Tensor]:
        with torch.enable_grad():
            r = residual()
            loss = 0.5 * (r if shift is None else r - shift).pow(2).sum()
            return list(torch.autograd.grad(loss, params))

    def set_params(values: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for p, v in zip(params, values, strict=True):
                p.copy_(v)

    zero = [torch.zeros_like(p) for p in params]
    with torch.no_grad():
        r0 = residual()
        base = objective()[0]
    sol = _conjugate_gradient(grad_half_sq, set_params, r0, zero, cfg.ls_start)
    set_params(sol)
    with torch.no_grad():
        kept = bool(objective()[0] < base)
    if not kept:
        set_params(zero)
    log.info("least-squares start of the tailor: %s", "kept" if kept else "worse; zero start")
    return kept


def _conjugate_gradient(
    grad_half_sq: Callable[[torch.Tensor | None], list[torch.Tensor]],
    set_params: Callable[[list[torch.Tensor]], None],
    r0: torch.Tensor,
    zero: list[torch.Tensor],
    iters: int,
) -> list[torch.Tensor]:
    """``iters`` CG iterations on ``JᵀJ θ = -Jᵀ r(0)`` from ``θ = 0`` (``JᵀJ p`` by autograd)."""
    rvec = [-g for g in grad_half_sq(None)]  # b = -Jᵀ r(0)
    sol, direction, rs = [z.clone() for z in zero], [g.clone() for g in rvec], _dot(rvec, rvec)
    for _ in range(iters):
        set_params(direction)
        ap = grad_half_sq(r0)  # JᵀJ p (r affine: r(p) - r(0) = J p)
        alpha = rs / _dot(direction, ap).clamp_min(1e-30)
        sol = [s_ + alpha * d for s_, d in zip(sol, direction, strict=True)]
        rvec = [r_ - alpha * a for r_, a in zip(rvec, ap, strict=True)]
        rs_new = _dot(rvec, rvec)
        direction = [r_ + (rs_new / rs) * d for r_, d in zip(rvec, direction, strict=True)]
        rs = rs_new
    return sol


def _masked(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``x`` at the valid pixels (zero elsewhere), scaled as a mean over them."""
    if mask is None:
        scaled: torch.Tensor = x / float(x.numel()) ** 0.5
        return scaled
    m = mask.to(x.dtype).expand_as(x)
    out: torch.Tensor = x * m / m.sum().clamp_min(1.0).sqrt()
    return out


__all__ = ["ls_start"]
