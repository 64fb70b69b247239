"""Speculative tiles (issue 12, items 1-2): features extracted during the fit give the same bytes.

While one worker fits the tailor, the others extract the frozen backbone's features of the first
tiles (:mod:`workers.speculate`); those tiles are finished (tailor + mapper) after the fit. The
product must be byte-identical to a run without it, tiles finished that way are journaled like
any other, a resumed run redoes nothing finished, and features that do not belong to a tile (its
key, its store, its halo, its model) are never used.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch

from pipeline.distribute import Engine
from pipeline.grid import Window
from pipeline.jobs import FeatureTask, FitJob, ModelSpec, TileTask
from pipeline.runner import RunConfig, RunPaths, run_scene
from pipeline.store import SceneStore
from pipeline.tailor import FeatureTailor, TailorSpec, read_tailor_file, save_tailor
from tests.test_workers import random_weights, small_store
from workers.kernel import infer_tile
from workers.plugin import current_cache
from workers.scene_tasks import fit_calls
from workers.speculate import extract_features, finish_tile, split_workers

pytestmark = pytest.mark.slow

FIT = {"steps": 10}  # enough for the tailor to move off the identity on these scenes
SAMPLE = {"patch": 32, "min_patches": 2, "max_patches": 4}


@pytest.fixture(scope="module")
def fusionnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return random_weights(tmp_path_factory.mktemp("w") / "fusionnet.pt", "fusionnet", 4)


def _tailored(store: SceneStore, weights: Path, folder: Path, kernel: int = 3) -> ModelSpec:
    """A tailor that is far from the identity (random last layer), saved; its model spec."""
    from pipeline.backbones import checksum
    from pipeline.files import file_sha256

    base = ModelSpec(backbone="fusionnet", weights=str(weights), sensor="qb", n_bands=4)
    backbone = current_cache().get(base).backbone
    torch.manual_seed(1)
    tailor = FeatureTailor(TailorSpec(channels=backbone.feat_channels, kernel=kernel))
    with torch.no_grad():
        tailor.conv_b.weight.normal_(0.0, 0.05)
    path = folder / f"tailor{kernel}.pt"
    save_tailor(path, tailor.state_dict(), checksum(backbone))
    return replace(base, adapter="tailor", adapter_path=str(path), adapter_sha256=file_sha256(path))


def _all(store: SceneStore, name: str) -> np.ndarray:
    h, w = store.meta.pan_shape_yx
    return store.read_output(name, Window(0, h, 0, w))


def test_a_tile_finished_from_features_equals_the_plain_tile(
    fusionnet: Path, tmp_path: Path
) -> None:
    """Every tile of an awkward scene (edge tiles clipped, halo larger than some tiles), tailor
    far from the identity: the speculative path writes the plain path's bytes."""
    store = small_store(tmp_path / "s.zarr", (76, 108), 32)
    spec = _tailored(store, fusionnet, tmp_path)
    for name in ("plain", "spec", "backbone"):
        store.create_output(name, "float32")
    results = []
    for key in store.grid.keys():  # noqa: SIM118
        task = TileTask(store=str(store.path), output="plain", key=key, model=spec)
        plain = infer_tile(task)
        feats = extract_features(FeatureTask(store=str(store.path), key=key, model=spec.base()))
        spec_res = finish_tile(replace(task, output="spec"), feats)
        infer_tile(replace(task, output="backbone", model=spec.base()))
        assert spec_res.speculative and not plain.speculative
        results.append((plain.sha256, spec_res.sha256))
    assert all(a == b for a, b in results)
    assert _all(store, "spec").tobytes() == _all(store, "plain").tobytes()
    assert not np.array_equal(_all(store, "plain"), _all(store, "backbone"))  # the tailor acts


