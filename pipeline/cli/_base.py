"""Shared pieces of the subcommands: the subparser type, progress and summary printing."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from workers.cluster import ClusterConfig

if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Subparsers = argparse._SubParsersAction
Handler = Callable[[argparse.Namespace], int]


def progress_printer() -> Callable[[str, int, int], None]:
    def show(stage: str, done: int, total: int) -> None:
        if not sys.stderr.isatty():
            return
        filled = int(30 * done / max(total, 1))
        bar = "#" * filled + "." * (30 - filled)
        end = "\n" if done >= total else ""
        print(f"\r{stage:<7} [{bar}] {done}/{total}", end=end, file=sys.stderr, flush=True)

    return show


def print_summary(summary: dict[str, object], as_json: bool) -> None:
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
        for name in ("cog", "report", "quicklook", "crop"):
            if name in outputs:
                print(f"{name}: {outputs.get(name)}")


def add_cluster_options(p: argparse.ArgumentParser) -> None:
    """The cluster flags shared by ``run`` and ``batch``."""
    p.add_argument("--workers", type=int, help="local worker processes (default: cores)")
    p.add_argument("--threads-per-worker", type=int, help="threads per worker (default 1)")
    p.add_argument("--scheduler", help="address of a running Dask scheduler, e.g. tcp://h:8786")
    p.add_argument("--cluster-config", help="YAML overriding workers/defaults.yaml")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="worker device")


def cluster_from(args: argparse.Namespace) -> ClusterConfig:
    """The cluster configuration :func:`add_cluster_options`'s flags describe."""
    from ..distribute import load_cluster

    return load_cluster(
        args.cluster_config,
        n_workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        address=args.scheduler,
        device=args.device,
    )


def add_ingest_options(p: argparse.ArgumentParser) -> None:
    """The ingest options every command that reads PAN/MS files accepts."""
    p.add_argument("--nodata", type=float, help="no-data DN overriding the files'")
    p.add_argument("--dn-max", type=float, help="DN mapped to 1.0 (default: the sensor's)")
    p.add_argument(
        "--ms-decimate",
        type=int,
        help="keep every K-th MS pixel, for MS stored upsampled by K (SpaceNet: 2)",
    )
    p.add_argument("--patch", type=int, help="patch index for containers holding N patches")


#: ``--augment`` choices: the keys of :data:`pipeline.fit_config.AUGMENTS` (not imported here:
#: it imports torch, which ``--help`` should not wait for; a test holds them equal).
AUGMENT_CHOICES = ("none", "rot180", "flips", "d4")


def add_tile_fit_options(p: argparse.ArgumentParser) -> None:
    """``--tile``, ``--steps`` and ``--augment`` (``run`` and ``batch``)."""
    p.add_argument(
        "--tile",
        type=int,
        help="tile edge in PAN pixels of file inputs (default 512; a store keeps its own)",
    )
    p.add_argument("--steps", type=int, help="fit step budget (default: pipeline.fit's)")
    p.add_argument(
        "--augment",
        choices=AUGMENT_CHOICES,
        help="fit the tailor on its patches also rotated/flipped (default rot180: each patch "
        "also turned by 180 degrees, 2x the fit's per-step cost, the best cross-sensor label "
        "measured, benchmarks/results/cross_sensor.md; none: the patches as sampled)",
    )


def fit_options(args: argparse.Namespace) -> dict[str, Any]:
    """The given fit options (``--steps``, ``--augment``) as :class:`pipeline.fit.FitConfig`
    fields; what is not given is left out, so a run's identity only holds what was chosen."""
    fit: dict[str, Any] = {"steps": args.steps} if args.steps else {}
    if args.augment is not None:
        fit["augment"] = args.augment
    return fit


def ingest_options(args: argparse.Namespace) -> dict[str, Any]:
    """The given ingest options as :func:`pipeline.scene.open_scene` keywords."""
    names = {"nodata": "nodata", "dn_max": "dn_max", "ms_decimate": "ms_decimate", "patch": "patch"}
    return {k: getattr(args, a) for k, a in names.items() if getattr(args, a) is not None}
