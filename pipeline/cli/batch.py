"""The ``pantailor batch`` subcommand: arguments, the progress display and the call."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from ._base import Subparsers, add_cluster_options, add_tile_fit_options, cluster_from, fit_options

METHODS = ["fusionnet", "pnn", "pannet", "dicnn", "brovey", "gsa", "mtf-glp", "mtf-glp-hpm"]


def add(sub: Subparsers) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "batch",
        help="pansharpen many scenes on one cluster, resumably (manifest, STAC catalog or glob)",
        description="SOURCE: a manifest (scenes.csv|.yaml|.jsonl: id, inputs, sensor and per-scene "
        "options named like the flags, e.g. ms_decimate), a STAC Catalog/Collection/ItemCollection "
        "JSON, or a quoted PAN glob ('scenes/*/PAN.tif') with --ms. Writes OUTDIR/ID/ID.tif (+ "
        "report, quicklook), the state database, summary.csv/md, products.json (STAC) and a Dask "
        "performance report. A rerun skips finished scenes and resumes unfinished ones. Exit "
        "status: 0 all done, 1 some failed, 2 usage error.",
    )
    p.add_argument("source", help="manifest, STAC JSON file, or PAN glob pattern")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    p.add_argument("--ms", help="with a PAN glob: MS pattern using {dir} {stem} {1} ...")
    p.add_argument("--sensor", help="batch-wide sensor (rows and STAC platforms may set theirs)")
    p.add_argument("--method", default="fusionnet", choices=METHODS)
    p.add_argument("--weights", help="backbone weights: a .pt/.pth path or dlpan:SENSOR")
    p.add_argument("--adapt", default="tailor", choices=["tailor", "none", "finetune"])
    p.add_argument("--nodata", type=float, help="no-data DN overriding the files'")
    p.add_argument("--dn-max", type=float, help="DN mapped to 1.0 (default: the sensor's)")
    p.add_argument("--ms-decimate", type=int, help="keep every K-th MS pixel (SpaceNet: 2)")
    p.add_argument("--patch", type=int, help="patch index for containers holding N patches")
    add_tile_fit_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of sampling and fit (default 0)")
    p.add_argument("--quality-tiles", type=int, default=4, help="tiles scored per scene (0: none)")
    add_cluster_options(p)
    p.add_argument("--scenes-in-flight", type=int, default=2, help="scenes at once (default 2)")
    p.add_argument("--retry-failed", action="store_true", help="run failed scenes again")
    p.add_argument(
        "--clean-work",
        action="store_true",
        help="delete a finished scene's Zarr store (keeps journal, adapter and products)",
    )
    p.add_argument("--only", nargs="+", metavar="ID", help="run only these scene ids")
    p.add_argument("--dry-run", action="store_true", help="print the plan; write nothing")
    p.add_argument(
        "--check-inputs",
        action="store_true",
        help="with --dry-run: open every scene to run (headers) to count tiles and find bad inputs",
    )
    p.add_argument(
        "--tailor-scope",
        default="scene",
        choices=["scene", "group"],
        help="one tailor fit per scene, or per group of scenes (the manifest's group column; STAC: platform + date)",
    )
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(handler=cmd)
    return p


def _config(args: argparse.Namespace) -> Any:
    from ..batch import BatchConfig

    ingest = {
        k: getattr(args, k)
        for k in ("nodata", "dn_max", "ms_decimate", "patch")
        if getattr(args, k) is not None
    }
    return BatchConfig(
        source=args.source,
        out_dir=args.output,
        ms_pattern=args.ms,
        sensor=args.sensor,
        method=args.method,
        weights=args.weights,
        adapt=args.adapt,
        tile=args.tile,
        seed=args.seed,
        fit=fit_options(args),
        quality_tiles=args.quality_tiles,
        ingest=ingest,
        scenes_in_flight=args.scenes_in_flight,
        retry_failed=args.retry_failed,
        only=tuple(args.only or ()),
        dry_run=args.dry_run,
        check_inputs=args.check_inputs,
        clean_work=args.clean_work,
        tailor_scope=args.tailor_scope,
    )


def progress_display() -> tuple[Callable[[str, str, dict[str, Any]], None], Callable[[], None]]:
    """A tqdm bar over scenes (tiles of running scenes in its postfix) on a terminal, else one
    line per finished scene on stderr. Returns ``(on_event, close)``."""
    tty = sys.stderr.isatty()
    bar: Any = None
    tiles: dict[str, tuple[int, int]] = {}
    count = {"n": 0, "total": 0}

    def on_event(kind: str, scene: str, info: dict[str, Any]) -> None:
        nonlocal bar
        if kind == "plan":
            count["total"] = len(info.get("to_run", []))
            if tty:
                from tqdm import tqdm

                bar = tqdm(total=count["total"], unit="scene", file=sys.stderr)
        elif kind == "engine" and info.get("dashboard"):
            line = f"Dask dashboard: {info['dashboard']}"
            bar.write(line, file=sys.stderr) if bar is not None else print(line, file=sys.stderr)
        elif kind == "tiles" and bar is not None and info.get("stage") == "infer":
            tiles[scene] = (info["done"], info["total"])
            bar.set_postfix_str(" ".join(f"{k}:{d}/{t}" for k, (d, t) in tiles.items()))
        elif kind in ("done", "failed"):
            count["n"] += 1
            tiles.pop(scene, None)
            if bar is not None:
                bar.set_postfix_str(" ".join(f"{k}:{d}/{t}" for k, (d, t) in tiles.items()))
                bar.update(1)
                if kind == "failed":
                    bar.write(f"{scene}: failed: {info.get('error')}", file=sys.stderr)
            else:
                what = "done" if kind == "done" else f"failed: {info.get('error')}"
                n, total = count["n"], count["total"]
                print(
                    f"[{n}/{total}] {scene} {what} ({info.get('seconds', 0.0):.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )

    def close() -> None:
        if bar is not None:
            bar.close()

    return on_event, close


def _print_plan(plan: dict[str, Any]) -> None:
    acts = ", ".join(f"{n} {a}" for a, n in sorted(plan["actions"].items()))
    print(f"{plan['scenes']} scenes: {acts}")
    run = plan["to_run"]
    if run:
        print(
            f"would run: {' '.join(run[:20])}"
            + (f" ... (+{len(run) - 20})" if len(run) > 20 else "")
        )
    if plan.get("groups_to_run"):
        print(f"groups to run: {plan['groups_to_run']} (one tailor fit each, unless recorded)")
    for scene, err in plan["invalid"].items():
        print(f"invalid: {scene}: {err}")
    if "tiles" in plan:
        print(f"tiles to compute: {plan['tiles']}")
    for scene, err in plan.get("input_errors", {}).items():
        print(f"input error: {scene}: {err}")


def cmd(args: argparse.Namespace) -> int:
    from ..batch import run_batch

    cfg = _config(args)
    cluster = None
    if not cfg.dry_run:  # a dry run imports neither torch nor distributed
        cluster = cluster_from(args)
    on_event, close = progress_display()
    try:
        result = run_batch(cfg, cluster=cluster, on_event=on_event)
    finally:
        close()
    if args.json:
        print(json.dumps({**vars(result), "exit_status": result.exit_status}, default=str))
        return 0 if cfg.dry_run else result.exit_status
    if cfg.dry_run:
        _print_plan(result.plan)
        return 0
    print(
        f"{len(result.done)} done, {len(result.failed)} failed; ran {len(result.ran)} scenes "
        f"in {result.seconds:.1f} s; summary: {result.outputs.get('summary_md')}"
    )
    for scene, err in result.failed.items():
        print(f"failed: {scene}: {err}")
    return result.exit_status