def test_features_of_another_tile_halo_or_store_are_not_used(
    fusionnet: Path, tmp_path: Path
) -> None:
    store = small_store(tmp_path / "s.zarr", (64, 96), 32)
    other = small_store(tmp_path / "o.zarr", (64, 96), 32)
    spec = _tailored(store, fusionnet, tmp_path)
    store.create_output("plain", "float32")
    store.create_output("spec", "float32")
    a, b = list(store.grid.keys())[:2]
    task = TileTask(store=str(store.path), output="plain", key=b, model=spec)
    want = infer_tile(task)
    base = spec.base()
    mine = extract_features(FeatureTask(store=str(store.path), key=b, model=base))
    wrong = [
        extract_features(FeatureTask(store=str(store.path), key=a, model=base)),  # another tile
        extract_features(FeatureTask(store=str(other.path), key=b, model=base)),  # another store
        replace(mine, halo_ms=mine.halo_ms + 1),  # read with another halo than the model's
        replace(mine, task=replace(mine.task, amp=True)),  # made under another precision
    ]
    for feats in wrong:
        res = finish_tile(replace(task, output="spec"), feats)
        assert not res.speculative and res.sha256 == want.sha256
    assert finish_tile(replace(task, output="spec"), mine).speculative
    failed = finish_tile(replace(task, output="spec"), "an extraction that failed")
    assert not failed.speculative and failed.sha256 == want.sha256
    kernel1 = _tailored(store, fusionnet, tmp_path, kernel=1)  # a 1x1 tailor: its own halo
    job = FeatureTask(store=str(store.path), key=b, model=base, tailor_kernel=1)
    res = finish_tile(replace(task, output="spec", model=kernel1), extract_features(job))
    assert res.speculative
    assert res.sha256 == infer_tile(replace(task, model=kernel1)).sha256


def test_the_fit_gets_the_first_worker_and_the_others_extract() -> None:
    info = {
        "tcp://b:2": {"nthreads": 1},
        "tcp://a:1": {"nthreads": 1},
        "tcp://c:3": {"nthreads": 2},
    }
    fit_at, others = split_workers(info, None, gpu=False)
    assert fit_at == {"tcp://a:1": 1} and others == {"tcp://b:2": 1, "tcp://c:3": 2}
    fit_at, others = split_workers(info, ["tcp://c:3", "tcp://b:2"], gpu=True)
    assert fit_at == {"tcp://b:2": 1} and others == {"tcp://c:3": 1}  # one slot per GPU
    one = {"tcp://a:1": {"nthreads": 2}}  # one worker: the fit and the extractions share it
    assert split_workers(one, None, gpu=False) == ({"tcp://a:1": 2}, {"tcp://a:1": 2})


def test_no_speculation_while_another_scene_uses_the_engine(
    engine: Engine, fusionnet: Path, tmp_path: Path
) -> None:
    """A batch shares one engine between scenes: a fit pinned to the first worker would queue
    behind another scene's tiles there, so a busy engine fits plainly and speculates nothing.
    Whichever way it runs (busy, alone and speculating, alone and plain), the fit uses its
    worker's own thread count and fits the same tailor: a fit's result depends on its thread
    count, so none may be lent by the engine's state (``benchmarks/fit_threads.py``)."""
    store = small_store(tmp_path / "s.zarr", (64, 64), 32)
    base = ModelSpec(backbone="fusionnet", weights=str(fusionnet), sensor="qb", n_bands=4)
    engine.prepare(base)
    store.create_output("other", "float32")
    keys = list(store.grid.keys())
    tiles = engine.infer_tiles(
        [TileTask(store=str(store.path), output="other", key=k, model=base) for k in keys]
    )
    next(tiles)  # another scene's tile map is running
    job = FitJob(
        store=str(store.path), model=base, adapt="tailor", out=str(tmp_path / "a.pt"),
        sample=SAMPLE, fit={"steps": 2},
    )  # fmt: skip
    feature_tasks = [FeatureTask(store=str(store.path), key=keys[0], model=base)]
    busy, spec = engine.fit_speculating(job, feature_tasks)
    assert spec is None and Path(busy.path).is_file() and not engine.idle()
    list(tiles)
    assert engine.idle()
    job = replace(job, out=str(tmp_path / "b.pt"))
    speculating, spec = engine.fit_speculating(job, feature_tasks)  # now alone: it speculates
    assert spec is not None and not engine.idle()
    spec.release()
    spec.release()  # idempotent
    assert engine.idle()
    plain = engine.fit_once(replace(job, out=str(tmp_path / "c.pt")))  # alone, 2 idle workers
    assert busy.threads == speculating.threads == plain.threads == 1  # 2 workers x 1 thread
    states = [read_tailor_file(o.path)["state_dict"] for o in (busy, speculating, plain)]
    for state in states[1:]:
        assert state.keys() == states[0].keys()
        assert all(torch.equal(state[k], states[0][k]) for k in state)


