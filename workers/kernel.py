"""The tile task: read a tile plus halo from the store, one forward, crop, write its own chunk.

:func:`infer_tile` is what every inference task runs on a worker. It receives a
:class:`pipeline.jobs.TileTask` (store path, output name, tile key, model spec: keys and paths,
never arrays or models), reads the tile's PAN/MS windows plus the halo the model needs (clipped
at the scene edges, where the network pads exactly as on the whole image), normalises by ``dn_max``, upsamples
MS to LMS, runs one forward under ``torch.inference_mode`` (channels_last on CPU, optional AMP
on GPU), crops to the tile and writes exactly the tile's output chunk. It returns a small
:class:`pipeline.jobs.TileResult` (timings, peak memory, a digest of what it wrote) for the
driver's journal.

:func:`classical_tile` is the same task for a classical method: the scene's global coefficients
(fitted once, :func:`workers.scene_tasks.fit_classical`) are applied to the tile plus the halo
they name, then cropped, masked and written exactly the same way.

Fault injection (tests only): when ``PANTAILOR_FAULT_TILE`` names a tile (``"row-col"``) and the
file ``PANTAILOR_FAULT_MARKER`` does not exist yet, the task creates the marker, writes garbage
into the top half of its chunk and kills its worker process with ``os._exit`` - once.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from pipeline.errors import StoreError
from pipeline.files import file_sha256
from pipeline.grid import TileRead, Window
from pipeline.infer import Radiometry, Run, infer_window, model_run
from pipeline.jobs import ClassicalTileTask, TileResult, TileTask
from pipeline.store import SceneStore

from .device import inference, memory_format
from .plugin import LoadedModel, current_cache

FAULT_TILE_ENV = "PANTAILOR_FAULT_TILE"
FAULT_MARKER_ENV = "PANTAILOR_FAULT_MARKER"


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux); whether it worked."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int:
    """Peak RSS of this process in bytes (since the last reset on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil  # type: ignore[import-untyped]

    return int(psutil.Process().memory_info().rss)


def forward_window(
    loaded: LoadedModel,
    ms_dn: NDArray[Any],
    pan_dn: NDArray[Any],
    *,
    dn_max: float,
    ratio: int,
    amp: bool = False,
    nodata: float | None = None,
    clip: bool = True,
    crop: Window | None = None,
    band_gains: Sequence[float] | None = None,
) -> NDArray[np.float32]:
    """Run the model on one window: ms ``(B, h, w)`` DN, pan ``(r*h, r*w)`` DN -> ``(B, r*h, r*w)``.

    :func:`pipeline.infer.infer_window` on this worker's device: normalised ``DN / dn_max`` in
    and out (float32), invalid inputs (non-finite or ``nodata``) filled before the forward and NaN
    in the output (filled with the scene's ``band_gains``, ``meta.radiometry``), valid outputs
    clipped to ``[0, 1]`` unless ``clip=False``, cropped to ``crop``.
    The same function serves whole images and tiles; tiles are whole images of their window plus
    halo.
    """
    dev = loaded.device
    run = model_run(
        loaded.module,
        loaded.backbone.upsampler,
        ratio,
        device=dev,
        memory_format=memory_format(dev),
        context=lambda: inference(dev, amp),
    )
    gains = None if band_gains is None else tuple(float(g) for g in band_gains)
    rad = Radiometry(dn_max=dn_max, ratio=ratio, nodata=nodata, clip=clip, band_gains=gains)
    return infer_window(run, ms_dn, pan_dn, rad, crop=crop)


def read_window(store: SceneStore, read: TileRead) -> tuple[NDArray[Any], NDArray[Any]]:
    """The tile's MS ``(B, h', w')`` and PAN ``(H', W')`` windows with halo, source DN."""
    return store.read_ms(read.ms), store.read_pan(read.pan)


def _maybe_fail(store: SceneStore, task: TileTask | ClassicalTileTask, out: Window) -> None:
    """Test-only fault injection (see the module docstring)."""
    target, marker = os.environ.get(FAULT_TILE_ENV), os.environ.get(FAULT_MARKER_ENV)
    if not target or not marker or str(task.key) != target or Path(marker).exists():
        return
    Path(marker).write_text(str(os.getpid()))
    half = Window(out.y0, out.y0 + max(1, (out.y1 - out.y0) // 2), out.x0, out.x1)
    store.write_region(task.output, half, np.zeros((store.meta.n_bands, *half.shape_yx)))
    os._exit(17)


def infer_tile(task: TileTask) -> TileResult:
    """Compute one output tile and write it into the store (runs on a worker).

    Parameters
    ----------
    task
        Store path, output name, tile key and model spec.

    Returns
    -------
    TileResult
        Digest of the written data, timings and the task's peak memory.
    """
    _reset_peak_rss()
    t0 = time.perf_counter()
    store = SceneStore.open(task.store)
    meta = store.meta
    loaded = current_cache().get(task.model)
    read = store.grid.read(task.key, loaded.halo_ms)
    ms_dn, pan_dn = read_window(store, read)
    t1 = time.perf_counter()
    tile = forward_window(
        loaded,
        ms_dn,
        pan_dn,
        dn_max=meta.dn_max,
        ratio=meta.ratio,
        amp=task.amp,
        nodata=meta.nodata,
        clip=task.clip,
        crop=read.crop,
        band_gains=meta.radiometry.get("band_gains"),
    )
    return _write_tile(store, task, read, tile, t0, t1)


def _write_tile(
    store: SceneStore,
    task: TileTask | ClassicalTileTask,
    read: TileRead,
    tile: NDArray[np.float32],
    t0: float,
    t1: float,
) -> TileResult:
    """Write the tile's (cropped, masked) output; the task's report."""
    t2 = time.perf_counter()
    _maybe_fail(store, task, read.out)
    store.write_region(task.output, read.out, tile)
    t3 = time.perf_counter()
    return TileResult(
        key=task.key,
        sha256=hashlib.sha256(tile.tobytes()).hexdigest(),
        seconds={"read": t1 - t0, "forward": t2 - t1, "write": t3 - t2},
        peak_rss=_peak_rss(),
        pid=os.getpid(),
    )


_COEFFS: dict[tuple[str, str], dict[str, Any]] = {}


def _coefficients(path: str, sha256: str) -> dict[str, Any]:
    """The coefficients file, checked against its digest once per worker process."""
    from pipeline.classical import load_coefficients

    if (path, sha256) not in _COEFFS:
        got = file_sha256(path)
        if got != sha256:
            raise StoreError(
                "The classical coefficients file changed since the fit.",
                path=path,
                expected=sha256,
                got=got,
                fix="rerun the scene (the fit stage is redone).",
            )
        _COEFFS[(path, sha256)] = load_coefficients(path)
    return _COEFFS[(path, sha256)]


def classical_tile(task: ClassicalTileTask) -> TileResult:
    """Apply a classical method's global coefficients to one tile plus halo; write the tile.

    The halo is the one the coefficients name (upsampler support plus MTF reach); the window's
    output is cropped exactly like :func:`infer_tile`'s, and values are normalised by ``dn_max``.
    """
    _reset_peak_rss()
    t0 = time.perf_counter()
    store = SceneStore.open(task.store)
    meta = store.meta
    coeffs = _coefficients(task.coefficients, task.sha256)
    read = store.grid.read(task.key, int(coeffs["halo_ms"]))
    ms_dn, pan_dn = read_window(store, read)
    t1 = time.perf_counter()
    rad = Radiometry.of(meta, clip=task.clip)
    run = classical_run(task.method, coeffs, store.sensor, meta.dn_max)
    tile = infer_window(run, ms_dn, pan_dn, rad, crop=read.crop)
    return _write_tile(store, task, read, tile, t0, t1)


def classical_run(method: str, coeffs: dict[str, Any], sensor: Any, dn_max: float) -> Run:
    """A :data:`pipeline.infer.Run` applying a classical method's coefficients (DN in, DN out)."""
    from pipeline.classical import apply_coefficients

    scale = np.float32(dn_max)

    def run(ms: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        fused = apply_coefficients(
            method, ms[0].numpy() * scale, pan[0, 0].numpy() * scale, coeffs, sensor
        )
        return torch.from_numpy(np.asarray(fused, dtype=np.float32) / scale)[None]

    return run


__all__ = [
    "FAULT_MARKER_ENV",
    "FAULT_TILE_ENV",
    "ClassicalTileTask",
    "TileResult",
    "TileTask",
    "classical_tile",
    "forward_window",
    "infer_tile",
    "read_window",
]
