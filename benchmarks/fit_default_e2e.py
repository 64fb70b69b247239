"""The default fit's cost end to end: today's default against the one before it, alternated.

The default fit changed on 2026-12-01 for quality (``docs/notes/tailor.md``, session 9): 8 fit
patches on every scene, each also fitted turned by 180 degrees, 4 held out, against 4-8 fit
patches as sampled and 2 held out before. ``benchmarks/fit_speed.py`` times the fit alone on a
512² crop; this times what a user pays on a large scene: ``SIZE``² x 8 FusionNet + tailor end to
end on the local cluster (2 workers x 1 thread, speculation on; ingest, sample, fit, infer,
export; ``benchmarks/engine.py``'s harness), both settings alternated ``--repeats`` times.

Usage::

    python benchmarks/fit_default_e2e.py --size 2048 --repeats 3   # ~5 min on 2 idle cores
    python benchmarks/fit_default_e2e.py --size 2048 --repeats 3 --speculate 8 16

Writes ``benchmarks/results/fit_default_e2e.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine import _cluster, end_to_end, weights_path

from pipeline.report import environment
from pipeline.synthetic import make_scene

RESULTS = Path(__file__).resolve().parent / "results"
SETTINGS: dict[str, tuple[dict[str, Any], dict[str, Any], int]] = {
    "before (4-8 fit patches as sampled, 2 held out)": (
        {"augment": "none"},
        {"min_patches": 4, "holdout": 2},
        4,
    ),
    "default (8 fit patches, also turned 180 degrees, 4 held out)": ({}, {}, 4),
}
SPECULATE = "default, --speculate {n} (tiles extracted per spare thread during the fit)"
KEYS = ("ingest", "sample", "fit", "infer", "export", "e2e")


def markdown(res: dict[str, Any]) -> str:
    """The results as a markdown table with the machine and the command."""
    env, a = res["environment"], res["args"]
    lines = [
        f"# The default fit's cost end to end ({a['size']}² x 8, 2 workers x 1 thread)",
        "",
        f"Machine: {env.get('cpu_count')} CPUs, {env.get('platform')}, torch {env.get('torch')}; "
        f"{res['date']}; load {res['load']}. Medians of {a['repeats']} alternated repeats. "
        f"Command: `python benchmarks/fit_default_e2e.py --size {a['size']} --repeats "
        f"{a['repeats']}"
        + (f" --speculate {' '.join(map(str, a['speculate']))}" if a.get("speculate") else "")
        + "`.",
        "",
        "| setting | " + " | ".join(f"{k} s" for k in KEYS) + " |",
        "|---|" + "---|" * len(KEYS),
    ]
    for name, med in res["median_s"].items():
        lines.append(f"| {name} | " + " | ".join(f"{med[k]:.2f}" for k in KEYS) + " |")
    r = res["ratios"]
    lines += [
        "",
        f"Same-repeat ratios default / before (median): fit **x{r['fit']:.2f}**, end to end "
        f"**x{r['e2e']:.3f}** (per repeat: {', '.join(f'{x:.3f}' for x in r['e2e_each'])}).",
    ]
    for name, x in r.get("speculate_e2e_over_default", {}).items():
        lines.append(f"- {name}: end to end x{x:.3f} of the default's (same-repeat median)")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run both settings alternately and write the results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--speculate", type=int, nargs="*", default=[], help="also the default at these counts"
    )
    args = ap.parse_args()
    settings = dict(SETTINGS)
    for n in args.speculate:
        settings[SPECULATE.format(n=n)] = ({}, {}, n)
    load0 = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="pt-bench-"))
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in settings}
    try:
        weights = weights_path(tmp, shipped=True)
        syn = make_scene((args.size, args.size), "wv3", seed=0)
        for _ in range(args.repeats):
            for name, (fit, sample, spec) in settings.items():
                out = end_to_end(
                    syn, tmp, args.tile, weights, _cluster(2, 1), 60, spec, fit=fit, sample=sample
                )
                print(name, {k: round(out[k], 2) for k in KEYS}, flush=True)
                runs[name].append(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    before, after = (runs[k] for k in SETTINGS)
    spec_each = {
        k: statistics.median(b["e2e"] / a["e2e"] for a, b in zip(after, v, strict=True))
        for k, v in runs.items()
        if k not in SETTINGS
    }
    each = {k: [b[k] / a[k] for a, b in zip(before, after, strict=True)] for k in ("fit", "e2e")}
    env = environment()
    res = {
        "args": vars(args),
        "date": env.get("date", ""),
        "environment": env,
        "load": f"{load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end",
        "runs": runs,
        "median_s": {
            k: {m: statistics.median(r[m] for r in v) for m in KEYS} for k, v in runs.items()
        },
        "ratios": {
            "fit": statistics.median(each["fit"]),
            "e2e": statistics.median(each["e2e"]),
            "e2e_each": each["e2e"],
            "speculate_e2e_over_default": spec_each,
        },
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fit_default_e2e.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    (RESULTS / "fit_default_e2e.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
