"""The reduced-resolution term in ERGAS form (pipeline.losses_rr) and its hook into the fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import pipeline.fit_objective as fit_objective
from pipeline.backbones import build, upsample
from pipeline.errors import ConfigError
from pipeline.fit import FitConfig, fit_tailor
from pipeline.fit_objective import FitObjective
from pipeline.losses import LossWeights, degrade_inputs
from pipeline.losses_rr import needs_degraded, rr_loss
from pipeline.quality import ergas
from pipeline.sampling import PatchBatch, SampleConfig, sample_patches
from pipeline.sensors import get_sensor
from pipeline.synthetic import make_scene

SENSOR = get_sensor("ge1")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def patches() -> PatchBatch:
    s = make_scene((128, 128), SENSOR, seed=3)
    cfg = SampleConfig(patch=64, fraction=1.0, min_patches=3, max_patches=3, holdout=0)
    return sample_patches((s.pan, s.ms), cfg, 0, ratio=4, dn_max=SENSOR.dn_max)


def test_rr_loss_is_the_ergas_of_the_pair_over_ratio() -> None:
    """One patch: the term is ERGAS (pipeline.quality, the grading code) x ratio / 100."""
    g = torch.Generator().manual_seed(0)
    ms = 0.05 + 0.4 * torch.rand(1, 4, 16, 16, generator=g, dtype=torch.float64)
    ms[:, 3] *= 0.2  # a dark band: ERGAS weighs its relative error as much as a bright one's
    out = ms + 0.01 * torch.randn(1, 4, 16, 16, generator=g, dtype=torch.float64)
    want = ergas(out[0].numpy() * 2047, ms[0].numpy() * 2047, 4) * 4 / 100
    assert float(rr_loss(out, ms)) == pytest.approx(want, rel=1e-6)
    assert float(rr_loss(ms, ms)) < 1e-5


def test_rr_loss_pools_valid_pixels_only() -> None:
    ms = torch.full((2, 3, 8, 8), 0.4, dtype=torch.float64)
    out = ms.clone()
    out[0, :, :, :3] = 0.9  # wrong only where the mask says no-data
    valid = torch.ones(2, 1, 8, 8, dtype=torch.bool)
    valid[0, :, :, :3] = False
    assert float(rr_loss(out, ms, valid)) < 1e-5
    assert float(rr_loss(out, ms)) > 0.3


def test_weight_zero_never_evaluates_the_term(patches: PatchBatch, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """rr = 0 (the default): the fit is today's, the term is not even computed."""

    def boom(*a: object, **k: object) -> torch.Tensor:
        raise AssertionError("rr_loss evaluated at weight 0")

    monkeypatch.setattr(fit_objective, "rr_loss", boom)
    torch.manual_seed(0)
    bb = build("fusionnet", 4).eval().requires_grad_(False)
    for fused in (True, False):
        res = fit_tailor(patches, bb, SENSOR, FitConfig(steps=3, check_every=0, fused=fused))
        assert "rr" not in res.losses and "consistency" in res.losses
    assert LossWeights() == LossWeights(rr=0.0)
    assert not needs_degraded(LossWeights(consistency=0.0))
    assert needs_degraded(LossWeights(consistency=0.0, rr=0.5))


def _tailor_grad(p: PatchBatch, w: LossWeights, fused: bool) -> tuple[float, list[torch.Tensor]]:
    """The ``rr`` term of a fresh tailor whose last layer is set to small random values,
    and its gradient with respect to every tailor parameter."""
    from pipeline.fit import _cached_features, _inputs, _new_tailor, _tailor_forward

    torch.manual_seed(0)
    bb = build("fusionnet", 4).eval().requires_grad_(False)
    cfg = FitConfig(weights=w, fused=fused)
    x = _inputs(p, bb, SENSOR, torch.device("cpu"))
    feats, feats_d = _cached_features(bb, x, cfg)
    tailor = _new_tailor(bb, cfg, torch.device("cpu"))
    with torch.no_grad():
        for q in tailor.parameters():
            q.add_(0.05 * torch.randn(q.shape, generator=torch.Generator().manual_seed(1)))
    out, out_d, delta = _tailor_forward(tailor, bb, x, feats, feats_d)(True)
    obj = FitObjective(
        x.ms, x.lms, x.pan, x.pan_d, x.valid, x.valid_ms, x.upsampler, SENSOR, w, fused
    )
    term = obj.terms(out, out_d, delta)["rr"]
    grads = torch.autograd.grad(term, list(tailor.parameters()))
    return float(term.detach()), [g.detach() for g in grads]


