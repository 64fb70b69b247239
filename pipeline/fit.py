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
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .backbones import Backbone, upsample
from .errors import ConfigError
from .fit_config import ADAPT_MODES, AUGMENTS, FitConfig, FitResult
from .fit_holdout import holdout_check, wald_check
from .fit_objective import FitObjective
from .fit_stop import _optimise, _result, _state
from .losses import LossWeights, degrade_inputs
from .losses_detail import detail_setup, with_detail
from .losses_rr import needs_degraded
from .sampling import PatchBatch
from .sensors import SensorSpec
from .tailor import FeatureTailor, TailorSpec
from .tta import transform

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
    x: _Inputs, sensor: SensorSpec, w: LossWeights, forward: Forward, fused: bool = True
) -> Callable[[], tuple[torch.Tensor, dict[str, float]]]:
    """Closure computing the weighted total and the unweighted terms
    (:class:`pipeline.fit_objective.FitObjective`: the terms of :mod:`pipeline.losses`, their
    constants computed once; ``fused=False``: through the plain functions).

    ``forward(need_degraded)`` returns ``(out, out_degraded or None, tailor delta or None)``.
    """
    w, detail = detail_setup(x, sensor, w, lambda: forward(True)[1])
    objective = FitObjective(
        x.ms, x.lms, x.pan, x.pan_d, x.valid, x.valid_ms, x.upsampler, sensor, w, fused
    )
    losses = with_detail(objective, detail, w)

    def total() -> tuple[torch.Tensor, dict[str, float]]:
        return losses(*forward(needs_degraded(w)))

    return total


