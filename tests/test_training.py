"""train-backbone: Wald-pair simulation (alignment by ramps), band sets, patch sampling,
a short training run, the CLI, and the shipped weights."""

from __future__ import annotations

import ast
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.backbones import default_weights, load
from pipeline.errors import ConfigError
from pipeline.training import (
    TrainConfig,
    TrainingPair,
    landsat_bands,
    load_pairs,
    parse_scenes,
    reduced_resolution_scores,
    sample_batch,
    train,
    wald_pair,
)

CFG = TrainConfig(n_bands=4, steps=1, batch=2, patch=16)


def _ramp_pair(native_ratio: int) -> TrainingPair:
    """Native MS and PAN that are the same linear ramp in x, in their own pixel centres."""
    h0 = w0 = 48
    xs = np.arange(w0, dtype=np.float64) + 0.5  # MS pixel centres, MS units
    ms = np.broadcast_to(0.2 + 0.01 * xs, (2, h0, w0)).copy()
    xp = (np.arange(native_ratio * w0) + 0.5) / native_ratio  # PAN pixel centres, MS units
    pan = np.broadcast_to(0.2 + 0.01 * xp, (native_ratio * h0, native_ratio * w0)).copy()
    return wald_pair("ramp", ms, pan, native_ratio, CFG, "poly23")


@pytest.mark.parametrize("native_ratio", [2, 4])
def test_wald_pair_is_ratio_4_and_aligned(native_ratio: int) -> None:
    p = _ramp_pair(native_ratio)
    assert p.gt.shape == (2, 48, 48) and p.pan.shape == (48, 48) and p.ms.shape == (2, 12, 12)
    assert p.lms.shape == p.gt.shape
    # away from the borders (MTF filter edge effects), the degraded PAN equals the target ramp
    # at the same pixel, and MS pixel j equals the target at pixel 4j + 2: no half-pixel shift.
    np.testing.assert_allclose(p.pan[:, 16:32], p.gt[0][:, 16:32], atol=1e-6)
    np.testing.assert_allclose(p.ms[0][:, 4:8], p.gt[0][2::4, 18:34:4], atol=1e-6)


def test_wald_pair_crops_to_multiple_of_4() -> None:
    ms = np.full((3, 30, 22), 0.5)
    pan = np.full((60, 44), 0.25)
    p = wald_pair("c", ms, pan, 2, CFG, "bicubic")
    assert p.gt.shape == (3, 28, 20) and p.ms.shape == (3, 7, 5) and p.pan.shape == (28, 20)
    np.testing.assert_allclose(p.ms, 0.5, atol=1e-6)
    np.testing.assert_allclose(p.pan, 0.25, atol=1e-6)


def test_landsat_band_sets() -> None:
    ms6 = np.stack([np.full((2, 2), v) for v in (0.3, 0.2, 0.1, 0.6, 0.5, 0.4)])  # R G B N S1 S2
    four = landsat_bands(ms6, 4)
    np.testing.assert_allclose(four[:, 0, 0], [0.1, 0.2, 0.3, 0.6])
    eight = landsat_bands(ms6, 8)
    assert eight.shape == (8, 2, 2)
    np.testing.assert_allclose(eight[[1, 2, 4, 6], 0, 0], [0.1, 0.2, 0.3, 0.6])
    assert 0.2 < eight[3, 0, 0] < 0.3 and 0.3 < eight[5, 0, 0] < 0.6  # yellow, red edge
    six = landsat_bands(ms6, 6)  # native bands in the landsat7 sensor's order (B, G, R, ...)
    np.testing.assert_allclose(six[:, 0, 0], [0.1, 0.2, 0.3, 0.6, 0.5, 0.4])


def test_band_sets_are_the_sensor_orders() -> None:
    from pipeline.backbones.groups import SHIPPED_BANDS
    from pipeline.sensors import get_sensor
    from pipeline.training import BAND_SETS

    assert BAND_SETS[6] == get_sensor("landsat7").bands == SHIPPED_BANDS[6]
    assert BAND_SETS[4] == SHIPPED_BANDS[4] and BAND_SETS[8] == SHIPPED_BANDS[8]


def test_train_config_is_validated() -> None:
    TrainConfig(n_bands=6)  # the native Landsat-7 set
    with pytest.raises(ConfigError, match="band set") as err:
        TrainConfig(n_bands=7)
    assert "6" in str(err.value.expected)
    with pytest.raises(ConfigError):
        TrainConfig(patch=30)


def _random_pair(seed: int) -> TrainingPair:
    rng = np.random.default_rng(seed)
    gt = rng.random((4, 40, 36)).astype(np.float32)
    return TrainingPair("r", gt[:, 2::4, 2::4].copy(), gt.copy(), gt[0].copy(), gt.copy())