def test_fused_and_plain_paths_agree_on_the_term_and_its_gradient(patches: PatchBatch) -> None:
    valid = torch.ones_like(patches.pan, dtype=torch.bool)
    valid[0, :, :16, :24] = False  # a no-data corner: MS pixels drop out of the pool
    p = PatchBatch(
        patches.ms, patches.pan, valid, valid[..., 2::4, 2::4].clone(), patches.keys, 4, 0
    )
    w = LossWeights(spatial=0.0, consistency=0.0, rr=1.0)
    a, ga = _tailor_grad(p, w, fused=True)
    b, gb = _tailor_grad(p, w, fused=False)
    assert a == pytest.approx(b, rel=1e-5)
    assert any(float(g.abs().max()) > 0 for g in ga)  # the term reaches the tailor
    for x, y in zip(ga, gb, strict=True):
        assert float((x - y).abs().max()) <= 1e-4 * float(y.abs().max()) + 1e-9


def test_the_term_alone_moves_the_tailor_and_lowers_itself(patches: PatchBatch) -> None:
    torch.manual_seed(0)
    bb = build("fusionnet", 4).eval().requires_grad_(False)
    w = LossWeights(spectral=0.0, angle=0.0, spatial=0.0, consistency=0.0, rr=1.0)
    res = fit_tailor(patches, bb, SENSOR, FitConfig(steps=15, lr=1e-2, check_every=0, weights=w))
    assert set(res.losses) == {"rr", "total"}
    assert res.losses["rr"] < 0.95 * res.initial_losses["rr"]
    assert res.tailor_state is not None
    last = [v for k, v in res.tailor_state.items() if k.endswith("weight")][-1]
    assert float(last.abs().max()) > 0  # zero-initialised last layer moved


@pytest.mark.parametrize("bad", [-0.5, math.nan, math.inf, "1", True])
def test_bad_rr_weights_are_rejected(bad: object) -> None:
    with pytest.raises(ConfigError, match="'rr'"):
        LossWeights(rr=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="'rr'"):
        FitConfig(weights=LossWeights(rr=bad))  # type: ignore[arg-type]


def test_rr_alone_is_an_objective() -> None:
    """All other weights 0 with rr > 0 is a valid objective; all zero is still rejected."""
    LossWeights(spectral=0.0, angle=0.0, spatial=0.0, consistency=0.0, rr=0.1)
    with pytest.raises(ConfigError):
        LossWeights(spectral=0.0, angle=0.0, spatial=0.0, consistency=0.0, rr=0.0)


def test_the_term_lowers_reduced_resolution_ergas_on_a_real_crop(data_file) -> None:  # type: ignore[no-untyped-def]
    """Wald protocol on a real GeoEye-1 crop with QuickBird weights (a cross-sensor pair): the
    fit sees only the degraded pair; the product is graded against the original MS, which no
    loss saw. With the spectral terms alone the fit has no word on the injected detail; the
    RR term (scale invariance one scale further down) lowers the graded ERGAS."""
    from pipeline.backbones import load
    from pipeline.evaluate import wald_degrade
    from pipeline.fuse import fuse
    from pipeline.scene import open_scene

    s = open_scene(data_file("vhr/grip/imgGE1.mat"), SENSOR)
    pan = np.asarray(s.pan[:512, :512], dtype=np.float64)
    ms = np.asarray(s.ms[:, :128, :128], dtype=np.float64)
    pan_rr, ms_rr = wald_degrade(pan, ms, SENSOR)
    bb = load("fusionnet", "dlpan:qb", sensor=SENSOR)
    sample = SampleConfig(patch=64, fraction=1.0, min_patches=4, max_patches=4, holdout=0)

    def graded(rr: float) -> float:
        w = LossWeights(spatial=0.0, consistency=0.0, rr=rr)
        cfg = FitConfig(steps=30, check_every=0, weights=w)
        out = fuse(pan_rr, ms_rr, SENSOR, bb, fit=cfg, sample=sample, seed=0, overlap=False)
        assert ("rr" in out.fit.losses) == (rr > 0)
        return ergas(np.asarray(out.image), ms, SENSOR.ratio)

    without, with_rr = graded(0.0), graded(1.0)
    assert with_rr < 0.85 * without  # measured 1.57 vs 2.20


def test_degraded_pair_of_a_patch_feeds_the_network(patches: PatchBatch) -> None:
    """The smallest patch SampleConfig allows (4 x ratio PAN pixels) still gives the network a
    pair it runs on: 4-px PAN, 1-px MS, and the term is finite."""
    s = make_scene((64, 64), SENSOR, seed=4)
    cfg = SampleConfig(patch=16, fraction=1.0, min_patches=2, max_patches=2, holdout=0)
    p = sample_patches((s.pan, s.ms), cfg, 0, ratio=4, dn_max=SENSOR.dn_max)
    ms_d, pan_d = degrade_inputs(p.ms, p.pan, SENSOR)
    assert ms_d.shape[-2:] == (1, 1) and pan_d.shape[-2:] == (4, 4)
    bb = build("fusionnet", 4).eval().requires_grad_(False)
    with torch.no_grad():
        out_d = bb(ms_d, upsample(ms_d, 4, bb.upsampler), pan_d)
    assert out_d.shape == p.ms.shape
    assert math.isfinite(float(rr_loss(out_d, p.ms)))
