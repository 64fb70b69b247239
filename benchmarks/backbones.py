"""Benchmark the backbones: reduced-resolution quality on the WV3 (and Pléiades) reference data,
full-resolution quality on the VHR scenes, and forward time per 512² tile next to sgemm.

Run from the repository root::

    python3 benchmarks/backbones.py            # everything (several minutes on 2 cores)
    python3 benchmarks/backbones.py --only timing --reps 5

Writes ``benchmarks/results/backbones.{md,json}``. Quality metrics come from
``pipeline.quality`` and the classical baselines from ``pipeline.classical`` (columns are left out,
and the report says so, where those modules are missing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.backbones import Backbone, build, load, upsample
from pipeline.config import data_dir
from pipeline.sensors import SensorSpec, get_sensor, register_sensor

RESULTS = Path(__file__).resolve().parent / "results"
NETS = ("fusionnet", "pannet", "dicnn", "pnn")
DLPAN_8 = ("wv3", "wv2")
DLPAN_4 = ("qb", "wv4")
CLASSICAL = ("brovey", "gsa", "mtf_glp", "mtf_glp_hpm")
TRAIN_PATCHES = 20  # classical methods take ~1-6 s per patch on this CPU
TIMING_COLS = [
    "network",
    "threads",
    "layout",
    "seconds",
    "gflop",
    "gflops",
    "sgemm_gflops",
    "fraction_of_sgemm",
    "upsample_seconds",
]

# ------------------------------------------------------------------ machine and throughput


def machine_info() -> dict[str, Any]:
    """CPU count, platform, package versions, date, load average."""
    import scipy

    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "loadavg_1min": os.getloadavg()[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "cuda": torch.cuda.is_available(),
    }


def _median_time(fn: Callable[[], object], reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def sgemm_gflops(threads: int, n: int = 2048, reps: int = 5) -> float:
    """Median float32 matmul throughput (GFLOP/s) of an ``n x n`` product."""
    torch.set_num_threads(threads)
    a, b = torch.rand(n, n), torch.rand(n, n)
    return 2 * n**3 / _median_time(lambda: torch.mm(a, b), reps) / 1e9


def model_flops(model: Backbone, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor) -> int:
    """FLOPs (2 x multiply-adds) of the convolutions of one forward pass, counted by hooks."""
    total = 0

    def hook(mod: torch.nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, torch.nn.ConvTranspose2d):
            kh, kw = mod.kernel_size
            per_in = mod.out_channels // mod.groups * kh * kw
            total += 2 * inp[0].numel() * per_in
        elif isinstance(mod, torch.nn.Conv2d):
            kh, kw = mod.kernel_size
            total += 2 * out.numel() * (mod.in_channels // mod.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(ms, lms, pan)
    for h in handles:
        h.remove()
    return total


def time_forward(tile: int, threads: tuple[int, ...], reps: int) -> list[dict[str, Any]]:
    """Forward time of each network (8 bands) on one ``tile``² PAN tile, per layout and threads."""
    rows = []
    for t in threads:
        gflops = sgemm_gflops(t, reps=reps)
        for name in NETS:
            model = build(name, 8).eval()
            g = torch.Generator().manual_seed(0)
            ms = torch.rand(1, 8, tile // 4, tile // 4, generator=g)
            pan = torch.rand(1, 1, tile, tile, generator=g)
            lms = upsample(ms, 4, model.upsampler)
            flops = model_flops(model, ms, lms, pan)
            up_s = _median_time(lambda ms=ms, m=model: upsample(ms, 4, m.upsampler), reps)
            for layout in ("contiguous", "channels_last"):
                fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
                m = build(name, 8).eval().to(memory_format=fmt)
                x = [v.contiguous(memory_format=fmt) for v in (ms, lms, pan)]
                with torch.inference_mode():
                    sec = _median_time(lambda m=m, x=x: m(*x), reps)
                rows.append(
                    {
                        "network": name,
                        "threads": t,
                        "layout": layout,
                        "tile": tile,
                        "seconds": sec,
                        "gflop": flops / 1e9,
                        "gflops": flops / sec / 1e9,
                        "sgemm_gflops": gflops,
                        "fraction_of_sgemm": flops / sec / 1e9 / gflops,
                        "upsample_seconds": up_s,
                    }
                )
                print(f"  {name} t={t} {layout}: {sec:.3f} s, {flops / sec / 1e9:.1f} GFLOP/s")
    return rows


# ------------------------------------------------------------------ quality


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _nets(n_bands: int, sensors: tuple[str, ...]) -> list[tuple[str, Backbone]]:
    out = []
    for name in NETS:
        for s in sensors:
            out.append((f"{name} (DLPan {s.upper()})", load(name, f"dlpan:{s}", n_bands=n_bands)))
    try:
        out.append(("fusionnet (pantailor own)", load("fusionnet", None, n_bands=n_bands)))
    except Exception as exc:  # shipped weights missing: say so in the table
        print(f"  no shipped {n_bands}-band weights: {exc}")
    return out


def _rr_metrics(quality: Any, fused: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """SAM, ERGAS, Q2n, SCC of ``fused`` vs ``gt`` ``(B, H, W)`` in [0, 1]."""
    return {k: float(v) for k, v in quality.reduced_resolution(fused, gt, ratio=4).items()}


def _rr_cases() -> list[tuple[str, int, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]]:
    """(label, n_bands, ms (N,B,h,w), lms or None, pan (N,1,H,W), gt (N,B,H,W)) in [0, 1]."""
    import scipy.io as sio

    root = data_dir() / "rr"
    cases = []
    for label, nb in (("cdif/WV3_test", 8), ("cdif/Pleiades_test", 4)):
        d = sio.loadmat(root / f"{label}.mat")
        cases.append(
            (
                label,
                nb,
                d["lrms"].transpose(2, 0, 1)[None],
                None,
                d["pan"][None, None],
                d["gt"].transpose(2, 0, 1)[None],
            )
        )
    t = sio.loadmat(root / "fusionnet_wv3/train.mat")
    n = TRAIN_PATCHES
    nchw = {k: t[k][:n].astype(np.float64) / 2047.0 for k in ("ms", "lms", "gt")}
    cases.append(
        (
            f"fusionnet_wv3/train (first {n} patches, file lms)",
            8,
            nchw["ms"].transpose(0, 3, 1, 2),
            nchw["lms"].transpose(0, 3, 1, 2),
            t["pan"][:n].astype(np.float64)[:, None] / 2047.0,
            nchw["gt"].transpose(0, 3, 1, 2),
        )
    )
    return cases


def rr_quality() -> list[dict[str, Any]]:
    """Every network x matching DLPan checkpoint + own weights + baselines on the RR data."""
    quality = _optional("pipeline.quality")
    classical = _optional("pipeline.classical")
    rows = []
    for label, nb, ms_np, lms_np, pan_np, gt in _rr_cases():
        print(f"RR {label}")
        ms = torch.from_numpy(ms_np).float()
        pan = torch.from_numpy(pan_np).float()
        methods: dict[str, np.ndarray] = {
            "bicubic": upsample(ms, 4, "bicubic").double().numpy(),
            "poly23 (EXP)": upsample(ms, 4, "poly23").double().numpy(),
        }
        if classical is not None:
            sensor = "wv3" if nb == 8 else "pleiades"
            for c, fn in classical.METHODS.items():
                methods[c] = np.stack(
                    [
                        np.asarray(fn(m, p[0], sensor), dtype=np.float64)
                        for m, p in zip(ms_np, pan_np, strict=True)
                    ]
                )
        lms_t = None if lms_np is None else torch.from_numpy(lms_np).float()
        for mname, model in _nets(nb, DLPAN_8 if nb == 8 else DLPAN_4):
            lms = upsample(ms, 4, model.upsampler) if lms_t is None else lms_t
            with torch.no_grad():
                methods[mname] = model(ms, lms, pan).double().numpy()
        for mname, fused in methods.items():
            per = [_rr_metrics(quality, f, g) for f, g in zip(fused, gt, strict=True)]
            row = {"data": label, "method": mname}
            row.update({k: float(np.mean([p[k] for p in per])) for k in per[0]})
            rows.append(row)
            print(f"  {mname}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k in per[0]))
    return rows


def _spacenet_sensor() -> SensorSpec:
    """WorldView-2 restricted to SpaceNet's 4 delivered bands (B, G, R, NIR1), WV2 MTF gains."""
    wv2 = get_sensor("wv2")
    idx = (1, 2, 4, 6)
    spec = SensorSpec(
        name="wv2-bgrn",
        title="WorldView-2, 4 bands (SpaceNet)",
        bands=tuple(wv2.bands[i] for i in idx),
        rgb=(2, 1, 0),
        ratio=4,
        bit_depth=11,
        mtf_ms=tuple(wv2.mtf_ms[i] for i in idx),
        mtf_pan=wv2.mtf_pan,
        source="benchmarks/backbones.py: WV2 gains of the delivered bands",
    )
    register_sensor(spec, replace=True)
    return spec


