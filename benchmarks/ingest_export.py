"""Benchmark: ingest a large synthetic GeoTIFF pair into a scene store and export it as a COG.

Writes a PAN ``size x size`` uint16 GeoTIFF and an MS ``bands x size/ratio x size/ratio`` GeoTIFF
(streaming, into a scratch folder outside the repository), then times, each in a fresh
subprocess, ``pantailor ingest`` (with checksums) and ``pantailor export ... ms_up`` (uint16
deflate COG with overviews), recording wall time, PAN megapixels per second and the peak
resident set size (``ru_maxrss`` of the child). Results: ``benchmarks/results/ingest_export.{md,json}``.

Usage::

    python benchmarks/ingest_export.py                  # 16000^2 PAN, 8 bands, 3 runs
    python benchmarks/ingest_export.py --size 4000 --runs 1   # quick check
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

_CHILD = """
import json, resource, sys, time
from pipeline import cli
t0 = time.perf_counter()
rc = cli.main(sys.argv[1:])
wall = time.perf_counter() - t0
print(json.dumps({"rc": rc, "wall_s": wall,
                  "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_pair(folder: Path, size: int, bands: int, ratio: int) -> tuple[Path, Path]:
    """Stream a synthetic PAN/MS GeoTIFF pair (tiled 512, uncompressed) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    pan_path, ms_path = folder / "pan.tif", folder / "ms.tif"
    crs = CRS.from_epsg(32631)
    x0, y0 = 500_000.0, 5_000_000.0
    common = {"driver": "GTiff", "dtype": "uint16", "crs": crs, "tiled": True}
    common |= {"blockxsize": 512, "blockysize": 512, "bigtiff": "if_safer"}
    m = size // ratio
    rng = np.random.default_rng(0)
    with rasterio.open(
        pan_path, "w", width=size, height=size, count=1,
        transform=Affine(0.5, 0, x0, 0, -0.5, y0), **common,
    ) as pan:  # fmt: skip
        for r0 in range(0, size, 512):
            rows = min(512, size - r0)
            yy, xx = np.mgrid[r0 : r0 + rows, 0:size]
            block = (xx * 7 + yy * 3) % 1500 + rng.integers(0, 500, (rows, size))
            pan.write(block.astype(np.uint16)[None], window=Window(0, r0, size, rows))
    with rasterio.open(
        ms_path, "w", width=m, height=m, count=bands,
        transform=Affine(0.5 * ratio, 0, x0, 0, -0.5 * ratio, y0), interleave="pixel", **common,
    ) as ms:  # fmt: skip
        for r0 in range(0, m, 512):
            rows = min(512, m - r0)
            yy, xx = np.mgrid[r0 : r0 + rows, 0:m]
            block = np.stack([(xx * (b + 1) + yy) % 2000 for b in range(bands)])
            ms.write(block.astype(np.uint16), window=Window(0, r0, m, rows))
    return pan_path, ms_path


def run_child(args: list[str]) -> dict[str, float]:
    """Run ``pantailor ARGS`` in a fresh interpreter; return wall time and peak RSS."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    rec: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    if rec["rc"] != 0:
        raise RuntimeError(out.stderr[-3000:])
    return rec


def machine() -> dict[str, object]:
    """CPU count, platform and package versions."""
    pkgs = ["numpy", "zarr", "rasterio", "rioxarray", "dask", "xarray"]
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gdal": rasterio.__gdal_version__,
        "packages": {p: version(p) for p in pkgs},
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def summarise(runs: list[dict[str, float]], mpix: float) -> dict[str, float]:
    """Medians (and the worst RSS) over runs."""
    wall = statistics.median(r["wall_s"] for r in runs)
    return {
        "median_wall_s": round(wall, 2),
        "median_mpix_per_s": round(mpix / wall, 2),
        "max_peak_rss_mib": round(max(r["maxrss_mib"] for r in runs), 1),
        "median_peak_rss_mib": round(statistics.median(r["maxrss_mib"] for r in runs), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=16000, help="PAN edge in pixels")
    ap.add_argument("--bands", type=int, default=8)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--export-runs", type=int, default=None, help="default: --runs")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/pantailor_bench_ingest_export"))
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--no-write", action="store_true", help="do not write benchmarks/results")
    args = ap.parse_args()
    ratio, sensor = 4, "wv3" if args.bands == 8 else "wv4"
    work = args.workdir
    t0 = time.perf_counter()
    pan, ms = write_pair(work / "in", args.size, args.bands, ratio)
    gen_s = time.perf_counter() - t0
    print(f"inputs written in {gen_s:.1f} s: {pan} {ms}", flush=True)
    store, cog = work / "scene.zarr", work / "out.tif"
    ingest_runs, export_runs = [], []
    for i in range(args.runs):
        cmd = ["ingest", str(pan), str(ms), "--sensor", sensor, "-o", str(store)]
        ingest_runs.append(run_child([*cmd, "--tile", str(args.tile), "--overwrite"]))
        print(f"ingest run {i + 1}: {ingest_runs[-1]}", flush=True)
    for i in range(args.export_runs if args.export_runs is not None else args.runs):
        cmd = ["export", str(store), "ms_up", "-o", str(cog), "--overwrite"]
        export_runs.append(run_child(cmd))
        print(f"export run {i + 1}: {export_runs[-1]}", flush=True)
    mpix = args.size**2 / 1e6
    result = {
        "benchmark": "ingest_export",
        "scene": {
            "pan": [args.size, args.size],
            "ms": [args.bands, args.size // ratio, args.size // ratio],
            "dtype": "uint16",
            "tile": args.tile,
            "pan_mpix": mpix,
            "input_bytes": pan.stat().st_size + ms.stat().st_size,
            "store_bytes": sum(f.stat().st_size for f in store.rglob("*") if f.is_file()),
            "cog_bytes": cog.stat().st_size,
        },
        "ingest": {**summarise(ingest_runs, mpix), "runs": ingest_runs},
        "export_ms_up_cog": {**summarise(export_runs, mpix), "runs": export_runs},
        "input_generation_s": round(gen_s, 1),
        "machine": machine(),
        "command": "python benchmarks/ingest_export.py " + " ".join(sys.argv[1:]),
    }
    print(json.dumps(result, indent=2))
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "ingest_export.json").write_text(json.dumps(result, indent=2) + "\n")
        (RESULTS / "ingest_export.md").write_text(markdown(result))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def markdown(r: dict[str, object]) -> str:
    """The results as a short markdown page."""
    s, ing, exp, m = (r[k] for k in ("scene", "ingest", "export_ms_up_cog", "machine"))
    assert isinstance(s, dict) and isinstance(ing, dict) and isinstance(exp, dict)
    assert isinstance(m, dict)
    gib = 1024**3
    lines = [
        "# Ingest and COG export benchmark",
        "",
        f"Command: `{r['command']}` — {m['date']}",
        "",
        f"Scene: PAN {s['pan'][0]}² uint16 ({s['pan_mpix']:.0f} MP) + MS {s['ms'][0]}×"
        f"{s['ms'][1]}² uint16, tile {s['tile']}; inputs {s['input_bytes'] / gib:.2f} GiB "
        f"(uncompressed tiled GeoTIFF), store {s['store_bytes'] / gib:.2f} GiB, "
        f"COG {s['cog_bytes'] / gib:.2f} GiB.",
        "",
        "| stage | median wall (s) | PAN MP/s | peak RSS max / median (MiB) | runs |",
        "|---|---|---|---|---|",
    ]
    for name, d in (("ingest (validate, checksum, write Zarr)", ing), ("export ms_up → COG", exp)):
        lines.append(
            f"| {name} | {d['median_wall_s']} | {d['median_mpix_per_s']} | "
            f"{d['max_peak_rss_mib']} / {d['median_peak_rss_mib']} | {len(d['runs'])} |"
        )
    lines += [
        "",
        "Each run is a fresh `python -c 'pipeline.cli.main(...)'` subprocess; peak RSS is its "
        "`ru_maxrss` (includes the interpreter, numpy/zarr/rasterio/dask imports). Target for "
        "ingest: < 1.5 GiB (1536 MiB).",
        "",
        f"Machine: {m['cpu_count']} CPUs, {m['platform']}, Python {m['python']}, GDAL {m['gdal']}; "
        + ", ".join(f"{k} {v}" for k, v in dict(m["packages"]).items())
        + ". The machine is shared with other jobs: times are indicative.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
