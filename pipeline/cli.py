"""The ``pantailor`` command line: builds configs and calls the stage functions; no logic here.

Each subcommand is one ``_add_<cmd>`` (arguments) plus one ``_cmd_<cmd>`` (call) pair.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .errors import PantailorError

log = logging.getLogger("pantailor")

Handler = Callable[[argparse.Namespace], int]


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (used by ``main`` and the docs)."""
    parser = argparse.ArgumentParser(
        prog="pantailor",
        description="Distributed tiled pansharpening with per-scene residual feature tailoring.",
    )
    parser.add_argument("--version", action="version", version=f"pantailor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _ADDERS:
        p = add(sub)
        _add_common(p)
    return parser


_ADDERS: list[
    Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], argparse.ArgumentParser]
] = []


def _add_ingest(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "ingest",
        help="validate a PAN/MS pair and write it into a Zarr scene store",
        description="Inputs: PAN.tif MS.tif | PAN.tif B1.tif B2.tif ... | SCENE.mat | PAN.mat MS.mat",
    )
    p.add_argument("inputs", nargs="+", help="PAN then MS file(s), or a .mat/.h5 container")
    p.add_argument("--sensor", required=True, help="sensor name, e.g. wv3, ge1, landsat8")
    p.add_argument("--sensor-file", help="YAML file adding sensors (see pipeline.sensors)")
    p.add_argument("-o", "--output", required=True, help="target store, e.g. scene.zarr")
    p.add_argument("--tile", type=int, default=512, help="tile edge in PAN pixels (default 512)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--nodata", type=float, help="no-data DN overriding the files'")
    p.add_argument("--dn-max", type=float, help="DN mapped to 1.0 (default: the sensor's)")
    p.add_argument(
        "--ms-decimate",
        type=int,
        default=1,
        help="keep every K-th MS pixel, for MS stored upsampled by K (SpaceNet: 2)",
    )
    p.add_argument("--patch", type=int, help="patch index for containers holding N patches")
    p.set_defaults(handler=_cmd_ingest)
    return p


def _cmd_ingest(args: argparse.Namespace) -> int:
    from .scene import open_scene
    from .sensors import load_sensor_file
    from .store import write_scene

    if args.sensor_file:
        load_sensor_file(args.sensor_file)
    scene = open_scene(
        args.inputs,
        args.sensor,
        nodata=args.nodata,
        dn_max=args.dn_max,
        ms_decimate=args.ms_decimate,
        patch=args.patch,
        rows=args.tile,
    )
    store = write_scene(scene, args.output, tile=args.tile, overwrite=args.overwrite)
    m = store.meta
    print(
        f"{store.path}: {m.sensor}, PAN {m.pan_shape_yx[0]}x{m.pan_shape_yx[1]}, "
        f"{m.n_bands} bands, ratio {m.ratio}, tile {m.tile}, {m.alignment}-aligned, "
        f"{'CRS set' if m.georeferenced else 'not georeferenced'}"
    )
    return 0


_ADDERS.append(_add_ingest)


