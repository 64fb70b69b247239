"""GPU speed: 512² x 8 and 4000² x 8 end to end -> benchmarks/results/gpu.{md,json}.

Runs where a CUDA GPU is visible; elsewhere it says so and exits 0 (``--device cpu --small``
runs the same code path on tiny scenes on the CPU, as a smoke test, and writes ``gpu_smoke.*``).
Finishes in well under 5 minutes on one GPU.

Per scene (synthetic WV3, FusionNet with the shipped weights, tailor fitted on the scene):

``streamed``
    One process, the GPU engine this benchmark holds: ingest into the store; sample + tailor fit
    on the GPU (60 steps, cached features); tiled inference with the reading, the compute and
    the writing overlapped (a reader thread fills *pinned* host buffers, host-to-device copies on
    a copy stream, the forward on a compute stream under autocast (``--amp`` fp16/bf16) in
    ``channels_last``, device-to-host copies on a third stream into pinned buffers, a writer
    thread puts the cropped tiles into the store); COG export.
``run``
    The product path: ``pantailor run --device cuda`` (``run_scene`` on a one-GPU local cluster),
    its stage timings (cluster start-up excluded).

Reference: the paper's FusionNet timings on an RTX 3090, 0.2 s (512²) and 3 s (4000²).

Usage::

    python benchmarks/gpu.py                      # on a GPU machine
    python benchmarks/gpu.py --amp bf16 --repeats 3
    python benchmarks/gpu.py --device cpu --small # CPU smoke test of the code path
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
PAPER_S = {512: 0.2, 4000: 3.0}  # FusionNet on an RTX 3090 (the paper's table)
AMP = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}


class Streams:
    """Copy-in, compute and copy-out CUDA streams; plain no-ops on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.h2d = torch.cuda.Stream() if self.cuda else None
        self.comp = torch.cuda.Stream() if self.cuda else None
        self.d2h = torch.cuda.Stream() if self.cuda else None

    def on(self, stream: Any) -> contextlib.AbstractContextManager[Any]:
        return torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()

    def event(self, stream: Any) -> Any:
        """An event recorded on ``stream`` (``None`` on the CPU)."""
        if stream is None:
            return None
        ev = torch.cuda.Event()
        ev.record(stream)
        return ev

    def wait(self, stream: Any, event: Any) -> None:
        if stream is not None and event is not None:
            stream.wait_event(event)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


def pinned(a: np.ndarray, cuda: bool) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    return t.pin_memory() if cuda else t


def streamed_infer(
    store: Any, model: torch.nn.Module, halo_ms: int, device: torch.device, amp: str, out: str
) -> float:
    """Tiled forward over ``store`` with reading, compute and writing overlapped; seconds."""
    from pipeline.backbones import upsample

    grid, meta = store.grid, store.meta
    store.create_output(out, overwrite=True)
    st = Streams(device)
    fmt = torch.channels_last
    dtype = AMP[amp]
    reads = [grid.read(k, halo_ms) for k in grid.keys()]  # noqa: SIM118

    def load(tr: Any) -> tuple[torch.Tensor, torch.Tensor]:
        ms = store.read_ms(tr.ms).astype(np.float32) / np.float32(meta.dn_max)
        pan = store.read_pan(tr.pan).astype(np.float32) / np.float32(meta.dn_max)
        return pinned(ms[None], st.cuda), pinned(pan[None, None], st.cuda)

    def write(tr: Any, host: torch.Tensor, event: Any) -> None:
        if event is not None:
            event.synchronize()
        store.write_region(out, tr.out, host.numpy()[0])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as readers, ThreadPoolExecutor(1) as writer:
        ahead: dict[int, Future[tuple[torch.Tensor, torch.Tensor]]] = {
            j: readers.submit(load, tr) for j, tr in enumerate(reads[:3])
        }
        written: list[Future[None]] = []
        for i, tr in enumerate(reads):
            ms_h, pan_h = ahead.pop(i).result()  # pinned; the host allocator keeps it until copied
            if i + 3 < len(reads):
                ahead[i + 3] = readers.submit(load, reads[i + 3])
            with st.on(st.h2d):
                ms_d = ms_h.to(device, non_blocking=True)
                pan_d = pan_h.to(device, non_blocking=True)
            copied = st.event(st.h2d)
            st.wait(st.comp, copied)
            if st.cuda:  # allocated on the copy stream, used on the compute stream
                ms_d.record_stream(st.comp)
                pan_d.record_stream(st.comp)
            with st.on(st.comp), torch.inference_mode():
                ctx = (
                    torch.autocast(device.type, dtype=dtype)
                    if dtype is not None
                    else contextlib.nullcontext()
                )
                with ctx:
                    lms = upsample(ms_d, meta.ratio, "poly23")
                    y = model(*(t.contiguous(memory_format=fmt) for t in (ms_d, lms, pan_d)))
                tile = y[(slice(None), slice(None), *tr.crop.slices)].float().contiguous()
            done = st.event(st.comp)
            st.wait(st.d2h, done)
            if st.cuda:
                tile.record_stream(st.d2h)
            with st.on(st.d2h):
                host = torch.empty(tile.shape, dtype=torch.float32, pin_memory=st.cuda)
                host.copy_(tile, non_blocking=st.cuda)
            written.append(writer.submit(write, tr, host, st.event(st.d2h)))
        for f in written:
            f.result()
    st.sync()
    return time.perf_counter() - t0


