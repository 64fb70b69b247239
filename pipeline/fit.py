"""Fit a feature tailor (or fine-tune the whole backbone) on one scene's sampled patches.

Plain torch, no Dask. The tailor sits after the frozen extractor, so the extractor's features of
the sampled patches, and of their degraded versions for the consistency loss (the tailored
network run on the degraded scene also starts from fixed extractor features), are computed
**once**; each step runs only the tailor, the mapper and the losses. The loop has a fixed step
budget and stops early on a plateau of the total loss; the parameters of the best step are kept.
On CPU a fit is deterministic for a given seed.

``adapt="none"`` keeps the pretrained backbone (the losses are still evaluated, for the report);
``adapt="finetune"`` trains all backbone parameters with the same losses and patches (Adam, until
plateau or ``finetune_steps``), the zero-shot baseline: there the features cannot be cached.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .backbones import Backbone, upsample
from .errors import ConfigError
from .fit_config import ADAPT_MODES, FitConfig, FitResult
from .fit_stop import _optimise, _stop_rule
from .losses import (
    LossWeights,
    WindowStats,
    angle_loss,
    consistency_loss,
    degrade,
    degrade_inputs,
    lowres_correlation,
    mtf_taps,
    spatial_loss,
    spatial_match_loss,
    spectral_loss,
    tailor_penalty,
)
from .sampling import PatchBatch
from .sensors import SensorSpec
from .tailor import FeatureTailor, TailorSpec

log = logging.getLogger(__name__)


@dataclass
class _Inputs:
    """Device tensors of the fit: full-resolution patches and their degraded versions."""

    ms: torch.Tensor
    lms: torch.Tensor
    pan: torch.Tensor
    valid: torch.Tensor | None
    valid_ms: torch.Tensor | None
    ms_d: torch.Tensor
    lms_d: torch.Tensor
    pan_d: torch.Tensor
    upsampler: str


def _inputs(
    patches: PatchBatch, backbone: Backbone, sensor: SensorSpec, device: torch.device
) -> _Inputs:
    if patches.ratio != sensor.ratio or patches.ms.shape[1] != backbone.n_bands:
        raise ConfigError(
            "The patches do not match the sensor/backbone.",
            expected=f"ratio {sensor.ratio}, {backbone.n_bands} bands",
            got=f"ratio {patches.ratio}, {patches.ms.shape[1]} bands",
        )
    p = patches.to(device)
    ms_d, pan_d = degrade_inputs(p.ms, p.pan, sensor)
    up = backbone.upsampler
    return _Inputs(
        ms=p.ms,
        lms=upsample(p.ms, sensor.ratio, up),
        pan=p.pan,
        valid=p.valid,
        valid_ms=p.valid_ms,
        ms_d=ms_d,
        lms_d=upsample(ms_d, sensor.ratio, up),
        pan_d=pan_d,
        upsampler=up,
    )


Forward = Callable[[bool], tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]]


def _objective(
    x: _Inputs, sensor: SensorSpec, w: LossWeights, forward: Forward
) -> Callable[[], tuple[torch.Tensor, dict[str, float]]]:
    """Closure computing the weighted total and the unweighted terms.

    ``forward(need_degraded)`` returns ``(out, out_degraded or None, tailor delta or None)``.
    """
    taps = mtf_taps(sensor.mtf_ms, sensor.ratio).to(x.ms.device)
    pan_stats = WindowStats.of(x.pan, w.lcc_window) if w.spatial > 0 else None  # fixed: once
    target = None
    if pan_stats is not None and w.spatial_target == "lowres":
        pan_lp = upsample(x.pan_d, sensor.ratio, x.upsampler)
        target = lowres_correlation(x.lms, pan_lp, w.lcc_window)  # fixed: once

    def total() -> tuple[torch.Tensor, dict[str, float]]:
        out, out_d, delta = forward(w.consistency > 0)
        terms: dict[str, torch.Tensor] = {}
        if w.spectral > 0 or w.angle > 0:
            deg = degrade(out, taps, sensor.ratio)  # shared by both terms
            if w.spectral > 0:
                terms["spectral"] = spectral_loss(
                    out, x.ms, taps, sensor.ratio, x.valid_ms, degraded=deg
                )
            if w.angle > 0:
                terms["angle"] = angle_loss(out, x.ms, taps, sensor.ratio, x.valid_ms, degraded=deg)
        if pan_stats is not None:
            if target is None:
                terms["spatial"] = spatial_loss(out, pan_stats, w.lcc_window, x.valid)
            else:
                terms["spatial"] = spatial_match_loss(out, pan_stats, target, w.lcc_window, x.valid)
        if w.consistency > 0 and out_d is not None:
            terms["consistency"] = consistency_loss(out_d, x.ms, x.valid_ms)
        if w.penalty > 0 and delta is not None:
            terms["penalty"] = tailor_penalty(delta)
        loss = sum((getattr(w, k) * v for k, v in terms.items()), start=torch.zeros(()))
        report = {k: float(v.detach()) for k, v in terms.items()}
        report["total"] = float(loss.detach())
        return loss, report

    return total


def _cached_features(
    backbone: Backbone, x: _Inputs, cfg: FitConfig
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The frozen extractor's features of the patches and (if consistency counts) of their
    degraded versions, computed once for the whole fit."""
    with torch.no_grad():
        feats = backbone.extract(x.ms, x.lms, x.pan)
        feats_d = (
            backbone.extract(x.ms_d, x.lms_d, x.pan_d) if cfg.weights.consistency > 0 else None
        )
    return feats, feats_d


