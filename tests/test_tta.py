"""Test-time augmentation (pipeline/tta.py): identity, equivariance, the mean of the transformed
outputs (computed here with torch.rot90 / torch.flip, not with the module's helpers), tiling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.backbones import FusionNet, support_ms, upsample
from pipeline.errors import ConfigError
from pipeline.grid import TileGrid, halo_ms_for
from pipeline.infer import Radiometry, infer_window, model_run
from pipeline.tailor import TailoredModel
from pipeline.tta import TTABackbone, cost, tta_forward, with_tta

R = 4


def _inputs(seed: int = 0, h: int = 6, w: int = 9) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    ms = torch.rand(1, 4, h, w, generator=g)
    pan = torch.rand(1, 1, R * h, R * w, generator=g)
    return ms, upsample(ms, R, "poly23"), pan


def _net(seed: int = 0) -> FusionNet:
    torch.manual_seed(seed)
    net = FusionNet(4).eval()
    for p in net.parameters():  # a random, clearly non-equivariant network
        nn.init.normal_(p, std=0.05)
    return net


def _identity(ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
    return lms + 0.0 * pan


class SymmetricConv(nn.Module):
    """Equivariant under the square's symmetries: a 3x3 kernel symmetric under D4."""

    def __init__(self) -> None:
        super().__init__()
        a, b, c = 0.05, 0.15, 0.4
        k = torch.tensor([[a, b, a], [b, c, b], [a, b, a]])
        self.conv = nn.Conv2d(5, 4, 3, padding=1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(k.expand(4, 5, 3, 3) * torch.rand(4, 5, 1, 1))

    def forward(self, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.relu(self.conv(torch.cat([lms, pan], 1))) + lms
        return out


def _manual_mean(f: nn.Module, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor, mode: str):
    """The average written out with rot90/flip: flips = {e, fx, fy, fxfy}, d4 = rot^k (k<4)
    with and without a horizontal flip first."""
    outs = []
    if mode == "flips":
        for dims in ([], [-1], [-2], [-2, -1]):

            def t(x: torch.Tensor, dims: list[int] = dims) -> torch.Tensor:
                return x.flip(dims) if dims else x

            outs.append(t(f(t(ms), t(lms), t(pan))))
    else:
        for flip in (False, True):
            for k in range(4):

                def fw(x: torch.Tensor, k: int = k, flip: bool = flip) -> torch.Tensor:
                    x = x.flip(-1) if flip else x
                    return torch.rot90(x, k, dims=(-2, -1)).contiguous()

                def bw(y: torch.Tensor, k: int = k, flip: bool = flip) -> torch.Tensor:
                    y = torch.rot90(y, -k, dims=(-2, -1))
                    return y.flip(-1) if flip else y

                outs.append(bw(f(fw(ms), fw(lms), fw(pan))))
    assert len(outs) == cost(mode)
    return torch.stack(outs).mean(0)


def test_identity_network_is_unchanged_by_d4_and_flips() -> None:
    ms, lms, pan = _inputs()
    for mode in ("flips", "d4"):
        assert torch.equal(tta_forward(_identity, ms, lms, pan, mode), lms)


def test_none_is_the_plain_forward_bit_for_bit() -> None:
    net, (ms, lms, pan) = _net(), _inputs()
    with torch.no_grad():
        assert torch.equal(tta_forward(net, ms, lms, pan, "none"), net(ms, lms, pan))


def test_equivariant_model_is_unchanged() -> None:
    torch.manual_seed(1)
    net, (ms, lms, pan) = SymmetricConv(), _inputs(seed=1, h=7, w=7)
    with torch.no_grad():
        plain = net(ms, lms, pan)
        for mode in ("flips", "d4"):
            torch.testing.assert_close(
                tta_forward(net, ms, lms, pan, mode), plain, rtol=0, atol=1e-6
            )


@pytest.mark.parametrize("mode", ["flips", "d4"])
def test_non_equivariant_model_gives_the_mean_of_transformed_outputs(mode: str) -> None:
    net, (ms, lms, pan) = _net(), _inputs(h=6, w=9)  # non-square: transposes change the shape
    with torch.no_grad():
        got = tta_forward(net, ms, lms, pan, mode)
        want = _manual_mean(net, ms, lms, pan, mode)
        plain = net(ms, lms, pan)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert (got - plain).abs().max() > 1e-3  # the network is not equivariant: TTA does something


def test_tailored_model_on_a_tta_backbone_averages_the_whole_tailored_network() -> None:
    bb, (ms, lms, pan) = _net(), _inputs()
    plain = TailoredModel(bb)
    with torch.no_grad():
        nn.init.normal_(plain.tailor.conv_b.weight, std=0.1)
    wrapped = TailoredModel(with_tta(bb, "d4"), plain.tailor)
    with torch.no_grad():
        torch.testing.assert_close(
            wrapped(ms, lms, pan), _manual_mean(plain, ms, lms, pan, "d4"), rtol=0, atol=1e-5
        )
        # what a fit uses (extract / map) is the unaugmented network's
        assert torch.equal(wrapped.extract(ms, lms, pan), plain.extract(ms, lms, pan))
        # the bare TTA backbone: the backbone's own forward averaged
        torch.testing.assert_close(
            with_tta(bb, "flips")(ms, lms, pan),
            _manual_mean(bb, ms, lms, pan, "flips"),
            atol=1e-5,
            rtol=0,
        )
    assert with_tta(bb, "none") is bb
    assert isinstance(with_tta(bb, "flips"), TTABackbone)


@pytest.mark.parametrize("mode", ["flips", "d4"])
def test_tiled_equals_whole_image_and_is_deterministic(mode: str) -> None:
    net = _net(2)
    rng = np.random.default_rng(3)
    h, w, tile = 40, 56, 64  # PAN 160 x 224: 3 x 4 tiles, edge tiles partial
    ms = rng.uniform(100, 1800, (4, h, w)).astype(np.float32)
    pan = rng.uniform(100, 1800, (R * h, R * w)).astype(np.float32)
    rad = Radiometry(dn_max=2047.0, ratio=R)
    run = model_run(net, net.upsampler, R, tta=mode)
    whole = infer_window(run, ms, pan, rad)
    grid = TileGrid((R * h, R * w), R, tile)
    halo = halo_ms_for(net.receptive_field, R, support_ms(net.upsampler, R))
    tiled = np.full_like(whole, np.nan)
    again = np.full_like(whole, np.nan)
    for key in grid:
        read = grid.read(key, halo)
        m, p = ms[(slice(None), *read.ms.slices)], pan[read.pan.slices]
        own = grid.pan_window(key)
        tiled[(slice(None), *own.slices)] = infer_window(run, m, p, rad, crop=read.crop)
        again[(slice(None), *own.slices)] = infer_window(run, m, p, rad, crop=read.crop)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-6)
    assert tiled.tobytes() == again.tobytes()
    plain = infer_window(model_run(net, net.upsampler, R), ms, pan, rad)
    assert np.abs(whole - plain).max() > 1e-4


def test_unknown_mode_names_the_flag_and_the_choices() -> None:
    with pytest.raises(ConfigError, match="test-time augmentation mode"):
        model_run(_identity, "poly23", R, tta="rot90")
    with pytest.raises(ConfigError, match="d4"):
        with_tta(_net(), "all")
