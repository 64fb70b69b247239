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
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.backbones import checksum, save_backbone
from pipeline.errors import ConfigError
from pipeline.grid import TileKey
from pipeline.store import SceneStore

from .kernel import forward_window, read_window
from .plugin import ModelSpec, current_cache, file_sha256

#: Fits run in this process (diagnostics: the tailor is fitted once per scene, not per tile).
FIT_CALLS: list[str] = []


def fit_calls() -> int:
    """How many fits ran in this process (run it on workers with ``client.run``)."""
    return len(FIT_CALLS)


@dataclass(frozen=True, kw_only=True)
class FitJob:
    """The per-scene fit, by reference.

    Attributes
    ----------
    store
        Scene store path.
    model
        The pretrained backbone (``adapter="none"``).
    adapt
        ``tailor`` or ``finetune``.
    out
        File the fitted state is saved to.
    sample
        :class:`pipeline.sampling.SampleConfig` fields.
    fit
        :class:`pipeline.fit.FitConfig` fields.
    seed
        Seed of the sampling and the fit.
    """

    store: str
    model: ModelSpec
    adapt: str
    out: str
    sample: Mapping[str, Any] = field(default_factory=dict)
    fit: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class FitOutcome:
    """What the fit reports back.

    Attributes
    ----------
    path, sha256
        The saved file and its digest.
    n_patches
        Patches fitted on.
    steps
        Optimiser steps taken.
    seconds
        ``{"sample", "fit", "save"}`` wall times.
    losses
        Final loss terms by name.
    step_budget, stop_rule
        Steps allowed, and why the fit stopped (``"budget"`` or the plateau rule).
    """

    path: str
    sha256: str
    n_patches: int
    steps: int
    seconds: dict[str, float]
    losses: dict[str, float]
    step_budget: int = 0
    stop_rule: str = ""


def fit_config(adapt: str, fields: Mapping[str, Any]) -> Any:
    """A :class:`pipeline.fit.FitConfig` from plain fields (``weights`` may be a mapping)."""
    from pipeline.fit import FitConfig
    from pipeline.losses import LossWeights

    kw = dict(fields)
    if isinstance(kw.get("weights"), Mapping):
        kw["weights"] = LossWeights(**kw["weights"])
    return FitConfig(**{**kw, "adapt": adapt})


def _run_fit(job: FitJob, patches: Any, backbone: Any, device: Any) -> tuple[Any, Any]:
    """Fit; returns ``(FitResult, fine-tuned module or None for a tailor)``."""
    from pipeline.fit import fit_finetune, fit_tailor
    from pipeline.sensors import get_sensor

    cfg = fit_config(job.adapt, job.fit)
    sensor = get_sensor(job.model.sensor)
    if job.adapt == "tailor":
        return fit_tailor(patches, backbone, sensor, cfg, device), None
    result = fit_finetune(patches, backbone, sensor, cfg, device)
    return result, result.model(backbone)


