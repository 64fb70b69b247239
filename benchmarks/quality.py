"""Benchmark: cost of the quality indices and the classical baselines, plus their scores on real data.

1. Timing on seeded synthetic 8-band WorldView-3-like scenes (``pipeline.synthetic.make_scene``)
   of growing PAN size: ``full_resolution`` (Khan's D_lambda, D_S, HQNR, QNR) in both conventions
   and both engines -- ``project`` on NumPy is the code before issue 12 item 4 ("before"), the
   torch engine runs the same convention to 1e-6, ``toolbox`` (the default) on torch and on its
   NumPy reference -- with wall and CPU seconds and the largest index difference between the
   engines of one convention, ``reduced_resolution``
   (SAM, ERGAS, Q2n, SCC) and each classical method; median of ``--runs`` runs, with PAN
   megapixels per second; same-run ratios against the cheapest operation (an MTF filter of all
   bands, :func:`pipeline.quality.full_resolution.mtf_filter`).
2. Scores of bicubic, 23-tap interpolation (EXP) and the classical methods on the WorldView-3
   reduced-resolution scene ``rr/cdif/WV3_test.mat`` (skipped where the data is absent).

Results: ``benchmarks/results/quality.{md,json}``.

Usage::

    python benchmarks/quality.py                       # sizes 512 1024 2048, 3 runs
    python benchmarks/quality.py --sizes 512 --runs 1  # quick check
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.classical import METHODS, pansharpen
from pipeline.config import data_dir
from pipeline.quality import full_resolution, interpolate, reduced_resolution
from pipeline.quality.full_resolution import mtf_filter
from pipeline.quality.toolbox import interp23tap
from pipeline.synthetic import make_scene

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SENSOR = "wv3"


CPU_TIMES: dict[str, dict[str, float]] = {}
ONE_THREAD: dict[str, dict[str, dict[str, float]]] = {}  # size -> variant -> wall/cpu
FR_VARIANTS = {
    "full_resolution project/NumPy (before)": {"convention": "project", "engine": "numpy"},
    "full_resolution project/torch": {"convention": "project", "engine": "torch"},
    "full_resolution toolbox/torch (default)": {"convention": "toolbox", "engine": "torch"},
    "full_resolution toolbox/NumPy reference": {"convention": "toolbox", "engine": "numpy"},
}


def _median_time(fn: Callable[[], Any], runs: int, cpu: list[float] | None = None) -> float:
    times, cpus = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    if cpu is not None:
        cpu.append(statistics.median(cpus))
    return statistics.median(times)


def time_size(size: int, runs: int, methods: bool = True) -> dict[str, float]:
    """Median seconds of each operation on one ``size x size`` scene (CPU seconds aside)."""
    s = make_scene((size, size), SENSOR, seed=0)
    ms = s.ms.astype(np.float64)
    fused = pansharpen("mtf-glp", ms, s.pan, SENSOR)
    ops: dict[str, Callable[[], Any]] = {
        "mtf_filter (8 bands)": lambda: mtf_filter(s.truth, [0.3] * 8, 4),
        **{
            name: (lambda kw=kw: full_resolution(fused, ms, s.pan, SENSOR, **kw))
            for name, kw in FR_VARIANTS.items()
        },
        "reduced_resolution": lambda: reduced_resolution(fused, s.truth, SENSOR),
    }
    if methods:
        ops |= {m: (lambda m=m: pansharpen(m, ms, s.pan, SENSOR)) for m in METHODS}
    out, cpu = {}, CPU_TIMES.setdefault(str(size), {})
    for name, fn in ops.items():
        c: list[float] = []
        out[name] = _median_time(fn, runs, c)
        cpu[name] = c[0]
    ONE_THREAD[str(size)] = _one_thread({k: ops[k] for k in FR_ONE_THREAD}, runs)
    return out


FR_ONE_THREAD = [k for k in FR_VARIANTS if "reference" not in k]


def _one_thread(ops: dict[str, Callable[[], Any]], runs: int) -> dict[str, dict[str, float]]:
    """The same operations again with one torch thread: on a shared machine whose scheduler
    gives each login session an equal share (autogroups), a second thread mostly waits for its
    core and every parallel region waits for it; one thread measures the work itself."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        for name, fn in ops.items():
            c: list[float] = []
            out[name] = {"wall": _median_time(fn, runs, c), "cpu": c[0]}
        return out
    finally:
        torch.set_num_threads(n)