def test_sample_batch_is_seeded_and_consistent() -> None:
    pairs = [_random_pair(0), _random_pair(1)]
    a = sample_batch(pairs, np.random.default_rng(5), 6, 16)
    b = sample_batch(pairs, np.random.default_rng(5), 6, 16)
    assert [t.shape for t in a] == [(6, 4, 4, 4), (6, 4, 16, 16), (6, 1, 16, 16), (6, 4, 16, 16)]
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)
    ms, lms, pan, gt = a
    torch.testing.assert_close(pan[:, 0], gt[:, 0])  # same crop and same augmentation
    torch.testing.assert_close(lms, gt)
    # the MS crop holds exactly the MS pixels under the PAN crop (in some flip/rot90 phase)
    assert all(
        any(torch.equal(ms[i], gt[i, :, o::4, q::4]) for o in range(4) for q in range(4))
        for i in range(6)
    )


def test_short_training_reduces_the_loss() -> None:
    pairs = [_random_pair(s) for s in range(3)]
    # a learnable target: a smooth version of the lms
    for p in pairs:
        p.gt[:] = 0.5 * p.lms + 0.25
    cfg = TrainConfig(n_bands=4, steps=40, batch=4, patch=16, lr=3e-3, seed=1)
    res = train(cfg, pairs)
    assert res.steps == 40 and len(res.losses) == 40
    assert np.mean(res.losses[-8:]) < 0.6 * np.mean(res.losses[:4])
    assert not res.model.training and not any(p.requires_grad for p in res.model.parameters())


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("n_bands", [6, 8])
def test_cli_train_backbone_writes_loadable_weights(
    n_bands: int,
    tmp_path: Path,
    data_file: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pipeline.cli import main

    data_file("landsat/fusebox_landsat7/cropped/1_pan.mat")
    out = tmp_path / "w.pt"
    argv = ["train-backbone", "--bands", str(n_bands), "--steps", "3", "--batch", "2"]
    argv += ["--patch", "16", "--scenes", "1,26", "--val-scenes", "26", "--json", "-o", str(out)]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_bands"] == n_bands and summary["val_scenes"] == ["fusebox-26"]
    assert summary["train_scenes"] == 1
    model = load("fusionnet", out, n_bands=n_bands)
    assert model.n_bands == n_bands


def test_cli_train_backbone_refuses_a_band_count_the_data_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main

    out = tmp_path / "w.pt"
    assert main(["train-backbone", "--bands", "7", "--steps", "1", "-o", str(out)]) != 0
    assert "band set" in capsys.readouterr().err and not out.exists()


def test_parse_scenes() -> None:
    assert parse_scenes("1-3,7") == (1, 2, 3, 7)
    with pytest.raises(ConfigError):
        parse_scenes("0-4")
    with pytest.raises(ConfigError):
        parse_scenes("a")
    with pytest.raises(ConfigError, match="subset"):
        TrainConfig(fusebox_scenes=(1, 2), val_scenes=(3,))


@pytest.mark.parametrize("n_bands", [4, 6, 8])
def test_shipped_weights_are_small_and_load(n_bands: int) -> None:
    path = default_weights("fusionnet", n_bands)
    assert path.stat().st_size < 500_000
    model = load("fusionnet", None, n_bands=n_bands)
    assert model.n_bands == n_bands
    meta = torch.load(path, weights_only=True)["meta"]
    assert "train_seconds" in meta and "val" in meta


def test_shipped_6band_weights_beat_interpolation_on_held_out_scenes() -> None:
    """The recorded held-out scores of the shipped Landsat-7 weights (scenes never trained on)."""
    meta = torch.load(default_weights("fusionnet", 6), weights_only=True)["meta"]
    assert meta["bands"] == "blue,green,red,nir,swir1,swir2" and meta["ratio"] == "2"
    assert "fusebox-26" in meta["val_scenes"] and meta["train_scenes"] == "25"
    val = ast.literal_eval(meta["val"])
    assert val["model"]["sam"] < val["lms"]["sam"] and val["model"]["ergas"] < val["lms"]["ergas"]


@pytest.mark.data
def test_shipped_6band_weights_beat_interpolation_on_a_held_out_scene(
    data_file: Callable[[str], Path],
) -> None:
    """Recomputed: FuseBox scene 28 (held out), Wald protocol at ratio 2."""
    data_file("landsat/fusebox_landsat7/cropped/28_pan.mat")
    cfg = TrainConfig(n_bands=6, ratio=2, fusebox_scenes=(28,), val_scenes=(28,))
    _, val = load_pairs(cfg)
    s = reduced_resolution_scores(load("fusionnet", None, n_bands=6), val)
    assert s["model"]["sam"] < 0.95 * s["lms"]["sam"]
    assert s["model"]["ergas"] < 0.95 * s["lms"]["ergas"]
