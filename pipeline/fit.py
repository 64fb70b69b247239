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
from dataclasses import dataclass, field
from typing import Any

import torch

from .backbones import Backbone, upsample
from .errors import ConfigError
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
from .tailor import FeatureTailor, TailoredModel, TailorSpec

log = logging.getLogger(__name__)

ADAPT_MODES = ("none", "tailor", "finetune")


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    """How to adapt the network to a scene (measured defaults: ``benchmarks/results/``).

    Attributes
    ----------
    adapt
        ``"tailor"`` (default), ``"none"`` or ``"finetune"``.
    steps
        Step budget of the tailor fit.
    lr
        Learning rate of the tailor fit.
    finetune_steps, finetune_lr
        Budget and Adam learning rate of ``adapt="finetune"``.
    patience
        Stop after this many steps without a relative improvement of ``min_delta``.
    min_delta
        Relative improvement of the best total loss that counts as progress.
    width, kernel
        Tailor hidden channels and kernel size (:class:`pipeline.tailor.TailorSpec`).
    weights
        Loss weights.
    seed
        Seed of the tailor initialisation.
    ls_start
        Conjugate-gradient iterations of the least-squares start of the tailor's last layer
        (:func:`pipeline.fit_ls.ls_start`); ``0`` (default) keeps the zero start: measured on
        imgWV2 it does not hold HQNR with fewer steps (``benchmarks/fit_speed.py``).
    """

    adapt: str = "tailor"
    steps: int = 60
    lr: float = 3e-3
    finetune_steps: int = 1000
    finetune_lr: float = 1e-4
    patience: int = 10
    min_delta: float = 1e-3
    width: int = 16
    kernel: int = 3
    weights: LossWeights = field(default_factory=LossWeights)
    seed: int = 0
    ls_start: int = 0

    def __post_init__(self) -> None:
        if self.adapt not in ADAPT_MODES:
            raise ConfigError("Unknown adaptation mode.", expected=ADAPT_MODES, got=self.adapt)
        if self.steps < 0 or self.finetune_steps < 0:
            raise ConfigError("Step budgets must be >= 0.", got=(self.steps, self.finetune_steps))
        if self.lr <= 0 or self.finetune_lr <= 0:
            raise ConfigError("Learning rates must be > 0.", got=(self.lr, self.finetune_lr))
        if self.patience < 1:
            raise ConfigError("patience must be >= 1.", got=self.patience)
        if self.ls_start < 0:
            raise ConfigError("ls_start must be >= 0.", got=self.ls_start)