def index_agreement(size: int) -> dict[str, float]:
    """Largest |torch - NumPy| over the five indices, per convention, on the timing scene."""
    s = make_scene((size, size), SENSOR, seed=0)
    ms = s.ms.astype(np.float64)
    fused = pansharpen("mtf-glp", ms, s.pan, SENSOR)
    out = {}
    for conv in ("project", "toolbox"):
        a = full_resolution(fused, ms, s.pan, SENSOR, convention=conv, engine="numpy")
        b = full_resolution(fused, ms, s.pan, SENSOR, convention=conv, engine="torch")
        out[conv] = max(abs(a[k] - b[k]) for k in a)
    return out


def real_scores() -> dict[str, dict[str, float]] | None:
    """Reduced- and full-resolution indices on the WV3 Wald-protocol scene (DN = value * 2047)."""
    path = data_dir() / "rr" / "cdif" / "WV3_test.mat"
    if not path.exists():
        return None
    import scipy.io

    d = scipy.io.loadmat(path)
    gt, ms = (d[k].transpose(2, 0, 1) * 2047.0 for k in ("gt", "lrms"))
    pan = d["pan"].astype(np.float64) * 2047.0
    products = {
        "bicubic": interpolate(ms, 4, "bicubic"),
        "EXP (toolbox interp23tap)": interp23tap(ms, 4),
        **{m: pansharpen(m, ms, pan, SENSOR) for m in METHODS},
        "reference (gt)": gt,
    }
    return {
        name: {**reduced_resolution(x, gt, SENSOR), **full_resolution(x, ms, pan, SENSOR)}
        for name, x in products.items()
    }


def machine() -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "versions": {p: version(p) for p in ("numpy", "scipy", "torch", "pantailor")},
    }


