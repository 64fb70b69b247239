"""The ``pantailor export`` subcommand: arguments and the call; no logic here."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._base import Subparsers


def add(
    sub: Subparsers,
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
    p.set_defaults(handler=cmd)
    return p


def cmd(args: argparse.Namespace) -> int:
    from ..export import CogOptions, export_cog
    from ..files import check_output_file
    from ..lock import RunLock, output_lock

    check_output_file(args.output, [args.store])
    opts = CogOptions(
        dtype=args.dtype,
        compress=args.compress,
        level=args.level,
        blocksize=args.blocksize,
        overview_resampling=args.overview_resampling,
    )
    out_name = Path(args.output).name
    with RunLock.acquire(output_lock(args.output), what=f"the output {out_name}"):
        out = export_cog(
            args.store, args.array, args.output, options=opts, overwrite=args.overwrite
        )
    print(f"{out}: {args.array} from {args.store}")
    return 0
