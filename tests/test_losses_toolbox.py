"""The toolbox D_S loss: its operators and value against the toolbox's NumPy functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.fit import FitConfig, fit_tailor
from pipeline.losses import (
    LossWeights,
    toolbox_interp,
    toolbox_pan_low_pass,
    toolbox_spatial_loss,
    toolbox_spatial_target,
)
from pipeline.quality import toolbox
from pipeline.quality.indices import uqi_map
from pipeline.window_stats import local_uqi


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.2 + 0.6 * torch.rand(*shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("ratio", [2, 4])
def test_pan_low_pass_and_interp_equal_the_toolbox_numpy(ratio: int) -> None:
    pan = _rand(2, 1, 64, 48)
    got = toolbox_pan_low_pass(pan, ratio)
    assert got.shape == pan.shape
    for n in range(2):
        ref = toolbox.pan_low_pass(pan[n, 0].numpy(), ratio)
        np.testing.assert_allclose(got[n, 0].numpy(), ref, atol=1e-10)
    ms = _rand(2, 3, 64 // ratio, 48 // ratio, seed=1)
    up = toolbox_interp(ms, ratio)
    for n in range(2):
        np.testing.assert_allclose(
            up[n].numpy(), toolbox.interp23tap(ms[n].numpy(), ratio), atol=1e-10
        )


def test_local_uqi_on_blocks_equals_the_block_uqi() -> None:
    a, b = _rand(1, 3, 64, 64, seed=2), _rand(1, 1, 64, 64, seed=3)
    b = b + 0.5 * a[:, :1]  # correlated
    got = local_uqi(a, b, 16, 16)[0].numpy()
    ref = np.stack([uqi_map(a[0, i].numpy(), b[0, 0].numpy(), 16) for i in range(3)])
    assert got.shape == ref.shape == (3, 4, 4)
    np.testing.assert_allclose(got, ref, atol=1e-9)


def test_toolbox_spatial_loss_is_the_d_s_relation_block_by_block() -> None:
    """With stride = block the loss is mean_b,blocks |Q(F_b, P) - Q(MS~_b, P_LP)|, from NumPy."""
    r, blk = 4, 32
    pan = _rand(2, 1, 64, 64, seed=4)
    ms = _rand(2, 4, 16, 16, seed=5)
    out = (_rand(2, 4, 64, 64, seed=6) + pan).requires_grad_(True)
    target = toolbox_spatial_target(ms, pan, r, blk, blk)
    loss = toolbox_spatial_loss(out, pan, target, blk, blk)
    diffs = []
    for n in range(2):
        p, m = pan[n, 0].numpy(), ms[n].numpy()
        up, p_lp = toolbox.interp23tap(m, r), toolbox.pan_low_pass(p, r)
        for b in range(4):
            hi = uqi_map(out[n, b].detach().numpy(), p, blk)
            lo = uqi_map(up[b], p_lp, blk)
            diffs.append(np.abs(hi - lo))
    assert float(loss.detach()) == pytest.approx(float(np.mean(diffs)), abs=1e-9)
    loss.backward()  # type: ignore[no-untyped-call]
    assert out.grad is not None and torch.isfinite(out.grad).all() and out.grad.abs().sum() > 0


def test_toolbox_target_is_a_loss_weight_option_and_fits() -> None:
    from pipeline.backbones import build
    from pipeline.sampling import SampleConfig, sample_patches
    from pipeline.sensors import get_sensor
    from pipeline.synthetic import make_scene

    sensor = get_sensor("ge1")
    s = make_scene((96, 128), sensor, seed=3)
    cfg = SampleConfig(patch=32, fraction=0.5, min_patches=3, max_patches=3, holdout=0)
    patches = sample_patches((s.pan, s.ms), cfg, 0, ratio=4, dn_max=sensor.dn_max)
    torch.manual_seed(0)
    bb = build("fusionnet", 4).eval().requires_grad_(False)
    w = LossWeights(spatial_target="toolbox", spatial=1.0, q_block=16, q_stride=8)
    res = fit_tailor(patches, bb, sensor, FitConfig(steps=15, lr=1e-2, weights=w))
    assert res.losses["spatial"] < res.initial_losses["spatial"]