def write(results: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quality.json").write_text(json.dumps(results, indent=2))
    m = results["machine"]
    lines = [
        "# Quality indices and classical baselines: cost and scores",
        "",
        f"{m['date']}, {m['platform']}, {m['cpu_count']} CPUs (torch threads "
        f"{m['torch_threads']}), " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        "",
        f"Command: `{results['command']}`. Synthetic 8-band {SENSOR} scenes; median of "
        f"{results['runs']} runs; seconds (PAN Mpx/s; ratio to the 8-band MTF filter of the "
        "same run). The machine is shared: compare within a column.",
        "",
    ]
    sizes = list(results["timings"])
    lines.append("| operation | " + " | ".join(f"{s}²" for s in sizes) + " |")
    lines.append("|---|" + "---|" * len(sizes))
    for op in results["timings"][sizes[0]]:
        cells = []
        for s in sizes:
            t = results["timings"][s]
            mpx = int(s) ** 2 / 1e6 / t[op]
            cells.append(f"{t[op]:.2f} s ({mpx:.1f}; ×{t[op] / t['mtf_filter (8 bands)']:.1f})")
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    real = results.get("wv3_rr")
    if real:
        keys = list(next(iter(real.values())))
        lines += ["", "## WorldView-3 reduced resolution (`rr/cdif/WV3_test.mat`, DN = x·2047)", ""]
        lines.append("| product | " + " | ".join(keys) + " |")
        lines.append("|---|" + "---|" * len(keys))
        for name, row in real.items():
            lines.append(f"| {name} | " + " | ".join(f"{row[k]:.4f}" for k in keys) + " |")
        lines += [
            "",
            "SAM in degrees; ERGAS with ratio 4; Q2n and (H)QNR on 32² blocks; no edge cut. "
            "Full-resolution columns in the toolbox convention (the default; "
            "`docs/notes/quality.md`).",
        ]
    lines += _speed_section(results)
    (RESULTS / "quality.md").write_text("\n".join(lines) + "\n")


def _speed_section(results: dict[str, Any]) -> list[str]:
    """Before/after table of the full-resolution indices: same-run ratios, wall and CPU."""
    before = "full_resolution project/NumPy (before)"
    lines = ["", "## Full-resolution indices: before vs now (issue 12 item 4)", ""]
    lines.append("| size | variant | wall s | CPU s | before / this (wall) | (CPU) |")
    lines.append("|---|---|---|---|---|---|")
    for size, t in results["timings"].items():
        cpu = results["cpu_seconds"][size]
        for name in FR_VARIANTS:
            lines.append(
                f"| {size}² | {name.removeprefix('full_resolution ')} | {t[name]:.2f} | "
                f"{cpu[name]:.2f} | ×{t[before] / t[name]:.2f} | ×{cpu[before] / cpu[name]:.2f} |"
            )
    one = results.get("one_thread", {})
    for size, row in one.items():
        b1 = row[before]
        for name, v in row.items():
            lines.append(
                f"| {size}² | {name.removeprefix('full_resolution ')}, 1 thread | {v['wall']:.2f} | "
                f"{v['cpu']:.2f} | ×{b1['wall'] / v['wall']:.2f} | ×{b1['cpu'] / v['cpu']:.2f} |"
            )
    size = max(results["timings"], key=int)
    t, cpu = results["timings"][size], results["cpu_seconds"][size]
    now = "full_resolution toolbox/torch (default)"
    wall_x, cpu_x = t[before] / t[now], cpu[before] / cpu[now]
    lines += [
        "",
        f"**Target (issue 12 item 4): the default indices ≥ 5× faster than before at {size}²: "
        f"×{wall_x:.2f} wall ({_met(wall_x)}), ×{cpu_x:.2f} CPU ({_met(cpu_x)}) with torch's "
        f"{results['machine']['torch_threads']} threads",
    ]
    if size in one:
        o = one[size]
        w1, c1 = (o[before][k] / o[now][k] for k in ("wall", "cpu"))
        lines[-1] += f"; ×{w1:.2f} wall ({_met(w1)}), ×{c1:.2f} CPU ({_met(c1)}) on one thread"
    lines[-1] += (
        ".** Load average at start "
        f"{tuple(round(x, 1) for x in results['machine'].get('load_average_at_start', ()))}."
    )
    agree = results.get("agreement", {})
    if agree:
        lines += [
            "",
            "Largest |torch − NumPy| over the five indices on the same scene: "
            + ", ".join(f"{k} {v:.1e}" for k, v in agree.items())
            + ".",
        ]
    return lines


def _met(x: float) -> str:
    return "met" if x >= 5 else "MISSED"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--indices-only", action="store_true", help="skip the classical methods")
    args = ap.parse_args()
    results: dict[str, Any] = {
        "machine": machine(),
        "command": "python benchmarks/quality.py "
        + " ".join(["--sizes", *map(str, args.sizes), "--runs", str(args.runs)])
        + (" --indices-only" if args.indices_only else ""),
        "runs": args.runs,
        "timings": {},
    }
    for size in args.sizes:
        results["timings"][str(size)] = time_size(size, args.runs, not args.indices_only)
        print(size, {k: round(v, 2) for k, v in results["timings"][str(size)].items()})
    results["cpu_seconds"] = CPU_TIMES
    results["one_thread"] = ONE_THREAD
    results["agreement"] = index_agreement(max(args.sizes))
    results["wv3_rr"] = real_scores()
    write(results)
    print(f"wrote {RESULTS / 'quality.md'}")


if __name__ == "__main__":
    main()