def _add_export(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export",
        help="write a store array as a Cloud-Optimized GeoTIFF",
        description="ARRAY: an output name, ms_up (MS replicated onto the PAN grid), pan, ms or gt",
    )
    p.add_argument("store", help="scene store written by pantailor ingest")
    p.add_argument("array", help="array to export, e.g. ms_up or the fused output")
    p.add_argument("-o", "--output", required=True, help="target .tif")
    p.add_argument("--dtype", help="output dtype (default: the MS source dtype), e.g. float32")
    p.add_argument("--compress", choices=["deflate", "zstd", "lzw"], default="deflate")
    p.add_argument("--level", type=int, help="compression level (default: GDAL's)")
    p.add_argument("--blocksize", type=int, default=512, help="internal tile edge (default 512)")
    p.add_argument(
        "--overview-resampling",
        choices=["average", "nearest", "bilinear", "cubic", "mode"],
        default="average",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(handler=_cmd_export)
    return p


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import CogOptions, export_cog

    opts = CogOptions(
        dtype=args.dtype,
        compress=args.compress,
        level=args.level,
        blocksize=args.blocksize,
        overview_resampling=args.overview_resampling,
    )
    out = export_cog(args.store, args.array, args.output, options=opts, overwrite=args.overwrite)
    print(f"{out}: {args.array} from {args.store}")
    return 0


_ADDERS.append(_add_export)


def _add_train_backbone(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train-backbone",
        help="train backbone weights on the permissively licensed data (Wald protocol, ratio 4)",
        description="Landsat-7 FuseBox (+ SpaceNet WV2 for 4 bands) under PANTAILOR_DATA; "
        "see pipeline/training.py and pipeline/weights/MODEL_CARD.md",
    )
    p.add_argument("-o", "--output", required=True, help="target checkpoint, e.g. my.pt")
    p.add_argument("--name", default="fusionnet", help="backbone (default fusionnet)")
    p.add_argument("--bands", type=int, choices=[4, 8], default=4, help="band set (default 4)")
    p.add_argument("--steps", type=int, default=2000, help="optimiser steps (default 2000)")
    p.add_argument("--batch", type=int, default=8, help="patches per step (default 8)")
    p.add_argument("--patch", type=int, default=64, help="patch edge in PAN pixels (default 64)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument(
        "--scenes", default="1-30", help="FuseBox scene numbers, e.g. 1-30 or 1,2,26 (default 1-30)"
    )
    p.add_argument("--val-scenes", default="26-30", help="held-out FuseBox scenes (default 26-30)")
    p.add_argument(
        "--no-spacenet", action="store_true", help="leave the SpaceNet WV2 scenes out (4 bands)"
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(handler=_cmd_train_backbone)
    return p


def _cmd_train_backbone(args: argparse.Namespace) -> int:
    import json

    import torch

    from .training import TrainConfig, parse_scenes, train_and_save

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        name=args.name,
        n_bands=args.bands,
        steps=args.steps,
        batch=args.batch,
        patch=args.patch,
        lr=args.lr,
        seed=args.seed,
        fusebox_scenes=parse_scenes(args.scenes),
        val_scenes=parse_scenes(args.val_scenes),
        spacenet=not args.no_spacenet,
    )
    summary = train_and_save(cfg, args.output)
    if args.json:
        print(json.dumps(summary))
    else:
        v = summary["val"]
        print(
            f"{summary['path']}: {cfg.name} {cfg.n_bands} bands, {cfg.steps} steps in "
            f"{summary['train_seconds']:.0f} s; held-out SAM {v['model']['sam']:.2f} "
            f"(lms {v['lms']['sam']:.2f}), ERGAS {v['model']['ergas']:.2f} "
            f"(lms {v['lms']['ergas']:.2f})"
        )
    return 0


_ADDERS.append(_add_train_backbone)


def _add_run(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "run",
        help="pansharpen a scene end to end on a Dask cluster (ingest, fit, infer, export, report)",
        description="INPUTS: PAN.tif MS.tif | PAN.tif B1.tif ... | SCENE.mat | an existing "
        "scene store (*.zarr). Writes OUT.tif, OUT.report.json, OUT.quicklook.png and the work "
        "dir OUT.work/ (store, journal, fitted adapter); a rerun resumes from the journal.",
    )
    p.add_argument("inputs", nargs="+", help="PAN then MS file(s), a container, or a scene store")
    p.add_argument("--sensor", help="sensor name, e.g. wv3 (optional for a store)")
    p.add_argument(
        "--method",
        default="fusionnet",
        choices=["fusionnet", "pnn", "pannet", "dicnn", "brovey", "gsa", "mtf-glp", "mtf-glp-hpm"],
    )
    p.add_argument("--weights", help="backbone weights: a .pt/.pth path or dlpan:SENSOR")
    p.add_argument("--adapt", default="tailor", choices=["tailor", "none", "finetune"])
    p.add_argument("-o", "--output", required=True, help="target COG, e.g. out.tif")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--workers", type=int, help="local worker processes (default: cores)")
    p.add_argument("--threads-per-worker", type=int, help="threads per worker (default 1)")
    p.add_argument("--scheduler", help="address of a running Dask scheduler, e.g. tcp://h:8786")
    p.add_argument("--cluster-config", help="YAML overriding workers/defaults.yaml")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="worker device")
    p.add_argument("--tile", type=int, default=512, help="tile edge in PAN pixels (default 512)")
    p.add_argument("--steps", type=int, help="fit step budget (default: pipeline.fit's)")
    p.add_argument("--seed", type=int, default=0, help="seed of sampling and fit (default 0)")
    p.add_argument("--work-dir", help="work dir (default OUT.work next to OUT.tif)")
    p.add_argument("--overwrite", action="store_true", help="start over, replacing outputs")
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan only")
    p.set_defaults(handler=_cmd_run)
    return p


