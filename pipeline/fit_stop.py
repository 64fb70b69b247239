"""The optimiser loop of a scene fit (:mod:`pipeline.fit`): a small Adam, the kept state, the stop rules, the result."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .fit_config import FitConfig, FitResult

log = logging.getLogger(__name__)


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
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        ps: list[torch.Tensor] = [self.params[i] for i in live]
        gs = [g for g in (p.grad for p in ps) if g is not None]
        ms, vs = [self.m[i] for i in live], [self.v[i] for i in live]
        # the per-tensor update below, one multi-tensor op each (same arithmetic, fewer calls)
        torch._foreach_mul_(ms, b1)
        torch._foreach_add_(ms, gs, alpha=1.0 - b1)
        torch._foreach_mul_(vs, b2)
        torch._foreach_addcmul_(vs, gs, gs, value=1.0 - b2)
        denom = torch._foreach_div(vs, c2)
        torch._foreach_sqrt_(denom)
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(ps, ms, denom, value=-self.lr / c1)


@dataclass
class Track:
    """What the loop kept and why it stopped.

    Attributes
    ----------
    losses, initial
        Loss terms at the kept parameters and before fitting.
    history
        Total loss per step.
    kept_step
        Updates applied to the kept parameters (0: the starting state).
    rule
        ``"budget"``, or the rule that stopped the loop early.
    checks
        ``(step, held-out score)`` of every check (empty without a held-out check).
    wald
        ``step -> (ERGAS, SAM)`` of the reduced-resolution self-check at every check (empty
        without one).
    guard
        ``""``, or what the guard did to the kept state (``"identity"``, ``"wald"``).
    """

    losses: dict[str, float] = field(default_factory=dict)
    initial: dict[str, float] = field(default_factory=dict)
    history: list[float] = field(default_factory=list)
    kept_step: int = 0
    rule: str = "budget"
    checks: list[tuple[int, float]] = field(default_factory=list)
    wald: dict[int, tuple[float, float]] = field(default_factory=dict)
    guard: str = ""


class _Keeper:
    """The best parameters seen by one score (higher is better; ``rel``: relative margin)."""

    def __init__(self, params: list[torch.nn.Parameter], rel: float = 0.0) -> None:
        self.params, self.rel = params, rel
        self.best, self.since, self.step = -math.inf, 0, 0
        self.state = [p.detach().clone() for p in params]

    def offer(self, score: float, step: int, state: list[torch.Tensor] | None = None) -> bool:
        """Keep ``state`` (default: the current parameters) if ``score`` beats the best."""
        if score > self.best + self.rel * abs(self.best) or self.best == -math.inf:
            self.best, self.since, self.step = score, 0, step
            self.state = state if state is not None else [p.detach().clone() for p in self.params]
            return True
        self.since += 1
        return False

    def restore(self) -> None:
        """Copy the kept state into the parameters."""
        with torch.no_grad():
            for p, s in zip(self.params, self.state, strict=True):
                p.copy_(s)


def _step(
    opt: _Adam, objective: Callable[[], tuple[torch.Tensor, dict[str, float]]]
) -> dict[str, float]:
    """One optimiser step; the loss terms at the parameters before it."""
    reports: list[dict[str, float]] = []

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss, report = objective()
            loss.backward()  # type: ignore[no-untyped-call]
        reports.append(report)
        return loss

    opt.step(closure)
    return reports[0]


def _optimise(
    params: list[torch.nn.Parameter],
    objective: Callable[[], tuple[torch.Tensor, dict[str, float]]],
    budget: int,
    cfg: FitConfig,
    lr: float,
    check: Callable[[], float] | None = None,
    wald: Callable[[], tuple[float, float]] | None = None,
) -> Track:
    """Run the loop and leave the kept parameters in ``params``.

    The step of the lowest training total is kept (``cfg.select == "loss"``); the loop stops on a
    plateau of ``cfg.patience`` steps. With ``check`` (a held-out score, higher is better, taken
    on the starting state and every ``cfg.check_every`` steps) the loop also stops after
    ``cfg.check_patience`` checks without a better score, ``cfg.select == "holdout"`` keeps the
    best-scoring state instead, and a kept state scoring below the start is replaced by the
    start (the identity fallback). With ``wald`` (the reduced-resolution self-check, taken with
    every check; ``cfg.guard == "wald"``) the kept state must also not lose ERGAS or SAM against
    the start (:func:`_guard`).
    """
    opt, t = _Adam(params, lr=lr), Track()
    by_loss, by_check = _Keeper(params, cfg.min_delta), _Keeper(params)
    start = [p.detach().clone() for p in params]
    reports: dict[int, dict[str, float]] = {}
    states: dict[int, list[torch.Tensor]] = {}

    def take(step: int) -> float:
        assert check is not None
        t.checks.append((step, check()))
        if wald is not None:
            t.wald[step] = wald()
            states[step] = [p.detach().clone() for p in params]
        return t.checks[-1][1]

    if check is not None:
        by_check.offer(take(0), 0)
    for step in range(1, budget + 1):
        snapshot = [p.detach().clone() for p in params]
        reports[step - 1] = _step(opt, objective)
        t.history.append(reports[step - 1]["total"])
        by_loss.offer(-t.history[-1], step - 1, snapshot)
        due = check is not None and (step % cfg.check_every == 0 or step == budget)
        if due and not by_check.offer(take(step), step) and by_check.since >= cfg.check_patience:
            t.rule = f"held-out HQNR: no gain in {cfg.check_patience} checks"
            break
        if by_loss.since >= cfg.patience:
            t.rule = f"plateau: no {cfg.min_delta:g} relative improvement in {cfg.patience} steps"
            break
    if check is not None and cfg.select == "holdout" and t.checks[-1][0] != len(t.history):
        by_check.offer(take(len(t.history)), len(t.history))
    keeper = by_check if check is not None and cfg.select == "holdout" else by_loss
    keeper.restore()
    if check is not None:
        _guard(t, keeper, check, start, wald, states, cfg.wald_tol)
    t.kept_step = keeper.step
    t.initial = reports.get(0, {})
    t.losses = reports.get(keeper.step, {})
    if not t.losses or not t.initial:
        with torch.no_grad():
            t.losses = t.losses or objective()[1]
        t.initial = t.initial or t.losses
    return t


def _guard(
    t: Track,
    keeper: _Keeper,
    check: Callable[[], float],
    start: list[torch.Tensor],
    wald: Callable[[], tuple[float, float]] | None = None,
    states: dict[int, list[torch.Tensor]] | None = None,
    tol: float = 0.0,
) -> None:
    """Score the kept state (if not yet checked) and replace it if it loses against the start.

    Without ``wald`` a kept state scoring a lower held-out HQNR than the start is replaced by the
    start. With ``wald`` it must also keep ERGAS and SAM of the self-check within ``1 + tol``
    times the start's; one that fails is replaced by the checked state (``states``) of best
    HQNR that passes, else by the start.
    """
    scored = dict(t.checks)
    if keeper.step not in scored:
        scored[keeper.step] = check()
        t.checks = sorted(scored.items())
        if wald is not None:
            t.wald[keeper.step] = wald()

    def passes(step: int) -> bool:
        if scored[step] < scored[0]:
            return False
        if wald is None:
            return True
        (e, a), (e0, a0) = t.wald[step], t.wald[0]
        return e <= e0 * (1.0 + tol) and a <= a0 * (1.0 + tol)

    if passes(keeper.step):
        return
    ok = [s for s in (states or {}) if s > 0 and passes(s)]
    if ok:
        best = max(ok, key=lambda s: (scored[s], s))
        keeper.step, keeper.state, t.guard = best, (states or {})[best], "wald"
    else:
        keeper.step, keeper.state, t.guard = 0, start, "identity"
    keeper.restore()


def _result(
    adapt: str,
    track: Track,
    budget: int,
    t0: float,
    t_feat: float,
    check_patches: int,
    **states: dict[str, torch.Tensor] | None,
) -> FitResult:
    """The :class:`FitResult` of a finished loop (``states``: tailor_state / backbone_state)."""
    seconds = time.perf_counter() - t0
    fallback = "identity" if track.checks and track.kept_step == 0 and track.history else ""
    fallback = fallback or (track.guard if track.history else "")
    holdout: dict[str, Any] = {}
    if track.checks:
        kept = dict(track.checks)[track.kept_step]
        holdout = {"patches": check_patches, "initial": track.checks[0][1], "kept": kept}
        holdout["checks"] = [[s, round(v, 6)] for s, v in track.checks]
    if track.wald:
        holdout["wald"] = [
            [s, round(e, 6), round(a, 6)] for s, (e, a) in sorted(track.wald.items())
        ]
    log.info(
        "%s fit: %d steps in %.2f s (features %.2f s), kept step %d%s (%s), %s",
        adapt,
        len(track.history),
        seconds,
        t_feat,
        track.kept_step,
        " = identity" if fallback else "",
        track.rule,
        track.losses,
    )
    return FitResult(
        adapt,
        states.get("tailor_state"),
        states.get("backbone_state"),
        len(track.history),
        seconds,
        t_feat,
        track.losses,
        track.initial,
        track.history,
        step_budget=budget,
        stop_rule=track.rule,
        kept_step=track.kept_step,
        fallback=fallback,
        holdout=holdout,
    )


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
