"""The fit's fused objective computes the loss terms of pipeline.losses: values and gradients.

The plain functions of :mod:`pipeline.losses` are the definitions; :class:`FitObjective` (what a
fit runs every step) must agree with them to float rounding, on real patches and on patches
with nodata, for every spatial target.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.backbones import upsample
from pipeline.fit_objective import FitObjective, degrade_matrix, window_matrix
from pipeline.losses import (
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
    toolbox_spatial_loss,
    toolbox_spatial_target,
)
from pipeline.sampling import PatchBatch, SampleConfig, sample_patches
from pipeline.sensors import SensorSpec, get_sensor
from pipeline.synthetic import make_scene
from pipeline.window_stats import box_mean

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _reference(
    p: PatchBatch, sensor: SensorSpec, w: LossWeights, out, out_d, delta
) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    """The terms from the plain loss functions (what pipeline.fit computed before the fusion)."""
    r = sensor.ratio
    taps = mtf_taps(sensor.mtf_ms, r)
    terms = {
        "spectral": spectral_loss(out, p.ms, taps, r, p.valid_ms),
        "angle": angle_loss(out, p.ms, taps, r, p.valid_ms),
        "consistency": consistency_loss(out_d, p.ms, p.valid_ms),
        "penalty": tailor_penalty(delta),
    }
    if w.spatial_target == "toolbox":
        tb = toolbox_spatial_target(p.ms, p.pan, r, w.q_block, w.q_stride)
        stats = WindowStats.of(p.pan, w.q_block)
        terms["spatial"] = toolbox_spatial_loss(out, stats, tb, w.q_block, w.q_stride, p.valid)
    elif w.spatial_target == "pan":
        terms["spatial"] = spatial_loss(out, p.pan, w.lcc_window, p.valid)
    else:
        _, pan_d = degrade_inputs(p.ms, p.pan, sensor)
        lms = upsample(p.ms, r, "poly23")
        low = lowres_correlation(lms, upsample(pan_d, r, "poly23"), w.lcc_window)
        terms["spatial"] = spatial_match_loss(out, p.pan, low, w.lcc_window, p.valid)
    return terms


def _outputs(p: PatchBatch, seed: int) -> tuple[torch.Tensor, ...]:
    """A plausible product (upsampled MS plus PAN detail and noise) and its degraded twin."""
    g = torch.Generator().manual_seed(seed)
    lms = upsample(p.ms, 4, "poly23")
    detail = p.pan - upsample(degrade(p.pan, mtf_taps((0.15,), 4), 4), 4, "poly23")
    out = lms + 0.7 * detail + 0.01 * torch.randn(lms.shape, generator=g)
    out_d = p.ms + 0.02 * torch.randn(p.ms.shape, generator=g)
    delta = 0.1 * torch.randn(p.ms.shape[0], 5, 8, 8, generator=g)
    return tuple(t.requires_grad_(True) for t in (out, out_d, delta))


def _compare(p: PatchBatch, sensor: SensorSpec, w: LossWeights, seed: int = 0) -> None:
    _, pan_d = degrade_inputs(p.ms, p.pan, sensor)
    lms = upsample(p.ms, sensor.ratio, "poly23")
    fused = FitObjective(p.ms, lms, p.pan, pan_d, p.valid, p.valid_ms, "poly23", sensor, w)
    out, out_d, delta = _outputs(p, seed)
    got = fused.terms(out, out_d, delta)
    ref = _reference(p, sensor, w, out, out_d, delta)
    assert list(got) == ["spectral", "angle", "spatial", "consistency", "penalty"]
    for k, v in got.items():
        assert float(v.detach()) > 1e-4, k  # not trivially zero
        assert float(v.detach()) == pytest.approx(float(ref[k].detach()), rel=2e-5, abs=1e-7), k
        g_got = torch.autograd.grad(v, (out, out_d, delta), retain_graph=True, allow_unused=True)
        g_ref = torch.autograd.grad(
            ref[k], (out, out_d, delta), retain_graph=True, allow_unused=True
        )
        for a, b in zip(g_got, g_ref, strict=True):
            assert (a is None) == (b is None), k
            if a is not None and b is not None:
                scale = float(b.abs().max())
                assert float((a - b).abs().max()) <= 1e-4 * scale + 1e-9, k


ALL = dict(spectral=1.0, angle=0.3, spatial=0.2, consistency=3.0, penalty=0.1)


def test_fused_terms_equal_the_loss_functions_on_real_patches(data_file) -> None:  # type: ignore[no-untyped-def]
    from pipeline.scene import open_scene

    sensor = get_sensor("wv2")
    s = open_scene(data_file("vhr/grip/imgWV2.mat"), sensor)
    pan, ms = np.asarray(s.pan[:512, :512]), np.asarray(s.ms[:, :128, :128])
    p = sample_patches((pan, ms), SampleConfig(), 0, ratio=4, dn_max=sensor.dn_max)
    _compare(p, sensor, LossWeights(**ALL))


@pytest.mark.parametrize("target", ["toolbox", "pan", "lowres"])
def test_fused_terms_equal_the_loss_functions_with_nodata(target: str) -> None:
    sensor = get_sensor("ge1")
    s = make_scene((128, 128), sensor, seed=1)
    cfg = SampleConfig(patch=64, fraction=1.0, min_patches=3, max_patches=3, holdout=0)
    p = sample_patches((s.pan, s.ms), cfg, 0, ratio=4, dn_max=sensor.dn_max)
    valid = torch.ones_like(p.pan, dtype=torch.bool)
    valid[0, :, :12, :20] = False  # a nodata corner: windows and MS pixels drop out
    valid_ms = valid[..., 2::4, 2::4].clone()
    p = PatchBatch(p.ms, p.pan, valid, valid_ms, p.keys, p.ratio, p.holdout)
    _compare(p, sensor, LossWeights(**ALL, spatial_target=target), seed=2)


@pytest.mark.parametrize(("ratio", "size"), [(4, 64), (2, 30), (4, 20)])
def test_degrade_matrix_is_the_degradation(ratio: int, size: int) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, size, size + ratio, generator=g, dtype=torch.float64)
    taps = mtf_taps([0.3, 0.25, 0.35], ratio).to(torch.float64)
    ah, aw = degrade_matrix(taps, ratio, size), degrade_matrix(taps, ratio, size + ratio)
    got = ah @ x @ aw.transpose(1, 2)
    torch.testing.assert_close(got, degrade(x, taps, ratio), rtol=1e-12, atol=1e-12)


def test_window_matrix_is_the_strided_box_mean() -> None:
    x = torch.rand(1, 2, 64, 48, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    bh, bw = window_matrix(64, 32, 8), window_matrix(48, 32, 8)
    got = bh @ x @ bw.T
    assert got.shape == (1, 2, 5, 3)
    torch.testing.assert_close(got, box_mean(x, 32)[..., ::8, ::8], rtol=1e-10, atol=1e-12)


def _trace(p: PatchBatch, bb, sensor: SensorSpec, fused: bool):  # type: ignore[no-untyped-def]
    from pipeline.fit import FitConfig, fit_tailor

    cfg = FitConfig(steps=8, patience=100, check_every=0, fused=fused)
    return fit_tailor(p, bb, sensor, cfg)


def test_fused_fit_follows_the_plain_loss_trace_on_real_patches(data_file) -> None:  # type: ignore[no-untyped-def]
    """A fit through the fused objective takes the steps of the plain one (float rounding apart:
    Adam amplifies it over many steps, so 8 steps are compared), and ends at the same tailor."""
    from pipeline.backbones import load
    from pipeline.scene import open_scene

    sensor = get_sensor("wv2")
    s = open_scene(data_file("vhr/grip/imgWV2.mat"), sensor)
    pan, ms = np.asarray(s.pan[:512, :512]), np.asarray(s.ms[:, :128, :128])
    p = sample_patches((pan, ms), SampleConfig(), 1, ratio=4, dn_max=sensor.dn_max)
    bb = load("fusionnet", "dlpan:wv3", sensor=sensor)
    plain, fused = _trace(p, bb, sensor, False), _trace(p, bb, sensor, True)
    assert len(plain.history) == len(fused.history) == 8
    assert plain.history[-1] < 0.9 * plain.history[0]  # it moved
    np.testing.assert_allclose(fused.history, plain.history, rtol=2e-5)
    for k, v in plain.tailor_state.items():  # type: ignore[union-attr]
        w = fused.tailor_state[k]  # type: ignore[index]
        assert float((w - v).abs().max()) <= 1e-3 * float(v.abs().max()), k


def test_patches_smaller_than_the_uqi_window_behave_as_the_plain_term() -> None:
    """No 32-pixel window fits in a 16-pixel patch: both paths give the same (empty) term."""
    sensor = get_sensor("ge1")
    s = make_scene((64, 64), sensor, seed=2)
    cfg = SampleConfig(patch=16, fraction=1.0, min_patches=2, max_patches=2, holdout=0)
    p = sample_patches((s.pan, s.ms), cfg, 0, ratio=4, dn_max=sensor.dn_max)
    _, pan_d = degrade_inputs(p.ms, p.pan, sensor)
    lms = upsample(p.ms, 4, "poly23")
    w = LossWeights()
    got = FitObjective(p.ms, lms, p.pan, pan_d, None, None, "poly23", sensor, w)
    ref = FitObjective(p.ms, lms, p.pan, pan_d, None, None, "poly23", sensor, w, fused=False)
    out = lms + 0.1 * p.pan
    a, b = got.terms(out, None, None)["spatial"], ref.terms(out, None, None)["spatial"]
    assert torch.equal(a.isnan(), b.isnan())
    if not bool(a.isnan()):
        assert float(a) == pytest.approx(float(b), rel=2e-5)


def test_float32_uqi_of_flat_bright_patches_keeps_float64_precision() -> None:
    """Bright, nearly flat windows (water, roofs) are where ``E[x^2] - E[x]^2`` cancels in
    float32; the loss and its gradient must stay those of a float64 evaluation (an uncentred
    float32 version is ~1e-3 off in the loss)."""
    from pipeline.fit_objective import ToolboxUQI

    g = torch.Generator().manual_seed(0)

    def flat(n: int, b: int) -> torch.Tensor:
        low = torch.nn.functional.avg_pool2d(torch.rand(n, b, 79, 79, generator=g), 16, 1)
        base = 0.2 + 0.4 * torch.rand(n, b, 1, 1, generator=g)
        return (base + 0.02 * low + 0.002 * torch.randn(n, b, 64, 64, generator=g)).double()

    out, pan = flat(6, 8), flat(6, 1)
    target = 0.5 * torch.rand(6, 8, 5, 5, generator=g, dtype=torch.float64)
    losses, grads = [], []
    for dt in (torch.float64, torch.float32):
        x = out.to(dt).clone().requires_grad_(True)
        loss = ToolboxUQI(pan.to(dt), target.to(dt), 32, 8, None)(x)
        loss.backward()
        assert x.grad is not None
        losses.append(float(loss.detach()))
        grads.append(x.grad.double())
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)
    assert float((grads[1] - grads[0]).abs().max()) <= 1e-4 * float(grads[0].abs().max())
