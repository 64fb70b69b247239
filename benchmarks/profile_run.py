"""Where a scene run's CPU goes: ``pantailor run`` of a synthetic scene, sampled by py-spy.

``python benchmarks/profile_run.py run --size 2048`` runs the scene once (2 workers x 1 thread,
FusionNet + tailor, 4 quality tiles) and prints its stage timings as JSON. Under py-spy:

    py-spy record --subprocesses --rate 20 --format raw -o prof.txt -- \\
        python benchmarks/profile_run.py run --size 2048
    python benchmarks/profile_run.py summarise prof.txt

``summarise`` adds up the samples (driver and workers) under the functions that name each part
of a run: tile forward, the tailor's share of it, upsampling, zarr reads and writes, fit,
quality tiles, export, quicklook, imports. Samples are CPU-active stacks, so the shares hold on
a shared machine where wall seconds do not.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

PARTS = {
    "tile task (infer_tile)": r"^infer_tile \(",
    "  model forward (tailored)": r"^model_run.<locals>.run \(.*infer.py:268",
    "    backbone extract": r"^FusionNet.extract \(",
    "    tailor T(F)": r"^TailoredModel.extract \(.*tailor.py:16[0-9]\);Module\._wrapped",
    "  LMS upsample": r"^upsample \(.*backbones/upsample",
    "  zarr read": r"^read_window \(",
    "  zarr write": r"^SceneStore.write_region \(",
    "fit (fit_adapter)": r"^fit_adapter \(",
    "quality tiles (tile_quality)": r"^tile_quality \(",
    "  quality indices": r"^_scores \(",
    "export (export_cog)": r"^export_cog \(",
    "quicklook": r"^quicklook \(",
    "imports": r"^_find_and_load \(",
}


def run(size: int, workers: int, quality: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from engine import scene_of  # type: ignore[import-not-found]

    from pipeline.runner import RunConfig, run_scene
    from pipeline.store import write_scene
    from pipeline.synthetic import make_scene
    from workers.cluster import ClusterConfig

    tmp = Path(tempfile.mkdtemp(prefix="pt-prof-"))
    try:
        syn = make_scene((size, size), "wv3", seed=0)
        t0 = time.perf_counter()
        store = write_scene(scene_of(syn.pan, syn.ms), tmp / "s.zarr", tile=512, hash_sources=False)
        ingest = time.perf_counter() - t0
        cluster = ClusterConfig(
            kind="local", n_workers=workers, threads_per_worker=1, dashboard_address=None
        )
        cfg = RunConfig(inputs=(str(store.path),), output=str(tmp / "o.tif"), quality_tiles=quality)
        s = run_scene(cfg, cluster=cluster)
        t = {"ingest": ingest, **s["timings"], "forward_sum": s["infer"]["forward_seconds"]}
        print(json.dumps({k: round(v, 2) for k, v in t.items()}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def summarise(path: Path, rate: float) -> None:
    found: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        frames = stack.split(";")
        for part, pat in PARTS.items():
            if any(re.search(pat, ";".join(frames[i : i + 2])) for i in range(len(frames))):
                found[part] += int(n)
    print(f"CPU-active samples: {total / rate:.1f} s")
    for part in PARTS:
        print(f"{part:32s} {found[part] / rate:7.1f} s {100 * found[part] / max(total, 1):5.1f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--size", type=int, default=2048)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--quality-tiles", type=int, default=4)
    s = sub.add_parser("summarise")
    s.add_argument("path", type=Path)
    s.add_argument("--rate", type=float, default=20.0)
    args = ap.parse_args()
    if args.cmd == "run":
        run(args.size, args.workers, args.quality_tiles)
    else:
        summarise(args.path, args.rate)


if __name__ == "__main__":
    main()