@dataclass(frozen=True)
class FitResult:
    """What a fit produced.

    Attributes
    ----------
    adapt
        The mode that ran.
    tailor_state
        The fitted tailor's state dict (``adapt="tailor"``), else ``None``.
    backbone_state
        The fine-tuned backbone's state dict (``adapt="finetune"``), else ``None``.
    steps
        Optimiser steps taken.
    seconds
        Wall time of the whole fit, feature caching included (s).
    feature_seconds
        Part of ``seconds`` spent preparing inputs and cached features (s).
    losses
        Loss terms (unweighted) and ``total`` (weighted) at the kept parameters.
    initial_losses
        The same before fitting (the pretrained network).
    history
        Total loss per step.
    step_budget
        Steps the fit was allowed (0: no fit ran).
    stop_rule
        Why it stopped: ``"budget"`` (all steps ran), ``"plateau"`` (no relative improvement of
        ``min_delta`` in ``patience`` steps), or ``""`` (no fit).
    """

    adapt: str
    tailor_state: dict[str, torch.Tensor] | None
    backbone_state: dict[str, torch.Tensor] | None
    steps: int
    seconds: float
    feature_seconds: float
    losses: dict[str, float]
    initial_losses: dict[str, float]
    history: list[float]
    step_budget: int = 0
    stop_rule: str = ""

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (no tensors), e.g. for ``pantailor run --json``."""
        return {
            "adapt": self.adapt,
            "steps": self.steps,
            "step_budget": self.step_budget,
            "stop_rule": self.stop_rule,
            "fit_seconds": round(self.seconds, 4),
            "feature_seconds": round(self.feature_seconds, 4),
            "losses": self.losses,
            "initial_losses": self.initial_losses,
        }

    def model(self, backbone: Backbone) -> Backbone:
        """The network to infer with: the backbone, tailored, or fine-tuned (eval, frozen)."""
        if self.tailor_state is not None:
            model: Backbone = TailoredModel(backbone, FeatureTailor.from_state(self.tailor_state))
        elif self.backbone_state is not None:
            model = copy.deepcopy(backbone)
            model.load_state_dict(self.backbone_state)
        else:
            model = backbone
        return model.eval().requires_grad_(False)


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


class _Adam:
    """Adam (Kingma & Ba 2015) in a few tensor ops.

    ``torch.optim`` imports ``torch._dynamo`` on the first optimiser built in a process, which
    costs about 3 s on this CPU, longer than a whole tailor fit (see
    ``benchmarks/results/fit_speed.md``); this has no such start-up cost.
    """

    def __init__(
        self, params: list[torch.nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999)
    ) -> None:
        self.params, self.lr, self.betas, self.eps, self.t = params, lr, betas, 1e-8, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> None:
        closure()
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1.0 - b1**self.t, 1.0 - b2**self.t
        for p, m, v in zip(self.params, self.m, self.v, strict=True):
            if p.grad is None:
                continue
            m.mul_(b1).add_(p.grad, alpha=1.0 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1.0 - b2)
            denom = (v / c2).sqrt_().add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / c1)


def _optimise(
    params: list[torch.nn.Parameter],
    objective: Callable[[], tuple[torch.Tensor, dict[str, float]]],
    budget: int,
    cfg: FitConfig,
    lr: float,
) -> tuple[dict[str, float], dict[str, float], list[float]]:
    """Run the loop, leave the best parameters in ``params``; return their losses, the initial
    losses and the history of the total."""
    opt = _Adam(params, lr=lr)
    history: list[float] = []
    best = float("inf")
    best_state = [p.detach().clone() for p in params]
    best_report: dict[str, float] = {}
    initial: dict[str, float] = {}
    since_best = 0
    for _ in range(budget):
        reports: list[dict[str, float]] = []

        def closure(reports: list[dict[str, float]] = reports) -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss, report = objective()
                loss.backward()  # type: ignore[no-untyped-call]
            reports.append(report)
            return loss

        snapshot = [p.detach().clone() for p in params]
        opt.step(closure)
        report = reports[0]
        initial = initial or report
        history.append(report["total"])
        if report["total"] < best * (1.0 - cfg.min_delta):
            best, best_state, best_report, since_best = report["total"], snapshot, report, 0
        else:
            since_best += 1
            if since_best >= cfg.patience:
                break
    with torch.no_grad():
        for p, s in zip(params, best_state, strict=True):
            p.copy_(s)
    return best_report, initial, history


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
    with torch.no_grad():  # the frozen extractor runs once, for both branches
        feats = backbone.extract(x.ms, x.lms, x.pan)
        feats_d = (
            backbone.extract(x.ms_d, x.lms_d, x.pan_d) if cfg.weights.consistency > 0 else None
        )
    t_feat = time.perf_counter() - t0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        spec = TailorSpec(channels=backbone.feat_channels, width=cfg.width, kernel=cfg.kernel)
        tailor = FeatureTailor(spec).to(dev)

    def forward(need_d: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        delta = tailor.delta(feats)
        out = backbone.map(feats + delta, x.ms, x.lms, x.pan)
        out_d = None
        if need_d and feats_d is not None:
            out_d = backbone.map(feats_d + tailor.delta(feats_d), x.ms_d, x.lms_d, x.pan_d)
        return out, out_d, delta

    objective = _objective(x, sensor, cfg.weights, forward)
    if cfg.ls_start:
        from .fit_ls import ls_start

        ls_start(tailor, backbone, x, feats, feats_d, sensor, cfg, objective)
    params = list(tailor.parameters())
    losses, initial, history = _optimise(params, objective, cfg.steps, cfg, cfg.lr)
    if not history:
        with torch.no_grad():
            losses = initial = objective()[1]
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


def _stop_rule(steps: int, budget: int, cfg: FitConfig) -> str:
    """``"budget"`` or the plateau rule that ended a fit of ``steps`` out of ``budget``."""
    if steps >= budget:
        return "budget"
    return f"plateau: no {cfg.min_delta:g} relative improvement in {cfg.patience} steps"


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
    if not history:
        with torch.no_grad():
            losses = initial = objective()[1]
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
