"""The ``pantailor demo`` subcommand: arguments and the call; no logic here."""

from __future__ import annotations

import argparse

from ._base import Subparsers, print_summary, progress_printer


def add(
    sub: Subparsers,
) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "demo",
        help="run the built-in real Landsat-8 demo scene end to end on the local cluster",
        description="Pansharpens the small real Landsat-8 scene shipped with pantailor "
        "(pipeline/demo_data, public domain) with the shipped 4-band FusionNet, which never saw "
        "Landsat-8: fits the tailor, infers every tile on a local Dask cluster, exports a "
        "georeferenced COG and writes the report, the overview quicklook and a native-resolution "
        "side-by-side crop (demo.crop.png). --synthetic runs a seeded synthetic 8-band "
        "WorldView-3-like scene of --size instead (the large-scene path).",
    )
    p.add_argument("--synthetic", action="store_true", help="a synthetic scene of --size instead")
    p.add_argument("-o", "--output-dir", default="pantailor-demo", help="folder for the results")
    p.add_argument(
        "--size", type=int, default=2048, help="--synthetic PAN edge in pixels (default 2048)"
    )
    p.add_argument("--tile", type=int, default=512, help="--synthetic tile edge (default 512)")
    p.add_argument(
        "--steps", type=int, help="--synthetic fit step budget (default: pipeline.fit's)"
    )
    p.add_argument("--weights", help="backbone weights (default: the shipped FusionNet)")
    p.add_argument("--workers", type=int, help="local worker processes (default: cores)")
    p.add_argument("--threads-per-worker", type=int, help="threads per worker (default 1)")
    p.add_argument("--scheduler", help="address of a running Dask scheduler, e.g. tcp://h:8786")
    p.add_argument("--overwrite", action="store_true", help="recompute an existing demo")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(handler=cmd)
    return p


def cmd(args: argparse.Namespace) -> int:
    from .. import demo
    from ..distribute import load_cluster
    from ..runner import demo_config, run_scene

    cluster = load_cluster(
        None,
        n_workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        address=args.scheduler,
    )
    if not args.synthetic:
        summary = demo.run_demo(
            args.output_dir,
            cluster=cluster,
            overwrite=args.overwrite,
            weights=args.weights,
            progress=progress_printer(),
        )
        print_summary(summary, args.json)
        return 0
    cfg = demo_config(args.output_dir, size=args.size, tile=args.tile, overwrite=args.overwrite)
    cfg = demo.synthetic_config(cfg, args.weights)
    if args.steps:
        from dataclasses import replace

        cfg = replace(cfg, fit={"steps": args.steps})
    summary = run_scene(cfg, cluster=cluster, progress=progress_printer())
    print_summary(summary, args.json)
    return 0
