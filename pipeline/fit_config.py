"""Configuration and result of a scene fit (:mod:`pipeline.fit`): :class:`FitConfig`, :class:`FitResult`."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch

from .backbones import Backbone
from .errors import ConfigError
from .losses import LossWeights
from .tailor import FeatureTailor, TailoredModel

ADAPT_MODES = ("none", "tailor", "finetune")
SELECT_RULES = ("loss", "holdout")
GUARDS = ("hqnr", "wald")
AUGMENTS = {"none": (0,), "rot180": (0, 3), "flips": (0, 1, 2, 3), "d4": tuple(range(8))}
"""Fit-patch augmentations: the elements of the dihedral group (:func:`pipeline.tta.transform`)
each fit patch is also fitted under (``0``: the patch as sampled)."""


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
    check_every
        With held-out patches (:attr:`pipeline.sampling.SampleConfig.holdout`), score the
        toolbox HQNR of the current state on them every this many steps (and before the first
        step); the best-scoring state is kept (the starting state included: a fit that ends
        worse than the pretrained network on its held-out patches keeps the pretrained one).
        ``0``: no held-out check (the lowest training total is kept).
    check_patience
        Stop after this many held-out checks without a better score.
    select
        Which state a fit keeps: ``"loss"`` (the lowest training total; with held-out patches,
        replaced by the starting state if it scores a lower held-out HQNR) or ``"holdout"``
        (the best held-out HQNR among the checked states).
    guard
        What a kept state must not lose against the starting state on the held-out patches:
        ``"hqnr"`` (toolbox HQNR) or ``"wald"`` (HQNR, and also ERGAS and SAM of the
        reduced-resolution self-check, :class:`pipeline.fit_holdout.WaldScore`, within
        ``wald_tol``). A kept state that fails is replaced by the checked state of best HQNR
        that passes, else by the starting state.
    wald_tol
        Relative slack of the ``"wald"`` guard (``0.0``: not worse than the start at all).
    fused
        ``True`` (default): each step evaluates the losses through
        :class:`pipeline.fit_objective.FitObjective` (constants precomputed, the degradation and
        the UQI windows as matrix products) on channels-last cached features; ``False``: the
        plain functions of :mod:`pipeline.losses` on contiguous features, the reference the
        fused path is tested against (same values to float rounding, about 1.8x slower).
    augment
        The fit patches are also fitted under these elements of :data:`AUGMENTS`: ``"rot180"``
        (default: each patch also turned by 180 degrees, 2x the per-step cost; the best
        cross-sensor label, ``benchmarks/results/cross_sensor.md``), ``"none"``, ``"flips"``
        (4x), ``"d4"`` (8x). Held-out patches are scored as sampled; ``finetune`` ignores it.
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
    check_every: int = 5
    check_patience: int = 4
    select: str = "loss"
    guard: str = "hqnr"
    wald_tol: float = 0.0
    fused: bool = True
    augment: str = "rot180"

    def __post_init__(self) -> None:
        if self.adapt not in ADAPT_MODES:
            raise ConfigError("Unknown adaptation mode.", expected=ADAPT_MODES, got=self.adapt)
        if self.steps < 0 or self.finetune_steps < 0:
            raise ConfigError(
                "Fit step budgets (--steps; finetune_steps) must be >= 0.",
                expected="steps >= 0 and finetune_steps >= 0",
                got={"steps": self.steps, "finetune_steps": self.finetune_steps},
                fix="pass e.g. --steps 60 (the default), or --adapt none for no fit.",
            )
        if self.lr <= 0 or self.finetune_lr <= 0:
            raise ConfigError("Learning rates must be > 0.", got=(self.lr, self.finetune_lr))
        if self.patience < 1:
            raise ConfigError("patience must be >= 1.", got=self.patience)
        if self.check_every < 0 or self.check_patience < 1:
            raise ConfigError(
                "Need check_every >= 0 and check_patience >= 1.",
                got=(self.check_every, self.check_patience),
            )
        if self.select not in SELECT_RULES:
            raise ConfigError("Unknown select rule.", expected=SELECT_RULES, got=self.select)
        if self.guard not in GUARDS:
            raise ConfigError("Unknown guard.", expected=GUARDS, got=self.guard)
        if self.wald_tol < 0:
            raise ConfigError("wald_tol must be >= 0.", got=self.wald_tol)
        if self.augment not in AUGMENTS:
            raise ConfigError(
                "Unknown fit-patch augmentation (augment).",
                expected=tuple(AUGMENTS),
                got=self.augment,
                fix='use augment="rot180" (default), "none", "flips" or "d4".',
            )
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
        ``min_delta`` in ``patience`` steps), the held-out rule (no better held-out HQNR in
        ``check_patience`` checks), or ``""`` (no fit).
    kept_step
        Updates applied to the kept state (0: the starting state).
    fallback
        ``"identity"`` when the held-out check kept the starting state although steps ran (the
        fit did not beat the pretrained network on its held-out patches); ``"wald"`` when the
        ``"wald"`` guard replaced the kept state by an earlier checked one; else ``""``.
    holdout
        Held-out toolbox HQNR ``{"patches", "initial", "kept", "checks": [[step, hqnr]...]}``,
        with the ``"wald"`` guard also ``"wald": [[step, ERGAS, SAM]...]`` (empty without
        held-out patches).
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
    kept_step: int = 0
    fallback: str = ""
    holdout: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary (no tensors), e.g. for ``pantailor run --json``."""
        return {
            "adapt": self.adapt,
            "steps": self.steps,
            "step_budget": self.step_budget,
            "stop_rule": self.stop_rule,
            "kept_step": self.kept_step,
            "fallback": self.fallback,
            "holdout": self.holdout,
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


__all__ = ["ADAPT_MODES", "AUGMENTS", "GUARDS", "FitConfig", "FitResult"]
