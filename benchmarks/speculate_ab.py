"""Speculative tiles on and off, alternated -> benchmarks/results/speculate_ab.{md,json}.

``pantailor run``'s end to end (ingest, sample, fit, infer, export; as in
``benchmarks/engine.py``) on a synthetic ``SIZE``² x 8 WV3 scene, FusionNet (shipped weights) +
tailor, 2 workers x 1 thread, with ``speculate=4`` (the default) and ``speculate=0``, alternated
``--repeats`` times each so that load drifts hit both; medians and the ratio of medians.

Usage: ``python benchmarks/speculate_ab.py --size 4000 --repeats 3`` (about 5 min per size).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

from engine import RESULTS, _cluster, end_to_end, weights_path

from pipeline.report import environment
from pipeline.synthetic import make_scene


def measure(size: int, repeats: int, tmp: Path) -> dict[str, Any]:
    syn = make_scene((size, size), "wv3", seed=0)
    weights = weights_path(tmp, shipped=True)
    runs: dict[str, list[dict[str, Any]]] = {"speculate 4": [], "speculate 0": []}
    for _ in range(repeats):
        for name, spec in (("speculate 4", 4), ("speculate 0", 0)):
            runs[name].append(end_to_end(syn, tmp, 512, weights, _cluster(2, 1), 60, spec))
    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in runs.items()}
    return {"size": size, "runs": runs, "median": med}


def markdown(r: dict[str, Any]) -> str:
    env = r["environment"]
    lines = [
        "# Speculative tiles on / off, alternated",
        "",
        f"{r['date']}; Machine: {env['platform']}, {env['cpu_count']} CPUs; torch {env['torch']}. "
        f"Load average {r['load'][0]:.1f} at the start, {r['load'][1]:.1f} at the end (shared "
        f"machine). Command: `{r['command']}`; 2 workers x 1 thread, FusionNet + tailor (60 "
        "steps), tile 512; end to end = ingest + sample + fit + infer + export.",
        "",
        "| size | e2e s, speculate 4 (each run) | e2e s, speculate 0 (each run) | median 4 / median 0 |",
        "|---|---|---|---|",
    ]
    for s in r["sizes"]:
        a, b = (s["runs"][k] for k in ("speculate 4", "speculate 0"))
        ma, mb = (s["median"][k]["e2e"] for k in ("speculate 4", "speculate 0"))
        runs_a = ", ".join(f"{x['e2e']:.2f}" for x in a)
        runs_b = ", ".join(f"{x['e2e']:.2f}" for x in b)
        lines.append(f"| {s['size']}² | {runs_a} | {runs_b} | **{ma / mb:.3f}** |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, nargs="+", default=[4000])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        sizes = [measure(s, args.repeats, Path(d)) for s in args.size]
    from datetime import UTC, datetime

    r = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "environment": environment(),
        "load": [load0, os.getloadavg()[0]],
        "command": "python benchmarks/speculate_ab.py --size "
        + " ".join(map(str, args.size))
        + f" --repeats {args.repeats}",
        "sizes": sizes,
    }
    (RESULTS / "speculate_ab.json").write_text(json.dumps(r, indent=1, default=str))
    (RESULTS / "speculate_ab.md").write_text(markdown(r))
    print(markdown(r))


if __name__ == "__main__":
    main()
