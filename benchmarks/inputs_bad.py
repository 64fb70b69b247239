"""Bad inputs through ``pantailor run``: no-data leaks, non-finite holes, untagged products.

Scene: the top-left 512 x 512 PAN crop of ``vhr/quickbird/QB-{PAN,MS}.tif`` (QuickBird, 11-bit)
under ``PANTAILOR_DATA``, FusionNet with the DLPan QB weights, ``--adapt none`` (the kernel's
inference alone), tiles of 256. Each scenario writes GeoTIFFs into a work folder and runs the
real CLI (``python -m pipeline.cli run``) in a subprocess, so the same script measures any
checkout: put it first on ``PYTHONPATH`` to measure the code before a change.

Scenarios (a 20 x 20 MS block = 80 x 80 PAN pixels, placed across a tile boundary):
``nodata65535`` (uint16, MS block = 65535, tagged), ``int16_-9999`` (int16, MS block = -9999,
tagged), ``ms_nan`` (float32 MS, NaN block), ``ms_inf`` (float32 MS, one +Inf pixel),
``pan_nan`` (float32 PAN with a NaN block, uint16 MS, no tag). Measured: invalid input pixels,
no-data pixels in the product (NaN or the COG's tag), the nodata tag, and for the no-data
scenarios the valid pixels within 32 px of the hole that moved by more than 1 % of ``dn_max``
from the clean scene's product, with their range.

Usage::

    python benchmarks/inputs_bad.py                       # this checkout
    PYTHONPATH=/path/to/old/checkout PANTAILOR_REV=<its commit> \
        python benchmarks/inputs_bad.py --label before

Writes ``benchmarks/results/inputs_bad_<label>.{md,json}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from scipy.ndimage import binary_dilation

DN_MAX = 2047.0
N, R = 512, 4
HOLE_MS = (slice(None), slice(54, 74), slice(54, 74))  # PAN 216..296: crosses the 256 boundary
HOLE_PAN = (slice(216, 296), slice(216, 296))


def _data() -> tuple[np.ndarray, np.ndarray]:
    root = Path(os.environ.get("PANTAILOR_DATA", "../shared/data")) / "vhr/quickbird"
    with rasterio.open(root / "QB-PAN.tif") as p, rasterio.open(root / "QB-MS.tif") as m:
        pan = p.read(1)[:N, :N]
        ms = m.read()[:, : N // R, : N // R]
    return pan, ms


def _write(path: Path, data: np.ndarray, nodata: float | None = None) -> str:
    arr = data[None] if data.ndim == 2 else data
    prof = {"driver": "GTiff", "count": arr.shape[0], "dtype": arr.dtype.name, "nodata": nodata}
    with rasterio.open(path, "w", height=arr.shape[1], width=arr.shape[2], **prof) as dst:
        dst.write(arr)
    return str(path)


def _scenarios(pan: np.ndarray, ms: np.ndarray) -> dict[str, tuple[Any, Any, float | None]]:
    out: dict[str, tuple[Any, Any, float | None]] = {"clean": (pan, ms, None)}
    m = ms.copy()
    m[HOLE_MS] = 65535
    out["nodata65535"] = (pan, m, 65535.0)
    m, p = ms.astype(np.int16), pan.astype(np.int16)
    m[HOLE_MS] = -9999
    out["int16_-9999"] = (p, m, -9999.0)
    m = ms.astype(np.float32)
    m[HOLE_MS] = np.nan
    out["ms_nan"] = (pan.astype(np.float32), m, None)
    m = ms.astype(np.float32)
    m[:, 64, 64] = np.inf
    out["ms_inf"] = (pan.astype(np.float32), m, None)
    p = pan.astype(np.float32)
    p[HOLE_PAN] = np.nan
    out["pan_nan"] = (p, ms, None)
    return out


def _run(work: Path, name: str, pan: Any, ms: Any, nodata: float | None) -> tuple[Any, Any]:
    d = work / name
    d.mkdir()
    files = [_write(d / "pan.tif", pan), _write(d / "ms.tif", ms, nodata)]
    out = d / "out.tif"
    cmd = [sys.executable, "-m", "pipeline.cli", "run", *files, "--sensor", "qb"]
    cmd += ["--method", "fusionnet", "--weights", "dlpan:qb", "--adapt", "none"]
    cmd += ["--tile", "256", "--workers", "1", "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, cwd=d)
    with rasterio.open(out) as src:
        return src.read().astype(np.float64), src.nodata


def _invalid_in(pan: Any, ms: Any, nodata: float | None) -> np.ndarray:
    bad_ms = ~np.isfinite(ms.astype(np.float64)).all(axis=0)
    bad_pan = ~np.isfinite(pan.astype(np.float64))
    if nodata is not None:
        bad_ms |= (ms == nodata).any(axis=0)
        bad_pan |= pan == nodata
    return np.asarray(bad_pan | np.kron(bad_ms, np.ones((R, R), bool)).astype(bool))


def measure(work: Path) -> dict[str, Any]:
    """Run every scenario; the figures per scenario."""
    pan, ms = _data()
    results: dict[str, Any] = {}
    clean = None
    for name, (p, m, nodata) in _scenarios(pan, ms).items():
        img, tag = _run(work, name, p, m, nodata)
        nod = np.isnan(img) if tag is None or np.isnan(tag) else (img == tag)
        out_bad = nod.all(axis=0)
        inv = _invalid_in(p, m, nodata)
        row: dict[str, Any] = {
            "invalid_input_px": int(inv.sum()),
            "nodata_output_px": int(out_bad.sum()),
            "nodata_tag": None if tag is None else float(tag),
            "zeros_in_invalid_px": int((img[:, inv] == 0).all(axis=0).sum()),
        }
        if out_bad.any():
            ys, xs = np.nonzero(out_bad)
            row["nodata_bbox"] = [int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)]
        if clean is None:
            clean = img
        elif inv.any():
            near = binary_dilation(inv, iterations=32) & ~inv
            moved = (np.abs(img - clean) > 0.01 * DN_MAX).any(axis=0) & near
            vals = img[:, near]
            row["valid_near_hole_moved_px"] = int(moved.sum())
            row["valid_near_hole_range"] = [float(np.nanmin(vals)), float(np.nanmax(vals))]
            ref = clean[:, near]
            row["clean_near_hole_range"] = [float(ref.min()), float(ref.max())]
            row["valid_near_hole_max_abs_change"] = float(np.nanmax(np.abs(vals - ref)))
        results[name] = row
        print(name, row, flush=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--label", default="after")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = measure(Path(tmp))
    import pipeline

    where = Path(pipeline.__file__).parent
    rev = subprocess.run(
        ["git", "-C", str(where), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip() or os.environ.get("PANTAILOR_REV", "not a git checkout")
    doc = {
        "label": args.label,
        "pipeline": str(Path(pipeline.__file__).parent),
        "git": rev,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores (shared)",
        "python": platform.python_version(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "results": results,
    }
    res = Path(__file__).with_name("results")
    (res / f"inputs_bad_{args.label}.json").write_text(json.dumps(doc, indent=1))
    lines = [f"# Bad inputs through `pantailor run` ({args.label})", ""]
    lines += [f"{k}: {v}" for k, v in doc.items() if k != "results"]
    lines += ["", "| scenario | figures |", "|---|---|"]
    lines += [f"| {k} | {json.dumps(v)} |" for k, v in results.items()]
    (res / f"inputs_bad_{args.label}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
