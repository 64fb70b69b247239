"""How long `pantailor demo` takes, as a user runs it, and what it reports.

    python benchmarks/demo.py [--runs 3]

Runs the real demo (the shipped Landsat-8 crop) ``--runs`` times as a subprocess (interpreter
start and the local cluster included, as for a user), with ``--overwrite``, and records the wall
time, the run's own stage timings and the HQNR of the product and of the unadapted network.
Writes ``benchmarks/results/demo.{md,json}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine_info() -> dict[str, Any]:
    import torch

    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average_at_start": os.getloadavg(),
    }


def one_run(out: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "pipeline.cli", "demo", "-o", str(out), "--overwrite", "--json"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    metrics = summary["metrics"]
    return {
        "wall_s": wall,
        "timings_s": summary["timings"],
        "hqnr": metrics["product"]["hqnr"],
        "hqnr_unadapted": metrics["baseline"]["hqnr"],
        "fit_steps": summary["fit"]["steps"],
        "load_average_after": os.getloadavg(),
    }


def markdown(info: dict[str, Any], runs: list[dict[str, Any]], command: str) -> str:
    med = statistics.median(r["wall_s"] for r in runs)
    walls = ", ".join(f"{r['wall_s']:.1f}" for r in runs)
    stages = {k: statistics.median(r["timings_s"][k] for r in runs) for k in runs[0]["timings_s"]}
    lines = [
        "# `pantailor demo` (the real Landsat-8 crop, 512 x 256 PAN)",
        "",
        f"Command: `{command}`; {info['date']}; {info['platform']}, {info['cpu_count']} CPUs, "
        f"torch {info['torch']}; load average at start {info['load_average_at_start']} "
        "(the machine was shared with other jobs).",
        "",
        f"**Wall time per demo (interpreter, local cluster start, all stages, crop PNG): median "
        f"{med:.1f} s over {len(runs)} runs** "
        f"({walls}).",
        "",
        "| stage | median s |",
        "|---|---|",
        *[f"| {k} | {v:.2f} |" for k, v in stages.items()],
        "",
        "`total` is `run_scene` (it includes starting the local cluster of worker processes, "
        "the gap between `total` and the sum of the stages); the rest of the wall time is the "
        "interpreter and imports, stopping the cluster, and the side-by-side crop (an in-process "
        "forward of the unadapted network).",
        "",
        f"Scene HQNR (all 8 tiles): product {runs[0]['hqnr']:.4f}, unadapted network "
        f"{runs[0]['hqnr_unadapted']:.4f} ({runs[0]['fit_steps']} tailor steps; identical in every "
        "run: the run is seeded).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    info = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [one_run(Path(tmp) / "demo") for _ in range(args.runs)]
    command = f"python benchmarks/demo.py --runs {args.runs}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "demo.json").write_text(
        json.dumps({"machine": info, "command": command, "runs": runs}, indent=1) + "\n"
    )
    (RESULTS / "demo.md").write_text(markdown(info, runs, command))
    print((RESULTS / "demo.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
