"""Dihedral augmentation of the fit patches (``FitConfig.augment``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pipeline.backbones import build
from pipeline.errors import ConfigError
from pipeline.fit import FitConfig, augment_patches, fit_tailor
from pipeline.fit_config import AUGMENTS
from pipeline.sampling import PatchBatch, SampleConfig, sample_patches
from pipeline.synthetic import make_scene
from pipeline.tta import transform
from tests.test_fit import SENSOR, ge1_patches

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def patches() -> PatchBatch:
    return ge1_patches()


def _backbone() -> torch.nn.Module:
    torch.manual_seed(0)
    return build("fusionnet", 4).eval().requires_grad_(False)


def _plain(**kw: object) -> FitConfig:
    """No held-out check, no early stop: the loss history is a function of the batch alone."""
    return FitConfig(steps=6, lr=1e-2, check_every=0, patience=100, **kw)  # type: ignore[arg-type]


def test_counts_and_identity_first(patches: PatchBatch) -> None:
    n = len(patches)
    for mode, ks in AUGMENTS.items():
        aug = augment_patches(patches, mode)
        assert len(aug) == n * len(ks) and len(aug.keys) == len(aug) and aug.holdout == 0
        assert torch.equal(aug.ms[:n], patches.ms) and torch.equal(aug.pan[:n], patches.pan)


def test_pan_and_ms_stay_aligned_under_every_element() -> None:
    """PAN built as the MS band mean repeated over each ratio x ratio block: after augmentation
    each PAN block must still sit over the MS pixel it came from (a flip or transpose applied to
    one grid and not the other, or on other axes, breaks this)."""
    rng = np.random.default_rng(0)
    ms = rng.random((2, 3, 5, 5)).astype(np.float32)
    pan = np.kron(ms.mean(axis=1, keepdims=True), np.ones((4, 4), dtype=np.float32))
    valid = np.ones_like(pan, dtype=bool)
    valid[0, 0, :4, 8:12] = False  # PAN block over MS pixel (0, 2) of patch 0
    valid_ms = np.ones_like(ms[:, :1], dtype=bool)
    valid_ms[0, 0, 0, 2] = False
    batch = PatchBatch(
        torch.from_numpy(ms),
        torch.from_numpy(pan),
        torch.from_numpy(valid),
        torch.from_numpy(valid_ms),
        keys=((0, 0), (0, 1)),  # type: ignore[arg-type]
        ratio=4,
    )
    aug = augment_patches(batch, "d4")
    assert aug.valid is not None and aug.valid_ms is not None
    for i in range(len(aug)):
        m, p = aug.ms[i].numpy(), aug.pan[i, 0].numpy()
        blocks = p.reshape(5, 4, 5, 4)
        assert np.allclose(blocks.min(axis=(1, 3)), blocks.max(axis=(1, 3)))  # still blocks
        assert np.allclose(blocks[:, 0, :, 0], m.mean(axis=0), atol=1e-6)
        v = aug.valid[i, 0].numpy().reshape(5, 4, 5, 4).all(axis=(1, 3))
        assert np.array_equal(v, aug.valid_ms[i, 0].numpy())
    # the 8 images of patch 0 are 8 different arrays (all elements present, none repeated)
    images = {aug.ms[i].numpy().tobytes() for i in range(0, len(aug), 2)}
    assert len(images) == 8


def test_flips_fit_is_the_fit_on_the_extended_batch(patches: PatchBatch) -> None:
    explicit = PatchBatch(
        torch.cat([transform(patches.ms, k) for k in (0, 1, 2, 3)]),
        torch.cat([transform(patches.pan, k) for k in (0, 1, 2, 3)]),
        None,
        None,
        patches.keys * 4,
        patches.ratio,
    )
    a = fit_tailor(patches, _backbone(), SENSOR, _plain(augment="flips"))
    b = fit_tailor(explicit, _backbone(), SENSOR, _plain())
    plain = fit_tailor(patches, _backbone(), SENSOR, _plain())
    assert a.history == pytest.approx(b.history, rel=1e-5)
    assert a.history != pytest.approx(plain.history, rel=1e-3)  # the augmentation did something


def test_augmented_fit_does_not_depend_on_the_scene_orientation(patches: PatchBatch) -> None:
    """Under "d4" a fit on the transposed patches sees the same set of patches: same losses
    (to float rounding: the batch order differs). Without augmentation it does not."""

    def turned(p: PatchBatch, k: int) -> PatchBatch:
        return dataclasses.replace(p, ms=transform(p.ms, k), pan=transform(p.pan, k))

    for mode, k, same in (("d4", 4, True), ("flips", 3, True), ("none", 4, False)):
        a = fit_tailor(patches, _backbone(), SENSOR, _plain(augment=mode))
        b = fit_tailor(turned(patches, k), _backbone(), SENSOR, _plain(augment=mode))
        assert (a.history[:3] == pytest.approx(b.history[:3], rel=1e-4)) is same, mode


def test_augmented_fit_is_deterministic_and_keeps_held_out_patches_plain() -> None:
    s = make_scene((96, 128), SENSOR, seed=5)
    cfg = SampleConfig(patch=32, fraction=0.5, min_patches=3, max_patches=3, holdout=2)
    p = sample_patches((s.pan, s.ms), cfg, 1, ratio=4, dn_max=SENSOR.dn_max)
    fit = FitConfig(steps=10, augment="rot180", check_every=2, seed=2)
    a = fit_tailor(p, _backbone(), SENSOR, fit)
    b = fit_tailor(p, _backbone(), SENSOR, fit)
    assert a.history == b.history and a.holdout == b.holdout and a.kept_step == b.kept_step
    assert a.holdout["patches"] == 2
    plain = fit_tailor(p, _backbone(), SENSOR, dataclasses.replace(fit, augment="none"))
    assert plain.holdout["initial"] == a.holdout["initial"]  # same held-out patches, unaugmented


def test_unknown_mode_is_refused_with_the_option_named() -> None:
    with pytest.raises(ConfigError, match="augment"):
        FitConfig(augment="rot90")
