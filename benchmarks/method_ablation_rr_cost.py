"""Fit + infer time of the default tailor with and without the reduced-resolution term (``rr``).

The case of ``benchmarks/fit_speed.py`` (512 x 512 x 8 crop of imgWV2, FusionNet with the DLPan
WV3 weights, 2 torch threads, ``pipeline.fuse`` with the fit overlapped with the extractor), its
``run_variant`` timing; the variants are run **interleaved** (A B C A B C ...), one run each per
round, so load changes on the shared machine hit every variant alike; medians over rounds.

Usage (a timing benchmark: under the shared lock, in a fresh session)::

    flock /work/bench.lock setsid -w python benchmarks/method_ablation_rr_cost.py --rounds 5

Writes ``benchmarks/results/method_ablation_rr_cost.{md,json}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit_speed import Variant, load_case, machine_info, run_variant

from pipeline.fit import FitConfig
from pipeline.losses import LossWeights
from pipeline.sampling import SampleConfig

RESULTS = Path(__file__).resolve().parent / "results"
KEYS = ("total_s", "fit_s", "step_s", "steps", "infer_s", "hqnr")


def variants() -> list[Variant]:
    d, s = FitConfig(), SampleConfig()
    rr = [0.3, 1.0]
    out = [Variant("default (rr 0)", d, s)]
    out += [Variant(f"rr {w}", dataclasses.replace(d, weights=LossWeights(rr=w)), s) for w in rr]
    return out


def main() -> None:
    """Time the variants interleaved and write the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    case = load_case()
    rows: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants()}
    for _ in range(args.rounds):
        for v in variants():
            rows[v.name].append(run_variant(v, case, 1, args.threads))
    med = {
        n: {k: statistics.median(float(r[k]) for r in rs) for k in KEYS} for n, rs in rows.items()
    }
    base = med["default (rr 0)"]
    out = {
        "machine": machine_info(),
        "load_avg": os.getloadavg(),
        "case": case[4],
        "command": "python benchmarks/method_ablation_rr_cost.py " + " ".join(sys.argv[1:]),
        "rounds": args.rounds,
        "median": med,
        "runs": rows,
    }
    (RESULTS / "method_ablation_rr_cost.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = [
        "# Fit + infer cost of the reduced-resolution term (`LossWeights.rr`)",
        "",
        f"Case: {case[4]}. Command: `{out['command']}` under `flock /work/bench.lock setsid -w`; "
        f"{args.rounds} interleaved rounds, medians; {args.threads} torch threads; load average "
        f"at the end {out['load_avg'][0]:.2f} (shared machine: other sessions' niced jobs). "
        f"Date {out['machine']['date']}.",
        "",
        "| variant | fit + infer s | ratio to default | fit s | ms/step | steps | infer s | HQNR |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, m in med.items():
        lines.append(
            f"| {n} | {m['total_s']:.3f} | {m['total_s'] / base['total_s']:.3f} | "
            f"{m['fit_s']:.3f} | {1000 * m['step_s']:.1f} | {m['steps']:.0f} | "
            f"{m['infer_s']:.3f} | {m['hqnr']:.4f} |"
        )
    lines += [
        "",
        "The term reuses the consistency term's degraded-pair output (no extra network run); "
        "its cost is one ERGAS-form reduction per step and its backward. Step counts differ "
        "where the held-out stopping rule stops a variant earlier or later.",
    ]
    (RESULTS / "method_ablation_rr_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
