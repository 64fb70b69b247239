"""The ``pantailor weights`` subcommand: list, fetch and verify the registered checkpoints."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from ._base import Subparsers

if TYPE_CHECKING:
    from ..weights.registry import WeightsEntry

LIST_FIELDS = ("name", "file", "sha256", "url", "licence", "sensor", "bands")


def add(sub: Subparsers) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "weights",
        help="list, fetch and verify the registered backbone weights",
        description="The checkpoints pantailor knows by name (DLPan-Toolbox community weights and "
        "the project's own), each with its source URL at a pinned commit and sha256. Files are "
        "fetched into PANTAILOR_CACHE (default: the platform cache dir) on first use and verified "
        "on every load; PANTAILOR_WEIGHTS_MIRROR (a directory or base URL holding the files under "
        "their registry file names) serves clusters without internet access.",
    )
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    ls = verbs.add_parser("list", help="the registered weights")
    ls.add_argument("--json", action="store_true", help="one JSON list of entries")
    fetch = verbs.add_parser("fetch", help="get (and verify) weights into the cache")
    fetch.add_argument("names", nargs="+", metavar="NAME", help="registry names, or 'all'")
    ver = verbs.add_parser("verify", help="check the sha256 of every local copy (no download)")
    ver.add_argument("names", nargs="*", metavar="NAME", help="registry names (default: all)")
    ver.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(handler=cmd)
    return p


def _select(names: list[str]) -> list[WeightsEntry]:
    from ..weights import registry

    if not names or names == ["all"]:
        return list(registry.entries())
    return [registry.get(n) for n in names]


def cmd(args: argparse.Namespace) -> int:
    from ..weights import registry

    if args.verb == "list":
        first = {k: "" for k in LIST_FIELDS}  # the documented fields first, then the rest
        rows = [{**first, **e.as_dict()} for e in registry.entries()]
        if args.json:
            print(json.dumps(rows))
        else:
            for e in registry.entries():
                src = e.url or "(shipped in the package)"
                print(f"{e.name:<28} {e.sensor:<6} {e.bands} bands  {e.sha256[:12]}  {src}")
            print(f"cache: {registry.cache_dir()}")
        return 0
    if args.verb == "fetch":
        for e in _select(args.names):
            print(f"{e.name}: {registry.resolve(e)}")
        return 0
    report = {e.name: registry.status(e) for e in _select(args.names)}
    bad = [n for n, st in report.items() if "MISMATCH" in st.values()]
    if args.json:
        print(json.dumps({"entries": report, "mismatch": bad}))
    else:
        for name, st in report.items():
            print(f"{name:<28} " + ", ".join(f"{k}: {v}" for k, v in st.items()))
        if bad:
            print("checksum mismatch: " + ", ".join(bad) + " (delete the file and fetch again)")
    return 1 if bad else 0
