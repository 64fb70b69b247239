"""FeatureTailor / TailoredModel: identity at init, receptive field, tiling, save/load refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.backbones import build, checksum, support_ms, upsample
from pipeline.errors import CheckpointError, ConfigError
from pipeline.grid import TileGrid, halo_ms_for
from pipeline.tailor import (
    FeatureTailor,
    TailoredModel,
    TailorSpec,
    load_tailor,
    n_params,
    save_tailor,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _inputs(n_bands: int, h: int, w: int, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    ms = torch.rand(1, n_bands, h, w, generator=g, dtype=dtype)
    pan = torch.rand(1, 1, 4 * h, 4 * w, generator=g, dtype=dtype)
    return ms, upsample(ms, 4, "poly23"), pan


def _backbone(name: str = "fusionnet", n_bands: int = 4, seed: int = 0):
    torch.manual_seed(seed)
    return build(name, n_bands).eval()


def _randomise(tailor: FeatureTailor, seed: int = 1) -> FeatureTailor:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in tailor.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return tailor


@pytest.mark.parametrize("name", ["fusionnet", "dicnn", "pnn"])
def test_identity_before_fitting(name: str) -> None:
    bb = _backbone(name)
    model = TailoredModel(bb).eval()
    ms, lms, pan = _inputs(4, 9, 11)
    with torch.no_grad():
        assert torch.equal(model(ms, lms, pan), bb(ms, lms, pan))


def test_tailor_changes_output_once_trained() -> None:
    bb = _backbone()
    model = TailoredModel(bb, _randomise(FeatureTailor(TailorSpec(channels=32)))).eval()
    ms, lms, pan = _inputs(4, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(model(ms, lms, pan), bb(ms, lms, pan))


def test_receptive_field_and_size() -> None:
    bb = _backbone()
    assert TailoredModel(bb).receptive_field == bb.receptive_field + 2
    one = FeatureTailor(TailorSpec(channels=32, width=8, kernel=1))
    assert TailoredModel(bb, one).receptive_field == bb.receptive_field
    # 32 -> 16 -> 32 with 3x3 kernels: 2 * 32 * 16 * 9 weights + 16 + 32 biases
    assert n_params(FeatureTailor(TailorSpec(channels=32, width=16))) == 9264
    assert n_params(FeatureTailor(TailorSpec(channels=64, width=64))) < 80_000


def test_spec_validation() -> None:
    with pytest.raises(ConfigError):
        TailorSpec(channels=32, width=33)
    with pytest.raises(ConfigError):
        TailorSpec(channels=32, width=8, kernel=5)
    with pytest.raises(ConfigError):
        TailoredModel(_backbone(), FeatureTailor(TailorSpec(channels=16, width=8)))


def test_tiled_equals_whole_with_a_trained_tailor() -> None:
    """The halo from TailoredModel.receptive_field makes tiles match the whole image."""
    bb = _backbone().double()
    tailor = _randomise(FeatureTailor(TailorSpec(channels=32, width=8))).double()
    model = TailoredModel(bb, tailor).eval()
    h, w = 13, 10  # MS; PAN 52 x 40, tiles of 16 PAN px: partial edge tiles
    ms, _, pan = _inputs(4, h, w, dtype=torch.float64)
    with torch.no_grad():
        whole = model(ms, upsample(ms, 4, "poly23"), pan)
        grid = TileGrid((4 * h, 4 * w), 4, 16)
        halo = halo_ms_for(model.receptive_field, 4, support_ms("poly23", 4))
        for key in grid.keys():  # noqa: SIM118 (TileGrid is not a mapping)
            rd = grid.read(key, halo)
            ms_t = ms[..., rd.ms.y0 : rd.ms.y1, rd.ms.x0 : rd.ms.x1]
            pan_t = pan[..., rd.pan.y0 : rd.pan.y1, rd.pan.x0 : rd.pan.x1]
            out = model(ms_t, upsample(ms_t, 4, "poly23"), pan_t)
            tile = out[..., rd.crop.y0 : rd.crop.y1, rd.crop.x0 : rd.crop.x1]
            ref = whole[..., rd.out.y0 : rd.out.y1, rd.out.x0 : rd.out.x1]
            torch.testing.assert_close(tile, ref, atol=1e-10, rtol=0)


def test_save_load_roundtrip_and_refusal(tmp_path: Path) -> None:
    bb = _backbone(seed=0)
    tailor = _randomise(FeatureTailor(TailorSpec(channels=32, width=8)))
    path = save_tailor(tmp_path / "t.pt", tailor.state_dict(), checksum(bb), {"sensor": "wv2"})
    assert path.stat().st_size < 100_000
    back = load_tailor(path, bb)
    assert back.spec == tailor.spec
    for k, v in tailor.state_dict().items():
        assert torch.equal(back.state_dict()[k], v)
    other = _backbone(seed=1)  # same architecture, other weights
    with pytest.raises(CheckpointError, match="different backbone"):
        load_tailor(path, other)


def test_load_missing_or_foreign_file(tmp_path: Path) -> None:
    bb = _backbone()
    with pytest.raises(CheckpointError, match="not found"):
        load_tailor(tmp_path / "none.pt", bb)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="Not a pantailor tailor"):
        load_tailor(tmp_path / "x.pt", bb)
    with pytest.raises(CheckpointError):
        FeatureTailor.from_state({"conv_a.weight": torch.zeros(8, 32, 3, 3)})
