"""Engine benchmark -> benchmarks/results/engine.{md,json}.

Measures, in one run (medians of ``--repeats``):

1. ``SIZE``² x 8 FusionNet + tailor end to end (ingest, sample+fit, infer, export) on a local
   cluster, against the raw model-only tiled forward over the same tiles (inputs already in
   memory, one process, all cores) -> the engine overhead ratio (target <= 1.15) and the fit's
   share of the end-to-end time (target <= 10 %);
2. inference throughput with 1 worker x 1 thread, 2 workers x 1 thread, 1 worker x 2 threads;
3. peak RSS per worker on the ``SIZE``² scene and on a ``BIG``² scene (a lazily tiled copy of the
   synthetic scene, so making it is cheap) over ``--rss-tiles`` tiles each;
4. a 512² x 8 scene end to end.

Usage: ``python benchmarks/engine.py`` (full: about 30-40 min on 2 cores) or
``python benchmarks/engine.py --quick`` (small sizes, a minute or two; results go to
``engine_quick.*``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.backbones import build, load, save_backbone, upsample
from pipeline.distribute import Engine
from pipeline.report import environment
from pipeline.runner import Journal, RunConfig, run_scene, stage_infer
from pipeline.scene import Scene
from pipeline.store import SceneStore, write_scene
from pipeline.synthetic import make_scene
from workers.cluster import ClusterConfig, connect
from workers.device import ThreadPolicy
from workers.plugin import ModelSpec

RESULTS = Path(__file__).resolve().parent / "results"


def scene_of(pan: Any, ms: Any) -> Scene:
    from pipeline.sensors import get_sensor

    spec = get_sensor("wv3")
    return Scene(
        pan=pan,
        ms=ms,
        sensor=spec,
        crs=None,
        pan_transform=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        ms_transform=(4.0, 0.0, 0.0, 0.0, 4.0, 0.0),
        nodata=None,
        dn_max=spec.dn_max,
    )


def weights_path(tmp: Path, shipped: bool) -> str | None:
    if shipped:
        try:
            load("fusionnet", None, sensor="wv3")
            return None
        except Exception:
            pass
    torch.manual_seed(0)
    path = tmp / "fusionnet_8band_random.pt"
    save_backbone(build("fusionnet", 8), path, {"benchmark": "random init"})
    return str(path)


def raw_forward(store: SceneStore, weights: str | None, threads: int) -> float:
    """Model-only tiled forward over every tile, inputs prepared beforehand, one process."""
    from workers.plugin import ModelCache

    ThreadPolicy(intra_op=threads).apply()
    spec = ModelSpec(backbone="fusionnet", weights=weights, sensor="wv3", n_bands=8)
    loaded = ModelCache(torch.device("cpu")).get(spec)
    fmt = torch.channels_last
    total = 0.0
    keys = list(store.grid.keys())
    for i, key in enumerate([keys[0], *keys]):  # the first forward warms oneDNN up, untimed
        read = store.grid.read(key, loaded.halo_ms)
        ms = torch.from_numpy(store.read_ms(read.ms).astype(np.float32) / 2047.0)[None]
        pan = torch.from_numpy(store.read_pan(read.pan).astype(np.float32) / 2047.0)[None, None]
        t0 = time.perf_counter()
        with torch.inference_mode():
            lms = upsample(ms, 4, "poly23")
            out = loaded.module(*(t.contiguous(memory_format=fmt) for t in (ms, lms, pan)))
            _ = out[0][(slice(None), *read.crop.slices)].numpy()
        total += (time.perf_counter() - t0) if i > 0 else 0.0
    return total


def end_to_end(
    syn: Any,
    tmp: Path,
    tile: int,
    weights: str | None,
    cluster: ClusterConfig,
    steps: int,
    speculate: int = 4,
    e2e_extra: bool = False,
    fit: dict[str, Any] | None = None,
    sample: dict[str, Any] | None = None,
) -> dict[str, Any]:
    run_dir = tmp / f"e2e-{time.monotonic_ns()}"
    run_dir.mkdir()
    t0 = time.perf_counter()
    store = write_scene(
        scene_of(syn.pan, syn.ms), run_dir / "s.zarr", tile=tile, hash_sources=False
    )
    ingest = time.perf_counter() - t0
    cfg = RunConfig(
        inputs=(str(store.path),), output=str(run_dir / "o.tif"), weights=weights,
        quality_tiles=0, fit={"steps": steps, **(fit or {})}, sample=dict(sample or {}),
        speculate=speculate,
    )  # fmt: skip
    summary = run_scene(cfg, cluster=cluster)
    t = summary["timings"]
    e2e = ingest + t["sample"] + t["fit"] + t["infer"] + t["export"]
    out = {"ingest": ingest, **{k: t[k] for k in ("sample", "fit", "infer", "export")}, "e2e": e2e}
    out["start (cluster, plugin, weights; not in e2e)"] = t.get("start", 0.0)
    out["cluster_start_and_run_total"] = t["total"]
    out["tiles finished from speculative features"] = summary["infer"].get("speculative", 0)
    if e2e_extra:
        out["tile forward core-s (sum over tiles)"] = summary["infer"].get("forward_seconds", 0.0)
        out["export during infer (driver thread)"] = t.get("export_overlapped", 0.0)
        out["tail (first idle worker to the last tile)"] = summary["infer"].get("tail_seconds", 0.0)
    shutil.rmtree(run_dir, ignore_errors=True)
    return out


def throughput(
    store: SceneStore, weights: str | None, workers: int, threads: int, tmp: Path
) -> float:
    from workers.kernel import TileTask

    cfg = ClusterConfig(
        kind="local",
        n_workers=workers,
        threads_per_worker=threads,
        dashboard_address=None,
        device="cpu",
    )
    spec = ModelSpec(backbone="fusionnet", weights=weights, sensor="wv3", n_bands=8)
    with connect(cfg) as client:
        eng = Engine(client, device="cpu")
        eng.prepare(spec)
        store.create_output("fused", overwrite=True)
        warm = list(store.grid.keys())[: 2 * workers]
        list(
            eng.infer_tiles(
                [TileTask(store=str(store.path), output="fused", key=k, model=spec) for k in warm]
            )
        )
        info = stage_infer(Journal(tmp / f"tp{workers}{threads}.json", {}), eng, store, spec)
    return float(info["tiles"] / info["seconds"])


def peak_rss(store: SceneStore, weights: str | None, n_tiles: int, tmp: Path) -> dict[str, float]:
    """Peak RSS per worker over the first ``n_tiles`` tiles (2 workers x 1 thread)."""
    from workers.kernel import TileTask

    cfg = ClusterConfig(
        kind="local", n_workers=2, threads_per_worker=1, dashboard_address=None, device="cpu"
    )
    spec = ModelSpec(backbone="fusionnet", weights=weights, sensor="wv3", n_bands=8)
    store.create_output("fused", overwrite=True)
    keys = list(store.grid.keys())[:n_tiles]
    tasks = [TileTask(store=str(store.path), output="fused", key=k, model=spec) for k in keys]
    with connect(cfg) as client:
        eng = Engine(client, device="cpu")
        eng.prepare(spec)
        res = list(eng.infer_tiles(tasks))
    by_pid: dict[int, int] = {}
    for r in res:
        by_pid[r.pid] = max(by_pid.get(r.pid, 0), r.peak_rss)
    return {
        "max_mib": max(by_pid.values()) / 2**20,
        "per_worker_mib": sorted(v / 2**20 for v in by_pid.values()),
    }


def big_store(syn: Any, reps: int, tmp: Path, tile: int) -> SceneStore:
    import dask.array as da

    pan = da.tile(da.from_array(syn.pan, chunks=tile), (reps, reps))
    ms = da.tile(da.from_array(syn.ms, chunks=(8, tile // 4, tile // 4)), (1, reps, reps))
    return write_scene(scene_of(pan, ms), tmp / "big.zarr", tile=tile, hash_sources=False)


#: End-to-end configurations: workers, threads per worker, speculative tiles per spare thread.
CONFIGS = {"2x1": (2, 1, 4), "2x1 no speculation": (2, 1, 0), "1x2": (1, 2, 4)}
SCALING = {"1x1": (1, 1, 4), **CONFIGS}


def _cluster(workers: int, threads: int) -> ClusterConfig:
    return ClusterConfig(
        kind="local", n_workers=workers, threads_per_worker=threads, dashboard_address=None,
        device="cpu",
    )  # fmt: skip


def _median(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def _e2e(syn: Any, tmp: Path, args: Any, weights: str | None, conf: tuple[int, int, int]) -> Any:
    w, t, spec = conf
    return _median(
        [
            end_to_end(syn, tmp, args.tile, weights, _cluster(w, t), args.steps, spec)
            for _ in range(args.repeats)
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=4000)
    ap.add_argument("--big-reps", type=int, default=4, help="BIG = SIZE * reps (default 16000)")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rss-tiles", type=int, default=8)
    ap.add_argument("--steps", type=int, default=60, help="tailor fit steps")
    ap.add_argument("--scaling-size", type=int, default=2048, help="1 vs 2 workers end to end")
    ap.add_argument("--quick", action="store_true", help="small sizes to check the script")
    ap.add_argument("--markdown-only", action="store_true", help="rewrite the .md from the .json")
    ap.add_argument(
        "--e2e-only",
        action="store_true",
        help="only the SIZE² end to end (2x1) and the raw forward -> engine_e2e.{md,json}",
    )
    ap.add_argument(
        "--scaling-only",
        action="store_true",
        help="only SCALING_SIZE² end to end, 1x1 vs 2x1 -> engine_scaling.{md,json}",
    )
    ap.add_argument(
        "--spare-core",
        action="store_true",
        help="with --e2e-only: 1 worker x 1 thread (the driver has a core of its own), streamed "
        "export vs after, no raw forward -> engine_e2e_spare.{md,json}",
    )
    ap.add_argument(
        "--rss-only",
        action="store_true",
        help="only the peak RSS per worker at SIZE² and BIG² -> engine_rss.{md,json}",
    )
    args = ap.parse_args()
    if args.rss_only:
        rss_only(args)
        return
    if args.scaling_only:
        scaling_only(args)
        return
    if args.e2e_only:
        e2e_only(args)
        return
    if args.markdown_only:
        name = "engine_quick" if args.quick else "engine"
        (RESULTS / f"{name}.md").write_text(
            markdown(json.loads((RESULTS / f"{name}.json").read_text()))
        )
        return
    if args.quick:
        args.size, args.tile, args.repeats, args.big_reps, args.rss_tiles = 512, 128, 1, 2, 4
        args.steps, args.scaling_size = 5, 512
    name = "engine_quick" if args.quick else "engine"
    load0 = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="pt-bench-"))
    weights = weights_path(tmp, shipped=True)
    try:
        syn = make_scene((args.size, args.size), "wv3", seed=0)
        e2e = {k: _e2e(syn, tmp, args, weights, c) for k, c in CONFIGS.items()}
        store = write_scene(
            scene_of(syn.pan, syn.ms), tmp / "main.zarr", tile=args.tile, hash_sources=False
        )
        raw = statistics.median(raw_forward(store, weights, 2) for _ in range(args.repeats))
        n_tiles = len(store.grid)
        tp = {
            f"{w}x{t}": throughput(store, weights, w, t, tmp) for w, t in ((1, 1), (2, 1), (1, 2))
        }
        rss_small = peak_rss(store, weights, args.rss_tiles, tmp)
        big = big_store(syn, args.big_reps, tmp, args.tile)
        rss_big = peak_rss(big, weights, args.rss_tiles, tmp)
        shutil.rmtree(tmp / "big.zarr", ignore_errors=True)
        mid = make_scene((args.scaling_size,) * 2, "wv3", seed=0)
        scaling = {k: _e2e(mid, tmp, args, weights, c) for k, c in SCALING.items()}
        small = make_scene((512, 512), "wv3", seed=1)
        args512 = argparse.Namespace(**{**vars(args), "tile": min(args.tile, 512)})
        e2e_512 = _e2e(small, tmp, args512, weights, (2, 1, 4))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "args": vars(args),
        "weights": weights or "shipped fusionnet_8band",
        "end_to_end_median_s": e2e,
        "raw_forward_median_s": raw,
        "ratio_e2e_over_raw": {k: v["e2e"] / raw for k, v in e2e.items()},
        "fit_share": {k: (v["sample"] + v["fit"]) / v["e2e"] for k, v in e2e.items()},
        "throughput_tiles_per_s": tp,
        "cpu_bound": cpu_bound(e2e["2x1"], n_tiles / tp["1x1"], raw),
        "peak_rss_mib": {f"{args.size}": rss_small, f"{args.size * args.big_reps}": rss_big},
        "scaling": scaling,
        "e2e_512_median_s": e2e_512,
        "environment": environment(),
        "load": f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(result))
    print(markdown(result))


def rss_only(args: Any) -> None:
    """Peak RSS per worker (2x1) over ``--rss-tiles`` tiles of the SIZE² and BIG² scenes."""
    tmp = Path(tempfile.mkdtemp(prefix="pt-bench-"))
    weights = weights_path(tmp, shipped=True)
    try:
        syn = make_scene((args.size, args.size), "wv3", seed=0)
        store = write_scene(
            scene_of(syn.pan, syn.ms), tmp / "main.zarr", tile=args.tile, hash_sources=False
        )
        rss = {f"{args.size}": peak_rss(store, weights, args.rss_tiles, tmp)}
        big = big_store(syn, args.big_reps, tmp, args.tile)
        rss[f"{args.size * args.big_reps}"] = peak_rss(big, weights, args.rss_tiles, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    env = environment()
    (RESULTS / "engine_rss.json").write_text(
        json.dumps({"args": vars(args), "peak_rss_mib": rss, "environment": env}, indent=2) + "\n"
    )
    lines = [
        f"# Peak RSS per worker ({env['date']})",
        "",
        f"Command: `python benchmarks/engine.py --rss-only --size {args.size} --big-reps "
        f"{args.big_reps} --rss-tiles {args.rss_tiles}`; 2 workers x 1 thread, FusionNet, "
        f"tile {args.tile}; the {args.size * args.big_reps}² scene is the {args.size}² one "
        "tiled (a lazily tiled copy), RSS over its first tiles. Target: < 2 GiB per worker.",
        "",
        "| scene | max MiB | per worker MiB |",
        "|---|---|---|",
        *[
            f"| {k}² | {v['max_mib']:.0f} | {', '.join(f'{x:.0f}' for x in v['per_worker_mib'])} |"
            for k, v in rss.items()
        ],
        "",
    ]
    (RESULTS / "engine_rss.md").write_text("\n".join(lines))
    print("\n".join(lines))


def scaling_only(args: Any) -> None:
    """Item 2 alone: SCALING_SIZE² end to end on 1 worker vs 2 (1 thread each), alternated."""
    load0 = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="pt-bench-"))
    weights = weights_path(tmp, shipped=True)
    confs = {"1x1": SCALING["1x1"], "2x1": SCALING["2x1"]}
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in confs}
    try:
        mid = make_scene((args.scaling_size,) * 2, "wv3", seed=0)
        for _ in range(args.repeats):
            for name, (w, t, spec) in confs.items():
                runs[name].append(
                    end_to_end(mid, tmp, args.tile, weights, _cluster(w, t), args.steps, spec, True)
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = {k: _median(v) for k, v in runs.items()}
    speedup = med["1x1"]["e2e"] / med["2x1"]["e2e"]
    env = environment()
    result = {"args": vars(args), "median_s": med, "runs": runs, "speedup_2x1": speedup,
              "environment": env, "load": f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"}  # fmt: skip
    (RESULTS / "engine_scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"# 1 worker vs 2, end to end ({env['date']})",
        "",
        f"Command: `python benchmarks/engine.py --scaling-only --scaling-size "
        f"{args.scaling_size} --repeats {args.repeats}`; FusionNet + tailor ({args.steps} "
        f"steps), tile {args.tile}, speculation on, export streamed; alternated, medians. Load "
        f"average {result['load']} (shared machine).",
        "",
        *_table(med),
        "",
        "End to end per run (s): "
        + "; ".join(f"{k}: " + ", ".join(f"{x['e2e']:.2f}" for x in v) for k, v in runs.items())
        + ".",
        f"**2 workers / 1 worker** (target >= 1.7x): **{speedup:.2f}x**.",
        "",
    ]
    (RESULTS / "engine_scaling.md").write_text("\n".join(lines))
    print("\n".join(lines))


#: --e2e-only --spare-core: 1 worker x 1 thread, the driver's writer has a core of its own.
SPARE_SETTINGS = {"streamed export": (True, 0, True), "export after": (False, 0, True)}

#: --e2e-only's settings: export streamed?, the stream writer's niceness, full tiles first?
E2E_SETTINGS = {
    "streamed export": (True, 0, True),
    "export after": (False, 0, True),
    "export after, raster order": (False, 0, False),
}


def e2e_only(args: Any) -> None:
    """The headline ratio alone, as an A/B: SIZE² 2x1 end to end (with speculation) with the COG
    export streamed beside the tile map and after it, and the raw forward, alternated
    ``--repeats`` times (about 2 minutes a repeat at 4000²)."""
    from pipeline import export_stream, stage_export, tilemap

    load0 = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="pt-bench-"))
    weights = weights_path(tmp, shipped=True)
    settings = SPARE_SETTINGS if args.spare_core else E2E_SETTINGS
    workers = 1 if args.spare_core else 2
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in settings}
    raws = []
    try:
        syn = make_scene((args.size, args.size), "wv3", seed=0)
        store = write_scene(
            scene_of(syn.pan, syn.ms), tmp / "main.zarr", tile=args.tile, hash_sources=False
        )
        for _ in range(args.repeats):
            for name, (stream, nice, largest_first) in settings.items():
                stage_export.STREAM_EXPORT, export_stream.NICE = stream, nice
                tilemap.LARGEST_FIRST = largest_first
                runs[name].append(
                    end_to_end(
                        syn,
                        tmp,
                        args.tile,
                        weights,
                        _cluster(workers, 1),
                        args.steps,
                        e2e_extra=True,
                    )
                )
            if not args.spare_core:
                raws.append(raw_forward(store, weights, 2))
    finally:
        stage_export.STREAM_EXPORT, export_stream.NICE, tilemap.LARGEST_FIRST = "auto", 0, True
        shutil.rmtree(tmp, ignore_errors=True)
    med, raw = {k: _median(v) for k, v in runs.items()}, statistics.median(raws or [float("nan")])
    result = {
        "args": vars(args),
        "end_to_end_2x1_median_s": med,
        "runs": runs,
        "raw_forward_s": raws,
        "ratio_e2e_over_raw": {k: v["e2e"] / raw for k, v in med.items()},
        "environment": environment(),
        "load": f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
    }
    RESULTS.mkdir(exist_ok=True)
    name = "engine_e2e_spare" if args.spare_core else "engine_e2e"
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(e2e_markdown(result))
    print(e2e_markdown(result))


def e2e_markdown(r: dict[str, Any]) -> str:
    a, med = r["args"], r["end_to_end_2x1_median_s"]
    ratios = ", ".join(f"{k} **{v:.3f}x**" for k, v in r["ratio_e2e_over_raw"].items())
    per_run = "; ".join(
        f"{k}: " + ", ".join(f"{x['e2e']:.2f}" for x in v) for k, v in r["runs"].items()
    )
    lines = [
        f"# Engine end to end, export streamed or after ({r['environment']['date']})",
        "",
        f"Command: `python benchmarks/engine.py --e2e-only{' --spare-core' if a.get('spare_core') else ''} --size {a['size']} --repeats "
        f"{a['repeats']}`; {a['size']}² x 8 FusionNet + tailor ({a['steps']} steps), tile "
        f"{a['tile']}, {1 if a.get('spare_core') else 2} worker(s) x 1 thread, speculation on; the settings (and the raw "
        f"forward) alternated, medians. Load average {r['load']} (shared machine).",
        "",
        *_table(med),
        "",
        f"End to end per run (s): {per_run}.",
    ]
    if r["raw_forward_s"]:
        lines += [
            f"Raw forward (2 threads, one process), per run: "
            f"{', '.join(f'{x:.2f}' for x in r['raw_forward_s'])} s.",
            f"**End to end / raw forward** (target <= 1.15): {ratios}.",
        ]
    lines.append("")
    return "\n".join(lines)


def cpu_bound(run: dict[str, float], infer_core_s: float, raw: float) -> dict[str, float]:
    """The end-to-end floor on 2 cores if every stage overlapped perfectly: the core-seconds of
    the tiles (warm 1x1 throughput), the fit (one thread), ingest, sample and export, over 2."""
    serial = run["ingest"] + run["sample"] + run["fit"] + run["export"]
    floor = (infer_core_s + serial) / 2
    return {"infer_core_s": infer_core_s, "other_core_s": serial, "floor_s": floor,
            "floor_over_raw": floor / raw}  # fmt: skip


def _table(cols: dict[str, dict[str, float]]) -> list[str]:
    names = list(cols)
    rows = [f"| stage | {' | '.join(names)} |", "|---|" + "---|" * len(names)]
    for k in cols[names[0]]:
        rows.append(f"| {k} | " + " | ".join(f"{cols[n][k]:.2f}" for n in names) + " |")
    return rows


def _serial(run: dict[str, float]) -> str:
    return (
        f"ingest {run['ingest']:.2f} s (driver, before any task), sample {run['sample']:.2f} + "
        f"fit {run['fit']:.2f} s (one worker; with speculation the others extract "
        f"{run['tiles finished from speculative features']:.0f} tiles meanwhile), export "
        f"{run['export']:.2f} s (after the last tile)"
    )


def _decision(r: dict[str, Any]) -> str:
    tp, e, sc = r["throughput_tiles_per_s"], r["end_to_end_median_s"], r["scaling"]
    return (
        f"Default 2 workers x 1 thread (`workers/defaults.yaml`): warm throughput 2x1 "
        f"{tp['2x1']:.2f} vs 1x2 {tp['1x2']:.2f} tiles/s; end to end {e['2x1']['e2e']:.1f} vs "
        f"{e['1x2']['e2e']:.1f} s ({r['args']['size']}²) and {sc['2x1']['e2e']:.1f} vs "
        f"{sc['1x2']['e2e']:.1f} s ({r['args']['scaling_size']}²). Two 1-thread worker "
        f"processes share nothing ({tp['2x1'] / tp['1x1']:.2f}x one warm worker), while one "
        "2-thread worker runs two tasks at once on 2 torch threads each (4 threads on 2 cores), "
        "and its fit cannot overlap the other's extraction on a core of its own."
    )


def markdown(r: dict[str, Any]) -> str:
    a, env, sc, cb = r["args"], r["environment"], r["scaling"], r["cpu_bound"]
    big = str(a["size"] * a["big_reps"])
    ratios = ", ".join(f"{k} **{v:.2f}x**" for k, v in r["ratio_e2e_over_raw"].items())
    lines = [
        f"# Engine benchmark ({env['date']})",
        "",
        f"Machine: {env['platform']}, {env['cpu_count']} CPUs; torch {env['torch']}, dask "
        f"{env['dask']}, distributed {env['distributed']}, zarr {env['zarr']}. Weights: {r['weights']}.",
        f"Command: `python benchmarks/engine.py{' --quick' if a['quick'] else ''} --repeats {a['repeats']}`; "
        f"medians of {a['repeats']} runs. Load average {r.get('load', '?')} (a shared machine: "
        "other sessions' niced jobs take CPU, so compare rows measured together).",
        "Columns: workers x threads per worker; speculation = the first 4 tiles per spare "
        "thread have their backbone features extracted while the tailor is fitted.",
        "",
        f"## {a['size']}² x 8 FusionNet + tailor ({a['steps']} steps), tile {a['tile']}",
        "",
        *_table(r["end_to_end_median_s"]),
        "",
        f"Raw model-only tiled forward, same tiles, one process, 2 threads: {r['raw_forward_median_s']:.2f} s.",
        f"**End to end / raw forward** (target <= 1.15): {ratios}.",
        f"Floor with every stage perfectly overlapped on 2 cores: ({cb['infer_core_s']:.1f} s of "
        f"tiles on one core (warm 1x1) + {cb['other_core_s']:.1f} s of ingest, sample, fit and "
        f"export) / 2 = {cb['floor_s']:.1f} s = **{cb['floor_over_raw']:.2f}x** the raw forward.",
        f"Serial parts (2x1): {_serial(r['end_to_end_median_s']['2x1'])}; infer "
        f"{r['end_to_end_median_s']['2x1']['infer']:.2f} s against "
        f"{r['cpu_bound']['infer_core_s'] / 2:.2f} s of tile work per core.",
        "",
        _decision(r),
        "",
        "## Inference throughput (tiles/s, warm workers)",
        "",
        "| workers x threads | tiles/s |",
        "|---|---|",
        *[f"| {k} | {v:.3f} |" for k, v in r["throughput_tiles_per_s"].items()],
        "",
        f"## Peak RSS per worker ({a['rss_tiles']} tiles each)",
        "",
        "| scene | max MiB | per worker MiB |",
        "|---|---|---|",
        *[
            f"| {k}² | {v['max_mib']:.0f} | {', '.join(f'{x:.0f}' for x in v['per_worker_mib'])} |"
            for k, v in r["peak_rss_mib"].items()
        ],
        "",
        f"The {big}² scene is the {a['size']}² scene tiled {a['big_reps']}x{a['big_reps']} "
        "(a lazily tiled copy); RSS is measured on a subset of its tiles.",
        "",
        f"## {a['scaling_size']}² x 8 end to end, 1 worker vs 2 workers",
        "",
        *_table(sc),
        "",
        "**Speed-up over 1x1** (target >= 1.7x for 2 workers): "
        + ", ".join(
            f"{k} **{sc['1x1']['e2e'] / v['e2e']:.2f}x**" for k, v in sc.items() if k != "1x1"
        )
        + ".",
        f"Serial parts (2x1): {_serial(sc['2x1'])}.",
        "",
        "## 512² x 8 end to end (2x1)",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.2f} |" for k, v in r["e2e_512_median_s"].items()],
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