# ----------------------------------------------------------------------------- whole runs


def _crop_real(src_pan: Path, src_ms: Path, folder: Path, pan_yx: tuple[int, int]) -> list[Path]:
    """The top-left ``pan_yx`` of a real PAN/MS pair (ratio 4) as GeoTIFFs."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src, size in ((src_pan, pan_yx), (src_ms, (pan_yx[0] // 4, pan_yx[1] // 4))):
        with rasterio.open(src) as f:
            data = f.read(window=((0, size[0]), (0, size[1])))
            profile = {**f.profile, "height": size[0], "width": size[1]}
        path = folder / src.name
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
        out.append(path)
    return out


def _cfg(inputs: list[Path], out: Path, **kw: Any) -> RunConfig:
    base: dict[str, Any] = {
        "sensor": "qb", "weights": "dlpan:QB", "tile": 64, "quality_tiles": 0, "fit": FIT,
        "sample": SAMPLE,
    }  # fmt: skip
    return RunConfig(inputs=tuple(map(str, inputs)), output=str(out), **{**base, **kw})


class Interrupt(Exception):
    pass


def test_a_speculative_run_writes_the_plain_runs_cog_and_journal_and_resumes(
    client: Any, engine: Engine, data_file: Any, tmp_path: Path
) -> None:
    """A real QuickBird crop (FusionNet with its published QuickBird weights + tailor) on 2
    workers: with speculation the COG bytes and the journaled tile digests equal a run without;
    a speculative run killed mid-inference resumes to the same bytes, fitting nothing again."""
    pan, ms = data_file("vhr/quickbird/QB-PAN.tif"), data_file("vhr/quickbird/QB-MS.tif")
    inputs = _crop_real(pan, ms, tmp_path / "in", (256, 320))  # 4 x 5 tiles of 64
    plain = run_scene(_cfg(inputs, tmp_path / "plain.tif", speculate=0), engine=engine)
    spec_cfg = _cfg(inputs, tmp_path / "spec.tif")
    spec = run_scene(spec_cfg, engine=engine)
    assert plain["infer"]["speculative"] == 0 and plain["infer"]["computed"] == 20
    assert 0 < spec_cfg.speculate < 20  # the default (8) per spare thread: 2 workers x 1 - 1
    assert spec["infer"]["speculative"] == spec_cfg.speculate
    cog = (tmp_path / "plain.tif").read_bytes()
    assert (tmp_path / "spec.tif").read_bytes() == cog

    def tiles(name: str) -> dict[str, str]:
        path = RunPaths.of(_cfg(inputs, tmp_path / name)).journal
        out: dict[str, str] = json.loads(path.read_text())["tiles"]
        return out

    assert tiles("spec.tif") == tiles("plain.tif")

    def stop(stage: str, done: int, total: int) -> None:
        if stage == "infer" and done >= 6:
            raise Interrupt

    cfg = _cfg(inputs, tmp_path / "killed.tif")
    with pytest.raises(Interrupt):
        run_scene(cfg, engine=engine, progress=stop)
    done_before = len(json.loads(RunPaths.of(cfg).journal.read_text())["tiles"])
    assert 6 <= done_before < 20
    fits = sum(client.run(fit_calls).values())
    resumed = run_scene(cfg, engine=engine)
    assert sum(client.run(fit_calls).values()) == fits  # the fit was not redone
    assert resumed["infer"]["computed"] == 20 - done_before
    assert resumed["infer"]["speculative"] == 0  # no fit ran: nothing to overlap
    assert (tmp_path / "killed.tif").read_bytes() == cog
    assert engine.idle()  # every speculation was released


def test_run_cli_passes_speculate_and_refuses_a_negative_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main

    base = ["run", str(tmp_path / "p.tif"), str(tmp_path / "m.tif"), "-o", str(tmp_path / "o.tif")]
    assert main([*base, "--speculate", "-1"]) == 2
    err = capsys.readouterr().err
    assert "speculate must be >= 0" in err and "-1" in err
    assert not any(tmp_path.iterdir())  # refused before anything was made