def _save_atomic(job: FitJob, result: Any, module: Any, backbone: Any) -> None:
    from pipeline.tailor import save_tailor

    out = Path(job.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    meta: dict[str, str | int | float] = {
        "store": job.store,
        "seed": job.seed,
        "steps": int(result.steps),
    }
    if module is None:
        save_tailor(tmp, result.tailor_state, checksum(backbone), meta)
    else:
        save_backbone(copy.deepcopy(module).cpu().eval(), tmp, meta)
    os.replace(tmp, out)


def fit_adapter(job: FitJob) -> FitOutcome:
    """Sample patches, fit the adapter once for the scene and save it (runs on one worker)."""
    from pipeline.sampling import SampleConfig, sample_patches

    if job.adapt not in ("tailor", "finetune"):
        raise ConfigError(
            "Unknown adaptation to fit.", expected="tailor or finetune", got=job.adapt
        )
    t0 = time.perf_counter()
    FIT_CALLS.append(job.store)
    store = SceneStore.open(job.store)
    patches = sample_patches(store, SampleConfig(**dict(job.sample)), job.seed)
    loaded = current_cache().get(job.model.base())
    patches = patches.to(loaded.device)
    t1 = time.perf_counter()
    result, module = _run_fit(job, patches, loaded.backbone, loaded.device)
    t2 = time.perf_counter()
    _save_atomic(job, result, module, loaded.backbone)
    t3 = time.perf_counter()
    return FitOutcome(
        path=str(job.out),
        sha256=file_sha256(job.out),
        n_patches=len(patches),
        steps=int(result.steps),
        seconds={"sample": t1 - t0, "fit": t2 - t1, "save": t3 - t2},
        losses={str(k): float(v) for k, v in result.losses.items()},
        step_budget=int(result.step_budget),
        stop_rule=str(result.stop_rule),
    )


@dataclass(frozen=True, kw_only=True)
class QualityJob:
    """Score one tile of the product against the pretrained backbone's output.

    Attributes
    ----------
    store
        Scene store path.
    output
        The product's output array (normalised units).
    key
        The tile.
    baseline
        The model whose output the product is compared with (``None``: product only).
    """

    store: str
    output: str
    key: TileKey
    baseline: ModelSpec | None = None


def _scores(store: SceneStore, fused_dn: Any, read: Any, pan: Any) -> dict[str, float]:
    from pipeline.quality import full_resolution, reduced_resolution

    ms_own = store.read_ms(store.grid.ms_window(read.key))
    pan_own = pan[read.crop.slices]
    out = full_resolution(fused_dn, ms_own, pan_own, store.sensor)
    if store.meta.has_gt:
        gt = store.read_gt(read.out)
        out.update(reduced_resolution(fused_dn, gt, store.sensor))
    return out


def tile_quality(job: QualityJob) -> dict[str, Any]:
    """Quality indices of the product (and of the baseline) on one tile, with the pixel count."""
    store = SceneStore.open(job.store)
    meta = store.meta
    own = store.grid.pan_window(job.key)
    product = store.read_output(job.output, own).astype(np.float64) * meta.dn_max
    halo = current_cache().get(job.baseline).halo_ms if job.baseline else 0
    read = store.grid.read(job.key, halo)
    ms, pan = read_window(store, read)
    result: dict[str, Any] = {
        "pixels": int(own.shape_yx[0] * own.shape_yx[1]),
        "product": _scores(store, product, read, pan),
    }
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
            ).astype(np.float64)
            * meta.dn_max
        )
        result["baseline"] = _scores(store, base, read, pan)
    return result


@dataclass(frozen=True, kw_only=True)
class ClassicalFitJob:
    """The per-scene fit of a classical method's global coefficients, by reference.

    Attributes
    ----------
    store
        Scene store path.
    method
        A key of :data:`pipeline.classical.METHODS`.
    out
        JSON file the coefficients are saved to (in the work dir, beside the adapter).
    """

    store: str
    method: str
    out: str


@dataclass(frozen=True, kw_only=True)
class ClassicalFitOutcome:
    """What the classical fit reports back: the saved file, its digest, wall time, the values."""

    path: str
    sha256: str
    seconds: float
    coefficients: dict[str, Any]


def fit_classical(job: ClassicalFitJob) -> ClassicalFitOutcome:
    """Fit ``job.method``'s global coefficients on the whole scene, streaming over its tiles.

    Runs on one worker; memory is bounded by one tile plus halo
    (:func:`pipeline.classical.fit_coefficients_tiled`). The file is written atomically.
    """
    from pipeline.classical import fit_coefficients_tiled, save_coefficients

    t0 = time.perf_counter()
    FIT_CALLS.append(job.store)
    store = SceneStore.open(job.store)
    coeffs = fit_coefficients_tiled(
        job.method, store.grid, lambda tr: read_window(store, tr), store.sensor
    )
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
    "tile_quality",
]
