"""The ``pantailor train-backbone`` subcommand: arguments and the call; no logic here."""

from __future__ import annotations

import argparse

from ._base import Subparsers


def add(
    sub: Subparsers,
) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train-backbone",
        help="train backbone weights on the permissively licensed data (Wald protocol, ratio 4)",
        description="Landsat-7 FuseBox (+ SpaceNet WV2 for 4 bands) under PANTAILOR_DATA; "
        "see pipeline/training.py and pipeline/weights/MODEL_CARD.md",
    )
    p.add_argument("-o", "--output", required=True, help="target checkpoint, e.g. my.pt")
    p.add_argument("--name", default="fusionnet", help="backbone (default fusionnet)")
    p.add_argument(
        "--bands",
        type=int,
        default=4,
        help="band set: 4 (B, G, R, NIR), 6 (native Landsat-7: B, G, R, NIR, SWIR1, SWIR2) or 8 "
        "(synthetic WorldView-like); default 4",
    )
    p.add_argument(
        "--ratio",
        type=int,
        default=4,
        help="PAN/MS ratio of the simulated pairs: 4 (default) or 2 (Landsat's own)",
    )
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
    p.set_defaults(handler=cmd)
    return p


def cmd(args: argparse.Namespace) -> int:
    import json

    import torch

    from ..training import TrainConfig, parse_scenes, train_and_save

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        name=args.name,
        n_bands=args.bands,
        ratio=args.ratio,
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
