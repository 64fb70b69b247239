"""Losses: values on constructed cases, masking, and the strided degradation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.losses import (
    ConsistencyLoss,
    LossWeights,
    SpatialLoss,
    SpectralLoss,
    WindowStats,
    angle_loss,
    box_mean,
    consistency_loss,
    degrade,
    degrade_inputs,
    local_correlation,
    lowres_correlation,
    masked_mean,
    mtf_taps,
    spatial_loss,
    spatial_match_loss,
    spectral_chord,
    spectral_loss,
    tailor_penalty,
)
from pipeline.mtf import decimate, degrade_torch, filter_torch
from pipeline.sensors import get_sensor


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("ratio", [2, 4])
def test_strided_degrade_equals_filter_then_decimate(ratio: int) -> None:
    x = _rand(2, 3, 12 * ratio, 7 * ratio)
    taps = mtf_taps([0.3, 0.25, 0.35], ratio).double()
    torch.testing.assert_close(degrade(x, taps, ratio), decimate(filter_torch(x, taps), ratio))
    shared = mtf_taps([0.15], ratio).double()
    torch.testing.assert_close(
        degrade(x, shared, ratio), decimate(filter_torch(x, shared.expand(3, -1)), ratio)
    )


def test_degrade_rejects_indivisible_sizes() -> None:
    with pytest.raises(ConfigError):
        degrade(_rand(1, 1, 10, 12), mtf_taps([0.3], 4), 4)


def test_degrade_inputs_shapes_and_constants() -> None:
    s = get_sensor("wv3")
    ms = torch.full((2, 8, 16, 12), 0.25)
    pan = torch.full((2, 1, 64, 48), 0.5)
    ms_d, pan_d = degrade_inputs(ms, pan, s)
    assert ms_d.shape == (2, 8, 4, 3) and pan_d.shape == (2, 1, 16, 12)
    torch.testing.assert_close(ms_d, torch.full_like(ms_d, 0.25))  # taps sum to 1
    torch.testing.assert_close(pan_d, torch.full_like(pan_d, 0.5))


def test_spectral_loss_zero_on_consistent_pair_and_bias_measured() -> None:
    s = get_sensor("ge1")
    out = _rand(1, 4, 32, 32)
    taps = mtf_taps(s.mtf_ms, 4).double()
    ms = degrade_torch(out, taps, 4)
    assert float(spectral_loss(out, ms, taps, 4)) < 1e-12
    assert float(spectral_loss(out, ms + 0.05, taps, 4)) == pytest.approx(0.05)
    mod = SpectralLoss(s).double()
    assert float(mod(out, ms - 0.1)) == pytest.approx(0.1)


def test_masking_ignores_invalid_pixels() -> None:
    x = torch.zeros(1, 2, 4, 4, dtype=torch.float64)
    x[..., :2, :] = 1000.0  # garbage under the mask
    mask = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    mask[..., :2, :] = False
    assert float(masked_mean(x, mask)) == 0.0
    assert float(masked_mean(x, None)) == 500.0
    assert float(masked_mean(x, torch.zeros_like(mask))) == 0.0  # nothing valid: 0, no NaN
    ms = torch.zeros(1, 2, 4, 4, dtype=torch.float64)
    assert float(consistency_loss(x, ms, mask)) == 0.0
    assert float(ConsistencyLoss()(x + 0.5, ms + 0.25, mask)) == pytest.approx(0.25)


def test_local_correlation_of_affine_and_negated_pan() -> None:
    pan = _rand(1, 1, 20, 20, seed=3)
    bands = torch.cat([3 * pan + 1, -2 * pan + 0.5], dim=1)
    lcc = local_correlation(bands, pan, 5)
    assert lcc.shape == (1, 2, 16, 16)
    ones = torch.ones(1, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(lcc[:, 0], ones, atol=1e-5, rtol=0)  # EPS in the denominator
    torch.testing.assert_close(lcc[:, 1], -ones, atol=1e-5, rtol=0)
    assert float(spatial_loss(3 * pan + 1, pan, 5)) == pytest.approx(0.0, abs=1e-5)
    assert float(SpatialLoss(5)(-pan, pan)) == pytest.approx(2.0, abs=1e-5)


def test_local_correlation_matches_numpy_corrcoef() -> None:
    a, b = _rand(1, 1, 9, 9, seed=1), _rand(1, 1, 9, 9, seed=2)
    lcc = local_correlation(a, b, 6)
    for y, x in [(0, 0), (3, 2), (2, 3)]:
        wa = a[0, 0, y : y + 6, x : x + 6].numpy().ravel()
        wb = b[0, 0, y : y + 6, x : x + 6].numpy().ravel()
        assert float(lcc[0, 0, y, x]) == pytest.approx(np.corrcoef(wa, wb)[0, 1], abs=1e-6)


def test_spatial_loss_mask_drops_windows_touching_invalid_pixels() -> None:
    pan = _rand(1, 1, 16, 16, seed=4)
    out = pan.clone()
    out[..., :4, :] = _rand(1, 1, 4, 16, seed=5)  # uncorrelated rows...
    mask = torch.ones(1, 1, 16, 16, dtype=torch.bool)
    mask[..., :4, :] = False  # ...are masked
    assert float(spatial_loss(out, pan, 4, mask)) == pytest.approx(0.0, abs=1e-5)
    assert float(spatial_loss(out, pan, 4)) > 0.05


def test_tailor_penalty_and_weights() -> None:
    assert float(tailor_penalty(torch.full((1, 2, 3, 3), 0.5))) == pytest.approx(0.25)
    with pytest.raises(ConfigError):
        LossWeights(spectral=-1.0)
    with pytest.raises(ConfigError):
        LossWeights(spectral=0.0, angle=0.0, spatial=0.0, consistency=0.0, penalty=1.0)
    assert LossWeights().spatial_target == "toolbox" and LossWeights().spatial > 0
    with pytest.raises(ConfigError):
        LossWeights(spatial_target="nope")
    with pytest.raises(ConfigError):
        LossWeights(q_block=1)


def test_box_mean_and_precomputed_pan_statistics() -> None:
    x = _rand(2, 3, 11, 9, seed=6)
    torch.testing.assert_close(box_mean(x, 4), torch.nn.functional.avg_pool2d(x, 4, stride=1))
    pan = _rand(2, 1, 11, 9, seed=7)
    stats = WindowStats.of(pan, 4)
    torch.testing.assert_close(local_correlation(x, stats), local_correlation(x, pan, 4))
    assert float(spatial_loss(x, stats, window=99)) == pytest.approx(float(spatial_loss(x, pan, 4)))


def test_spectral_chord_is_scale_free_and_tracks_the_angle() -> None:
    b = _rand(2, 4, 5, 5, seed=3) + 0.1
    assert float(spectral_chord(b, b).max()) < 1e-6
    assert float(spectral_chord(3.0 * b, b).max()) < 1e-6  # brightness alone: no angle
    # two bands: a spectrum rotated by a known angle, e.g. 90 degrees -> sqrt(2), 60 -> 1
    e1 = torch.tensor([1.0, 0.0], dtype=torch.float64).reshape(1, 2, 1, 1)
    for deg, chord in ((90.0, 2**0.5), (60.0, 1.0), (180.0, 2.0)):
        t = np.deg2rad(deg)
        rot = torch.tensor([np.cos(t), np.sin(t)], dtype=torch.float64).reshape(1, 2, 1, 1)
        assert float(spectral_chord(5.0 * rot, e1)) == pytest.approx(chord, abs=1e-6)
    z = torch.zeros(1, 2, 1, 1, dtype=torch.float64)
    assert float(spectral_chord(z, e1)) == pytest.approx(1.0)  # a dark pixel: finite


def test_angle_loss_ignores_gains_that_the_l1_term_sees() -> None:
    s = get_sensor("ge1")
    out = _rand(1, 4, 32, 32, seed=4) + 0.2
    taps = mtf_taps(s.mtf_ms, 4).double()
    ms = degrade_torch(out, taps, 4)
    assert float(angle_loss(out, 1.3 * ms, taps, 4)) < 1e-6
    assert float(spectral_loss(out, 1.3 * ms, taps, 4)) > 0.05
    swapped = ms[:, [1, 0, 2, 3]]  # a band swap changes the spectral direction
    assert float(angle_loss(out, swapped, taps, 4)) > 0.01
    deg = degrade(out, taps, 4)
    assert float(angle_loss(out, swapped, taps, 4, degraded=deg)) == pytest.approx(
        float(angle_loss(out, swapped, taps, 4))
    )
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[..., :4, :] = True
    garbage = swapped.clone()
    garbage[..., :4, :] = ms[..., :4, :]  # valid half consistent, invalid half swapped
    assert float(angle_loss(out, garbage, taps, 4, mask)) < 1e-6
    with pytest.raises(ConfigError):
        LossWeights(angle=-0.1)


def test_spatial_match_penalises_too_much_pan_as_well_as_too_little() -> None:
    pan = _rand(1, 1, 24, 24, seed=8)
    like_pan = torch.cat([2.0 * pan + 0.1, pan - 0.3], dim=1)  # LCC = 1 in every window
    n = 24 - 8 + 1
    target = torch.full((1, 2, n, n), 0.6, dtype=torch.float64)
    assert float(spatial_loss(like_pan, pan, 8)) == pytest.approx(0.0, abs=1e-6)  # "pan": perfect
    assert float(spatial_match_loss(like_pan, pan, target, 8)) == pytest.approx(0.4, abs=1e-6)
    assert float(spatial_match_loss(-like_pan, pan, target, 8)) == pytest.approx(1.6, abs=1e-6)
    assert float(spatial_match_loss(like_pan, pan, target + 0.4, 8)) == pytest.approx(0.0, abs=1e-6)
    mask = torch.ones(1, 1, 24, 24, dtype=torch.bool)
    mask[..., :12, :] = False
    half = target.clone()
    half[..., :5, :] = -1.0  # only windows touching invalid rows get the wrong target
    assert float(spatial_match_loss(like_pan, pan, half, 8, mask)) == pytest.approx(0.4, abs=1e-6)


def test_lowres_correlation_of_bands_that_follow_the_low_passed_pan() -> None:
    pan_lp = _rand(2, 1, 20, 20, seed=9)
    lms = torch.cat([3.0 * pan_lp, 1.0 - pan_lp], dim=1)
    t = lowres_correlation(lms, pan_lp, 4)
    assert t.shape == (2, 2, 17, 17)
    torch.testing.assert_close(t[:, 0], torch.ones_like(t[:, 0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(t[:, 1], -torch.ones_like(t[:, 1]), atol=1e-5, rtol=0)
    with pytest.raises(ConfigError):
        LossWeights(spatial_target="bogus")
