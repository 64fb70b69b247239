"""The ``pantailor evaluate`` subcommand: arguments and the call; no logic here."""

from __future__ import annotations

import argparse

from ._base import Subparsers


def add(sub: Subparsers) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "evaluate",
        help="compare methods on a scene: reduced-resolution (Wald) and full-resolution indices",
        description="INPUTS: PAN.tif MS.tif | PAN.tif B1.tif ... | SCENE.mat | a scene store. "
        "Each method runs on the MTF-degraded pair (scored against the original MS: SAM, ERGAS, "
        "Q2n, SCC) and on the original pair (toolbox D_lambda^K, D_S, HQNR, D_lambda, QNR). "
        "Writes evaluate.md/.csv/.json/.png under -o. See pipeline.evaluate.",
    )
    p.add_argument("inputs", nargs="+", help="PAN then MS file(s), a container, or a store")
    p.add_argument("--sensor", help="sensor name, e.g. wv3 (optional for a store)")
    p.add_argument("--sensor-file", help="YAML file adding sensors (see pipeline.sensors)")
    p.add_argument(
        "--methods",
        default="exp,none,tailor,brovey,mtf-glp",
        help="comma-separated: exp (23-tap interpolation), none/tailor/finetune (the network), "
        "brovey, gsa, mtf-glp, mtf-glp-hpm (default: %(default)s)",
    )
    p.add_argument("--backbone", default="fusionnet", help="network (default: fusionnet)")
    p.add_argument("--weights", help="checkpoint path or dlpan:<SENSOR> (default: shipped)")
    p.add_argument("--seed", type=int, default=0, help="adaptation seed (default 0)")
    p.add_argument("--crop", type=int, help="centre crop of N x N PAN pixels (multiple of r^2)")
    p.add_argument(
        "--dn-max",
        type=float,
        help="the inputs' value at the sensor's full scale (e.g. 1 for [0, 1] data); they are "
        "rescaled to the sensor's DN, on which the toolbox indices are defined",
    )
    p.add_argument("--patch", type=int, help="patch index for containers holding N patches")
    p.add_argument(
        "--ms-decimate",
        type=int,
        help="keep every K-th MS pixel, for MS stored upsampled by K (SpaceNet: 2)",
    )
    p.add_argument("--block", type=int, default=32, help="Q/Q2n block edge (default 32)")
    p.add_argument("-o", "--out", default="evaluate", help="output folder (default: ./evaluate)")
    p.add_argument("--json", action="store_true", help="print the table as one JSON object")
    p.set_defaults(handler=cmd)
    return p


def cmd(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .. import __version__
    from ..evaluate import EvaluateConfig, evaluate_methods, table_markdown, write_outputs
    from ..quality.product import load_inputs
    from ..sensors import load_sensor_file

    if args.sensor_file:
        load_sensor_file(args.sensor_file)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    cfg = EvaluateConfig(
        methods=methods,
        backbone=args.backbone,
        weights=args.weights,
        seed=args.seed,
        crop=args.crop,
        block=args.block,
    )
    given = (("dn_max", args.dn_max), ("patch", args.patch), ("ms_decimate", args.ms_decimate))
    opts = {k: v for k, v in given if v is not None}
    inputs = load_inputs(args.inputs, args.sensor, **opts)
    result = evaluate_methods(inputs, cfg, dn_max=args.dn_max, paths=list(args.inputs))
    meta = {
        "inputs": [str(i) for i in args.inputs],
        "crop": args.crop,
        "backbone": args.backbone,
        "weights": args.weights or "shipped",
        "seed": args.seed,
        "inputs_dn_max": args.dn_max,
        "pantailor": __version__,
    }
    paths = write_outputs(result, inputs.sensor, cfg.figure_px, Path(args.out), meta)
    if args.json:
        rows = [{k: v for k, v in r.items()} for r in result["rows"]]
        print(json.dumps({"files": paths, "conventions": result["conventions"], "rows": rows}))
    else:
        print(table_markdown(result))
        print("wrote " + ", ".join(paths.values()))
    return 0
