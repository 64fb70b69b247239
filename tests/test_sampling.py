"""Patch sampling: determinism, counts, nodata skipping, texture strata, store == arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.errors import ConfigError, InputError
from pipeline.grid import TileKey
from pipeline.sampling import (
    ArraySource,
    SampleConfig,
    patch_grid,
    sample_keys,
    sample_patches,
)

R = 4
# PAN 4*45 x 4*37 = 180 x 148 with 16-pixel patches: 11 x 9 full candidates, partial edge cells
H, W = 180, 148


def _arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pan = rng.integers(1, 2048, (H, W), dtype=np.uint16)
    ms = rng.integers(1, 2048, (4, H // R, W // R), dtype=np.uint16)
    return pan, ms


def _keys(cfg: SampleConfig, seed: int, arrays=None, nodata=None) -> list[TileKey]:
    pan, ms = arrays if arrays is not None else _arrays()
    grid = patch_grid(pan.shape, R, cfg.patch)
    return sample_keys(ArraySource(pan, ms), grid, cfg, seed, nodata=nodata)


def test_same_seed_same_keys_other_seed_other_keys() -> None:
    cfg = SampleConfig(patch=16, fraction=0.1, max_patches=10)
    a, b, c = _keys(cfg, 7), _keys(cfg, 7), _keys(cfg, 8)
    assert a == b and a != c
    assert a == sorted(a) and len(set(a)) == len(a)


@pytest.mark.parametrize(
    ("fraction", "lo", "hi", "want"),
    [(0.1, 4, 50, 10), (0.01, 4, 50, 4), (1.0, 1, 20, 20), (1.0, 1, 500, 99)],
)
def test_count_follows_fraction_and_bounds(fraction: float, lo: int, hi: int, want: int) -> None:
    cfg = SampleConfig(patch=16, fraction=fraction, min_patches=lo, max_patches=hi)
    keys = _keys(cfg, 0)
    assert len(keys) == want  # 99 full candidates
    grid = patch_grid((H, W), R, 16)
    assert all(grid.pan_window(k).shape_yx == (16, 16) for k in keys)  # never a partial cell


def test_nodata_patches_are_skipped() -> None:
    pan, ms = _arrays()
    pan[:, : W // 2] = 0  # left half of PAN is nodata
    ms[:, 5:9, -10:] = 0  # an MS block on the right: all bands nodata
    cfg = SampleConfig(patch=16, fraction=1.0, max_patches=500)
    grid = patch_grid(pan.shape, R, 16)
    keys = _keys(cfg, 3, (pan, ms), nodata=0)
    assert keys
    for k in keys:
        assert (pan[grid.pan_window(k).slices] != 0).all()
        assert (ms[(slice(None), *grid.ms_window(k).slices)] != 0).any(axis=0).all()
    assert len(_keys(cfg, 3, (pan, ms), nodata=None)) == 99  # without nodata all count


def test_nan_is_nodata_and_batch_masks_it() -> None:
    pan, ms = _arrays()
    panf, msf = pan.astype(np.float32), ms.astype(np.float32)
    panf[:4, :] = np.nan  # a quarter of each first-row patch
    cfg = SampleConfig(patch=16, fraction=1.0, max_patches=500, max_nodata=0.5)
    batch = sample_patches((panf, msf), cfg, 0, ratio=R, dn_max=2047.0)
    assert torch.isfinite(batch.pan).all() and torch.isfinite(batch.ms).all()
    assert batch.valid is not None and not bool(batch.valid.all())
    bad = [i for i, k in enumerate(batch.keys) if k.row == 0]
    assert len(bad) == 9 and not bool(batch.valid[bad][..., :4, :].any())
    assert (
        bool(batch.valid[bad][..., 4:, :].all())
        and float(batch.pan[bad][..., :4, :].abs().sum()) == 0
    )


def test_all_nodata_and_too_small_scenes_raise() -> None:
    pan, ms = _arrays()
    with pytest.raises(InputError, match="no-data"):
        _keys(SampleConfig(patch=16), 0, (np.zeros_like(pan), ms), nodata=0)
    with pytest.raises(InputError, match="smaller than one fit patch"):
        _keys(SampleConfig(patch=256), 0)


def test_texture_mode_takes_flat_and_busy_patches() -> None:
    pan, ms = _arrays()
    ms[:, :, : ms.shape[2] // 2] = 1000  # left half flat, right half noisy
    cfg = SampleConfig(patch=16, mode="texture", fraction=0.1, max_patches=8, strata=2)
    grid = patch_grid(pan.shape, R, 16)
    keys = _keys(cfg, 1, (pan, ms))
    flat = [k for k in keys if grid.ms_window(k).x1 <= ms.shape[2] // 2]
    assert len(keys) == 8 and 2 <= len(flat) <= 6
    assert keys == _keys(cfg, 1, (pan, ms))


def test_patch_batch_values_and_shapes() -> None:
    pan, ms = _arrays()
    batch = sample_patches((pan, ms), SampleConfig(patch=16), 5, ratio=R, dn_max=2047.0)
    grid = patch_grid(pan.shape, R, 16)
    assert batch.pan.shape == (len(batch), 1, 16, 16) and batch.ms.shape == (len(batch), 4, 4, 4)
    assert batch.valid is None and batch.pan.dtype == torch.float32
    k = batch.keys[0]
    np.testing.assert_allclose(
        batch.pan[0, 0].numpy(), pan[grid.pan_window(k).slices] / 2047.0, rtol=1e-6
    )
    with pytest.raises(ConfigError):
        sample_patches((pan, ms), SampleConfig(patch=16), 5)  # ratio/dn_max missing
    with pytest.raises(ConfigError):
        SampleConfig(fraction=0.0)


def test_store_and_arrays_give_the_same_batch(tmp_path: Path) -> None:
    from pipeline.scene import Scene
    from pipeline.sensors import get_sensor
    from pipeline.store import SceneStore, write_scene

    pan, ms = _arrays()
    ms8 = np.concatenate([ms, ms[::-1]])  # wv3 has 8 bands
    scene = Scene(
        pan=pan,
        ms=ms8,
        sensor=get_sensor("wv3"),
        crs=None,
        pan_transform=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        ms_transform=(4.0, 0.0, 0.0, 0.0, 4.0, 0.0),
        nodata=None,
        dn_max=2047.0,
    )
    store = SceneStore.open(write_scene(scene, tmp_path / "s.zarr", tile=64).path)
    cfg = SampleConfig(patch=32, mode="texture")
    a = sample_patches(store, cfg, 2)
    b = sample_patches((pan, ms8), cfg, 2, ratio=4, dn_max=2047.0)
    assert a.keys == b.keys
    assert torch.equal(a.pan, b.pan) and torch.equal(a.ms, b.ms)


def test_held_out_patches_come_last_apart_from_the_fit_patches() -> None:
    pan, ms = _arrays()
    cfg = SampleConfig(patch=16, fraction=0.05, min_patches=4, max_patches=4, holdout=0)
    base = sample_patches((pan, ms), cfg, 7, ratio=R, dn_max=2047.0)
    held_cfg = SampleConfig(patch=16, fraction=0.05, min_patches=4, max_patches=4, holdout=3)
    batch = sample_patches((pan, ms), held_cfg, 7, ratio=R, dn_max=2047.0)
    assert len(base) == 4 and len(batch) == 7 and batch.holdout == 3
    fit, held = batch.split()
    assert held is not None and len(fit) == 4 and len(held) == 3
    assert fit.keys == base.keys and torch.equal(fit.ms, base.ms)  # the fit patches unchanged
    assert not set(held.keys) & set(fit.keys)
    assert torch.equal(held.pan, batch.pan[4:]) and fit.holdout == held.holdout == 0
    assert batch.to("cpu").holdout == 3


def test_held_out_patches_shrink_on_small_scenes() -> None:
    pan, ms = _arrays()
    small = (pan[:32, :32], ms[:, :8, :8])  # 4 candidates, all needed for the fit
    batch = sample_patches(small, SampleConfig(patch=16), 0, ratio=R, dn_max=2047.0)
    assert len(batch) == 4 and batch.holdout == 0 and batch.split()[1] is None
    with pytest.raises(ConfigError):
        SampleConfig(holdout=-1)
