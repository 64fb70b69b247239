"""``pantailor batch`` on real scenes: a STAC catalog of the two Landsat scenes (per-band assets,
sensor from the platform) and a CSV manifest of the three SpaceNet Rotterdam WorldView-2 scenes
(per-scene ``ms_decimate``), each through the command line on one LocalCluster."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.data]

L8 = {"B8": "pan", "B1": "coastal", "B2": "blue", "B3": "green", "B4": "red", "B5": "nir08",
      "B6": "swir16", "B7": "swir22"}  # fmt: skip
L7 = {"B8": "pan", "B1": "blue", "B2": "green", "B3": "red", "B4": "nir08", "B5": "swir16",
      "B7": "swir22"}  # fmt: skip
SCENES = {
    "LC08_L1TP_195025_20130707_20170503_01_T1": ("landsat-8", L8, datetime(2013, 7, 7, 10)),
    "LE07_L1TP_195025_20010730_20170204_01_T1": ("landsat-7", L7, datetime(2001, 7, 30, 10)),
}


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


def landsat_catalog(data: Path, root: Path) -> Path:
    """A self-contained STAC catalog whose items point (absolute hrefs) at the real band files."""
    import pystac

    cat = pystac.Catalog("r-cran-landsat", "Landsat-7 and -8 scenes of the same area")
    for scene_id, (platform, bands, when) in SCENES.items():
        folder = data / "landsat" / "r_cran_satellite" / scene_id[:4]
        item = pystac.Item(scene_id, None, None, when, {"platform": platform})
        for key, common in bands.items():
            asset = pystac.Asset(str(folder / f"{scene_id}_{key}.TIF"), roles=["data"])
            asset.extra_fields["eo:bands"] = [{"name": key, "common_name": common}]
            item.add_asset(key, asset)
        cat.add_item(item)
    cat.normalize_hrefs(str(root / "stac"))
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    return root / "stac" / "catalog.json"


def test_real_landsat_stac_catalog_batch(
    data_root: Path, address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = landsat_catalog(data_root, tmp_path)
    out = tmp_path / "out"
    argv = ["batch", str(catalog), "-o", str(out), "--method", "mtf-glp",
            "--scheduler", address, "--device", "cpu", "--quality-tiles", "1"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    items = json.loads((out / "products.json").read_text())["features"]
    assert sorted(i["id"] for i in items) == sorted(SCENES)
    for item in items:
        assert item["properties"]["proj:code"] == "EPSG:32632"
        assert item["properties"]["pantailor:sensor"] in ("landsat7", "landsat8")
        assert 0.0 < item["properties"]["pantailor:hqnr"] <= 1.0
        assert any(link["rel"] == "derived_from" for link in item["links"])
        cog = out / item["assets"]["data"]["href"]  # relative to OUTDIR
        assert cog.is_file() and cog.with_suffix(".quicklook.png").is_file()
    assert main([*argv, "--dry-run"]) == 0
    assert "2 scenes: 2 done" in capsys.readouterr().out


def test_real_spacenet_manifest_batch(
    data_file: Any, address: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        f"rotterdam{i},{data_file(f'vhr/spacenet_wv2/pan{i}.tif')};"
        f"{data_file(f'vhr/spacenet_wv2/ms{i}.tif')},wv2-4band,2"
        for i in (1, 2, 3)
    ]
    m = tmp_path / "spacenet.csv"
    m.write_text("id,inputs,sensor,ms_decimate\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    argv = ["batch", str(m), "-o", str(out), "--adapt", "none", "--scheduler", address,
            "--device", "cpu", "--quality-tiles", "1", "--json"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert sorted(result["done"]) == ["rotterdam1", "rotterdam2", "rotterdam3"]
    summary = (out / "summary.csv").read_text().splitlines()
    assert len(summary) == 4 and all(",done," in line for line in summary[1:])
    report = json.loads((out / "rotterdam2" / "rotterdam2.report.json").read_text())
    assert report["pan_shape_yx"] == [600, 600] and report["sensor"] == "wv2-4band"
