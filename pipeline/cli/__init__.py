"""The ``pantailor`` command line: builds configs and calls the stage functions; no logic here.

One module per subcommand in this package, each with ``add(subparsers) -> parser`` (arguments,
``set_defaults(handler=cmd)``) and ``cmd(args) -> int`` (the call). A new subcommand is a new
module plus one name in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import PantailorError
from ._base import Handler

log = logging.getLogger("pantailor")

#: Subcommand modules in the order ``--help`` lists them.
COMMANDS = (
    "ingest",
    "export",
    "train_backbone",
    "run",
    "batch",
    "status",
    "demo",
    "metrics",
    "evaluate",
    "weights",
)


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
    for name in COMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        _add_common(module.add(sub))
    return parser


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
