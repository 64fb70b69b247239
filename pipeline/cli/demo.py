"""The ``pantailor demo`` subcommand: arguments and the call; no logic here."""

from __future__ import annotations

import argparse

from ._base import Subparsers, print_summary, progress_printer


def add(
    sub: Subparsers,
) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "demo",
        help="run a built-in synthetic 8-band scene end to end on the local cluster",
        description="Makes a seeded synthetic WorldView-3-like scene, fits the tailor on the "
        "shipped FusionNet weights, infers every tile on a local Dask cluster, exports the COG "
        "and writes the report and the quicklook.",
    )
    p.add_argument("-o", "--output-dir", default="pantailor-demo", help="folder for the results")
    p.add_argument("--size", type=int, default=2048, help="PAN edge in pixels (default 2048)")
    p.add_argument("--tile", type=int, default=512, help="tile edge in PAN pixels (default 512)")
    p.add_argument("--steps", type=int, help="fit step budget (default: pipeline.fit's)")
    p.add_argument("--weights", help="backbone weights (default: the shipped FusionNet 8-band)")
    p.add_argument("--workers", type=int, help="local worker processes (default: cores)")
    p.add_argument("--threads-per-worker", type=int, help="threads per worker (default 1)")
    p.add_argument("--scheduler", help="address of a running Dask scheduler, e.g. tcp://h:8786")
    p.add_argument("--overwrite", action="store_true", help="recompute an existing demo")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(handler=cmd)
    return p


def cmd(args: argparse.Namespace) -> int:
    from ..distribute import load_cluster
    from ..runner import demo_config, run_scene

    cluster = load_cluster(
        None,
        n_workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        address=args.scheduler,
    )
    cfg = demo_config(args.output_dir, size=args.size, tile=args.tile, overwrite=args.overwrite)
    if args.weights or args.steps:
        from dataclasses import replace

        fit = {"steps": args.steps} if args.steps else {}
        cfg = replace(cfg, weights=args.weights or cfg.weights, fit=fit)
    summary = run_scene(cfg, cluster=cluster, progress=progress_printer())
    print_summary(summary, args.json)
    return 0
