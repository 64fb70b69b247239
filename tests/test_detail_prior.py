"""The MTF-GLP detail prior (pipeline.losses_detail): what it measures and that a fit follows it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pipeline.backbones import build, upsample
from pipeline.classical import pansharpen
from pipeline.fit import FitConfig, fit_tailor
from pipeline.losses import LossWeights, degrade_inputs, mtf_taps
from pipeline.losses_detail import (
    DetailWeights,
    detail_loss,
    detail_setup,
    glp_target,
    glp_wins,
)
from pipeline.sampling import PatchBatch, SampleConfig, sample_patches
from pipeline.sensors import get_sensor
from pipeline.synthetic import make_scene

SENSOR = get_sensor("ge1")
TAPS = mtf_taps(SENSOR.mtf_ms, SENSOR.ratio)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def patches() -> PatchBatch:
    s = make_scene((128, 128), SENSOR, seed=5)
    cfg = SampleConfig(patch=64, fraction=0.5, min_patches=2, max_patches=2, holdout=0)
    return sample_patches((s.pan, s.ms), cfg, 0, ratio=4, dn_max=SENSOR.dn_max)


def test_glp_target_is_each_patch_mtf_glp_product(patches: PatchBatch) -> None:
    got = glp_target(patches.ms, patches.pan, SENSOR)
    assert got.shape == (len(patches), 4, 64, 64) and got.dtype == torch.float32
    n = len(patches) - 1  # the last patch: the loop must not reuse the first one's inputs
    want = pansharpen("mtf-glp", patches.ms[n].double().numpy(), patches.pan[n, 0].numpy(), SENSOR)
    np.testing.assert_allclose(got[n].numpy(), want, atol=1e-6)
    assert not torch.allclose(got[0], got[n])


def test_detail_loss_sees_high_frequencies_not_low_ones(patches: PatchBatch) -> None:
    target = glp_target(patches.ms, patches.pan, SENSOR)
    assert float(detail_loss(target, target, TAPS, None)) == 0.0
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    smooth = 0.05 + 0.02 * torch.sin(2 * torch.pi * yy / 64)  # far below the MS Nyquist
    fine = 0.02 * ((yy + xx) % 2 * 2 - 1)  # the PAN Nyquist checkerboard
    low = float(detail_loss(target + smooth, target, TAPS, None))
    high = float(detail_loss(target + fine, target, TAPS, None))
    assert high > 0.015 and low < 0.05 * high
    # a validity mask excludes the pixels it marks
    valid = torch.zeros(len(patches), 1, 64, 64, dtype=torch.bool)
    assert float(detail_loss(target + fine, target, TAPS, valid)) == 0.0


def test_a_fit_with_the_prior_moves_its_details_towards_mtf_glp(patches: PatchBatch) -> None:
    torch.manual_seed(0)
    bb = build("fusionnet", 4).eval().requires_grad_(False)
    target = glp_target(patches.ms, patches.pan, SENSOR)

    def gap(detail: float) -> float:
        w = DetailWeights(
            spectral=0.1, angle=0.0, spatial=0.0, consistency=0.0, detail=detail, detail_gate=False
        )
        cfg = FitConfig(steps=30, lr=1e-2, check_every=0, weights=w)
        res = fit_tailor(patches, bb, SENSOR, cfg)
        assert ("detail" in res.losses) == (detail > 0)
        with torch.no_grad():
            out = res.model(bb)(patches.ms, upsample(patches.ms, 4, bb.upsampler), patches.pan)
        return float(detail_loss(out, target, TAPS, None))

    without, with_prior = gap(0.0), gap(1.0)
    assert with_prior < 0.7 * without  # measured 0.0081 vs 0.0142


def test_the_gate_opens_only_where_mtf_glp_beats_the_network(patches: PatchBatch) -> None:
    """One scale down, a network that returns the observed MS exactly beats MTF-GLP (gate
    closed: no term); one that returns a flat grey does not (gate open)."""
    ms_d, pan_d = degrade_inputs(patches.ms, patches.pan, SENSOR)
    x = SimpleNamespace(
        ms=patches.ms, pan=patches.pan, valid=None, valid_ms=None, ms_d=ms_d, pan_d=pan_d
    )
    perfect = patches.ms.clone()
    grey = torch.full_like(perfect, float(patches.ms.mean()))
    w = DetailWeights(detail=1.0)
    assert detail_setup(x, SENSOR, w, lambda: perfect) == (w, None)
    term = detail_setup(x, SENSOR, w, lambda: grey)[1]
    assert term is not None
    ungated = DetailWeights(detail=1.0, detail_gate=False)
    assert detail_setup(x, SENSOR, ungated, lambda: perfect)[1] is not None
    assert detail_setup(x, SENSOR, DetailWeights(), lambda: grey)[1] is None
    target = glp_target(patches.ms, patches.pan, SENSOR)
    assert float(term(target)) == 0.0 and float(term(target + 0.1 * torch.rand_like(target))) > 0


def test_setup_lowers_the_spatial_weight_only_where_the_network_wins(patches: PatchBatch) -> None:
    ms_d, pan_d = degrade_inputs(patches.ms, patches.pan, SENSOR)
    x = SimpleNamespace(
        ms=patches.ms, pan=patches.pan, valid=None, valid_ms=None, ms_d=ms_d, pan_d=pan_d
    )
    perfect = patches.ms.clone()
    grey = torch.full_like(perfect, float(patches.ms.mean()))
    w = DetailWeights(detail=3.0, spatial=0.2, spatial_matched=0.05)
    matched, term = detail_setup(x, SENSOR, w, lambda: perfect)
    assert matched.spatial == 0.05 and term is None
    crossed, term = detail_setup(x, SENSOR, w, lambda: grey)
    assert crossed == w and term is not None
    plain = LossWeights()
    assert detail_setup(x, SENSOR, plain, lambda: perfect) == (plain, None)


def test_the_margin_asks_mtf_glp_to_win_by_that_much(patches: PatchBatch) -> None:
    """A network whose error one scale down is MTF-GLP's / 0.9: MTF-GLP wins by 10 %."""
    ms_d, pan_d = degrade_inputs(patches.ms, patches.pan, SENSOR)
    x = SimpleNamespace(
        ms=patches.ms, pan=patches.pan, valid=None, valid_ms=None, ms_d=ms_d, pan_d=pan_d
    )
    glp_d = glp_target(ms_d, pan_d, SENSOR)
    base = patches.ms + (glp_d - patches.ms) / 0.9
    assert glp_wins(x, SENSOR, base, 1.0) and glp_wins(x, SENSOR, base, 0.95)
    assert not glp_wins(x, SENSOR, base, 0.85)
    w = DetailWeights(detail=3.0, detail_margin=0.85)
    assert detail_setup(x, SENSOR, w, lambda: base)[1] is None
