"""The optimiser loop of a scene fit (:mod:`pipeline.fit`): a small Adam, the plateau stop, the stop rule."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .fit_config import FitConfig


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
        if not history:  # no step (budget 0): the losses as they are
            best_report = initial = objective()[1]
    return best_report, initial, history


def _stop_rule(steps: int, budget: int, cfg: FitConfig) -> str:
    """``"budget"`` or the plateau rule that ended a fit of ``steps`` out of ``budget``."""
    if steps >= budget:
        return "budget"
    return f"plateau: no {cfg.min_delta:g} relative improvement in {cfg.patience} steps"
