"""Fit + infer speed of the feature tailor on a 512 x 512 x 8 scene, with a breakdown.

Scene: the top-left 512 x 512 PAN crop of ``vhr/grip/imgWV2.mat`` (WorldView-2, 8 bands) under
``PANTAILOR_DATA`` (a synthetic WV2 scene where absent), FusionNet with the DLPan WV3 weights (a
random FusionNet where absent): the cross-sensor case the tailor is for.

Timed per variant (median of ``--runs``): patch sampling, fit (cached features + steps), whole-
image inference of the tailored model, and their sum (the "fit + infer" target is <= 2 s on the
2-core CPU). Also: the plain backbone forward, the cost of the uncached fit (extractor run every
step, as in the first probe), the start-up cost of ``torch.optim``, a ``torch.profiler`` table of
one default fit, and HQNR of each variant's output (quality must not be bought with speed).

Usage::

    python benchmarks/fit_speed.py               # ~3-5 min on an idle 2-core CPU
    python benchmarks/fit_speed.py --runs 1 --quick

Writes ``benchmarks/results/fit_speed.{md,json}`` (``--out NAME``: ``NAME.{md,json}``).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.backbones import Backbone, build, load, upsample
from pipeline.config import data_dir
from pipeline.fit import FitConfig, fit_tailor
from pipeline.fuse import fuse
from pipeline.losses import LossWeights, degrade_inputs, mtf_taps, spatial_loss, spectral_loss
from pipeline.sampling import SampleConfig, sample_patches
from pipeline.sensors import SensorSpec, get_sensor
from pipeline.tailor import FeatureTailor, TailoredModel, TailorSpec

RESULTS = Path(__file__).resolve().parent / "results"
SIZE = 512
NOTES = Path(__file__).with_name("fit_speed_notes.md")  # the findings, appended to the .md


def machine_info() -> dict[str, Any]:
    """CPU count, platform, package versions and the date."""
    import scipy

    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "load_average_at_start": os.getloadavg(),
    }


def load_case() -> tuple[np.ndarray, np.ndarray, SensorSpec, Backbone, str]:
    """(pan (512, 512), ms (8, 128, 128)) DN, sensor, backbone, description."""
    sensor = get_sensor("wv2")
    path = data_dir() / "vhr/grip/imgWV2.mat"
    if path.exists():
        from pipeline.scene import open_scene

        s = open_scene(path, sensor)
        pan = np.asarray(s.pan[:SIZE, :SIZE])
        ms = np.asarray(s.ms[:, : SIZE // 4, : SIZE // 4])
        bb = load("fusionnet", "dlpan:wv3", sensor=sensor)
        return pan, ms, sensor, bb, "imgWV2 512x512 crop, FusionNet DLPan-WV3 weights"
    from pipeline.synthetic import make_scene

    sc = make_scene((SIZE, SIZE), sensor, seed=0)
    torch.manual_seed(0)
    bb = build("fusionnet", 8).eval().requires_grad_(False)
    return sc.pan, sc.ms, sensor, bb, "synthetic WV2 512x512 (data absent), random FusionNet"


def to_tensors(pan: np.ndarray, ms: np.ndarray, dn_max: float) -> tuple[torch.Tensor, ...]:
    """Normalised ``(1, B, h, w)`` ms and ``(1, 1, H, W)`` pan."""
    ms_t = torch.from_numpy(ms.astype(np.float32) / np.float32(dn_max))[None]
    pan_t = torch.from_numpy(pan.astype(np.float32) / np.float32(dn_max))[None, None]
    return ms_t, pan_t


def infer(model: Backbone, ms: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
    """Whole-image inference (LMS upsampling included)."""
    with torch.inference_mode():
        return model(ms, upsample(ms, 4, model.upsampler), pan)


@dataclasses.dataclass
class Variant:
    """One configuration to time."""

    name: str
    fit: FitConfig
    sample: SampleConfig
    threads: int = 0  # 0: the run's --threads
    overlap: bool = True  # pipeline.fuse: extractor concurrent with the fit


def variants(quick: bool, threads: int) -> list[Variant]:
    """The configurations compared (the first is the shipped default)."""
    d, s = FitConfig(), SampleConfig()
    rep = dataclasses.replace
    prev_w = LossWeights(spatial_target="lowres", spatial=0.01, consistency=1.0)
    prev = rep(d, weights=prev_w, check_every=0)
    plain = rep(d, fused=False)
    out = [
        Variant("default (fit overlapped with the extractor)", d, s),
        Variant("before: plain losses, contiguous features (`fused=False`), overlapped", plain, s),
        Variant("default, sequential (fit, then forward)", d, s, overlap=False),
        Variant("default, 1 thread, sequential", d, s, threads=1, overlap=False),
        Variant("before (`fused=False`), 1 thread, sequential", plain, s, threads=1, overlap=False),
        Variant(
            "previous defaults (lowres spatial 0.01, consistency 1, no held-out)",
            prev,
            rep(s, holdout=0),
        ),
        Variant("no held-out check (fits on all patches)", rep(d, check_every=0), s),
        Variant("held-out check every 10 steps", rep(d, check_every=10), s),
        Variant("steps 40", rep(d, steps=40), s),
        Variant("steps 40, check every 10", rep(d, steps=40, check_every=10), s),
        Variant("width 8", rep(d, width=8), s),
        Variant(
            "fast: width 8, 40 steps, check every 10", rep(d, width=8, steps=40, check_every=10), s
        ),
        Variant("steps 30, lr 6e-3, check every 10", rep(d, steps=30, lr=6e-3, check_every=10), s),
        Variant("LS start (16 CG) + 30 steps, lr 1e-3", rep(d, ls_start=16, steps=30, lr=1e-3), s),
        Variant(
            "before 2026-12-01 17:15: no augmentation, 4-8 fit + 2 held-out patches",
            rep(d, augment="none"),
            rep(s, min_patches=4, holdout=2),
        ),
        Variant("rot180, 4-8 fit + 2 held-out patches", d, rep(s, min_patches=4, holdout=2)),
        Variant("no augmentation (8 fit + 4 held-out patches)", rep(d, augment="none"), s),
        Variant("flips instead of rot180 (4x the fit patches)", rep(d, augment="flips"), s),
        Variant("default at 40 steps", rep(d, steps=40), s),
    ]
    return out[:5] if quick else out


def hqnr(fused: np.ndarray, pan: np.ndarray, ms: np.ndarray, sensor: SensorSpec) -> float:
    """HQNR of a fused image ``(B, H, W)`` in DN."""
    from pipeline.quality import full_resolution

    return float(full_resolution(fused.astype(np.float64), ms, pan, sensor)["hqnr"])


def run_variant(v: Variant, case: tuple[Any, ...], runs: int, threads: int) -> dict[str, Any]:
    """Median timings of one variant over ``runs`` (seeds 0..runs-1), through pipeline.fuse."""
    pan, ms, sensor, bb, _ = case
    v = dataclasses.replace(v, threads=v.threads or threads)
    torch.set_num_threads(v.threads)
    fuse(pan, ms, sensor, bb, fit=dataclasses.replace(v.fit, steps=2), sample=v.sample)  # warm
    rows = []
    for seed in range(runs):
        c0 = time.process_time()
        f = fuse(pan, ms, sensor, bb, fit=v.fit, sample=v.sample, seed=seed, overlap=v.overlap)
        cpu = time.process_time() - c0
        res = f.fit
        rows.append(
            {
                "total_cpu_s": cpu,
                "sample_s": f.seconds["sample"],
                "fit_s": f.seconds["fit"],
                "feature_s": res.feature_seconds,
                "step_s": (res.seconds - res.feature_seconds) / max(res.steps, 1),
                "steps": res.steps,
                "infer_s": f.seconds["infer"],
                "total_s": f.seconds["total"],
                "loss": res.losses["total"],
                "loss0": res.initial_losses["total"],
                "hqnr": hqnr(f.image, pan, ms, sensor),
            }
        )
    torch.set_num_threads(threads)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    return {
        "name": v.name,
        "threads": v.threads,
        "overlap": v.overlap,
        "fit": str(v.fit),
        "sample": str(v.sample),
        **med,
    }


def naive_step_seconds(case: tuple[Any, ...], steps: int = 5) -> float:
    """Seconds per step of the uncached fit (extractor + tailor + mapper every step, both branches)."""
    pan, ms, sensor, bb, _ = case
    p = sample_patches((pan, ms), SampleConfig(), 0, ratio=4, dn_max=sensor.dn_max)
    model = TailoredModel(bb, FeatureTailor(TailorSpec(channels=bb.feat_channels)))
    lms = upsample(p.ms, 4, bb.upsampler)
    ms_d, pan_d = degrade_inputs(p.ms, p.pan, sensor)
    lms_d = upsample(ms_d, 4, bb.upsampler)
    taps = mtf_taps(sensor.mtf_ms, 4)
    opt = torch.optim.Adam(model.tailor.parameters(), lr=3e-3)
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        out = model(p.ms, lms, p.pan)
        loss = spectral_loss(out, p.ms, taps, 4) + 0.01 * spatial_loss(out, p.pan)
        loss = loss + (model(ms_d, lms_d, pan_d) - p.ms).abs().mean()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def optim_import_seconds() -> float:
    """Start-up cost of the first ``torch.optim`` optimiser in a fresh process (s)."""
    code = (
        "import time, torch; t=time.perf_counter(); "
        "torch.optim.Adam([torch.zeros(1, requires_grad=True)]); print(time.perf_counter()-t)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def profile_default(case: tuple[Any, ...]) -> str:
    """``torch.profiler`` table (top ops by self CPU time) of one default fit."""
    from torch.profiler import ProfilerActivity, profile

    pan, ms, sensor, bb, _ = case
    p = sample_patches((pan, ms), SampleConfig(), 0, ratio=4, dn_max=sensor.dn_max)
    fit_tailor(p, bb, sensor, FitConfig(steps=3))  # warm-up
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fit_tailor(p, bb, sensor, FitConfig(steps=20, patience=20))
    table: str = prof.key_averages(group_by_input_shape=True).table(
        sort_by="self_cpu_time_total",
        row_limit=12,
        max_name_column_width=28,
        max_shapes_column_width=60,
    )
    return table


def extractor_seconds(case: tuple[Any, ...], runs: int, threads: int) -> float:
    """Median whole-image extractor pass, channels_last, on ``threads`` torch threads (s): what
    the overlap's second thread runs (on 1 thread) while the fit runs, the floor of the total."""
    pan, ms, sensor, bb, _ = case
    ms_t, pan_t = to_tensors(pan, ms, sensor.dn_max)
    model = copy.deepcopy(bb).to(memory_format=torch.channels_last)
    lms = upsample(ms_t, 4, bb.upsampler)
    x = [t.contiguous(memory_format=torch.channels_last) for t in (ms_t, lms, pan_t)]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    times = []
    for _ in range(runs + 1):
        t0 = time.perf_counter()
        with torch.inference_mode():
            model.extract(*x)
        times.append(time.perf_counter() - t0)
    torch.set_num_threads(before)
    return statistics.median(times[1:])


