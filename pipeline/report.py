"""Per-scene report: ``report.json`` (timings, fit, metrics, outputs) and a quicklook PNG.

The quicklook shows the scene's RGB bands twice, side by side: the MS replicated onto the PAN
grid (what the user had) and the fused product. Both are decimated while reading, one tile row at
a time, so memory stays bounded for any scene size, and stretched with the same per-band
2-98 % percentiles (taken from the MS) so the panels are comparable.
"""

from __future__ import annotations

import logging
import math
import os
import platform
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import __version__
from .files import write_atomic, write_json_atomic
from .grid import Window
from .store import SceneStore

log = logging.getLogger(__name__)

GAP_PX = 8


def environment() -> dict[str, Any]:
    """Machine and package facts recorded in every report."""
    import dask
    import distributed
    import torch
    import zarr

    return {
        "pantailor": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "dask": str(getattr(dask, "__version__", "?")),
        "distributed": str(getattr(distributed, "__version__", "?")),
        "zarr": zarr.__version__,
        "cuda": torch.cuda.is_available(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_report(path: str | Path, summary: Mapping[str, Any]) -> Path:
    """Write the per-scene ``report.json`` (the run summary plus the environment)."""
    return write_json_atomic(path, {**summary, "environment": environment()})


def _decimated(store: SceneStore, name: str, bands: list[int], step: int) -> NDArray[np.float64]:
    """``(3, ceil(H/step), ceil(W/step))`` of ``bands`` of ``name`` in DN, one tile row at a time."""
    from .export import MS_UP, ms_up_window

    meta = store.meta
    h, w = meta.pan_shape_yx
    rows = []
    for y0 in range(0, h, meta.tile):
        win = Window(y0, min(y0 + meta.tile, h), 0, w)
        if name == MS_UP:
            block = ms_up_window(store, win)[bands].astype(np.float64)
        else:
            block = store.read_output(name, win)[bands].astype(np.float64) * meta.dn_max
        first = (-y0) % step
        rows.append(block[:, first::step, ::step])
    return np.concatenate(rows, axis=1)


def _stretch(img: NDArray[np.float64], lo: NDArray[np.float64], hi: NDArray[np.float64]) -> Any:
    x = (img - lo[:, None, None]) / np.maximum(hi - lo, 1e-9)[:, None, None]
    x = np.nan_to_num(np.clip(x, 0.0, 1.0), nan=0.0)
    return (np.moveaxis(x, 0, -1) * 255.0 + 0.5).astype(np.uint8)


def quicklook(store: SceneStore, output: str, path: str | Path, *, max_px: int = 1024) -> Path:
    """Write a PNG: RGB of the MS (left) beside the fused ``output`` (right).

    Parameters
    ----------
    store
        The scene store holding ``output``.
    output
        Output array name (normalised units).
    path
        Target ``.png``.
    max_px
        Longest edge of each panel in pixels (the scene is decimated to fit).
    """
    from PIL import Image

    meta = store.meta
    spec = meta.spec
    bands = [b for b in spec.rgb if b < meta.n_bands] if meta.n_bands >= 3 else [0, 0, 0]
    step = max(1, math.ceil(max(meta.pan_shape_yx) / max_px))
    ms = _decimated(store, "ms_up", bands, step)
    fused = _decimated(store, output, bands, step)
    flat = ms.reshape(3, -1)
    lo, hi = np.nanpercentile(flat, 2, axis=1), np.nanpercentile(flat, 98, axis=1)
    left, right = _stretch(ms, lo, hi), _stretch(fused, lo, hi)
    h, w = left.shape[:2]
    canvas = np.full((h, 2 * w + GAP_PX, 3), 255, dtype=np.uint8)
    canvas[:, :w] = left
    canvas[:, w + GAP_PX :] = right
    target = write_atomic(path, lambda tmp: Image.fromarray(canvas).save(tmp, format="PNG"))
    log.info("quicklook %s (%dx%d, 1:%d)", target, canvas.shape[1], canvas.shape[0], step)
    return target


def summary_table(reports: list[Mapping[str, Any]]) -> str:
    """A markdown table of several scenes' reports (scene, method, adapt, seconds, HQNR)."""
    lines = [
        "| scene | method | adapt | total s | infer s | HQNR none | HQNR product |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        t = r.get("timings", {})
        m = r.get("metrics", {})
        lines.append(
            f"| {r.get('scene', '')} | {r.get('method', '')} | {r.get('adapt', '')} | "
            f"{t.get('total', float('nan')):.1f} | {t.get('infer', float('nan')):.1f} | "
            f"{m.get('baseline', {}).get('hqnr', float('nan')):.4f} | "
            f"{m.get('product', {}).get('hqnr', float('nan')):.4f} |"
        )
    return "\n".join(lines)


__all__ = ["environment", "quicklook", "summary_table", "write_json_atomic", "write_report"]
