"""Same-sensor control and a cross-sensor pair on real data, with the product's fit defaults.

The WV3 FusionNet on a WV3 reference scene (``rr/cdif/WV3_test``) is already right for it: the
default fit must leave its reference scores about as they are (ERGAS within 1 %, Q2n within
0.01, the spectral angle within 15 %: it rises 11-12 %, a known regression). On WorldView-2
(``imgWV2``) the same weights are off-sensor: the default fit must raise the toolbox HQNR and
lower the D_S the new spatial term targets.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.backbones import load
from pipeline.evaluate import crop_inputs, to_dn
from pipeline.fit import FitConfig
from pipeline.fuse import fuse
from pipeline.quality import full_resolution, reduced_resolution
from pipeline.quality.product import load_inputs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.data
def test_same_sensor_control_stays_near_the_pretrained_network(
    data_file: Callable[[str], Path],
) -> None:
    inputs = to_dn(load_inputs([data_file("rr/cdif/WV3_test.mat")], "wv3", dn_max=1.0), 1.0)
    bb = load("fusionnet", "dlpan:wv3", sensor=inputs.sensor)
    out = {
        m: fuse(inputs.pan, inputs.ms, inputs.sensor, bb, fit=FitConfig(adapt=m))
        for m in ("none", "tailor")
    }
    rr = {m: reduced_resolution(f.image, inputs.gt, inputs.sensor) for m, f in out.items()}
    # measured (benchmarks/results/method_ablation.md, median of 3 seeds): ERGAS 4.657 -> 4.667,
    # Q2n 0.903 -> 0.894, SAM 4.06 -> 4.50 (seed 0: 4.55): the D_S term costs the control some
    # spectral angle -- a known regression (docs/notes/method.md); this bounds it
    assert rr["tailor"]["ergas"] <= 1.01 * rr["none"]["ergas"]
    assert rr["tailor"]["q2n"] >= rr["none"]["q2n"] - 0.01
    assert rr["tailor"]["sam"] <= 1.15 * rr["none"]["sam"]
    fit = out["tailor"].fit
    assert fit.holdout and fit.holdout["patches"] >= 1  # the held-out check ran
    assert fit.holdout["kept"] >= fit.holdout["initial"]  # never kept below the start


@pytest.mark.data
def test_cross_sensor_default_fit_raises_toolbox_hqnr(data_file: Callable[[str], Path]) -> None:
    inputs = crop_inputs(load_inputs([data_file("vhr/grip/imgWV2.mat")], "wv2"), 256)
    bb = load("fusionnet", "dlpan:wv3", sensor=inputs.sensor)
    fr = {
        m: full_resolution(
            fuse(inputs.pan, inputs.ms, inputs.sensor, bb, fit=FitConfig(adapt=m)).image,
            inputs.ms,
            inputs.pan,
            inputs.sensor,
        )
        for m in ("none", "tailor")
    }
    assert fr["tailor"]["hqnr"] > fr["none"]["hqnr"] + 0.03
    assert fr["tailor"]["d_s"] < fr["none"]["d_s"]