def forward_seconds(case: tuple[Any, ...], runs: int, channels_last: bool = False) -> float:
    """Median whole-image forward of the plain backbone (s)."""
    pan, ms, sensor, bb, _ = case
    ms_t, pan_t = to_tensors(pan, ms, sensor.dn_max)
    model = bb.to(memory_format=torch.channels_last) if channels_last else bb
    times = []
    for _ in range(runs + 1):
        t0 = time.perf_counter()
        infer(model, ms_t, pan_t)
        times.append(time.perf_counter() - t0)
    bb.to(memory_format=torch.contiguous_format)
    return statistics.median(times[1:])


def write(results: dict[str, Any], out: str = "fit_speed") -> None:
    """Results as JSON and a markdown table (``results/OUT.{json,md}``)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{out}.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    m = results["machine"]
    lines = [
        "# Fit + infer speed of the feature tailor (512 x 512 x 8)",
        "",
        f"Case: {results['case']}. Machine: {m['cpu_count']} CPUs, {m['platform']}, torch "
        f"{m['torch']}, load average at start {tuple(round(x, 1) for x in m['load_average_at_start'])}"
        f", {m['date']}. Medians of {results['runs']} runs (seeds). Command: "
        f"`{results['command']}`.",
        "",
        f"- plain backbone forward, 512 x 512: **{results['forward_s']:.3f} s** "
        f"(channels_last: {results['forward_channels_last_s']:.3f} s)",
        f"- the extractor alone, 512 x 512, channels_last, 1 thread (the overlap's second "
        f"thread; the floor of the default's total): **{results.get('extractor_1t_s', 0):.3f} s**",
        f"- uncached fit (extractor every step, both branches): "
        f"**{results['naive_step_s'] * 1000:.0f} ms/step**",
        f"- first `torch.optim` optimiser in a process: **{results['optim_import_s']:.2f} s** "
        "(imports torch._dynamo; pipeline.fit uses its own Adam)",
        "",
        "| variant | threads | sample s | features s | ms/step | steps | fit s | infer s (after "
        "the fit) | **total s** | CPU s | loss0 -> loss | HQNR |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["variants"]:
        lines.append(
            f"| {r['name']} | {r['threads']} | {r['sample_s']:.3f} | {r['feature_s']:.3f} | "
            f"{r['step_s'] * 1000:.1f} | {r['steps']:.0f} | {r['fit_s']:.2f} | {r['infer_s']:.2f} "
            f"| **{r['total_s']:.2f}** | {r['total_cpu_s']:.2f} | {r['loss0']:.4f} -> "
            f"{r['loss']:.4f} | {r['hqnr']:.4f} |"
        )
    lines += ["", "## Profile of one default fit (20 steps)", "", "```", results["profile"], "```"]
    lines += ["", NOTES.read_text()]
    (RESULTS / f"{out}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    """Run the benchmark and write the results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="only the first three variants")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--report-only", action="store_true", help="rewrite the .md from the JSON")
    ap.add_argument("--out", default="fit_speed", help="writes results/OUT.{md,json}")
    args = ap.parse_args()
    if args.report_only:
        write(json.loads((RESULTS / f"{args.out}.json").read_text()), args.out)
        return
    torch.set_num_threads(args.threads)
    case = load_case()
    results: dict[str, Any] = {
        "machine": machine_info(),
        "case": case[4],
        "runs": args.runs,
        "command": "python benchmarks/fit_speed.py " + " ".join(sys.argv[1:]),
        "optim_import_s": optim_import_seconds(),
    }
    results["forward_s"] = forward_seconds(case, args.runs)
    results["forward_channels_last_s"] = forward_seconds(case, args.runs, channels_last=True)
    results["extractor_1t_s"] = extractor_seconds(case, args.runs, 1)
    results["variants"] = []
    for v in variants(args.quick, args.threads):
        r = run_variant(v, case, args.runs, args.threads)
        print(
            f"{r['name']}: total {r['total_s']:.2f} s, fit {r['fit_s']:.2f} s, HQNR {r['hqnr']:.4f}"
        )
        results["variants"].append(r)
    results["naive_step_s"] = naive_step_seconds(case)
    results["profile"] = profile_default(case)
    write(results, args.out)
    print(f"wrote {RESULTS / (args.out + '.md')}")


if __name__ == "__main__":
    main()
