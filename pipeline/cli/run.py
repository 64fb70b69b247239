"""The ``pantailor run`` subcommand: arguments and the call; no logic here."""

from __future__ import annotations

import argparse

from ._base import (
    Subparsers,
    add_cluster_options,
    add_ingest_options,
    add_tile_fit_options,
    cluster_from,
    fit_options,
    ingest_options,
    print_summary,
    progress_printer,
)


def add(
    sub: Subparsers,
) -> argparse.ArgumentParser:
    from ..config import RunConfig
    from ..methods import ADAPTS, METHODS

    p = sub.add_parser(
        "run",
        help="pansharpen a scene end to end on a Dask cluster (ingest, fit, infer, export, report)",
        description="INPUTS: PAN.tif MS.tif | PAN.tif B1.tif ... | SCENE.mat | an existing "
        "scene store (*.zarr). Writes OUT.tif, OUT.report.json, OUT.quicklook.png and the work "
        "dir OUT.work/ (store, journal, lock, fitted adapter); a rerun resumes from the journal "
        "and recomputes when the inputs changed.",
    )
    p.add_argument("inputs", nargs="+", help="PAN then MS file(s), a container, or a scene store")
    p.add_argument("--sensor", help="sensor name, e.g. wv3 (optional for a store)")
    p.add_argument("--sensor-file", help="YAML file adding sensors (see pipeline.sensors)")
    p.add_argument("--method", default="fusionnet", choices=list(METHODS))
    p.add_argument("--weights", help="backbone weights: a .pt/.pth path or dlpan:SENSOR")
    p.add_argument("--adapt", default="tailor", choices=list(ADAPTS))
    p.add_argument("-o", "--output", required=True, help="target COG, e.g. out.tif")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    add_cluster_options(p)
    add_tile_fit_options(p)
    p.add_argument("--fit-patch", type=int, help="fit patch edge in PAN pixels (default 64)")
    p.add_argument("--max-nodata", type=float, help="largest no-data share of a fit patch")
    p.add_argument("--seed", type=int, default=0, help="seed of sampling and fit (default 0)")
    p.add_argument(
        "--speculate",
        type=int,
        default=RunConfig.speculate,
        help="tiles per spare worker thread whose features are extracted while the tailor is "
        f"fitted (default {RunConfig.speculate}; 0: off; same products either way)",
    )
    p.add_argument("--work-dir", help="work dir (default OUT.work next to OUT.tif)")
    p.add_argument("--overwrite", action="store_true", help="start over, replacing outputs")
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan only")
    p.add_argument(
        "--no-clip",
        dest="clip",
        action="store_false",
        help="keep values outside [0, dn_max] (default: clip valid outputs)",
    )
    add_ingest_options(p)
    p.set_defaults(handler=cmd)
    return p


def cmd(args: argparse.Namespace) -> int:
    from ..runner import RunConfig, run_scene

    cluster = cluster_from(args)
    sample = {"patch": args.fit_patch, "max_nodata": args.max_nodata}
    cfg = RunConfig(
        inputs=tuple(args.inputs),
        output=args.output,
        sensor=args.sensor,
        sensor_file=args.sensor_file,
        method=args.method,
        weights=args.weights,
        adapt=args.adapt,
        work_dir=args.work_dir,
        tile=args.tile,
        overwrite=args.overwrite,
        dry_run=args.dry_run,
        seed=args.seed,
        fit=fit_options(args),
        sample={k: v for k, v in sample.items() if v is not None},
        ingest=ingest_options(args),
        clip=args.clip,
        speculate=args.speculate,
    )
    summary = run_scene(cfg, cluster=cluster, progress=progress_printer())
    print_summary(summary, args.json)
    return 0