def fit_model(syn: Any, device: torch.device, steps: int) -> tuple[torch.nn.Module, int, float]:
    """Sample + tailor fit on ``device``; the tailored model, its halo (MS px) and seconds."""
    from pipeline.backbones import load, support_ms
    from pipeline.fit import FitConfig, fit_tailor
    from pipeline.grid import halo_ms_for
    from pipeline.sampling import SampleConfig, sample_patches
    from pipeline.sensors import get_sensor

    spec = get_sensor("wv3")
    t0 = time.perf_counter()
    backbone = load("fusionnet", None, sensor="wv3").to(device)
    patches = sample_patches((syn.pan, syn.ms), SampleConfig(), 0, ratio=4, dn_max=spec.dn_max)
    res = fit_tailor(patches, backbone, spec, FitConfig(steps=steps), device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    model = res.model(backbone).to(device).to(memory_format=torch.channels_last)
    halo = halo_ms_for(int(model.receptive_field), 4, support_ms("poly23", 4))
    return model, halo, seconds


def streamed_row(
    syn: Any, tmp: Path, device: torch.device, args: Any, tile: int
) -> dict[str, float]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from engine import scene_of  # type: ignore[import-not-found]

    from pipeline.export import export_cog
    from pipeline.store import write_scene

    shutil.rmtree(tmp / "g.zarr", ignore_errors=True)
    t0 = time.perf_counter()
    store = write_scene(scene_of(syn.pan, syn.ms), tmp / "g.zarr", tile=tile, hash_sources=False)
    ingest = time.perf_counter() - t0
    model, halo, fit = fit_model(syn, device, args.steps)
    infer = streamed_infer(store, model, halo, device, args.amp, "fused")
    t0 = time.perf_counter()
    export_cog(store.path, "fused", tmp / "g.tif", overwrite=True)
    export = time.perf_counter() - t0
    total = ingest + fit + infer + export
    return {"ingest": ingest, "fit": fit, "infer": infer, "export": export, "e2e": total}


def run_row(syn: Any, tmp: Path, device: torch.device, args: Any, tile: int) -> dict[str, float]:
    """``run_scene`` on a one-worker local cluster on ``device`` (the product path)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from engine import scene_of  # type: ignore[import-not-found]

    from pipeline.runner import RunConfig, run_scene
    from pipeline.store import write_scene
    from workers.cluster import ClusterConfig

    shutil.rmtree(tmp / "r.zarr", ignore_errors=True)
    t0 = time.perf_counter()
    store = write_scene(scene_of(syn.pan, syn.ms), tmp / "r.zarr", tile=tile, hash_sources=False)
    ingest = time.perf_counter() - t0
    cluster = ClusterConfig(
        kind="auto", n_workers=1, threads_per_worker=2, dashboard_address=None,
        device=device.type,
    )  # fmt: skip
    cfg = RunConfig(
        inputs=(str(store.path),), output=str(tmp / "r.tif"), quality_tiles=0, overwrite=True,
        fit={"steps": args.steps},
    )  # fmt: skip
    t = run_scene(cfg, cluster=cluster)["timings"]
    row = {k: float(t.get(k, 0.0)) for k in ("sample", "fit", "infer", "export")}
    row["ingest"] = ingest
    row["e2e"] = sum(row.values())
    return row


def median_rows(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def cases(small: bool) -> Iterator[tuple[int, int]]:
    """(scene size, tile)."""
    yield from ([(128, 64), (256, 128)] if small else [(512, 512), (4000, 512)])


def main() -> int:
    from pipeline.report import environment
    from pipeline.synthetic import make_scene

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--amp", default="fp16", choices=tuple(AMP))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--small", action="store_true", help="tiny scenes (smoke test)")
    ap.add_argument("--no-run", action="store_true", help="skip the run_scene rows")
    args = ap.parse_args()
    if args.small:  # a smoke test of the code path, not a measurement
        args.steps, args.repeats = min(args.steps, 3), 1
    if args.device == "cuda" and not torch.cuda.is_available():
        print("SKIP benchmarks/gpu.py: no CUDA device visible (torch.cuda.is_available() is False);"
              " run it on a GPU machine, or --device cpu --small for a CPU smoke test.")  # fmt: skip
        return 0
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    tmp = Path(tempfile.mkdtemp(prefix="pt-gpu-"))
    out: dict[str, Any] = {}
    try:
        for size, tile in cases(args.small):
            syn = make_scene((size, size), "wv3", seed=0)
            streamed_row(syn, tmp, device, args, tile)  # warm-up (cuDNN autotune, allocator)
            row: dict[str, Any] = {
                "streamed": median_rows(
                    [streamed_row(syn, tmp, device, args, tile) for _ in range(args.repeats)]
                )
            }
            if not args.no_run:
                row["run"] = run_row(syn, tmp, device, args, tile)
            row["paper_s"] = PAPER_S.get(size)
            out[str(size)] = row
            print(size, json.dumps(row), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"args": vars(args), "rows": out, "environment": environment()}
    if device.type == "cuda":
        result["gpu"] = torch.cuda.get_device_name(0)
    name = "gpu_smoke" if args.small else "gpu"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict[str, Any]) -> str:
    a, env = r["args"], r["environment"]
    lines = [
        f"# GPU speed ({env['date']})",
        "",
        f"Device: {r.get('gpu', a['device'])}; torch {env['torch']}; AMP {a['amp']}, "
        f"channels_last, pinned host buffers, copy/compute/copy-back on separate streams. "
        f"Command: `python benchmarks/gpu.py --device {a['device']} --amp {a['amp']} --repeats "
        f"{a['repeats']}{' --small' if a['small'] else ''}`; medians of {a['repeats']} after one "
        "warm-up. Paper: FusionNet on an RTX 3090.",
        "",
        "| scene | path | ingest | fit | infer | export | end to end | paper |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size, row in r["rows"].items():
        paper = f"{row['paper_s']:.1f}" if row.get("paper_s") else "-"
        for path in ("streamed", "run"):
            if path not in row:
                continue
            t = row[path]
            fit = t["fit"] + t.get("sample", 0.0)
            lines.append(
                f"| {size}² | {path} | {t['ingest']:.2f} | {fit:.2f} | {t['infer']:.2f} | "
                f"{t['export']:.2f} | **{t['e2e']:.2f}** | {paper} |"
            )
    lines += [
        "",
        "`streamed`: one process, the overlapped engine of this script; `run`: `run_scene` on a "
        "one-GPU local cluster (the product path; cluster start-up excluded). The export (COG, "
        "CPU) and ingest are the same code on both.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
