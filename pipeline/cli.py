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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pantailor`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
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