def _cached_features(
    backbone: Backbone, x: _Inputs, cfg: FitConfig
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The frozen extractor's features of the patches and (if consistency counts) of their
    degraded versions, computed once for the whole fit.

    Channels-last: the tailor's and the mapper's convolutions, and above all their backward,
    run 1.3-4x faster on CPU in that layout than on contiguous tensors of these sizes
    (``benchmarks/results/fit_speed.md``); the sums are the same, taken in another order.
    """
    fmt = _fmt(cfg)
    with torch.no_grad():
        feats = backbone.extract(x.ms, x.lms, x.pan).contiguous(memory_format=fmt)
        feats_d = None
        if needs_degraded(cfg.weights):
            feats_d = backbone.extract(x.ms_d, x.lms_d, x.pan_d).contiguous(memory_format=fmt)
    return feats, feats_d


def _fmt(cfg: FitConfig) -> torch.memory_format:
    """The layout of cached features: channels-last on the fused path."""
    return torch.channels_last if cfg.fused else torch.contiguous_format


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


def _split(patches: PatchBatch, cfg: FitConfig) -> tuple[PatchBatch, PatchBatch | None]:
    """Fit and held-out patches; without held-out checks every patch is fitted on."""
    if cfg.check_every > 0:
        return patches.split()
    return dataclasses.replace(patches, holdout=0), None


def augment_patches(patches: PatchBatch, mode: str) -> PatchBatch:
    """``patches`` followed by each of them under every non-identity element of ``mode``
    (:data:`pipeline.fit_config.AUGMENTS`; MS, PAN and both masks transformed together, element
    by element, patches in their order within each element). ``holdout`` is dropped: augment
    fit patches only."""
    ks = AUGMENTS[mode]
    if ks == (0,):
        return dataclasses.replace(patches, holdout=0)

    def cat(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else torch.cat([transform(t, k) for k in ks]).contiguous()

    ms, pan = cat(patches.ms), cat(patches.pan)
    assert ms is not None and pan is not None
    keys = patches.keys * len(ks)
    return PatchBatch(ms, pan, cat(patches.valid), cat(patches.valid_ms), keys, patches.ratio)


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
        Sampled patches (:func:`pipeline.sampling.sample_patches`), ``N`` of ``P x P`` PAN
        pixels; its held-out patches (``patches.holdout``) are scored, not fitted on.
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
    train, held = _split(patches, cfg)
    x = _inputs(augment_patches(train, cfg.augment), backbone, sensor, dev)
    feats, feats_d = _cached_features(backbone, x, cfg)
    tailor = _new_tailor(backbone, cfg, dev)
    check, wald = _tailor_check(tailor, backbone, held, sensor, cfg, dev)
    t_feat = time.perf_counter() - t0
    forward = _tailor_forward(tailor, backbone, x, feats, feats_d)
    objective = _objective(x, sensor, cfg.weights, forward, cfg.fused)
    if cfg.ls_start:
        from .fit_ls import ls_start

        ls_start(tailor, backbone, x, feats, feats_d, sensor, cfg, objective)
    track = _optimise(list(tailor.parameters()), objective, cfg.steps, cfg, cfg.lr, check, wald)
    n_held = 0 if held is None or check is None else len(held)
    return _result("tailor", track, cfg.steps, t0, t_feat, n_held, tailor_state=_state(tailor))


def _tailor_check(
    tailor: FeatureTailor,
    backbone: Backbone,
    held: PatchBatch | None,
    sensor: SensorSpec,
    cfg: FitConfig,
    dev: torch.device,
) -> tuple[Callable[[], float] | None, Callable[[], tuple[float, float]] | None]:
    """Held-out HQNR of the tailored network and, with ``cfg.guard == "wald"``, its
    reduced-resolution self-check (the held-out features computed once)."""
    if held is None:
        return None, None
    h = held.to(dev)
    lms = upsample(h.ms, sensor.ratio, backbone.upsampler)
    with torch.no_grad():
        fh = backbone.extract(h.ms, lms, h.pan).contiguous(memory_format=_fmt(cfg))
    check = holdout_check(h, sensor, lambda: backbone.map(fh + tailor.delta(fh), h.ms, lms, h.pan))
    if check is None or cfg.guard != "wald":
        return check, None
    ms_d, pan_d = degrade_inputs(h.ms, h.pan, sensor)
    lms_d = upsample(ms_d, sensor.ratio, backbone.upsampler)
    with torch.no_grad():
        fd = backbone.extract(ms_d, lms_d, pan_d).contiguous(memory_format=_fmt(cfg))
    wald = wald_check(h, sensor, lambda: backbone.map(fd + tailor.delta(fd), ms_d, lms_d, pan_d))
    return check, wald


def fit_finetune(
    patches: PatchBatch,
    backbone: Backbone,
    sensor: SensorSpec,
    cfg: FitConfig | None = None,
    device: torch.device | str | None = None,
) -> FitResult:
    """Fine-tune a copy of all backbone parameters with the same losses (zero-shot baseline).

    Same parameters and return as :func:`fit_tailor`, with ``backbone_state`` set; uses
    ``cfg.finetune_steps`` and ``cfg.finetune_lr`` (Adam) and the same held-out rule.
    ``backbone`` itself is not modified.
    """
    cfg = cfg or FitConfig(adapt="finetune")
    dev = torch.device(device) if device is not None else _device_of(backbone)
    t0 = time.perf_counter()
    model = copy.deepcopy(backbone).to(dev).train().requires_grad_(True)
    train, held = _split(patches, cfg)
    x = _inputs(train, model, sensor, dev)
    check, wald = None, None
    if held is not None:
        h = held.to(dev)
        lms_h = upsample(h.ms, sensor.ratio, model.upsampler)
        check = holdout_check(h, sensor, lambda: model(h.ms, lms_h, h.pan))
        if check is not None and cfg.guard == "wald":
            ms_hd, pan_hd = degrade_inputs(h.ms, h.pan, sensor)
            lms_hd = upsample(ms_hd, sensor.ratio, model.upsampler)
            wald = wald_check(h, sensor, lambda: model(ms_hd, lms_hd, pan_hd))
    t_feat = time.perf_counter() - t0

    def forward(need_d: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        out = model(x.ms, x.lms, x.pan)
        out_d = model(x.ms_d, x.lms_d, x.pan_d) if need_d else None
        return out, out_d, None

    objective = _objective(x, sensor, cfg.weights, forward, cfg.fused)
    params = [p for p in model.parameters() if p.requires_grad]
    track = _optimise(params, objective, cfg.finetune_steps, cfg, cfg.finetune_lr, check, wald)
    n_held = 0 if held is None or check is None else len(held)
    return _result(
        "finetune", track, cfg.finetune_steps, t0, t_feat, n_held, backbone_state=_state(model)
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
    x = _inputs(_split(patches, cfg)[0], backbone, sensor, dev)

    def forward(need_d: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        out_d = backbone(x.ms_d, x.lms_d, x.pan_d) if need_d else None
        return backbone(x.ms, x.lms, x.pan), out_d, None

    with torch.no_grad():
        losses = _objective(x, sensor, cfg.weights, forward, cfg.fused)()[1]
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
    "augment_patches",
    "evaluate",
    "fit_finetune",
    "fit_tailor",
]
