"""The reduced-resolution self-check of the held-out patches and the ``"wald"`` guard of a fit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.fit import FitConfig, fit_tailor
from pipeline.fit_holdout import WaldScore
from pipeline.fit_stop import _optimise, _result
from pipeline.quality import reduced_resolution
from pipeline.sampling import PatchBatch
from tests.test_fit_holdout import SENSOR, _backbone, patches

pytestmark = pytest.mark.usefixtures("one_torch_thread")
__all__ = ["patches"]  # the module-scoped held-out patches fixture of test_fit_holdout


def test_wald_score_equals_the_reduced_resolution_indices() -> None:
    """One patch: ERGAS and SAM as :func:`pipeline.quality.reduced_resolution` grades them."""
    g = torch.Generator().manual_seed(1)
    ms = 0.2 + 0.5 * torch.rand(1, 4, 16, 16, generator=g, dtype=torch.float64)
    out = (ms + 0.05 * torch.randn(1, 4, 16, 16, generator=g, dtype=torch.float64)).clamp(0, 1)
    ergas, sam = WaldScore(ms, 4)(out)
    ref = reduced_resolution(out[0].numpy() * 2047, ms[0].numpy() * 2047, SENSOR)
    assert ergas == pytest.approx(ref["ergas"], rel=1e-6)
    assert sam == pytest.approx(ref["sam"], rel=1e-6)
    assert WaldScore(ms, 4)(ms) == (pytest.approx(0.0), pytest.approx(0.0, abs=1e-5))


def test_wald_score_ignores_invalid_pixels() -> None:
    ms = torch.full((1, 3, 8, 8), 0.5, dtype=torch.float64)
    out = ms.clone()
    out[..., :2] = 0.9  # wrong only where the mask says no-data
    valid = torch.ones(1, 1, 8, 8)
    valid[..., :2] = 0
    assert WaldScore(ms, 4, valid)(out) == (pytest.approx(0.0), pytest.approx(0.0, abs=1e-5))
    assert WaldScore(ms, 4)(out)[0] > 5.0


def _toy(guard: str, tol: float = 0.0):  # type: ignore[no-untyped-def]
    """One parameter walked from 0 to 1 by the loss ``(x - 1)^2``; held-out HQNR rises with
    ``x`` all the way, the self-check's ERGAS is best at ``x = 0.3`` and worse than at the start
    beyond ``x = 0.6`` (the drift of a spatial term that overfits), SAM flat."""
    x = torch.nn.Parameter(torch.zeros(()))

    def objective() -> tuple[torch.Tensor, dict[str, float]]:
        loss = (x - 1.0) ** 2
        return loss, {"total": float(loss.detach())}

    def hqnr() -> float:
        return 0.8 + 0.1 * float(x.detach())

    def wald() -> tuple[float, float]:
        return 3.0 + 10.0 * (float(x.detach()) - 0.3) ** 2, 4.0

    cfg = FitConfig(steps=40, lr=0.02, check_every=5, check_patience=100, patience=100)
    cfg = dataclasses.replace(cfg, guard=guard, wald_tol=tol, min_delta=0.0)
    track = _optimise(
        [x], objective, cfg.steps, cfg, cfg.lr, hqnr, wald if guard == "wald" else None
    )
    return track, float(x.detach())


def test_wald_guard_replaces_a_kept_state_that_loses_the_self_check() -> None:
    t_plain, x_plain = _toy("hqnr")
    assert t_plain.kept_step >= 35 and x_plain > 0.6 and t_plain.guard == ""  # loss keeps late
    t, x = _toy("wald")
    assert t.history == t_plain.history  # the guard only chooses; the optimisation is the same
    e0 = t.wald[0][0]
    assert t.guard == "wald" and 0 < t.kept_step < t_plain.kept_step
    assert 3.0 + 10.0 * (x - 0.3) ** 2 <= e0  # the restored parameter passes the self-check
    assert t.wald[t.kept_step][0] <= e0
    checked = dict(t.checks)
    passing = [s for s in t.wald if s > 0 and t.wald[s][0] <= e0]
    assert checked[t.kept_step] == max(checked[s] for s in passing)  # best HQNR that passes
    t_loose, x_loose = _toy("wald", tol=100.0)  # a slack that lets everything pass
    assert t_loose.guard == "" and x_loose == x_plain


def test_wald_guard_falls_back_to_the_start_when_no_checked_state_passes() -> None:
    x = torch.nn.Parameter(torch.zeros(()))

    def objective() -> tuple[torch.Tensor, dict[str, float]]:
        loss = (x - 1.0) ** 2
        return loss, {"total": float(loss.detach())}

    cfg = FitConfig(steps=10, lr=0.05, check_every=5, patience=100, guard="wald")
    t = _optimise(
        [x], objective, 10, cfg, cfg.lr, lambda: float(x.detach()), lambda: (float(x.detach()), 1.0)
    )
    assert t.guard == "identity" and t.kept_step == 0 and float(x.detach()) == 0.0
    res = _result("tailor", t, 10, 0.0, 0.0, 2)
    assert res.fallback == "identity" and [s for s, _, _ in res.holdout["wald"]] == [0, 5, 9, 10]


def test_a_real_fit_with_the_wald_guard_keeps_a_passing_state(patches: PatchBatch) -> None:
    res = fit_tailor(patches, _backbone(), SENSOR, FitConfig(steps=10, guard="wald"))
    rows = {int(s): (e, a) for s, e, a in res.holdout["wald"]}
    assert set(rows) == {s for s, _ in res.holdout["checks"]}
    (e, a), (e0, a0) = rows[res.kept_step], rows[0]
    assert e <= e0 and a <= a0 and res.holdout["kept"] >= res.holdout["initial"]


def test_hqnr_guard_has_no_self_check_and_bad_configs_are_refused(patches: PatchBatch) -> None:
    res = fit_tailor(patches, _backbone(), SENSOR, FitConfig(steps=5, check_every=5))
    assert "wald" not in res.holdout and res.holdout["patches"] == 2
    with pytest.raises(ConfigError):
        FitConfig(guard="ergas")
    with pytest.raises(ConfigError):
        FitConfig(wald_tol=-0.1)
    assert np.isfinite(res.holdout["initial"])
