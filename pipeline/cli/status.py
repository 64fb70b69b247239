"""The ``pantailor status`` subcommand: a batch's progress from its database (also while it runs)."""

from __future__ import annotations

import argparse
import json

from ._base import Subparsers


def add(sub: Subparsers) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "status",
        help="show a batch's scenes, totals, scenes per hour and ETA (also while it runs)",
        description="Reads OUTDIR/pantailor-batch.sqlite read-only.",
    )
    p.add_argument("outdir", help="the -o folder of a batch")
    p.add_argument("--json", action="store_true", help="print the status as one JSON object")
    p.set_defaults(handler=cmd)
    return p


def cmd(args: argparse.Namespace) -> int:
    from ..batch import batch_status, format_status

    status = batch_status(args.outdir)
    print(json.dumps(status, default=str) if args.json else format_status(status))
    return 0