def _new_tailor(backbone: Backbone, cfg: FitConfig, dev: torch.device) -> FeatureTailor:
    """A fresh tailor for ``backbone``'s features, initialised from ``cfg.seed`` (RNG forked)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        spec = TailorSpec(channels=backbone.feat_channels, width=cfg.width, kernel=cfg.kernel)
        return FeatureTailor(spec).to(dev)


def _tailor_forward(
    tailor: FeatureTailor,
    backbone: Backbone,
    x: _Inputs,
    feats: torch.Tensor,
    feats_d: torch.Tensor | None,
) -> Callable[[bool], tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]]:
    """The tailored forward pass on cached features: ``(out, out on degraded inputs, delta)``."""

    def forward(need_d: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        delta = tailor.delta(feats)
        out = backbone.map(feats + delta, x.ms, x.lms, x.pan)
        out_d = None
        if need_d and feats_d is not None:
            out_d = backbone.map(feats_d + tailor.delta(feats_d), x.ms_d, x.lms_d, x.pan_d)
        return out, out_d, delta

    return forward


def fit_tailor(
    patches: PatchBatch,
    backbone: Backbone,
    sensor: SensorSpec,
    cfg: FitConfig | None = None,
    device: torch.device | str | None = None,
) -> FitResult:
    """Fit a :class:`~pipeline.tailor.FeatureTailor` on ``patches`` (backbone stays frozen).

    Parameters
    ----------
    patches
        Sampled patches (:func:`pipeline.sampling.sample_patches`), ``N`` of ``P x P`` PAN pixels.
    backbone
        The pretrained network (its weights are not modified; it is moved to ``device``).
    sensor
        The scene's sensor (ratio and MTF gains of the losses).
    cfg
        Fit configuration; ``cfg.adapt`` is ignored here.
    device
        Torch device; default: the backbone's.

    Returns
    -------
    FitResult
        With ``tailor_state`` set.
    """
    cfg = cfg or FitConfig()
    dev = torch.device(device) if device is not None else _device_of(backbone)
    t0 = time.perf_counter()
    backbone = backbone.to(dev).eval()
    x = _inputs(patches, backbone, sensor, dev)
    feats, feats_d = _cached_features(backbone, x, cfg)
    t_feat = time.perf_counter() - t0
    tailor = _new_tailor(backbone, cfg, dev)
    forward = _tailor_forward(tailor, backbone, x, feats, feats_d)
    objective = _objective(x, sensor, cfg.weights, forward)
    if cfg.ls_start:
        from .fit_ls import ls_start

        ls_start(tailor, backbone, x, feats, feats_d, sensor, cfg, objective)
    params = list(tailor.parameters())
    losses, initial, history = _optimise(params, objective, cfg.steps, cfg, cfg.lr)
    seconds = time.perf_counter() - t0
    log.info(
        "tailor fit: %d steps in %.2f s (features %.2f s), %s",
        len(history),
        seconds,
        t_feat,
        losses,
    )
    state = {k: v.detach().cpu().clone() for k, v in tailor.state_dict().items()}
    rule = _stop_rule(len(history), cfg.steps, cfg)
    return FitResult(
        "tailor",
        state,
        None,
        len(history),
        seconds,
        t_feat,
        losses,
        initial,
        history,
        step_budget=cfg.steps,
        stop_rule=rule,
    )


def fit_finetune(
    patches: PatchBatch,
    backbone: Backbone,
    sensor: SensorSpec,
    cfg: FitConfig | None = None,
    device: torch.device | str | None = None,
) -> FitResult:
    """Fine-tune a copy of all backbone parameters with the same losses (zero-shot baseline).

    Same parameters and return as :func:`fit_tailor`, with ``backbone_state`` set; uses
    ``cfg.finetune_steps`` and ``cfg.finetune_lr`` (Adam). ``backbone`` itself is not modified.
    """
    cfg = cfg or FitConfig(adapt="finetune")
    dev = torch.device(device) if device is not None else _device_of(backbone)
    t0 = time.perf_counter()
    model = copy.deepcopy(backbone).to(dev).train().requires_grad_(True)
    x = _inputs(patches, model, sensor, dev)
    t_feat = time.perf_counter() - t0

    def forward(need_d: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        out = model(x.ms, x.lms, x.pan)
        out_d = model(x.ms_d, x.lms_d, x.pan_d) if need_d else None
        return out, out_d, None

    objective = _objective(x, sensor, cfg.weights, forward)
    params = [p for p in model.parameters() if p.requires_grad]
    losses, initial, history = _optimise(
        params, objective, cfg.finetune_steps, cfg, cfg.finetune_lr
    )
    seconds = time.perf_counter() - t0
    log.info("finetune: %d steps in %.2f s, %s", len(history), seconds, losses)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return FitResult(
        "finetune",
        None,
        state,
        len(history),
        seconds,
        t_feat,
        losses,
        initial,
        history,
        step_budget=cfg.finetune_steps,
        stop_rule=_stop_rule(len(history), cfg.finetune_steps, cfg),
    )


def evaluate(
    patches: PatchBatch,
    backbone: Backbone,
    sensor: SensorSpec,
    cfg: FitConfig | None = None,
    device: torch.device | str | None = None,
) -> FitResult:
    """``adapt="none"``: no fitting; the losses of the pretrained network on ``patches``."""
    cfg = cfg or FitConfig(adapt="none")
    dev = torch.device(device) if device is not None else _device_of(backbone)
    t0 = time.perf_counter()
    backbone = backbone.to(dev).eval()
    x = _inputs(patches, backbone, sensor, dev)

    def forward(need_d: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        out_d = backbone(x.ms_d, x.lms_d, x.pan_d) if need_d else None
        return backbone(x.ms, x.lms, x.pan), out_d, None

    with torch.no_grad():
        losses = _objective(x, sensor, cfg.weights, forward)()[1]
    seconds = time.perf_counter() - t0
    return FitResult("none", None, None, 0, seconds, seconds, losses, losses, [])


def adapt(
    patches: PatchBatch,
    backbone: Backbone,
    sensor: SensorSpec,
    cfg: FitConfig | None = None,
    device: torch.device | str | None = None,
) -> tuple[Backbone, FitResult]:
    """Run ``cfg.adapt`` (none / tailor / finetune); return the model to infer with and the result."""
    cfg = cfg or FitConfig()
    run = {"none": evaluate, "tailor": fit_tailor, "finetune": fit_finetune}[cfg.adapt]
    result = run(patches, backbone, sensor, cfg, device)
    return result.model(backbone), result


def _device_of(module: torch.nn.Module) -> torch.device:
    p = next(iter(module.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


__all__ = [
    "ADAPT_MODES",
    "FitConfig",
    "FitResult",
    "adapt",
    "evaluate",
    "fit_finetune",
    "fit_tailor",
]
