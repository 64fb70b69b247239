"""In-memory fit + infer (pipeline.fuse): the overlapped path equals the sequential one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.backbones import Backbone, build, upsample
from pipeline.errors import InputError
from pipeline.fit import FitConfig
from pipeline.fuse import fuse
from pipeline.sampling import SampleConfig
from pipeline.sensors import get_sensor
from pipeline.synthetic import make_scene

SENSOR = get_sensor("ge1")
FIT = FitConfig(steps=8, patience=8)
SAMPLE = SampleConfig(patch=32, fraction=0.25, min_patches=3, max_patches=3)


@pytest.fixture(scope="module")
def scene():  # type: ignore[no-untyped-def]
    return make_scene((128, 160), SENSOR, seed=5)


def _backbone(seed: int = 0) -> Backbone:
    torch.manual_seed(seed)
    return build("fusionnet", 4).eval().requires_grad_(False)


def test_overlapped_fit_and_extract_equal_the_sequential_path(scene) -> None:  # type: ignore[no-untyped-def]
    """Both paths fit with one torch thread: the same tailor bit for bit (64-px patches are
    big enough for a 2-thread fit to round differently: 6e-9 before both were pinned)."""
    bb = _backbone()
    sample = SampleConfig(patch=64, fraction=0.25, min_patches=3, max_patches=3)
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # a caller with more threads (the suite runs with one)
    try:
        a = fuse(scene.pan, scene.ms, SENSOR, bb, fit=FIT, sample=sample, seed=2)
        b = fuse(scene.pan, scene.ms, SENSOR, bb, fit=FIT, sample=sample, seed=2, overlap=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert a.overlapped and not b.overlapped
    assert a.image.shape == (4, 128, 160) and a.image.dtype == np.float32
    assert a.fit.history == b.fit.history  # the same fit
    assert all(
        torch.equal(a.fit.tailor_state[k], b.fit.tailor_state[k]) for k in a.fit.tailor_state
    )
    np.testing.assert_allclose(a.image, b.image, rtol=1e-4, atol=1e-3 * SENSOR.dn_max * 1e-3)
    assert a.fit.steps == 8 and set(a.seconds) == {"sample", "fit", "infer", "total"}
    c = fuse(scene.pan, scene.ms, SENSOR, bb, fit=FIT, sample=sample, seed=2, max_feature_bytes=1)
    assert not c.overlapped  # too big to hold the features: sequential
    np.testing.assert_allclose(c.image, b.image, rtol=1e-4, atol=1e-3)


def test_the_tailor_changes_the_output_and_none_is_the_backbone(scene) -> None:  # type: ignore[no-untyped-def]
    bb = _backbone()
    none = fuse(
        scene.pan, scene.ms, SENSOR, bb, fit=FitConfig(adapt="none"), sample=SAMPLE, clip=False
    )
    ms = torch.from_numpy(scene.ms.astype(np.float32) / np.float32(SENSOR.dn_max))[None]
    pan = torch.from_numpy(scene.pan.astype(np.float32) / np.float32(SENSOR.dn_max))[None, None]
    with torch.inference_mode():
        ref = bb(ms, upsample(ms, 4, bb.upsampler), pan)[0].numpy() * SENSOR.dn_max
    np.testing.assert_allclose(none.image, ref, rtol=1e-4, atol=1e-2)
    tailored = fuse(scene.pan, scene.ms, SENSOR, bb, fit=FIT, sample=SAMPLE)
    assert np.abs(tailored.image - none.image).max() > 1e-2


def test_nodata_is_excluded_and_written_back(scene) -> None:  # type: ignore[no-untyped-def]
    pan = scene.pan.astype(np.float32).copy()
    ms = scene.ms.astype(np.float32).copy()
    ms[:, :4, :] = 0.0  # top 16 PAN rows: no data in every band
    out = fuse(pan, ms, SENSOR, _backbone(), fit=FIT, sample=SAMPLE, nodata=0.0)
    assert np.all(out.image[:, :16, :] == 0.0)
    assert np.all(out.image[:, 16:, :] != 0.0)
    pan[20, 20] = np.nan
    out = fuse(pan, ms, SENSOR, _backbone(), fit=FIT, sample=SAMPLE, nodata=0.0)
    assert np.all(out.image[:, 20, 20] == 0.0)


def test_bad_shapes_are_named(scene) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="ratio") as e:
        fuse(scene.pan[:-4], scene.ms, SENSOR, _backbone(), fit=FIT, sample=SAMPLE)
    assert "(124, 160)" in str(e.value)
    with pytest.raises(InputError, match="band count"):
        fuse(scene.pan, scene.ms[:3], SENSOR, _backbone(), fit=FIT, sample=SAMPLE)


def test_an_extractor_failure_surfaces_and_threads_are_restored(scene, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    bb = _backbone()

    def boom(*_: object) -> torch.Tensor:
        raise RuntimeError("extractor exploded")

    before = torch.get_num_threads()
    import pipeline.fuse as fuse_mod

    real = fuse_mod.copy.deepcopy

    def broken_copy(obj: object) -> object:
        clone = real(obj)
        monkeypatch.setattr(clone, "extract", boom)
        return clone

    monkeypatch.setattr(fuse_mod.copy, "deepcopy", broken_copy)
    with pytest.raises(RuntimeError, match="exploded"):
        fuse(scene.pan, scene.ms, SENSOR, bb, fit=FIT, sample=SAMPLE)
    assert torch.get_num_threads() == before
