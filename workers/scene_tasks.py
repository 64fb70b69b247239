"""Once-per-scene worker tasks: fit the adapter on sampled patches; score a sample of tiles.

:func:`fit_adapter` runs on one worker: it samples fit patches from the store
(:func:`pipeline.sampling.sample_patches`), fits the tailor (or fine-tunes the whole backbone)
with :mod:`pipeline.fit` on the worker's device, and saves the result to a file written
atomically; the driver references it by path and SHA-256 in every tile task afterwards.

:func:`tile_quality` scores one tile of the written product against the pretrained backbone's
output on the same tile (no-reference indices, and reference indices where the store has ``gt``).

:func:`fit_classical` is the classical methods' fit: their global coefficients, computed once per
scene on one worker and saved as JSON; :func:`workers.kernel.classical_tile` applies them per tile.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pipeline.backbones import checksum, save_backbone
from pipeline.files import file_sha256, write_atomic
from pipeline.grid import TileRead, Window
from pipeline.jobs import (
    ClassicalFitJob,
    ClassicalFitOutcome,
    FitJob,
    FitOutcome,
    GroupFitJob,
    QualityJob,
    QualityResult,
    fit_config,
)
from pipeline.methods import fitted_mode
from pipeline.sampling import PatchBatch
from pipeline.store import SceneStore

from .kernel import forward_window, read_window
from .plugin import current_cache

#: Fits run in this process (diagnostics: the tailor is fitted once per scene, not per tile).
FIT_CALLS: list[str] = []


def fit_calls() -> int:
    """How many fits ran in this process (run it on workers with ``client.run``)."""
    return len(FIT_CALLS)


def _run_fit(job: FitJob, cfg: Any, patches: Any, backbone: Any, device: Any) -> tuple[Any, Any]:
    """Fit with ``cfg`` (``fit_config(job.adapt, job.fit)``); returns ``(FitResult, fine-tuned
    module or None for a tailor)``."""
    from pipeline.fit import fit_finetune, fit_tailor
    from pipeline.sensors import get_sensor

    sensor = get_sensor(job.model.sensor)
    if fitted_mode(job.adapt).artefact == "tailor":
        return fit_tailor(patches, backbone, sensor, cfg, device), None
    result = fit_finetune(patches, backbone, sensor, cfg, device)
    return result, result.model(backbone)


def _save_atomic(job: FitJob, result: Any, module: Any, backbone: Any) -> None:
    """Save the fitted tailor state, or the fine-tuned copy ``module``, to ``job.out``."""
    from pipeline.tailor import save_tailor

    meta: dict[str, str | int | float] = {
        "store": job.store,
        "seed": job.seed,
        "steps": int(result.steps),
    }

    def write(tmp: Path) -> None:
        if module is None:
            save_tailor(tmp, result.tailor_state, checksum(backbone), meta)
        else:
            save_backbone(copy.deepcopy(module).cpu().eval(), tmp, meta)

    write_atomic(job.out, write, kind="partial")


def fit_group(job: GroupFitJob) -> FitOutcome:
    """A batch group's one fit (``batch --tailor-scope group``): patches sampled across its
    stores, then :func:`fit_adapter`."""
    from pipeline.batch.groups import sample_group

    return fit_adapter(job.fit, sample_group(job.stores, job.fit.sample, job.fit.seed))


def fit_adapter(job: FitJob, patches: PatchBatch | None = None) -> FitOutcome:
    """Sample patches (unless given: a batch group's, sampled across its scenes), fit the adapter
    once and save it (runs on one worker)."""
    import torch

    from pipeline.sampling import SampleConfig, sample_patches

    fitted_mode(job.adapt)  # a mode that fits, else ConfigError
    t0 = time.perf_counter()
    FIT_CALLS.append(job.store)
    if patches is None:
        store = SceneStore.open(job.store)
        patches = sample_patches(store, SampleConfig(**dict(job.sample)), job.seed)
    loaded = current_cache().get(job.model.base())
    patches = patches.to(loaded.device)
    t1 = time.perf_counter()
    cfg = fit_config(job.adapt, job.fit)
    result, module = _run_fit(job, cfg, patches, loaded.backbone, loaded.device)
    t2 = time.perf_counter()
    _save_atomic(job, result, module, loaded.backbone)
    t3 = time.perf_counter()
    return FitOutcome(
        path=str(job.out),
        sha256=file_sha256(job.out),
        n_patches=len(patches) - int(result.holdout.get("patches", 0)),
        steps=int(result.steps),
        seconds={"sample": t1 - t0, "fit": t2 - t1, "save": t3 - t2},
        losses={str(k): float(v) for k, v in result.losses.items()},
        step_budget=int(result.step_budget),
        stop_rule=str(result.stop_rule),
        kept_step=int(result.kept_step),
        fallback=str(result.fallback),
        holdout_hqnr={
            k: float(result.holdout[k]) for k in ("initial", "kept") if k in result.holdout
        },
        threads=torch.get_num_threads(),
        augment=cfg.augment if module is None else "none",  # a fine-tune ignores it
    )


def _scores(store: SceneStore, fused_dn: Any, read: Any, pan: Any) -> dict[str, float]:
    from pipeline.quality import full_resolution, reduced_resolution

    ms_own = store.read_ms(store.grid.ms_window(read.key))
    pan_own = pan[read.crop.slices]
    out = full_resolution(fused_dn, ms_own, pan_own, store.sensor)
    if store.meta.has_gt:
        gt = store.read_gt(read.out)
        out.update(reduced_resolution(fused_dn, gt, store.sensor))
    return out


def tile_quality(job: QualityJob) -> QualityResult:
    """Quality indices of the product (and of the baseline) on one tile, with the pixel count."""
    store = SceneStore.open(job.store)
    meta = store.meta
    own = store.grid.pan_window(job.key)
    product = store.read_output(job.output, own).astype(np.float64) * meta.dn_max
    halo = current_cache().get(job.baseline).halo_ms if job.baseline else 0
    read = store.grid.read(job.key, halo)
    ms, pan = read_window(store, read)
    baseline = None
    if job.baseline is not None:
        loaded = current_cache().get(job.baseline)
        base = (
            forward_window(
                loaded,
                ms,
                pan,
                dn_max=meta.dn_max,
                ratio=meta.ratio,
                nodata=meta.nodata,
                crop=read.crop,
                band_gains=meta.radiometry.get("band_gains"),
            ).astype(np.float64)
            * meta.dn_max
        )
        baseline = _scores(store, base, read, pan)
    return QualityResult(
        key=job.key,
        pixels=int(own.shape_yx[0] * own.shape_yx[1]),
        product=_scores(store, product, read, pan),
        baseline=baseline,
    )


class _ChunkRows:
    """Tile windows (with halo) cut from whole rows of chunks, each row read and decoded once.

    A window with a halo touches the chunks around its tile: read one by one, a pass over the
    tiles in raster order decodes every chunk about four times. Here the rows a window needs are
    read whole (full width) and kept until the pass moves below them: memory is a few rows of
    chunks of the scene, the pixels are the same.
    """

    def __init__(self, store: SceneStore) -> None:
        self.store = store
        self.rows: dict[int, tuple[NDArray[Any], NDArray[Any]]] = {}
        self.tile_ms = store.meta.tile // store.meta.ratio
        self.ms_h, self.ms_w = store.grid.ms_shape_yx

    def _row(self, i: int) -> tuple[NDArray[Any], NDArray[Any]]:
        if i not in self.rows:
            r, t = self.store.meta.ratio, self.tile_ms
            ms = Window(i * t, min((i + 1) * t, self.ms_h), 0, self.ms_w)
            self.rows[i] = (self.store.read_ms(ms), self.store.read_pan(ms.scaled(r)))
        return self.rows[i]

    def __call__(self, tr: TileRead) -> tuple[NDArray[Any], NDArray[Any]]:
        r, t, w = self.store.meta.ratio, self.tile_ms, tr.ms
        first, last = w.y0 // t, (w.y1 - 1) // t
        for old in [k for k in self.rows if k < first]:
            del self.rows[old]
        ms, pan = [], []
        for i in range(first, last + 1):
            m, p = self._row(i)
            y0, y1 = max(w.y0 - i * t, 0), min(w.y1 - i * t, m.shape[1])
            ms.append(m[:, y0:y1, w.x0 : w.x1])
            pan.append(p[r * y0 : r * y1, r * w.x0 : r * w.x1])
        return np.concatenate(ms, axis=1), np.concatenate(pan, axis=0)


def fit_classical(job: ClassicalFitJob) -> ClassicalFitOutcome:
    """Fit ``job.method``'s global coefficients on the whole scene, streaming over its tiles.

    Runs on one worker; memory is bounded by a few rows of chunks (:class:`_ChunkRows`) plus one
    tile with halo (:func:`pipeline.classical.fit_coefficients_tiled`). The file is written
    atomically.
    """
    from pipeline.classical import fit_coefficients_tiled, save_coefficients

    t0 = time.perf_counter()
    FIT_CALLS.append(job.store)
    store = SceneStore.open(job.store)
    coeffs = fit_coefficients_tiled(job.method, store.grid, _ChunkRows(store), store.sensor)
    save_coefficients(coeffs, job.out)
    return ClassicalFitOutcome(
        path=str(job.out),
        sha256=file_sha256(job.out),
        seconds=time.perf_counter() - t0,
        coefficients=coeffs,
    )


__all__ = [
    "FIT_CALLS",
    "ClassicalFitJob",
    "ClassicalFitOutcome",
    "FitJob",
    "FitOutcome",
    "QualityJob",
    "fit_adapter",
    "fit_calls",
    "fit_classical",
    "fit_group",
    "tile_quality",
]
