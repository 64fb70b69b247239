"""The ``pantailor metrics`` subcommand: arguments and the call; no logic here."""

from __future__ import annotations

import argparse

from ._base import Subparsers, add_ingest_options, ingest_options


def add(
    sub: Subparsers,
) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "metrics",
        help="quality indices of a fused product (HQNR/QNR; SAM/ERGAS/Q2n/SCC with a reference)",
        description="FUSED: a GeoTIFF (B, H, W) in DN, or a scene store (--array picks the "
        "output). INPUTS: PAN.tif MS.tif | PAN.tif B1.tif ... | SCENE.mat | a scene store; "
        "omitted when FUSED is a store holding its inputs. See pipeline.quality.",
    )
    p.add_argument("fused", help="fused product: .tif, or a scene store (*.zarr)")
    p.add_argument("inputs", nargs="*", help="PAN then MS file(s), a container, or a store")
    p.add_argument("--sensor", help="sensor name, e.g. wv3 (optional for a store)")
    p.add_argument("--sensor-file", help="YAML file adding sensors (see pipeline.sensors)")
    p.add_argument("--array", help="store array holding the product (default: its only output)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply FUSED by this (default 1)")
    p.add_argument("--block", type=int, default=32, help="Q/Q2n block edge (default 32)")
    p.add_argument("--edge", type=int, default=0, help="PAN pixels cut on each side (default 0)")
    p.add_argument("--method", help="method name recorded in the output")
    p.add_argument(
        "--convention",
        default="toolbox",
        choices=("toolbox", "project"),
        help="full-resolution indices: the Matlab toolbox's (default) or the project's earlier",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_ingest_options(p)  # the same ingest options as `run`; --nodata scores clean tiles only
    p.set_defaults(handler=cmd)
    return p


def cmd(args: argparse.Namespace) -> int:
    import json

    from ..quality.product import evaluate, load_fused, load_inputs
    from ..sensors import load_sensor_file

    if args.sensor_file:
        load_sensor_file(args.sensor_file)
    fused = load_fused(args.fused, array=args.array, scale=args.scale)
    sources = args.inputs or [args.fused]
    result = evaluate(
        fused,
        load_inputs(sources, args.sensor, **ingest_options(args)),
        block=args.block,
        edge=args.edge,
        convention=args.convention,
        files=[str(args.fused), *map(str, args.inputs or [])],
    )
    if args.method:
        result = {"method": args.method, **result}
    if args.json:
        print(json.dumps(result))
        return 0
    head = f"{args.method} on " if args.method else ""
    print(f"{head}{result['sensor']}: {args.fused}")
    for name, value in result["metrics"].items():
        print(f"  {name:<11} {value:.4f}")
    print("  " + ", ".join(f"{k} {v:.2f}s" for k, v in result["timings"].items()))
    for kind, note in result["conventions"].items():
        print(f"  {kind} convention: {note}")
    return 0
