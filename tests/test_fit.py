"""Fitting: loss decreases, determinism, best-step kept, cached path == uncached, baselines."""

from __future__ import annotations

import pytest
import torch

from pipeline.backbones import build, checksum
from pipeline.errors import ConfigError
from pipeline.fit import FitConfig, adapt, evaluate, fit_tailor
from pipeline.losses import LossWeights
from pipeline.sampling import PatchBatch, SampleConfig, sample_patches
from pipeline.sensors import get_sensor
from pipeline.synthetic import make_scene
from pipeline.tailor import TailoredModel

SENSOR = get_sensor("ge1")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ge1_patches() -> PatchBatch:
    """Three 32-px fit patches of a seeded synthetic GeoEye-1 scene (no held-out ones)."""
    s = make_scene((96, 128), SENSOR, seed=3)
    cfg = SampleConfig(patch=32, fraction=0.5, min_patches=3, max_patches=3, holdout=0)
    return sample_patches((s.pan, s.ms), cfg, 0, ratio=4, dn_max=SENSOR.dn_max)


@pytest.fixture(scope="module")
def patches() -> PatchBatch:
    return ge1_patches()


def _backbone(seed: int = 0):
    torch.manual_seed(seed)
    return build("fusionnet", 4).eval().requires_grad_(False)


def test_tailor_fit_lowers_the_loss(patches: PatchBatch) -> None:
    res = fit_tailor(patches, _backbone(), SENSOR, FitConfig(steps=25, lr=1e-2))
    assert res.adapt == "tailor" and res.tailor_state is not None
    assert 1 <= res.steps <= 25
    assert res.losses["total"] < 0.9 * res.initial_losses["total"]
    assert set(res.losses) == {"spectral", "angle", "spatial", "consistency", "total"}
    assert res.losses["total"] == pytest.approx(min(res.history))  # the best step is kept
    assert res.seconds >= res.feature_seconds > 0


def test_fit_is_deterministic(patches: PatchBatch) -> None:
    cfg = FitConfig(steps=6, seed=4)
    a = fit_tailor(patches, _backbone(), SENSOR, cfg)
    b = fit_tailor(patches, _backbone(), SENSOR, cfg)
    assert a.history == b.history
    for k, v in a.tailor_state.items():  # type: ignore[union-attr]
        assert torch.equal(v, b.tailor_state[k])  # type: ignore[index]


def test_cached_features_give_the_losses_of_the_full_model(patches: PatchBatch) -> None:
    """The losses computed on cached features equal those of the assembled model's forward."""
    bb = _backbone()
    cfg = FitConfig(steps=8, lr=1e-2, patience=100, augment="none")  # losses of these patches
    res = fit_tailor(patches, bb, SENSOR, cfg)
    model = res.model(bb)
    assert isinstance(model, TailoredModel)
    again = evaluate(patches, model, SENSOR)
    for k, v in res.losses.items():
        assert again.losses[k] == pytest.approx(v, rel=1e-4, abs=1e-7)


def test_plateau_stops_early(patches: PatchBatch) -> None:
    # a learning rate too small to make 10 % relative progress: stops after `patience` steps
    cfg = FitConfig(steps=50, lr=1e-7, patience=3, min_delta=0.1)
    res = fit_tailor(patches, _backbone(), SENSOR, cfg)
    assert res.steps == 4  # step 1 sets the best, 3 more without progress


def test_zero_steps_and_weights_subset(patches: PatchBatch) -> None:
    res = fit_tailor(patches, _backbone(), SENSOR, FitConfig(steps=0))
    assert res.steps == 0 and res.losses == res.initial_losses
    w = LossWeights(spectral=1.0, angle=0.0, spatial=0.0, consistency=0.0)
    res = fit_tailor(patches, _backbone(), SENSOR, FitConfig(steps=2, weights=w))
    assert set(res.losses) == {"spectral", "total"}
    w = LossWeights(spectral=0.0, angle=1.0, spatial=0.0, consistency=0.0)
    res = fit_tailor(patches, _backbone(), SENSOR, FitConfig(steps=2, weights=w))
    assert set(res.losses) == {"angle", "total"}


def test_finetune_trains_a_copy(patches: PatchBatch) -> None:
    bb = _backbone()
    before = checksum(bb)
    cfg = FitConfig(adapt="finetune", finetune_steps=5, finetune_lr=1e-3, patience=100)
    model, res = adapt(patches, bb, SENSOR, cfg)
    assert checksum(bb) == before  # the pretrained backbone is untouched
    assert res.steps == 5 and res.backbone_state is not None and res.tailor_state is None
    assert checksum(model) != before
    assert res.losses["total"] < res.initial_losses["total"]  # a later step was kept
    assert not any(p.requires_grad for p in model.parameters())


def test_none_reports_losses_without_fitting(patches: PatchBatch) -> None:
    bb = _backbone()
    model, res = adapt(patches, bb, SENSOR, FitConfig(adapt="none"))
    assert model is bb and res.steps == 0 and res.losses["total"] > 0
    s = res.summary()
    assert s["adapt"] == "none" and "fit_seconds" in s
    tail = fit_tailor(patches, bb, SENSOR, FitConfig(steps=0, augment="none"))  # same batch
    assert tail.initial_losses["total"] == pytest.approx(res.losses["total"], rel=1e-5)


def test_config_validation_and_mismatched_patches(patches: PatchBatch) -> None:
    with pytest.raises(ConfigError):
        FitConfig(adapt="zeroshot")
    with pytest.raises(ConfigError):
        FitConfig(lr=0.0)
    with pytest.raises(ConfigError, match="do not match"):
        fit_tailor(patches, build("fusionnet", 8), get_sensor("wv3"), FitConfig(steps=1))


def test_fit_on_cuda_when_present(patches: PatchBatch) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    res = fit_tailor(patches, _backbone(), SENSOR, FitConfig(steps=3), device="cuda")
    assert all(v.device.type == "cpu" for v in res.tailor_state.values())  # type: ignore[union-attr]
