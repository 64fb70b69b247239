"""The least-squares start of the tailor's last layer (pipeline.fit_ls)."""

from __future__ import annotations

import pytest
import torch

from pipeline.backbones import build
from pipeline.errors import ConfigError
from pipeline.fit import FitConfig, fit_tailor
from pipeline.losses import LossWeights
from pipeline.sampling import SampleConfig, sample_patches
from pipeline.sensors import get_sensor
from pipeline.synthetic import make_scene

SENSOR = get_sensor("qb")


@pytest.fixture(scope="module")
def patches():  # type: ignore[no-untyped-def]
    s = make_scene((96, 128), SENSOR, seed=3)
    cfg = SampleConfig(patch=32, fraction=0.5, min_patches=3, max_patches=3)
    return sample_patches((s.pan, s.ms), cfg, 0, ratio=4, dn_max=SENSOR.dn_max)


def _backbone():  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return build("fusionnet", 4).eval().requires_grad_(False)


def test_ls_start_lowers_the_quadratic_terms_without_a_step(patches) -> None:  # type: ignore[no-untyped-def]
    """With only the terms it solves for, the LS start (no optimiser step) beats the zero start
    and more CG iterations do not do worse (CG decreases the quadratic monotonically)."""
    torch.set_num_threads(1)
    w = LossWeights(angle=0.0, spatial=0.0)
    zero = fit_tailor(patches, _backbone(), SENSOR, FitConfig(steps=0, weights=w))
    few = fit_tailor(patches, _backbone(), SENSOR, FitConfig(steps=0, weights=w, ls_start=2))
    more = fit_tailor(patches, _backbone(), SENSOR, FitConfig(steps=0, weights=w, ls_start=12))
    assert few.losses["total"] < 0.95 * zero.losses["total"]
    assert more.losses["total"] <= few.losses["total"] * 1.02
    assert float(more.tailor_state["conv_b.weight"].abs().sum()) > 0  # conv_b moved off zero


def test_ls_start_is_validated() -> None:
    with pytest.raises(ConfigError, match="ls_start"):
        FitConfig(ls_start=-1)
