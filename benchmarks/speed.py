"""Side-by-side speed table -> benchmarks/results/speed.{md,json}, all rows from one run.

On one synthetic ``SIZE``² x 8 WorldView-3 scene (tile 512, 2 workers x 1 thread):

* **raw forward**: FusionNet model-only tiled forward over the scene's tiles, inputs in memory,
  one process, 2 threads (:func:`benchmarks.engine.raw_forward`);
* **end to end**: ``pantailor run`` (FusionNet + tailor): ingest + sample + fit + infer + export;
* **GDAL Brovey**: GDAL's pansharpened VRT (weighted Brovey, cubic MS resampling, all cores)
  built through rasterio's bundled GDAL, translated to a tiled GeoTIFF, uncompressed and deflate;
* **project Brovey / MTF-GLP**: ``pantailor run --method ...``, stage time from the start of
  ingest to the finished COG (ingest + fit + infer + export; cluster start-up excluded);
* **export A/B**: the COG export with the overviews streamed (default) and with GDAL building
  them after the fact at GDAL's default deflate level (the previous export), alternated;
* **indices**: the full-resolution indices (``pipeline.quality.full_resolution``) of the
  Brovey product.

Wall times are medians of ``--repeats`` runs, alternated where rows are compared. The machine
may be shared: the process CPU seconds are recorded beside the wall time of the in-process rows.

Usage: ``python benchmarks/speed.py`` (2048², a few minutes) or ``--size 4000``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_report import markdown, markdown_classical

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """``(wall s, CPU s of this process)`` of ``fn()``."""
    w0, c0 = time.perf_counter(), cpu_seconds()
    fn()
    return time.perf_counter() - w0, cpu_seconds() - c0


def write_inputs(syn: Any, tmp: Path) -> tuple[Path, Path]:
    """The scene as plain GeoTIFFs (PAN 1 m, MS 4 m, UTM) for GDAL's pansharpening."""
    import rasterio
    from affine import Affine

    crs = "EPSG:32631"
    pan, ms = tmp / "pan.tif", tmp / "ms.tif"
    for path, arr, px in ((pan, syn.pan[None], 1.0), (ms, syn.ms, 4.0)):
        prof = {
            "driver": "GTiff", "width": arr.shape[2], "height": arr.shape[1],
            "count": arr.shape[0], "dtype": arr.dtype.name, "crs": crs,
            "transform": Affine(px, 0, 500_000.0, 0, -px, 5_000_000.0), "tiled": True,
        }  # fmt: skip
        with rasterio.open(path, "w", **prof) as dst:
            dst.write(arr)
    return pan, ms


def gdal_brovey_vrt(pan: Path, ms: Path, n_bands: int, weights: list[float], tmp: Path) -> Path:
    """A GDAL pansharpened VRT (``VRTPansharpenedDataset``, weighted Brovey)."""
    bands = "\n".join(
        f'<SpectralBand dstBand="{i + 1}"><SourceFilename relativeToVRT="0">{ms}'
        f"</SourceFilename><SourceBand>{i + 1}</SourceBand></SpectralBand>"
        for i in range(n_bands)
    )
    xml = f"""<VRTDataset subClass="VRTPansharpenedDataset">
<PansharpeningOptions>
<Algorithm>WeightedBrovey</Algorithm>
<AlgorithmOptions><Weights>{",".join(f"{w:.6f}" for w in weights)}</Weights></AlgorithmOptions>
<Resampling>Cubic</Resampling>
<NumThreads>ALL_CPUS</NumThreads>
<PanchroBand><SourceFilename relativeToVRT="0">{pan}</SourceFilename>
<SourceBand>1</SourceBand></PanchroBand>
{bands}
</PansharpeningOptions>
</VRTDataset>"""
    path = tmp / "brovey.vrt"
    path.write_text(xml)
    return path


def gdal_translate(vrt: Path, out: Path, **co: Any) -> None:
    import rasterio
    import rasterio.shutil

    out.unlink(missing_ok=True)
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS", GDAL_CACHEMAX=256 * 1024 * 1024):
        rasterio.shutil.copy(vrt, out, driver="GTiff", TILED="YES", NUM_THREADS="ALL_CPUS", **co)


