"""Batch benchmark -> benchmarks/results/batch.{md,json} (``--quick``: batch_quick.*).

Measures, in one run, on whatever machine it runs on (say whether it was shared):

1. **Throughput**: real scenes from ``PANTAILOR_DATA`` (WV3 example 128², QuickBird 1000²,
   Landsat-7 FuseBox 800² scenes), each through ``pantailor run`` in a shell-style loop (one
   process, one cluster, one model load per scene) and through one ``pantailor batch`` over a
   manifest of the same scenes with the same settings (one process, one cluster). Both are
   subprocesses started the same way, so both pay the interpreter start. -> scenes per hour,
   the ratio (target >= 3x).
2. **Driver overhead** on many tiny synthetic scenes (64² PAN, one tile, Brovey, no quality
   tiles) on a warm cluster: the batch layer's own time per scene (planning, database, checksum,
   summaries = batch wall minus the scenes' own ``run_scene`` seconds, one scene in flight) and
   the driver's resident memory after N and 4N scenes (flat = no per-scene growth).
3. **Dry run** of a 10,000-row manifest: with no database (all new), and again after the
   database records all 10,000 as done (the rerun plan), in process and through the CLI.
4. ``--parts archive`` (not in the default set: 10+ minutes): the real archive, every scene of
   ``PANTAILOR_DATA`` the product reads (``benchmarks/manifests/real_data.csv``, 40 scenes),
   through one ``pantailor batch``: states, scenes per hour, HQNR per scene, then the rerun.
5. ``--parts group`` (not in the default set): ``--tailor-scope group`` vs a fit per scene on the
   three SpaceNet Rotterdam scenes (one strip) and the six FuseBox Landsat-7 scenes of one
   path/row and date: HQNR per scene, fits, fit seconds saved, batch wall.

Usage: ``python benchmarks/batch.py`` (parts 1-3, a few minutes on 2 cores), ``--quick``, or
``--parts archive`` / ``--parts group`` (results merged into the existing JSON / Markdown).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline.batch import BatchConfig, BatchState, run_batch
from pipeline.batch.plan import load_scenes, make_plan
from pipeline.config import data_dir
from pipeline.report import environment

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("throughput", "overhead", "dry_run", "archive", "group")
ROOT = Path(__file__).resolve().parent.parent


def real_scenes(quick: bool) -> list[dict[str, Any]]:
    """(id, inputs, sensor, method) of real scenes that ``pantailor run`` reads without flags."""
    d = data_dir()
    rows = [
        {"id": "wv3-example", "inputs": [d / "vhr/wv3_example/WV3_example.mat"], "sensor": "wv3",
         "method": "fusionnet", "weights": "dlpan:wv3"},
    ]  # fmt: skip
    if not quick:
        rows.append(
            {"id": "quickbird", "inputs": [d / "vhr/quickbird/QB-PAN.tif",
             d / "vhr/quickbird/QB-MS.tif"], "sensor": "qb", "method": "fusionnet",
             "weights": "dlpan:qb"}
        )  # fmt: skip
    fb = d / "landsat/fusebox_landsat7/cropped"
    for i in range(1, 3 if quick else 7):
        rows.append(
            {"id": f"fusebox{i}", "inputs": [fb / f"{i}_pan.mat", fb / f"{i}_ms.mat"],
             "sensor": "landsat7", "method": "mtf-glp", "weights": ""}
        )  # fmt: skip
    return [r for r in rows if all(Path(p).exists() for p in r["inputs"])]


def _cli(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=ROOT, check=True)
    return time.perf_counter() - t0


def throughput(work: Path, scenes: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    common = ["--workers", "2", "--device", "cpu", "--steps", str(steps)]
    loop = {}
    for s in scenes:
        w = ["--weights", s["weights"]] if s["weights"] else []
        loop[s["id"]] = _cli(
            "run", *map(str, s["inputs"]), "--sensor", s["sensor"], "--method", s["method"],
            *w, "-o", str(work / "loop" / f"{s['id']}.tif"), *common,
        )  # fmt: skip
    manifest = work / "scenes.csv"
    manifest.write_text(
        "id,inputs,sensor,method,weights\n"
        + "".join(
            f"{s['id']},{';'.join(map(str, s['inputs']))},{s['sensor']},{s['method']},"
            f"{s['weights']}\n"
            for s in scenes
        )
    )
    batch = _cli("batch", str(manifest), "-o", str(work / "batch"), *common)
    rows = BatchState.read(work / "batch").rows()
    n, loop_total = len(scenes), sum(loop.values())
    return {
        "scenes": [s["id"] for s in scenes],
        "loop_seconds": loop,
        "loop_total_s": loop_total,
        "batch_total_s": batch,
        "batch_states": {k: r.state for k, r in rows.items()},
        "batch_scene_seconds": {k: r.seconds for k, r in rows.items()},
        "loop_scenes_per_hour": 3600 * n / loop_total,
        "batch_scenes_per_hour": 3600 * n / batch,
        "ratio": loop_total / batch,
    }


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tiny_scenes(work: Path, n: int, start: int) -> Path:
    import rasterio

    from pipeline.synthetic import make_scene

    syn = make_scene((64, 64), "qb", seed=1)
    pan, ms = work / "tiny_pan.tif", work / "tiny_ms.tif"
    if not pan.exists():
        for path, data in ((pan, syn.pan[None]), (ms, syn.ms)):
            with rasterio.open(
                path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1],
                count=data.shape[0], dtype="uint16",
            ) as dst:  # fmt: skip
                dst.write(data)
    m = work / "tiny.csv"  # one source: a longer manifest extends the same batch
    m.write_text("id,inputs,sensor\n" + "".join(f"t{i},{pan};{ms},qb\n" for i in range(start + n)))
    return m


def overhead(work: Path, n: int) -> dict[str, Any]:
    from pipeline.distribute import open_engine
    from workers.cluster import load_cluster_config

    out = work / "tiny_out"
    runs = []
    with open_engine(load_cluster_config(None, n_workers=2, device="cpu")) as engine:
        warm = BatchConfig(source=str(tiny_scenes(work, 4, 0)), out_dir=str(work / "warm"),
                           method="brovey", quality_tiles=0)  # fmt: skip
        run_batch(warm, engine=engine)  # workers import their modules once, before timing
        for size in (n // 4, n):  # the second run adds 3/4 n new scenes to the same OUTDIR
            m = tiny_scenes(work, size, 0)
            cfg = BatchConfig(source=str(m), out_dir=str(out), method="brovey", quality_tiles=0,
                              scenes_in_flight=1)  # fmt: skip
            t0 = time.perf_counter()
            res = run_batch(cfg, engine=engine)
            wall = time.perf_counter() - t0
            rows = BatchState.read(out).rows(res.ran)
            own = sum(r.seconds or 0.0 for r in rows.values())
            runs.append(
                {"scenes_run": len(res.ran), "wall_s": wall,
                 "scene_seconds_sum": own, "wall_per_scene_s": wall / max(1, len(res.ran)),
                 "driver_overhead_per_scene_s": (wall - own) / max(1, len(res.ran)),
                 "driver_rss_mib": _rss_mib(), "done": len(res.done)}
            )  # fmt: skip
    return {"runs": runs}


def dry_run(work: Path, rows: int) -> dict[str, Any]:
    pan, ms = work / "tiny_pan.tif", work / "tiny_ms.tif"
    m = work / "big.csv"
    m.write_text("id,inputs,sensor\n" + "".join(f"s{i},{pan};{ms},qb\n" for i in range(rows)))
    out = work / "big_out"
    cfg = BatchConfig(source=str(m), out_dir=str(out), dry_run=True)
    t0 = time.perf_counter()
    res = run_batch(cfg)
    fresh = time.perf_counter() - t0
    cli_fresh = _cli("batch", str(m), "-o", str(out), "--dry-run")
    # record every scene as done (the state a finished batch leaves), with its output present
    planned = make_plan(cfg, load_scenes(cfg), {})
    state = BatchState.open(out, cfg.source_id)
    state.queue(p.entry() for p in planned)
    for p in planned:
        Path(p.output).parent.mkdir(parents=True, exist_ok=True)
        Path(p.output).touch()
    with state.con:
        state.con.execute("UPDATE scenes SET state='done'")
    state.close()
    t0 = time.perf_counter()
    again = run_batch(cfg)
    rerun = time.perf_counter() - t0
    cli_rerun = _cli("batch", str(m), "-o", str(out), "--dry-run")
    return {
        "rows": rows,
        "fresh_in_process_s": fresh,
        "fresh_cli_s": cli_fresh,
        "fresh_actions": res.plan["actions"],
        "rerun_in_process_s": rerun,
        "rerun_cli_s": cli_rerun,
        "rerun_actions": again.plan["actions"],
    }


def archive(work: Path) -> dict[str, Any]:
    manifest = Path(__file__).resolve().parent / "manifests" / "real_data.csv"
    out = work / "archive"
    args = ("batch", str(manifest), "-o", str(out), "--workers", "2", "--device", "cpu")
    first = _cli(*args)
    rerun = _cli(*args)
    rows = BatchState.read(out).rows()
    done = [r for r in rows.values() if r.state == "done"]
    return {
        "scenes": len(rows),
        "done": len(done),
        "failed": {k: r.error for k, r in rows.items() if r.state == "failed"},
        "wall_s": first,
        "scenes_per_hour": 3600 * len(done) / first,
        "rerun_wall_s": rerun,
        "rows": {
            k: {"state": r.state, "seconds": r.seconds, "tiles": r.tiles,
                "hqnr_none": r.hqnr_none, "hqnr_product": r.hqnr_product}
            for k, r in rows.items()
        },
    }  # fmt: skip


#: Scenes of one acquisition each. SpaceNet 6's three Rotterdam tiles come from one WorldView-2
#: strip. FuseBox's ``locations.txt`` lists 38 crops for 30 files; reading file i as line i (the
#: order ``crop_images`` writes them), files 1-6 are path 34 / row 32, 2001-09-24.
GROUP_SETS = {
    "spacenet-rotterdam": [
        (f"spacenet{i}", [f"vhr/spacenet_wv2/pan{i}.tif", f"vhr/spacenet_wv2/ms{i}.tif"],
         "wv2-4band", "2")
        for i in (1, 2, 3)
    ],
    "landsat7-P034R032-20010924": [
        (f"fusebox{i}", [f"landsat/fusebox_landsat7/cropped/{i}_{b}.mat" for b in ("pan", "ms")],
         "landsat7", "")
        for i in range(1, 7)
    ],
}  # fmt: skip


def _fit_seconds(out: Path, scene: str) -> float:
    timings = json.loads((out / scene / f"{scene}.report.json").read_text())["timings"]
    return float(timings.get("fit", 0.0)) + float(timings.get("sample", 0.0))


#: A batch holding both sets at once (two groups): the second worker has another group's work
#: while one group's tailor is fitted.
BOTH_SETS = "both-sets"


def _group_rows() -> dict[str, list[tuple[str, tuple[str, list[str], str, str]]]]:
    sets = {name: [(name, sc) for sc in scenes] for name, scenes in GROUP_SETS.items()}
    return {**sets, BOTH_SETS: [row for rows in sets.values() for row in rows]}


def group_fit(work: Path) -> dict[str, Any]:
    """Per set: one batch with a fit per scene, one with a fit per group (product defaults)."""
    d, result = data_dir(), {}
    for name, scenes in _group_rows().items():
        manifest = work / f"{name}.csv"
        manifest.write_text(
            "id,inputs,sensor,ms_decimate,group\n"
            + "".join(f"{i},{';'.join(str(d / p) for p in ins)},{s},{dec},{group}\n"
                      for group, (i, ins, s, dec) in scenes)
        )  # fmt: skip
        runs = {}
        for scope in ("scene", "group"):
            out = work / f"{name}-{scope}"
            wall = _cli("batch", str(manifest), "-o", str(out), "--workers", "2", "--device",
                        "cpu", "--method", "fusionnet", "--tailor-scope", scope)  # fmt: skip
            state = BatchState.read(out)
            rows, groups = state.rows(), state.groups()
            fits = [_fit_seconds(out, k) for k, r in rows.items() if r.state == "done"]
            runs[scope] = {
                "wall_s": wall,
                "states": {k: r.state for k, r in rows.items()},
                "hqnr_none": {k: r.hqnr_none for k, r in rows.items()},
                "hqnr_product": {k: r.hqnr_product for k, r in rows.items()},
                "scene_seconds": {k: r.seconds for k, r in rows.items()},
                "fit_s": sum(g["seconds"] for g in groups.values()) if scope == "group" else sum(fits),
                "fits": sum(g["fits"] for g in groups.values()) if scope == "group" else len(fits),
                "n_patches": sum(g["n_patches"] for g in groups.values()) if scope == "group" else None,
            }  # fmt: skip
        result[name] = runs
    return result


def markdown_group(g: dict[str, Any]) -> list[str]:
    lines = [
        "## Tailor reuse across a strip: `--tailor-scope group` vs a fit per scene",
        "",
        "FusionNet (shipped weights) + tailor, product defaults (at most 60 fit steps, stopped by the held-out rule; 8 patches per "
        "fit: per scene, or shared across the group's scenes), 2 workers, 2 scenes in flight. "
        "HQNR is the product's (toolbox convention, on the report's quality tiles). The "
        "Landsat-7 set assumes FuseBox file i = line i of its `locations.txt` (path 34 / row "
        "32, 2001-09-24 for files 1-6; the files carry no metadata to confirm it).",
        "",
        "| set | scene | HQNR none | HQNR scene fit | HQNR group fit |",
        "|---|---|---|---|---|",
    ]

    def f(v: float | None) -> str:
        return f"{v:.4f}" if v is not None else "failed"

    g = {k: v for k, v in g.items() if k != "load_average"}  # the sets

    for name, runs in g.items():
        s, gr = runs["scene"], runs["group"]
        for k in s["hqnr_none"]:
            lines.append(
                f"| {name} | {k} | {f(s['hqnr_none'][k])} | {f(s['hqnr_product'][k])} | "
                f"{f(gr['hqnr_product'][k])} |"
            )
    lines += ["", "| set | fits (scene / group) | fit s (scene / group) | fit s saved (share of scene-scope wall) | "
              "batch wall s (scene / group) | wall saved (share) |", "|---|---|---|---|---|---|"]  # fmt: skip
    for name, runs in g.items():
        s, gr = runs["scene"], runs["group"]
        saved = s["fit_s"] - gr["fit_s"]
        wall = s["wall_s"] - gr["wall_s"]
        lines.append(
            f"| {name} | {s['fits']} / {gr['fits']} | {s['fit_s']:.1f} / {gr['fit_s']:.1f} | "
            f"{saved:.1f} ({100 * saved / s['wall_s']:.0f}%) | "
            f"{s['wall_s']:.1f} / {gr['wall_s']:.1f} | {wall:.1f} ({100 * wall / s['wall_s']:.0f}%) |"
        )
    lines += [
        "",
        "Fit s: scene scope sums the scenes' own fit + sampling seconds (their reports: worker "
        "time, two fits at once on the two workers); group scope is the one group fit "
        "(sampling across the scenes + fit, as the driver waited for it). Wall: the whole "
        "`pantailor batch` process (interpreter and cluster start included). With one group "
        "in the batch, the group fit occupies one worker while the other has nothing to do "
        "(every scene waits for the tailor), whereas the scene scope overlaps its fits with "
        "other scenes' tiles on both workers; so the wall saving is far below the fit time "
        f"saved. The `{BOTH_SETS}` row is both sets in one batch (two groups): there the "
        "other group's fit and scenes fill that gap.",
    ]
    return [*lines, ""]


def markdown_archive(a: dict[str, Any]) -> list[str]:
    lines = [
        f"## The real archive: every readable scene of PANTAILOR_DATA ({a['scenes']} scenes)",
        "",
        "`pantailor batch benchmarks/manifests/real_data.csv -o OUT --workers 2` (FusionNet + "
        "tailor on the VHR scenes, MTF-GLP on Landsat). "
        f"**{a['done']} done, {len(a['failed'])} failed in {a['wall_s']:.0f} s = "
        f"{a['scenes_per_hour']:.0f} scenes/hour**; the rerun (nothing to do) took "
        f"{a['rerun_wall_s']:.1f} s.",
        "",
        "| scene | state | tiles | HQNR none | HQNR product | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for k, r in a["rows"].items():
        cells = [r["hqnr_none"], r["hqnr_product"]]
        h = [f"{c:.4f}" if c is not None else "" for c in cells]
        lines.append(
            f"| {k} | {r['state']} | {r['tiles']} | {h[0]} | {h[1]} | {r['seconds']:.1f} |"
        )
    lines += [f"- failed {k}: {v}" for k, v in a["failed"].items()]
    return [*lines, ""]


def markdown(r: dict[str, Any]) -> str:
    env, t, o, d = r["environment"], r["throughput"], r["overhead"], r["dry_run"]
    first, last = o["runs"][0], o["runs"][-1]
    lines = [
        f"# Batch benchmark ({env['date']})",
        "",
        f"Machine: {env['platform']}, {env['cpu_count']} CPUs, **shared with other jobs while "
        f"it ran** (1-min load average at the start of each part: "
        + ", ".join(
            f"{k} {r[k]['load_average'][0]:.1f}" for k in PARTS if k in r and "load_average" in r[k]
        )
        + f"); torch {env['torch']}, "
        f"dask {env['dask']}, distributed {env['distributed']}. Each part's figures come from "
        "one run of that part; compare the ratios within a part, not absolute seconds.",
        f"Command: `python benchmarks/batch.py{' --quick' if r['quick'] else ''}` (parts "
        "throughput, overhead, dry_run), `python benchmarks/batch.py --parts archive` and `--parts group`.",
        "",
        "## Batch vs a loop of `pantailor run` (same scenes, same settings, 2 workers x 1 thread)",
        "",
        f"Scenes: {', '.join(t['scenes'])}; FusionNet + tailor ({r['steps']} steps) with the "
        "DLPan weights on the VHR scenes, MTF-GLP on the Landsat-7 ones.",
        "",
        "| scene | `pantailor run` s (process) | in the batch s (scene) |",
        "|---|---|---|",
        *[
            f"| {k} | {v:.1f} | {t['batch_scene_seconds'].get(k) or float('nan'):.1f} |"
            for k, v in t["loop_seconds"].items()
        ],
        "",
        f"Loop: {t['loop_total_s']:.1f} s = **{t['loop_scenes_per_hour']:.0f} scenes/hour**; "
        f"batch (one process): {t['batch_total_s']:.1f} s = "
        f"**{t['batch_scenes_per_hour']:.0f} scenes/hour**; **ratio {t['ratio']:.2f}x** "
        "(target >= 3x). Batch states: "
        + ", ".join(f"{k} {v}" for k, v in t["batch_states"].items())
        + ".",
        "",
        "Earlier runs of this part (ratio, 1-min load average at its start): "
        + (
            ", ".join(f"{e['ratio']:.2f}x ({e['load']:.1f})" for e in t.get("earlier", []))
            or "none"
        )
        + ".",
        "",
        "## Driver overhead on tiny scenes (64² PAN, 1 tile, Brovey, warm cluster)",
        "",
        "| scenes run | wall s | per scene s | batch layer per scene s | driver RSS MiB |",
        "|---|---|---|---|---|",
        *[
            f"| {x['scenes_run']} | {x['wall_s']:.1f} | {x['wall_per_scene_s']:.3f} | "
            f"{x['driver_overhead_per_scene_s']:.3f} | {x['driver_rss_mib']:.0f} |"
            for x in o["runs"]
        ],
        "",
        "'Per scene' is everything (the scene's `run_scene`: ingest, fit, tile map, export, "
        "report, quicklook). 'Batch layer' is the batch's own share: wall minus the scenes' own "
        "seconds (plan, database writes, COG checksum, summaries, products ItemCollection, Dask "
        f"performance report). Driver RSS after {first['scenes_run']} then "
        f"{first['scenes_run'] + last['scenes_run']} scenes in the same process.",
        "",
        f"## Dry run of a {d['rows']:,}-row manifest (no file read beyond stat)",
        "",
        "| plan | in process s | CLI (incl. interpreter) s | actions |",
        "|---|---|---|---|",
        f"| fresh OUTDIR | {d['fresh_in_process_s']:.2f} | {d['fresh_cli_s']:.2f} | "
        f"{d['fresh_actions']} |",
        f"| all recorded done | {d['rerun_in_process_s']:.2f} | {d['rerun_cli_s']:.2f} | "
        f"{d['rerun_actions']} |",
        "",
    ]
    if "archive" in r:
        lines += markdown_archive(r["archive"])
    if "group" in r:
        lines += markdown_group(r["group"])
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer scenes (a minute or two)")
    ap.add_argument("--steps", type=int, default=60, help="tailor fit steps (default 60)")
    ap.add_argument("--tiny", type=int, default=200, help="tiny scenes for the overhead part")
    ap.add_argument("--rows", type=int, default=10_000, help="manifest rows for the dry run")
    ap.add_argument(
        "--parts",
        default="throughput,overhead,dry_run",
        help="comma list of throughput, overhead, dry_run, archive, group (merged into the last "
        "results)",
    )
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    tiny = 40 if args.quick else args.tiny
    name = "batch_quick" if args.quick else "batch"
    previous = RESULTS / f"{name}.json"
    result: dict[str, Any] = json.loads(previous.read_text()) if previous.is_file() else {}
    work = Path(tempfile.mkdtemp(prefix="pantailor-batch-bench-"))
    result.update(quick=args.quick, steps=args.steps)
    try:
        for part in (p for p in PARTS if p in parts):
            load = list(os.getloadavg())
            if part == "throughput":
                prev = result.get(part)
                result[part] = throughput(work, real_scenes(args.quick), args.steps)
                if prev:  # keep the ratios of earlier runs (the machine is shared: they vary)
                    old = {"ratio": prev["ratio"], "load": prev["load_average"][0]}
                    result[part]["earlier"] = [*prev.get("earlier", []), old]
            elif part == "overhead":
                result[part] = overhead(work, tiny)
            elif part == "dry_run":
                if not (work / "tiny_pan.tif").exists():
                    tiny_scenes(work, 1, 0)
                result[part] = dry_run(work, args.rows)
            elif part == "group":
                result[part] = group_fit(work)
            else:
                result[part] = archive(work)
            result[part]["load_average"] = load
        result["environment"] = environment()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
