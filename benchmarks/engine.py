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
from dataclasses import replace
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
    syn: Any, tmp: Path, tile: int, weights: str | None, cluster: ClusterConfig, steps: int
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
        quality_tiles=0, fit={"steps": steps},
    )  # fmt: skip
    summary = run_scene(cfg, cluster=cluster)
    t = summary["timings"]
    e2e = ingest + t["sample"] + t["fit"] + t["infer"] + t["export"]
    out = {"ingest": ingest, **{k: t[k] for k in ("sample", "fit", "infer", "export")}, "e2e": e2e}
    out["start (cluster, plugin, weights; not in e2e)"] = t.get("start", 0.0)
    out["cluster_start_and_run_total"] = t["total"]
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
    args = ap.parse_args()
    if args.quick:
        args.size, args.tile, args.repeats, args.big_reps, args.rss_tiles, args.steps = (
            512,
            128,
            1,
            2,
            4,
            5,
        )
        args.scaling_size = 512
    name = "engine_quick" if args.quick else "engine"
    load0 = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="pt-bench-"))
    weights = weights_path(tmp, shipped=True)
    two = ClusterConfig(
        kind="local", n_workers=2, threads_per_worker=1, dashboard_address=None, device="cpu"
    )
    try:
        syn = make_scene((args.size, args.size), "wv3", seed=0)
        e2e = [
            end_to_end(syn, tmp, args.tile, weights, two, args.steps) for _ in range(args.repeats)
        ]
        store = write_scene(
            scene_of(syn.pan, syn.ms), tmp / "main.zarr", tile=args.tile, hash_sources=False
        )
        raw = [raw_forward(store, weights, threads=2) for _ in range(args.repeats)]
        med = {k: statistics.median(r[k] for r in e2e) for k in e2e[0]}
        raw_med = statistics.median(raw)
        tp = {
            f"{w}x{t}": throughput(store, weights, w, t, tmp) for w, t in ((1, 1), (2, 1), (1, 2))
        }
        rss_small = peak_rss(store, weights, args.rss_tiles, tmp)
        big = big_store(syn, args.big_reps, tmp, args.tile)
        rss_big = peak_rss(big, weights, args.rss_tiles, tmp)
        shutil.rmtree(tmp / "big.zarr", ignore_errors=True)
        scaling = {
            str(n): end_to_end(mid, tmp, args.tile, weights, replace(two, n_workers=n), args.steps)
            for mid in [make_scene((args.scaling_size,) * 2, "wv3", seed=0)]
            for n in (1, 2)
        }
        small = make_scene((512, 512), "wv3", seed=1)
        e2e_512 = [
            end_to_end(small, tmp, min(args.tile, 512), weights, two, args.steps)
            for _ in range(args.repeats)
        ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "args": vars(args),
        "weights": weights or "shipped fusionnet_8band",
        "end_to_end_median_s": med,
        "raw_forward_median_s": raw_med,
        "ratio_e2e_over_raw": med["e2e"] / raw_med,
        "fit_share": (med["sample"] + med["fit"]) / med["e2e"],
        "throughput_tiles_per_s": tp,
        "peak_rss_mib": {f"{args.size}": rss_small, f"{args.size * args.big_reps}": rss_big},
        "scaling_1_vs_2_workers": scaling,
        "e2e_512_median_s": {k: statistics.median(r[k] for r in e2e_512) for k in e2e_512[0]},
        "runs": {"e2e": e2e, "raw": raw, "e2e_512": e2e_512},
        "environment": environment(),
        "load": f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict[str, Any]) -> str:
    a, m, env = r["args"], r["end_to_end_median_s"], r["environment"]
    big = str(a["size"] * a["big_reps"])
    lines = [
        f"# Engine benchmark ({env['date']})",
        "",
        f"Machine: {env['platform']}, {env['cpu_count']} CPUs; torch {env['torch']}, dask "
        f"{env['dask']}, distributed {env['distributed']}, zarr {env['zarr']}. Weights: {r['weights']}.",
        f"Command: `python benchmarks/engine.py{' --quick' if a['quick'] else ''} --repeats {a['repeats']}`; "
        f"medians of {a['repeats']} runs. Load average {r.get('load', '?')} (a shared machine: "
        "other sessions' niced jobs take CPU, so compare rows measured together).",
        "",
        f"## {a['size']}² x 8 FusionNet + tailor ({a['steps']} steps), tile {a['tile']}, 2 workers x 1 thread",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.2f} |" for k, v in m.items()],
        "",
        f"Raw model-only tiled forward, same tiles, one process, 2 threads: {r['raw_forward_median_s']:.2f} s.",
        f"**End to end / raw forward = {r['ratio_e2e_over_raw']:.2f}x** (target <= 1.15); "
        f"**fit share {100 * r['fit_share']:.1f} %** (target <= 10 %).",
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
        f"## {a['scaling_size']}² x 8 end to end, 1 worker vs 2 workers (1 thread each)",
        "",
        "| stage | 1 worker s | 2 workers s |",
        "|---|---|---|",
        *[
            f"| {k} | {r['scaling_1_vs_2_workers']['1'][k]:.2f} | {r['scaling_1_vs_2_workers']['2'][k]:.2f} |"
            for k in r["scaling_1_vs_2_workers"]["1"]
        ],
        "",
        f"**2 workers / 1 worker = {r['scaling_1_vs_2_workers']['1']['e2e'] / r['scaling_1_vs_2_workers']['2']['e2e']:.2f}x** "
        "end to end (target >= 1.7x).",
        "",
        "## 512² x 8 end to end",
        "",
        "| stage | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.2f} |" for k, v in r["e2e_512_median_s"].items()],
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