def run_method(store: Path, method: str, out: Path, cluster: Any, **kw: Any) -> dict[str, float]:
    from pipeline.runner import RunConfig, run_scene

    cfg = RunConfig(
        inputs=(str(store),), output=str(out), method=method, quality_tiles=0, overwrite=True, **kw
    )
    t = run_scene(cfg, cluster=cluster)["timings"]
    keys = ("ingest", "sample", "fit", "infer", "export")
    extra = {k: float(t.get(k, 0.0)) for k in ("start", "export_assemble")}
    return {k: float(t.get(k, 0.0)) for k in keys} | extra


def fresh_store(syn: Any, tmp: Path, name: str) -> tuple[Path, float]:
    """Ingest (timed): the scene into a new store."""
    from engine import scene_of  # type: ignore[import-not-found]

    from pipeline.store import write_scene

    path = tmp / f"{name}.zarr"
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    write_scene(scene_of(syn.pan, syn.ms), path, tile=512, hash_sources=False)
    return path, time.perf_counter() - t0


def classical_row(
    syn: Any, tmp: Path, method: str, cluster: Any, stream: bool | str = "auto"
) -> dict[str, float]:
    """One run of a classical method; ``stream``: the run's ``STREAM_EXPORT`` (the default
    ``"auto"`` streams the COG beside the tile map only where the driver has a spare core)."""
    from pipeline import stage_export

    store, ingest = fresh_store(syn, tmp, method)
    stage_export.STREAM_EXPORT = stream
    try:
        t = run_method(store, method, tmp / f"{method}.tif", cluster)
    finally:
        stage_export.STREAM_EXPORT = "auto"
    t["ingest"] = ingest
    stages = ("ingest", "sample", "fit", "infer", "export")
    t["stage"] = sum(t[k] for k in stages)  # start-up excluded (export_assemble: within export)
    return t


def glp_kernel(syn: Any, mp: float, repeats: int) -> dict[str, float]:
    """``pansharpen("mtf-glp")`` on the scene in memory (fit + apply, this process, 1 thread):
    the method's own rate, without the store, the cluster and the COG around it."""
    import torch

    from pipeline.classical import pansharpen

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pansharpen("mtf-glp", syn.ms[:, :128, :128], syn.pan[:512, :512], "wv3")  # warm-up
        t = [timed(lambda: pansharpen("mtf-glp", syn.ms, syn.pan, "wv3")) for _ in range(repeats)]
    finally:
        torch.set_num_threads(threads)
    wall, cpu = statistics.median(x[0] for x in t), statistics.median(x[1] for x in t)
    return {"wall_s": wall, "cpu_s": cpu, "mp_per_s": mp / wall, "mp_per_cpu_s": mp / cpu}


def export_ab(store: Path, array: str, tmp: Path, repeats: int) -> dict[str, Any]:
    """The export alternated: streamed overviews at level 1 vs GDAL's overviews at level 6."""
    from pipeline import export

    out: dict[str, list[tuple[float, float]]] = {"streamed": [], "gdal_overviews": []}
    sizes: dict[str, int] = {}
    for _ in range(repeats):
        for name in out:
            stream = name == "streamed"
            export._STREAM_OVERVIEWS = stream
            opts = export.CogOptions() if stream else export.CogOptions(level=None)
            path = tmp / f"exp_{name}.tif"
            out[name].append(
                timed(
                    lambda p=path, o=opts: export.export_cog(
                        store, array, p, options=o, overwrite=True
                    )
                )
            )
            sizes[name] = path.stat().st_size
    export._STREAM_OVERVIEWS = True
    return {
        k: {
            "wall_s": statistics.median(x[0] for x in v),
            "cpu_s": statistics.median(x[1] for x in v),
            "mib": sizes[k] / 2**20,
        }
        for k, v in out.items()
    }


