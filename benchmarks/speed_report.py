"""The markdown of ``benchmarks/speed.py``'s results (speed.md, speed_classical.md)."""

from __future__ import annotations

import statistics
from typing import Any


def markdown_classical(r: dict[str, Any]) -> str:
    a, x, env = r["args"], r["rows"], r["environment"]
    g, b, m, k = x["gdal_brovey"], x["project_brovey"], x["mtf_glp"], x["mtf_glp_kernel"]
    st = " + ".join(f"{k} {b[k]:.2f}" for k in ("ingest", "fit", "infer", "export"))
    gt = " + ".join(f"{k} {m[k]:.2f}" for k in ("ingest", "fit", "infer", "export"))
    floor, mp = m["ingest"] + m["export"], a["size"] ** 2 / 1e6
    return "\n".join([
        f"# Classical methods vs GDAL ({env['date']})",
        "",
        f"Machine: {env['platform']}, {env['cpu_count']} CPUs, **shared with other jobs while it "
        f"ran** (load average {x.get('load', '?')}). Scene: synthetic {a['size']}² x 8 WV3, tile 512, 2 workers x 1 thread. Command: "
        f"`python benchmarks/speed.py --classical-only --size {a['size']} --repeats "
        f"{a['repeats']}`; medians of {a['repeats']} alternated runs.",
        "",
        "| row | seconds | note |",
        "|---|---|---|",
        f"| GDAL Brovey VRT -> GeoTIFF, uncompressed | {g['none']['wall_s']:.2f} | all cores |",
        f"| GDAL Brovey VRT -> GeoTIFF, deflate (level 6) | {g['deflate']['wall_s']:.2f} | |",
        f"| GDAL Brovey VRT -> GeoTIFF, deflate level 1 | {g['deflate1']['wall_s']:.2f} | |",
        f"| project Brovey, stages | {b['stage']:.2f} | {st}; **{_brovey_ratio(x):.2f}x"
        f" GDAL deflate** (target 1.5x; median of the same-repeat ratios); "
        f"{b['stage'] / g['deflate1']['wall_s']:.2f}x GDAL at the "
        f"COG's level 1; start-up {b.get('start', 0):.2f} s (cluster, worker imports) excluded |",
        f"| project MTF-GLP, stages | {m['stage']:.2f} | {gt}; **{m['mp_per_s']:.2f} MP/s**; "
        f"ingest + export alone {floor:.2f} s = {mp / floor:.2f} MP/s (the ceiling with a free "
        "fit and infer) |",
        *_after_row(x, mp),
        f"| MTF-GLP in memory (`pansharpen`, 1 thread) | {k['wall_s']:.2f} | "
        f"**{k['mp_per_s']:.2f} MP/s** (target 5) |",
        "",
        *serial_note(b, m, mp),
        *ratios_note(x),
    ])  # fmt: skip


def serial_note(b: dict[str, Any], m: dict[str, Any], mp: float) -> list[str]:
    """The verdicts, and the parts of the classical runs nothing overlaps (a line each)."""
    if "export_assemble" not in m:
        return []

    def parts(r: dict[str, Any]) -> str:
        return (
            f"ingest {r['ingest']:.2f} s (the driver), fit {r['fit']:.2f} s (one worker, 2 "
            f"threads), export {r['export']:.2f} s after the last tile, of which GDAL's COG "
            f"assembly (deflate level 1 + predictor, all cores) {r['export_assemble']:.2f} s"
        )

    glp = "met" if m["mp_per_s"] >= 5 else "missed"
    return [
        f"Targets (medians): MTF-GLP through `run` {m['mp_per_s']:.2f} MP/s, 5 MP/s **{glp}** "
        f"(5 MP/s is {mp / 5:.2f} s of stages). Serial parts of MTF-GLP: {parts(m)}; the tile "
        f"map {m['infer']:.2f} s on 2 workers. Of Brovey: {parts(b)}; the tile map "
        f"{b['infer']:.2f} s.",
        "",
    ]


def _after_row(x: dict[str, Any], mp: float) -> list[str]:
    """MTF-GLP with the COG streamed beside the tile map (forced; the A/B of the default, which
    on 2 cores busy with 2 workers exports after the tiles)."""
    m = x.get("mtf_glp_export_after")
    if not m:
        return []
    st = " + ".join(f"{k} {m[k]:.2f}" for k in ("ingest", "fit", "infer", "export"))
    return [
        f"| project MTF-GLP, COG streamed beside the tiles | {m['stage']:.2f} | {st}; "
        f"{m['mp_per_s']:.2f} MP/s (forced; the row above is the default: here, export after) |"
    ]


def _brovey_ratio(x: dict[str, Any]) -> float:
    """Project Brovey over GDAL deflate: the median of the same-repeat ratios (else the ratio
    of the medians)."""
    r = x.get("brovey_ratios")
    if r:
        return float(statistics.median(r["deflate"]))
    return float(x["project_brovey"]["stage"] / x["gdal_brovey"]["deflate"]["wall_s"])


