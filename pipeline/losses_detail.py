"""MTF-GLP detail prior: tie the tailored output's high-pass to the classical MTF-GLP product's.

MTF-GLP (``LMS_b + g_b (PAN - PAN_LP,b)``, regression gains, :mod:`pipeline.classical`) is the
classical method that wins the reduced-resolution ERGAS on the cross-sensor VHR pairs
(``benchmarks/results/cross_sensor.md``). This term asks the tailored network's details to
follow the MTF-GLP details of the same patch: ``mean |HP_b(out - GLP)|`` with ``HP_b(x) = x -
MTF_b(x)`` (the band's MTF-matched Gaussian, no decimation). The low frequencies are left to the
spectral and consistency terms (``HP`` removes what the MTF passes), so the term moves only the
injected detail. The MTF-GLP product of each fit patch is computed once per fit (NumPy, per
patch, its own regression gains).

**Gate** (``detail_gate=True``): the prior only pays where MTF-GLP is better than the network
on this scene. Before the fit, both run on the fit patches degraded by the ratio (the inputs of
the consistency term, one scale down) and are compared with the observed MS (mean absolute
error); the prior is on only if MTF-GLP's error is the lower one. No reference is used; it is
the scale-invariance assumption of the consistency term, applied once per fit to a yes/no.

Configured by :class:`DetailWeights` (``LossWeights`` plus the prior's fields); used by
:func:`pipeline.fit._objective` through :func:`detail_setup` and :func:`with_detail`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from .errors import ConfigError
from .losses import LossWeights, mtf_taps
from .mtf import filter_torch
from .sensors import SensorSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class DetailWeights(LossWeights):
    """:class:`~pipeline.losses.LossWeights` with the detail prior (a fit given plain
    ``LossWeights`` runs without it).

    Attributes
    ----------
    detail
        Weight of the prior (``mean |HP(out - GLP)|``); 0: off.
    detail_gate
        Apply it only where MTF-GLP beats the pretrained network one scale down on the fit
        patches (:func:`glp_wins`).
    detail_margin
        The gate opens where MTF-GLP's error one scale down is below this share of the
        network's (1.0: where MTF-GLP is better at all).
    spatial_matched
        The spatial weight where the gate finds the pretrained network the better one (a
        matched sensor); ``None``: ``spatial`` everywhere.
    """

    detail: float = 0.0
    detail_gate: bool = True
    detail_margin: float = 1.0
    spatial_matched: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.detail < 0:
            raise ConfigError("Loss weight 'detail' must be >= 0.", got=self.detail)
        if not 0.0 < self.detail_margin <= 1.0:
            raise ConfigError("detail_margin must lie in (0, 1].", got=self.detail_margin)
        if self.spatial_matched is not None and self.spatial_matched < 0:
            raise ConfigError("spatial_matched must be >= 0.", got=self.spatial_matched)


class DetailInputs(Protocol):
    """The fit's patch tensors the prior needs (``pipeline.fit._Inputs``)."""

    ms: torch.Tensor
    pan: torch.Tensor
    valid: torch.Tensor | None
    valid_ms: torch.Tensor | None
    ms_d: torch.Tensor
    pan_d: torch.Tensor


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


def glp_wins(
    x: DetailInputs, sensor: SensorSpec, start_degraded: torch.Tensor, margin: float = 1.0
) -> bool:
    """Whether MTF-GLP beats the starting network one scale down on the fit patches: its error
    is below ``margin`` times the network's.

    ``start_degraded``: the network's output ``(N, B, h, w)`` on the degraded patches
    (``x.ms_d``, ``x.pan_d``); both are compared with ``x.ms`` by mean absolute error over
    ``x.valid_ms``.
    """
    glp = glp_target(x.ms_d, x.pan_d, sensor)
    m = None if x.valid_ms is None else x.valid_ms.to(glp.dtype).expand_as(glp)

    def err(y: torch.Tensor) -> float:
        e = (y.detach() - x.ms).abs()
        return float(e.mean() if m is None else (e * m).sum() / m.sum().clamp_min(1.0))

    e_glp, e_net = err(glp), err(start_degraded)
    log.info("detail gate: MTF-GLP %.5f vs network %.5f one scale down", e_glp, e_net)
    return e_glp < margin * e_net


def _glp_wins(
    x: DetailInputs,
    sensor: SensorSpec,
    start_degraded: Callable[[], torch.Tensor | None],
    margin: float,
) -> bool:
    with torch.no_grad():
        base = start_degraded()
    return base is None or glp_wins(x, sensor, base, margin)


def _term(x: DetailInputs, sensor: SensorSpec) -> Callable[[torch.Tensor], torch.Tensor]:
    target = glp_target(x.ms, x.pan, sensor)
    taps = mtf_taps(sensor.mtf_ms, sensor.ratio).to(x.ms.device)
    valid = x.valid
    return lambda out: detail_loss(out, target, taps, valid)


def detail_setup(
    x: DetailInputs,
    sensor: SensorSpec,
    w: LossWeights,
    start_degraded: Callable[[], torch.Tensor | None],
) -> tuple[LossWeights, Callable[[torch.Tensor], torch.Tensor] | None]:
    """The weights a fit uses and its detail term, after the gate (one decision per fit).

    ``w`` a :class:`DetailWeights`: where MTF-GLP beats the starting network one scale down
    (:func:`glp_wins` with ``w.detail_margin``; always with ``detail_gate=False``), the prior
    is on (``w.detail > 0``). Where it does not (the network is the better one on this scene:
    a matched sensor), the prior is off and, if ``w.spatial_matched`` is set, the spatial
    weight becomes ``w.spatial_matched``. Plain ``LossWeights``, or neither option set: ``(w,
    None)`` and nothing is computed. ``start_degraded()``: the starting network's output on
    the degraded patches (called once, without gradient, only if the gate runs).
    """
    if not isinstance(w, DetailWeights) or (w.detail <= 0 and w.spatial_matched is None):
        return w, None
    if not w.detail_gate and w.spatial_matched is None:
        return w, _term(x, sensor)
    if _glp_wins(x, sensor, start_degraded, w.detail_margin):
        return w, (_term(x, sensor) if w.detail > 0 else None)
    if w.spatial_matched is not None:
        w = dataclasses.replace(w, spatial=w.spatial_matched)
    return w, None


Terms = Callable[
    [torch.Tensor, torch.Tensor | None, torch.Tensor | None], tuple[torch.Tensor, dict[str, float]]
]


def with_detail(
    objective: Terms, detail: Callable[[torch.Tensor], torch.Tensor] | None, w: LossWeights
) -> Terms:
    """``objective`` (``(out, out_d, delta) -> (total, report)``, e.g.
    :class:`pipeline.fit_objective.FitObjective`) plus ``w.detail`` x the detail term, which the
    report lists unweighted as ``"detail"``; ``objective`` itself when ``detail`` is ``None``."""
    if detail is None:
        return objective
    weight, prior = float(getattr(w, "detail", 0.0)), detail

    def total(
        out: torch.Tensor, out_d: torch.Tensor | None, delta: torch.Tensor | None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        loss, report = objective(out, out_d, delta)
        term = prior(out)
        loss = loss + weight * term
        report = {**report, "detail": float(term.detach()), "total": float(loss.detach())}
        return loss, report

    return total


__all__ = [
    "DetailInputs",
    "DetailWeights",
    "detail_loss",
    "detail_setup",
    "glp_target",
    "glp_wins",
    "high_pass",
    "with_detail",
]
