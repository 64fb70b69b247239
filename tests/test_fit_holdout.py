"""Held-out toolbox HQNR: equal to the toolbox's; the stopping rule and the identity fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.backbones import build, upsample
from pipeline.fit import FitConfig, fit_finetune, fit_tailor
from pipeline.fit_holdout import patch_hqnr
from pipeline.losses import LossWeights
from pipeline.quality.toolbox_fr import toolbox_numpy
from pipeline.sampling import PatchBatch, SampleConfig, sample_patches
from pipeline.sensors import get_sensor
from pipeline.synthetic import make_scene

SENSOR = get_sensor("ge1")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def patches() -> PatchBatch:
    s = make_scene((128, 128), SENSOR, seed=3)
    cfg = SampleConfig(patch=64, fraction=0.5, min_patches=2, max_patches=2, holdout=2)
    return sample_patches((s.pan, s.ms), cfg, 0, ratio=4, dn_max=SENSOR.dn_max)


def _backbone():  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return build("fusionnet", 4).eval().requires_grad_(False)


def _held_out(model, held: PatchBatch) -> torch.Tensor:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        return model(held.ms, upsample(held.ms, 4, model.upsampler), held.pan)


def test_patch_hqnr_equals_the_toolbox_hqnr(patches: PatchBatch) -> None:
    _, held = patches.split()
    assert held is not None and len(held) == 2
    out = _held_out(_backbone(), held).clamp(0, 1)
    got = patch_hqnr(out, held.ms, held.pan, SENSOR, SENSOR.dn_max)
    dn = SENSOR.dn_max
    for n in range(2):
        f, m = out[n].double().numpy() * dn, held.ms[n].double().numpy() * dn
        ref = toolbox_numpy(f, m, held.pan[n, 0].double().numpy() * dn, SENSOR, 32, 0)
        assert float(got[n]) == pytest.approx(ref["hqnr"], abs=1e-6)


def test_a_fit_that_cannot_help_keeps_the_identity(patches: PatchBatch) -> None:
    """Losses that reward copying PAN into every band: the training loss falls, HQNR cannot rise."""
    bb = _backbone()
    w = LossWeights(spectral=0.0, angle=0.0, consistency=0.0, spatial=1.0, spatial_target="pan")
    res = fit_tailor(patches, bb, SENSOR, FitConfig(steps=20, lr=1e-2, check_every=5, weights=w))
    assert res.history[-1] < 0.9 * res.history[0]  # the loss alone would keep a late step
    assert res.kept_step == 0 and res.fallback == "identity"
    h = res.holdout
    assert h["patches"] == 2 and h["kept"] == h["initial"] == pytest.approx(h["checks"][0][1])
    assert all(v < h["initial"] for _, v in h["checks"][1:])
    _, held = patches.split()
    assert held is not None
    assert torch.equal(_held_out(res.model(bb), held), _held_out(bb, held))
    s = res.summary()
    assert s["fallback"] == "identity" and s["kept_step"] == 0


def test_held_out_rule_keeps_the_best_checked_state_and_stops(patches: PatchBatch) -> None:
    bb = _backbone()
    cfg = FitConfig(
        steps=40, lr=1e-2, check_every=2, check_patience=2, patience=100, select="holdout"
    )
    res = fit_tailor(patches, bb, SENSOR, cfg)
    checks = res.holdout["checks"]
    best_step, best = max(checks, key=lambda c: c[1])
    assert res.kept_step == best_step and res.holdout["kept"] == pytest.approx(best, abs=1e-6)
    _, held = patches.split()
    assert held is not None
    again = patch_hqnr(_held_out(res.model(bb), held), held.ms, held.pan, SENSOR, SENSOR.dn_max)
    assert float(again.mean()) == pytest.approx(best, abs=1e-5)  # recomputed from the model
    if res.steps < 40:  # stopped by the held-out rule: 2 checks without gain after the best
        assert res.stop_rule.startswith("held-out HQNR")
        assert checks[-1][0] - best_step == 4
    assert res.steps == len(res.history)


def test_no_check_fits_on_every_patch_and_finetune_uses_the_rule(patches: PatchBatch) -> None:
    bb = _backbone()
    a = fit_tailor(patches, bb, SENSOR, FitConfig(steps=3, check_every=0))
    assert a.holdout == {} and a.fallback == ""
    b = fit_finetune(
        patches, bb, SENSOR, FitConfig(adapt="finetune", finetune_steps=4, check_every=2)
    )
    steps = [c[0] for c in b.holdout["checks"]]
    assert {0, 2, 4} <= set(steps) <= {0, 1, 2, 3, 4} and b.kept_step in steps


def test_unfit_patch_sets_have_no_check() -> None:
    s = make_scene((64, 64), SENSOR, seed=1)
    p = sample_patches((s.pan, s.ms), SampleConfig(patch=64), 0, ratio=4, dn_max=SENSOR.dn_max)
    assert p.holdout == 0 and p.split()[1] is None
    res = fit_tailor(p, _backbone(), SENSOR, FitConfig(steps=2))
    assert res.holdout == {} and res.kept_step in (0, 1)
    assert np.isfinite(res.losses["total"])
