"""Batch sources, planning, state and lock without a cluster: manifests, STAC, globs, the DB."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from pipeline.batch import BatchConfig, BatchState, BatchStateError, ManifestError, run_batch
from pipeline.batch.plan import load_scenes, make_plan, plan_summary
from pipeline.batch.sources import glob_scenes, read_manifest
from pipeline.batch.stac import read_stac
from pipeline.batch.state import DB_NAME, batch_lock, lock_holder
from pipeline.cli import main


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


# ----------------------------------------------------------------------------- manifests


def test_csv_manifest_rows_types_relative_paths_and_empty_cells(tmp_path: Path) -> None:
    m = tmp_path / "m" / "scenes.csv"
    m.parent.mkdir()
    m.write_text(
        "id,inputs,sensor,ms_decimate,nodata,method\n"
        "sp1,pan1.tif;ms1.tif,wv2-4band,2,,\n"
        'sp2,"/abs/pan2.tif; ms2.tif",,,0,gsa\n'
    )
    a, b = read_manifest(m)
    assert a.id == "sp1" and a.sensor == "wv2-4band"
    assert a.inputs == (str(m.parent / "pan1.tif"), str(m.parent / "ms1.tif"))
    assert a.options == {"ms_decimate": 2}  # empty cells: the batch-wide value
    assert b.inputs == ("/abs/pan2.tif", str(m.parent / "ms2.tif")) and b.sensor is None
    assert b.options == {"nodata": 0.0, "method": "gsa"} and isinstance(b.options["nodata"], float)
    assert a.origin == "scenes.csv line 2" and b.origin == "scenes.csv line 3"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("id,inputs,ms_decimat\na,p.tif;m.tif,2\n", r"line 1: unknown column 'ms_decimat'.*did you mean 'ms_decimate'"),
        ("id,sensor\na,qb\n", r"line 1: the required column 'inputs' is missing"),
        ("id,inputs,ms_decimate\na,p.tif;m.tif,2\nb,p.tif;m.tif,two\n", r"line 3: 'ms_decimate' must be an integer.*'two'"),
        ("id,inputs,dn_max\na,p.tif;m.tif,lots\n", r"line 2: 'dn_max' must be a number"),
        ("id,inputs\na,p.tif;m.tif\nb,q.tif;n.tif\na,r.tif;s.tif\n", r"line 4: duplicate id 'a' \(first at line 2\)"),
        ("id,inputs\na,\n", r"line 2: 'inputs' is empty"),
        ("id,inputs\nbad/id,p.tif;m.tif\n", r"line 2: 'id' must be a short name"),
        ("id,inputs\n", r"lists no scenes"),
    ],
    ids=["unknown-column", "missing-column", "wrong-int", "wrong-float", "duplicate", "empty-inputs", "bad-id", "empty"],
)  # fmt: skip
def test_malformed_csv_is_refused_with_file_line_and_fix(
    tmp_path: Path, text: str, match: str
) -> None:
    m = tmp_path / "scenes.csv"
    m.write_text(text)
    with pytest.raises(ManifestError, match=match) as err:
        read_manifest(m)
    assert str(m) in str(err.value)


def test_yaml_and_jsonl_manifests_name_their_lines(tmp_path: Path) -> None:
    y = tmp_path / "s.yaml"
    y.write_text(
        "scenes:\n"
        "  - id: a\n    inputs: [p.tif, m.tif]\n    patch: 3\n"
        "  - id: b\n    inputs: [q.mat]\n    ms_decimate: 2.5\n"
    )
    with pytest.raises(ManifestError, match=r"s.yaml line 5: 'ms_decimate' must be an integer"):
        read_manifest(y)
    y.write_text(
        "- id: a\n  inputs: [p.tif, m.tif]\n  patch: 3\n  weights: dlpan:wv3\n"
        "- id: b\n  inputs: [p.tif, m.tif]\n  weights: w/own.pt\n"
    )
    a, b = read_manifest(y)
    assert a.options == {"patch": 3, "weights": "dlpan:wv3"}
    assert b.options == {"weights": str(tmp_path / "w" / "own.pt")}  # relative to the manifest
    j = tmp_path / "s.jsonl"
    j.write_text(
        '{"id": "a", "inputs": ["p.tif", "m.tif"]}\n\n{"id": "b", "inputs": ["q.mat"], "pach": 1}\n'
    )
    with pytest.raises(ManifestError, match=r"s.jsonl line 3: unknown column 'pach'.*'patch'"):
        read_manifest(j)
    j.write_text('{"id": "a", "inputs": ["p.tif", "m.tif"], "adapt": true}\n')
    with pytest.raises(ManifestError, match=r"line 1: 'adapt' must be text"):
        read_manifest(j)


def test_glob_source_pairs_pan_and_ms_by_wildcard(tmp_path: Path) -> None:
    for i in (1, 2, 10):
        touch(tmp_path / "cropped" / f"{i}_pan.mat")
        touch(tmp_path / "cropped" / f"{i}_ms.mat")
    touch(tmp_path / "l8" / "x" / "PAN.tif")
    for b in (3, 1, 2):
        touch(tmp_path / "l8" / "x" / f"B{b}.tif")
    specs = glob_scenes(str(tmp_path / "cropped" / "*_pan.mat"), "{dir}/{1}_ms.mat")
    assert [s.id for s in specs] == ["1", "2", "10"]  # natural order
    assert specs[2].inputs[1] == str(tmp_path / "cropped" / "10_ms.mat")
    (band,) = glob_scenes(str(tmp_path / "l8" / "*" / "PAN.tif"), "{dir}/B[0-9].tif")
    assert band.id == "x" and [Path(p).name for p in band.inputs] == [
        "PAN.tif", "B1.tif", "B2.tif", "B3.tif",
    ]  # fmt: skip
    with pytest.raises(ManifestError, match="matches no file"):
        glob_scenes(str(tmp_path / "nothing" / "*.tif"), "{dir}/ms.tif")
    with pytest.raises(ManifestError, match="unknown field"):
        glob_scenes(str(tmp_path / "cropped" / "*_pan.mat"), "{dir}/{2}_ms.mat")


# ----------------------------------------------------------------------------- STAC


def _band(name: str, common: str | None = None) -> dict[str, Any]:
    return {"name": name, **({"common_name": common} if common else {})}


def landsat_item(item_id: str, platform: str, bands: dict[str, str], when: str) -> Any:
    from datetime import datetime

    import pystac

    item = pystac.Item(item_id, None, None, datetime.fromisoformat(when), {"platform": platform})
    for key, common in bands.items():
        asset = pystac.Asset(f"./{item_id}_{key}.TIF", media_type=pystac.MediaType.GEOTIFF)
        asset.extra_fields["eo:bands"] = [_band(key, common)]
        item.add_asset(key, asset)
    return item


L8 = {"B8": "pan", "B1": "coastal", "B2": "blue", "B3": "green", "B4": "red", "B5": "nir08",
      "B6": "swir16", "B7": "swir22"}  # fmt: skip


def test_stac_catalog_per_band_assets_sensor_inference_and_a_missing_asset(
    tmp_path: Path,
) -> None:
    import pystac

    cat = pystac.Catalog("archive", "test archive")
    cat.add_item(landsat_item("LC08_a", "landsat-8", L8, "2013-07-07T10:00:00+00:00"))
    l7 = {k: v for k, v in L8.items() if k not in ("B1", "B7")}  # no SWIR-2: fails alone
    cat.add_item(landsat_item("LE07_b", "landsat-7", l7, "2001-07-30T10:00:00+00:00"))
    cat.normalize_hrefs(str(tmp_path / "stac"))
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    a, b = read_stac(tmp_path / "stac" / "catalog.json")
    assert a.sensor == "landsat8" and a.error is None
    item_dir = tmp_path / "stac" / "LC08_a"
    assert a.inputs == tuple(str(item_dir / f"LC08_a_B{i}.TIF") for i in (8, 1, 2, 3, 4, 5, 6, 7))
    assert a.options["group"] == "landsat-8-2013-07-07" and a.links[0].endswith("LC08_a.json")
    assert b.inputs == () and b.error is not None
    assert "'LE07_b'" in b.error and "'swir2'" in b.error and "swir22" in b.error


def test_stac_item_collection_multiband_asset_and_unreadable_json(tmp_path: Path) -> None:
    from datetime import datetime

    import pystac

    item = pystac.Item("wv", None, None, datetime(2020, 1, 1), {"platform": "worldview-2"})
    pan = pystac.Asset("imgs/pan.tif")
    pan.extra_fields["eo:bands"] = [_band("P", "pan")]
    ms = pystac.Asset("imgs/ms.tif")
    ms.extra_fields["eo:bands"] = [_band(c, c) for c in ("blue", "green", "red", "nir")]
    item.add_asset("pan", pan)
    item.add_asset("multispectral", ms)
    item.properties["pantailor:ms_decimate"] = 2
    f = tmp_path / "items.json"
    f.write_text(json.dumps(pystac.ItemCollection([item]).to_dict(transform_hrefs=False)))
    (s,) = read_stac(f)
    assert s.sensor == "wv2-4band"  # worldview-2 with a 4-band MS asset
    assert s.inputs == (str(tmp_path / "imgs/pan.tif"), str(tmp_path / "imgs/ms.tif"))
    assert s.options["ms_decimate"] == 2
    f.write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(ManifestError, match="STAC file cannot be read") as err:
        read_stac(f)
    assert str(f) in str(err.value)
    item.properties["platform"] = "spot-7"
    f.write_text(json.dumps(pystac.ItemCollection([item]).to_dict(transform_hrefs=False)))
    assert "cannot be inferred" in str(read_stac(f)[0].error)
    assert read_stac(f, sensor="wv2-4band")[0].error is None


# ----------------------------------------------------------------------------- plan, state, lock


def cfg(tmp_path: Path, source: Path, **kw: Any) -> BatchConfig:
    return BatchConfig(source=str(source), out_dir=str(tmp_path / "out"), sensor="qb", **kw)


def test_colliding_outputs_and_unknown_only_ids_are_refused(tmp_path: Path) -> None:
    m = tmp_path / "m.csv"
    m.write_text("id,inputs,output\na,p.tif;m.tif,x/same.tif\nb,q.tif;n.tif,X/Same.tif\n")
    c = cfg(tmp_path, m)
    with pytest.raises(
        ManifestError, match=r"Scenes 'a' \(m.csv line 2\) and 'b' \(m.csv line 3\)"
    ):
        make_plan(c, load_scenes(c), {})
    m.write_text("id,inputs\na,p.tif;m.tif\n")
    with pytest.raises(ManifestError, match=r"--only names scenes.*zz"):
        make_plan(cfg(tmp_path, m, only=("zz",)), load_scenes(c), {})


def test_bad_row_settings_fail_that_scene_alone_in_the_plan(tmp_path: Path) -> None:
    m = tmp_path / "m.csv"
    m.write_text("id,inputs,method\na,p.tif;m.tif,\nb,p.tif;m.tif,fusionnett\n")
    c = cfg(tmp_path, m)
    plan = plan_summary(make_plan(c, load_scenes(c), {}))
    assert plan["actions"] == {"new": 1, "invalid": 1}
    assert "m.csv line 3" in plan["invalid"]["b"] and "fusionnett" in plan["invalid"]["b"]


def test_dry_run_of_many_rows_writes_nothing_and_reads_no_file(tmp_path: Path) -> None:
    m = tmp_path / "big.csv"
    rows = "".join(f"s{i},p{i}.tif;m{i}.tif,,2\n" for i in range(2000))
    m.write_text("id,inputs,sensor,ms_decimate\n" + rows)
    t0 = time.perf_counter()
    res = run_batch(cfg(tmp_path, m, dry_run=True))
    seconds = time.perf_counter() - t0  # reported, never asserted (shared machine)
    assert res.plan["actions"] == {"new": 2000} and len(res.plan["to_run"]) == 2000
    assert not (tmp_path / "out").exists(), seconds


def test_other_batch_database_is_refused_and_named(tmp_path: Path) -> None:
    out = tmp_path / "out"
    BatchState.open(out, "/data/first.csv").close()
    with pytest.raises(BatchStateError, match="another batch") as err:
        BatchState.open(out, "/data/second.csv")
    text = str(err.value)
    assert str(out / DB_NAME) in text and "/data/first.csv" in text and "/data/second.csv" in text
    (out / DB_NAME).write_bytes(b"not a database at all" * 100)
    with pytest.raises(BatchStateError, match="cannot be opened"):
        BatchState.open(out, "/data/first.csv")


def test_an_output_that_is_a_file_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = tmp_path / "m.csv"
    m.write_text("id,inputs\na,p.tif;m.tif\n")
    before = m.read_bytes()
    for dry in (False, True):
        assert main(["batch", str(m), "-o", str(m), "--sensor", "qb", *(["--dry-run"] * dry)]) == 2
        err = capsys.readouterr().err
        assert "must be a folder" in err and str(m) in err and "Traceback" not in err
    assert m.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.csv"]


def test_second_driver_on_one_outdir_hits_the_lock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    m = tmp_path / "m.csv"
    m.write_text("id,inputs\na,p.tif;m.tif\n")
    out = tmp_path / "out"
    assert lock_holder(out) is None
    with batch_lock(out):
        assert lock_holder(out) is not None and "pid" in str(lock_holder(out))
        with pytest.raises(BatchStateError, match=r"Another batch driver.*held by pid"):
            run_batch(cfg(tmp_path, m))
        assert main(["batch", str(m), "-o", str(out), "--sensor", "qb"]) == 2
        assert "Another batch driver" in capsys.readouterr().err
    assert lock_holder(out) is None  # released
    assert not (out / DB_NAME).exists()  # the refused drivers wrote nothing


def test_status_reads_totals_rate_and_eta(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    st = BatchState.open(out, "src")
    entries = [
        {"id": f"s{i}", "position": i, "fingerprint": "f", "output": f"o{i}", "origin": "m"}
        for i in range(4)
    ]
    st.queue(entries)
    st.begin_run()
    for i in (0, 1):
        st.start(f"s{i}")
        st.finish(f"s{i}", 2.0, {"tiles": 6, "hqnr_product": 0.8})
    st.fail("s2", "Input file not found.", 0.1, entries[2])
    st.start("s3")
    con = sqlite3.connect(out / DB_NAME)  # pretend the run began 30 minutes ago
    with con:
        con.execute("UPDATE runs SET started_at = started_at - 1800")
    con.close()
    assert main(["status", str(out), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["totals"] == {
        "done": 2, "failed": 1, "running": 1, "queued": 0, "pending": 1, "scenes": 4,
    }  # fmt: skip
    assert status["scenes_per_hour"] == pytest.approx(4.0, rel=0.01)
    assert status["eta_seconds"] == pytest.approx(900.0, rel=0.01)
    assert [s["state"] for s in status["scenes"]] == ["done", "done", "failed", "running"]
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Input file not found." in text and "2 done, 1 failed, 1 pending" in text
    st.close()
    assert main(["status", str(tmp_path / "nothing")]) == 2


def test_paths_expand_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCENES", str(tmp_path / "archive"))
    m = tmp_path / "m.csv"
    m.write_text("id,inputs\na,$SCENES/p.tif;${SCENES}/m.tif\n")
    (a,) = read_manifest(m)
    assert a.inputs == (str(tmp_path / "archive" / "p.tif"), str(tmp_path / "archive" / "m.tif"))


def test_dry_run_check_inputs_counts_tiles_and_names_unreadable_scenes(tmp_path: Path) -> None:
    from tests.test_batch import write_pair

    write_pair(tmp_path / "ok", seed=1)  # 72 x 104 PAN: 3 x 4 tiles of 32
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "pan.tif").write_bytes(b"not a tiff")
    (tmp_path / "bad" / "ms.tif").write_bytes(b"not a tiff")
    m = tmp_path / "m.csv"
    m.write_text("id,inputs\nok,ok/pan.tif;ok/ms.tif\nbad,bad/pan.tif;bad/ms.tif\n")
    res = run_batch(cfg(tmp_path, m, dry_run=True, check_inputs=True, tile=32))
    assert res.plan["tiles"] == 12 and list(res.plan["input_errors"]) == ["bad"]
    assert "bad/pan.tif" in res.plan["input_errors"]["bad"]
    assert not (tmp_path / "out").exists()


def test_stac_item_without_an_asset_is_recorded_failed_and_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pystac

    cat = pystac.Catalog("archive", "one broken item")
    l7 = {k: v for k, v in L8.items() if k != "B7"}
    cat.add_item(landsat_item("LE07_x", "landsat-7", l7, "2001-07-30T10:00:00+00:00"))
    cat.normalize_hrefs(str(tmp_path / "stac"))
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    out = tmp_path / "out"
    argv = ["batch", str(tmp_path / "stac" / "catalog.json"), "-o", str(out)]
    assert main(argv) == 1  # nothing runnable: no cluster is started
    printed = capsys.readouterr().out
    assert "failed: LE07_x: STAC item 'LE07_x' lacks an MS asset for band 'swir2'" in printed
    assert main(argv) == 1 and "0 done, 1 failed; ran 0 scenes" in capsys.readouterr().out
    assert "LE07_x" in (out / "summary.md").read_text()