def _progress_printer() -> Callable[[str, int, int], None]:
    def show(stage: str, done: int, total: int) -> None:
        if not sys.stderr.isatty():
            return
        filled = int(30 * done / max(total, 1))
        bar = "#" * filled + "." * (30 - filled)
        end = "\n" if done >= total else ""
        print(f"\r{stage:<7} [{bar}] {done}/{total}", end=end, file=sys.stderr, flush=True)

    return show


def _print_summary(summary: dict[str, object], as_json: bool) -> None:
    import json

    if as_json:
        print(json.dumps(summary, default=str))
        return
    if summary.get("dry_run"):
        for key, value in summary.items():
            print(f"{key}: {value}")
        return
    outputs, timings = summary.get("outputs"), summary.get("timings")
    if isinstance(timings, dict):
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
        print(
            f"{summary.get('method')} ({summary.get('adapt')}) on {summary.get('sensor')}: {stages}"
        )
    if isinstance(outputs, dict):
        for name in ("cog", "report", "quicklook"):
            print(f"{name}: {outputs.get(name)}")


def _cmd_run(args: argparse.Namespace) -> int:
    from workers.cluster import load_cluster_config

    from .runner import RunConfig, run_scene

    cluster = load_cluster_config(
        args.cluster_config,
        n_workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        address=args.scheduler,
        device=args.device,
    )
    cfg = RunConfig(
        inputs=tuple(args.inputs),
        output=args.output,
        sensor=args.sensor,
        method=args.method,
        weights=args.weights,
        adapt=args.adapt,
        work_dir=args.work_dir,
        tile=args.tile,
        overwrite=args.overwrite,
        dry_run=args.dry_run,
        seed=args.seed,
        fit={"steps": args.steps} if args.steps else {},
    )
    summary = run_scene(cfg, cluster=cluster, progress=_progress_printer())
    _print_summary(summary, args.json)
    return 0


_ADDERS.append(_add_run)


def _add_demo(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
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
    p.add_argument("--weights", help="backbone weights (default: the shipped FusionNet 8-band)")
    p.add_argument("--workers", type=int, help="local worker processes (default: cores)")
    p.add_argument("--threads-per-worker", type=int, help="threads per worker (default 1)")
    p.add_argument("--overwrite", action="store_true", help="recompute an existing demo")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(handler=_cmd_demo)
    return p


def _cmd_demo(args: argparse.Namespace) -> int:
    from workers.cluster import load_cluster_config

    from .runner import demo_config, run_scene

    cluster = load_cluster_config(
        None, n_workers=args.workers, threads_per_worker=args.threads_per_worker
    )
    cfg = demo_config(args.output_dir, size=args.size, overwrite=args.overwrite)
    if args.weights:
        from dataclasses import replace

        cfg = replace(cfg, weights=args.weights)
    summary = run_scene(cfg, cluster=cluster, progress=_progress_printer())
    _print_summary(summary, args.json)
    return 0


_ADDERS.append(_add_demo)


def _add_metrics(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
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
    p.add_argument("--dn-max", type=float, help="DN mapped to 1.0 for the inputs")
    p.add_argument("--patch", type=int, help="patch index for containers holding N patches")
    p.add_argument("--block", type=int, default=32, help="Q/Q2n block edge (default 32)")
    p.add_argument("--edge", type=int, default=0, help="PAN pixels cut on each side (default 0)")
    p.add_argument("--method", help="method name recorded in the output")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_cmd_metrics)
    return p


def _cmd_metrics(args: argparse.Namespace) -> int:
    import json

    from .quality.product import evaluate, load_fused, load_inputs
    from .sensors import load_sensor_file

    if args.sensor_file:
        load_sensor_file(args.sensor_file)
    fused = load_fused(args.fused, array=args.array, scale=args.scale)
    sources = args.inputs or [args.fused]
    opts = {k: v for k, v in (("dn_max", args.dn_max), ("patch", args.patch)) if v is not None}
    result = evaluate(
        fused, load_inputs(sources, args.sensor, **opts), block=args.block, edge=args.edge
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
    return 0


_ADDERS.append(_add_metrics)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pantailor`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.verbose < 2:  # distributed logs every worker start at INFO; keep that for -vv
        import dask

        dask.config.set({"logging.distributed": "warning"})
        logging.getLogger("distributed").setLevel(logging.WARNING)
    handler: Handler = args.handler
    try:
        return handler(args)
    except PantailorError as exc:
        print(f"pantailor {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pantailor {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