FR_SCENES: tuple[tuple[str, list[str], str, dict[str, Any]], ...] = (
    ("GE1 (grip)", ["vhr/grip/imgGE1.mat"], "ge1", {"dn_max": 255.0}),
    ("WV2 (grip)", ["vhr/grip/imgWV2.mat"], "wv2", {}),
    ("WV3 example", ["vhr/wv3_example/WV3_example.mat"], "wv3", {}),
    ("QB", ["vhr/quickbird/QB-PAN.tif", "vhr/quickbird/QB-MS.tif"], "qb", {}),
    (
        "SpaceNet WV2 #1",
        ["vhr/spacenet_wv2/pan1.tif", "vhr/spacenet_wv2/ms1.tif"],
        "wv2-bgrn",
        {"ms_decimate": 2},
    ),
)


FR_CROP = 512  # PAN pixels: a centre crop keeps the run affordable on 2 cores


def _centre_crop(ms: Any, pan: Any, size: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = int(pan.shape[0]), int(pan.shape[1])
    r = h // int(ms.shape[1])
    s = min(size, h, w) // r * r
    y0, x0 = (h - s) // 2 // r * r, (w - s) // 2 // r * r
    p = np.asarray(pan[y0 : y0 + s, x0 : x0 + s], dtype=np.float64)
    m = np.asarray(ms[:, y0 // r : (y0 + s) // r, x0 // r : (x0 + s) // r], dtype=np.float64)
    return m, p


def fr_quality() -> list[dict[str, Any]]:
    """HQNR, D_lambda(K), D_S of each network (band-matched checkpoints) on the VHR scenes."""
    quality = _optional("pipeline.quality")
    if quality is None:
        print("FR: pipeline.quality not available; skipped")
        return []
    from pipeline.scene import open_scene

    _spacenet_sensor()
    rows = []
    for label, files, sensor, kw in FR_SCENES:
        paths = [str(data_dir() / f) for f in files]
        try:
            scene = open_scene(paths, sensor, **kw)
        except Exception as exc:
            print(f"  {label}: cannot open ({exc})")
            continue
        print(f"FR {label}")
        ms_dn, pan_dn = _centre_crop(scene.ms, scene.pan, FR_CROP)
        ms = torch.from_numpy(ms_dn / scene.dn_max).float()[None]
        pan = torch.from_numpy(pan_dn / scene.dn_max).float()[None, None]
        nb = scene.n_bands
        for mname, model in _nets(nb, DLPAN_8 if nb == 8 else DLPAN_4):
            with torch.no_grad():
                out = model(ms, upsample(ms, 4, model.upsampler), pan)[0].double().numpy()
            res = quality.full_resolution(out * scene.dn_max, ms_dn, pan_dn, scene.sensor)
            rows.append({"scene": label, "method": mname, **{k: float(v) for k, v in res.items()}})
    return rows


# ------------------------------------------------------------------ report


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    if not rows:
        return "_(not run)_\n"
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = ""
    for r in rows:
        cells = [f"{r[c]:.3f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in cols]
        body += "| " + " | ".join(cells) + " |\n"
    return head + body


def write_report(result: dict[str, Any]) -> None:
    """Write ``backbones.json`` and ``backbones.md`` under ``benchmarks/results``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "backbones.json").write_text(json.dumps(result, indent=1))
    m = result["machine"]
    md = ["# Backbones benchmark\n", f"Command: `{result['command']}`\n"]
    md.append(
        f"Machine: {m['cpu_count']} CPUs, {m['platform']}, torch {m['torch']}, numpy "
        f"{m['numpy']}, load average {m['loadavg_1min']:.2f} at start, {m['date']}.\n"
    )
    md.append("## Forward time per tile (8 bands, random weights, median of reps)\n")
    md.append(
        _table(
            result["timing"],
            TIMING_COLS,
        )
    )
    md.append("\n## Reduced resolution (mean over images; inputs DN / dn_max)\n")
    cols = ["data", "method"] + [
        k for k in ("sam", "ergas", "q2n", "scc") if result["rr"] and k in result["rr"][0]
    ]
    md.append(_table(result["rr"], cols))
    md.append(f"\n## Full resolution ({FR_CROP}² PAN centre crop of each scene, DN scale)\n")
    fr = result["fr"]
    md.append(
        _table(
            fr,
            ["scene", "method"]
            + [k for k in (fr[0] if fr else {}) if k not in ("scene", "method")],
        )
    )
    md.append("\n" + "\n".join(result.get("notes", [])) + "\n")
    (RESULTS / "backbones.md").write_text("\n".join(md))


def main() -> None:
    """Run the selected parts and write the report (merging with parts not re-run)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", choices=["timing", "rr", "fr"], action="append")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--threads", default="1,2", help="thread counts to time, e.g. 1,2")
    args = ap.parse_args()
    parts = set(args.only or ["timing", "rr", "fr"])
    old: dict[str, Any] = {}
    if (RESULTS / "backbones.json").is_file():
        old = json.loads((RESULTS / "backbones.json").read_text())
    result: dict[str, Any] = {
        "command": "python3 benchmarks/backbones.py "
        + " ".join(f"--only {p}" for p in sorted(args.only or []))
        + f" --reps {args.reps} --tile {args.tile} --threads {args.threads}",
        "machine": machine_info(),
        "timing": old.get("timing", []),
        "rr": old.get("rr", []),
        "fr": old.get("fr", []),
        "notes": old.get("notes", []),
    }
    torch.set_grad_enabled(False)
    if "timing" in parts:
        threads = tuple(int(t) for t in args.threads.split(","))
        result["timing"] = time_forward(args.tile, threads, args.reps)
    if "rr" in parts:
        result["rr"] = rr_quality()
    if "fr" in parts:
        result["fr"] = fr_quality()
    write_report(result)
    print(f"wrote {RESULTS / 'backbones.md'}")


if __name__ == "__main__":
    main()