def ratios_note(x: dict[str, Any]) -> list[str]:
    """The same-repeat ratios of project Brovey to GDAL (a line for the markdown)."""
    r = x.get("brovey_ratios")
    if not r:
        return []
    fmt = lambda v: ", ".join(f"{a:.2f}x" for a in v)  # noqa: E731
    medians = x["project_brovey"]["stage"] / x["gdal_brovey"]["deflate"]["wall_s"]
    return [
        f"Project Brovey over GDAL, repeat by repeat: {fmt(r['deflate'])} (GDAL deflate level 6; "
        f"median {statistics.median(r['deflate']):.2f}x, the ratio the 1.5x target is read from: "
        f"GDAL's all-core rows and the project's stages slow differently under other jobs; ratio "
        f"of the medians {medians:.2f}x), "
        f"{fmt(r['deflate1'])} (level 1, the COG's).",
        "",
        "The project's stage time runs from the start of ingest to the finished COG (tiled, "
        "deflate level 1 + predictor, internal overviews); the start-up (cluster, the workers' "
        "imports: `Engine.warm`) is excluded, as the GDAL rows exclude importing rasterio. The "
        "GDAL rows write a plain tiled GeoTIFF without overviews.",
        "",
    ]


def markdown(r: dict[str, Any]) -> str:
    a, x, env = r["args"], r["rows"], r["environment"]
    g, b, m, e = x["gdal_brovey"], x["project_brovey"], x["mtf_glp"], x["end_to_end"]
    k = x["mtf_glp_kernel"]
    ab = x["export_ab"]
    raw = x["raw_forward_s"]
    st = " + ".join(f"{k} {b[k]:.2f}" for k in ("ingest", "fit", "infer", "export"))
    lines = [
        f"# Speed, side by side ({env['date']})",
        "",
        f"Machine: {env['platform']}, {env['cpu_count']} CPUs, **shared with other jobs while it "
        f"ran** (load average {x.get('load', '?')}; compare rows of this run). torch {env['torch']}, "
        f"dask {env['dask']}. Scene: synthetic {a['size']}² x 8 WV3, tile 512, 2 workers x 1 "
        f"thread. Command: `python benchmarks/speed.py --size {a['size']} --repeats "
        f"{a['repeats']}`; medians of {a['repeats']} alternated runs.",
        "",
        "| row | seconds | note |",
        "|---|---|---|",
        f"| raw forward (FusionNet, model only, tiled, 2 threads) | {raw:.2f} | compute floor |",
        f"| end to end (`run`, FusionNet + tailor {a['steps']} steps) | {e['stage']:.2f} | "
        f"{e['stage'] / raw:.2f}x raw forward (target 1.15x); "
        + " + ".join(f"{k} {e[k]:.2f}" for k in ("ingest", "sample", "fit", "infer", "export"))
        + " |",
        f"| GDAL Brovey VRT -> GeoTIFF, uncompressed | {g['none']['wall_s']:.2f} | all cores |",
        f"| GDAL Brovey VRT -> GeoTIFF, deflate (level 6) | {g['deflate']['wall_s']:.2f} | |",
        f"| GDAL Brovey VRT -> GeoTIFF, deflate level 1 | {g['deflate1']['wall_s']:.2f} | |",
        f"| project Brovey (`run --method brovey`), stages | {b['stage']:.2f} | {st}; "
        f"**{b['stage'] / g['deflate']['wall_s']:.2f}x GDAL deflate** (target 1.5x); "
        f"{b['stage'] / g['deflate1']['wall_s']:.2f}x GDAL at the COG's level 1 |",
        f"| project MTF-GLP (`run --method mtf-glp`), stages | {m['stage']:.2f} | "
        f"{m['mp_per_s']:.2f} MP/s through ingest, cluster tiles and COG |",
        f"| MTF-GLP in memory (`pansharpen`, fit + apply, 1 thread) | {k['wall_s']:.2f} | "
        f"**{k['mp_per_s']:.2f} MP/s** (target 5; {k['mp_per_cpu_s']:.2f} MP per CPU s) |",
        f"| full-resolution indices of the Brovey product | {x['indices']['wall_s']:.2f} | |",
        "",
        *ratios_note(x),
        "## Export A/B (same store, alternated)",
        "",
        "| export | wall s | CPU s (this process) | MiB |",
        "|---|---|---|---|",
        *[
            f"| {k} | {v['wall_s']:.2f} | {v['cpu_s']:.2f} | {v['mib']:.1f} |"
            for k, v in ab.items()
        ],
        "",
        "`streamed`: overview levels averaged while the stage file streams, deflate level 1 (the "
        "default now); `gdal_overviews`: GDAL's COG driver building the overviews after the "
        "fact, deflate at GDAL's default level 6 (the previous export). Same full-resolution "
        "pixels; the overviews are GDAL's AVERAGE in both.",
        "",
    ]
    return "\n".join(lines)