def main() -> None:
    from engine import raw_forward, weights_path  # type: ignore[import-not-found]

    from pipeline.quality import full_resolution
    from pipeline.report import environment
    from pipeline.store import SceneStore
    from pipeline.synthetic import make_scene
    from workers.cluster import ClusterConfig

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument(
        "--classical-only", action="store_true", help="GDAL, Brovey and MTF-GLP rows only"
    )
    args = ap.parse_args()
    two = ClusterConfig(
        kind="local", n_workers=2, threads_per_worker=1, dashboard_address=None, device="cpu"
    )
    tmp = Path(tempfile.mkdtemp(prefix="pt-speed-"))
    rows: dict[str, Any] = {"load": f"{os.getloadavg()[0]:.1f}"}
    try:
        syn = make_scene((args.size, args.size), "wv3", seed=0)
        mp = args.size * args.size / 1e6
        pan, ms = write_inputs(syn, tmp)
        brovey, glp, glp_after = [], [], []
        gdal: dict[str, list[tuple[float, float]]] = {"none": [], "deflate": [], "deflate1": []}
        for _ in range(args.repeats):  # alternated: GDAL, project Brovey, MTF-GLP
            vrt = gdal_brovey_vrt(pan, ms, 8, [1 / 8] * 8, tmp)
            for name, co in (
                ("none", {}),
                ("deflate", {"COMPRESS": "DEFLATE", "PREDICTOR": 2}),
                ("deflate1", {"COMPRESS": "DEFLATE", "PREDICTOR": 2, "ZLEVEL": 1}),
            ):
                gdal[name].append(
                    timed(lambda v=vrt, co=co: gdal_translate(v, tmp / "g.tif", **co))
                )
            brovey.append(classical_row(syn, tmp, "brovey", two))
            glp.append(classical_row(syn, tmp, "mtf-glp", two))
            glp_after.append(classical_row(syn, tmp, "mtf-glp", two, stream=True))
        rows["gdal_brovey"] = {
            k: {"wall_s": statistics.median(x[0] for x in v), "cpu_s": statistics.median(x[1] for x in v)}
            for k, v in gdal.items()
        }  # fmt: skip
        rows["project_brovey"] = {k: statistics.median(r[k] for r in brovey) for k in brovey[0]}
        rows["brovey_ratios"] = {  # same-repeat ratios, stage time over GDAL's
            k: [r["stage"] / g[0] for r, g in zip(brovey, gdal[k], strict=True)]
            for k in ("deflate", "deflate1")
        }
        rows["mtf_glp"] = {k: statistics.median(r[k] for r in glp) for k in glp[0]}
        rows["mtf_glp"]["mp_per_s"] = mp / rows["mtf_glp"]["stage"]
        rows["mtf_glp_export_after"] = {
            k: statistics.median(r[k] for r in glp_after) for k in glp_after[0]
        }
        rows["mtf_glp_export_after"]["mp_per_s"] = mp / rows["mtf_glp_export_after"]["stage"]
        rows["mtf_glp_kernel"] = glp_kernel(syn, mp, args.repeats)
        if args.classical_only:
            rows["load"] += f" at the start, {os.getloadavg()[0]:.1f} at the end"
            return finish(args, rows, environment(), "speed_classical", markdown_classical)
        store = tmp / "brovey.zarr"
        s = SceneStore.open(store)
        name = next(n for n in s.array_names if n.startswith("fused"))  # the run's own array
        rows["export_ab"] = export_ab(store, name, tmp, args.repeats)
        fused = np.asarray(s.array(name)[:]) * s.meta.dn_max
        rows["indices"] = {
            "wall_s": timed(lambda: full_resolution(fused, syn.ms, syn.pan, "wv3"))[0]
        }
        weights = weights_path(tmp, shipped=True)
        e2e = []
        for _ in range(max(1, args.repeats - 1)):
            fstore, ingest = fresh_store(syn, tmp, "net")
            t = run_method(fstore, "fusionnet", tmp / "net.tif", two, fit={"steps": args.steps})
            t["ingest"] = ingest
            t["stage"] = sum(t[k] for k in ("ingest", "sample", "fit", "infer", "export"))
            e2e.append(t)
        rows["end_to_end"] = {k: statistics.median(r[k] for r in e2e) for k in e2e[0]}
        rows["raw_forward_s"] = statistics.median(
            raw_forward(SceneStore.open(fstore), weights, threads=2)
            for _ in range(max(1, args.repeats - 1))
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows["load"] += f" at the start, {os.getloadavg()[0]:.1f} at the end"
    finish(args, rows, environment(), "speed", markdown)


def finish(args: Any, rows: dict[str, Any], env: dict[str, Any], name: str, md: Any) -> None:
    result = {"args": vars(args), "rows": rows, "environment": env}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(md(result))
    print(md(result))


if __name__ == "__main__":
    main()
