"""Pansharpen one in-memory scene: sample, adapt, infer — the fast path for small scenes.

The distributed engine (:mod:`pipeline.runner`) is for scenes that do not fit in memory; this is
for those that do (notebooks, a few thousand pixels square, tests). With ``adapt="tailor"`` the
work is arranged around one fact: the tailor sits *after* the frozen extractor, so the extractor's
pass over the whole scene does not depend on the fit. :func:`fuse` therefore runs that pass in a
second thread **while** the tailor is being fitted (each with one torch thread, on their own
core), then applies only the tailor and the mapper (about a tenth of the network's work for
FusionNet) to the cached features. On the 2-core CPU this hides the extractor behind the fit:
``benchmarks/results/fit_speed.md`` has the figures.

The overlap keeps the whole scene's features in memory (``feat_channels`` float32 per PAN pixel,
128 B for FusionNet: 34 MB at 512 x 512); above ``max_feature_bytes`` it falls back to the
sequential fit then forward.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from .backbones import Backbone, upsample
from .errors import InputError
from .fit import FitConfig, FitResult, adapt, fit_tailor
from .infer import Radiometry, finish, prepare, to_dn_float
from .ingest.radiometry import band_gains, scene_levels
from .sampling import SampleConfig, sample_patches
from .sensors import SensorSpec
from .tailor import FeatureTailor

MAX_FEATURE_BYTES = 1 << 30
CL = torch.channels_last  # faster oneDNN convolutions on CPU (benchmarks/results/backbones.md)


def _cl(*ts: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(t.contiguous(memory_format=CL) for t in ts)


def _cl_copy(model: Any) -> Backbone:
    """A channels_last copy of ``model`` on CPU (the caller's model is left as it is)."""
    out: Backbone = copy.deepcopy(model).to("cpu", memory_format=CL)
    return out


@dataclass(frozen=True)
class Fused:
    """The result of :func:`fuse`.

    Attributes
    ----------
    image
        ``(B, H, W)`` float32 fused image in DN (no-data pixels set to ``nodata``, or NaN).
    fit
        What the adaptation did (steps, losses, seconds).
    seconds
        Wall times: ``sample``, ``fit``, ``infer`` (after the fit: what it did not overlap),
        ``total``.
    overlapped
        Whether the extractor ran concurrently with the fit.
    """

    image: NDArray[np.float32]
    fit: FitResult
    seconds: dict[str, float] = field(default_factory=dict)
    overlapped: bool = False


def _check(pan: NDArray[Any], ms: NDArray[Any], sensor: SensorSpec, backbone: Backbone) -> None:
    if pan.ndim != 2 or ms.ndim != 3:
        raise InputError(
            "fuse() takes PAN as (H, W) and MS as (B, h, w).",
            expected="pan.ndim == 2, ms.ndim == 3",
            got=f"pan {pan.shape}, ms {ms.shape}",
        )
    r = sensor.ratio
    if pan.shape != (ms.shape[1] * r, ms.shape[2] * r):
        raise InputError(
            "PAN and MS sizes do not match the sensor's ratio.",
            expected=f"PAN = {r} x MS = {(ms.shape[1] * r, ms.shape[2] * r)}",
            got=f"PAN {pan.shape}, MS {ms.shape[1:]}",
            fix="crop PAN to ratio x the MS size, or check --sensor.",
        )
    if ms.shape[0] != backbone.n_bands:
        raise InputError(
            "The MS band count does not match the network.",
            expected=f"{backbone.n_bands} bands",
            got=f"{ms.shape[0]} bands",
            fix="pick weights trained for this band count (--weights).",
        )


def fuse(
    pan: NDArray[Any],
    ms: NDArray[Any],
    sensor: SensorSpec,
    backbone: Backbone,
    *,
    fit: FitConfig | None = None,
    sample: SampleConfig | None = None,
    seed: int = 0,
    dn_max: float | None = None,
    nodata: float | None = None,
    overlap: bool = True,
    max_feature_bytes: int = MAX_FEATURE_BYTES,
    clip: bool = True,
) -> Fused:
    """Adapt ``backbone`` to the scene (``fit.adapt``) and pansharpen it, in memory, on CPU.

    Parameters
    ----------
    pan, ms
        ``(H, W)`` PAN and ``(B, H/r, W/r)`` MS in DN.
    sensor
        The scene's sensor (ratio, MTF gains, bit depth).
    backbone
        The pretrained network (frozen; not modified).
    fit, sample
        Adaptation and patch sampling configuration (defaults: the measured defaults).
    seed
        Seed of the sampling and of the tailor's initialisation.
    dn_max
        Normalisation (default: the sensor's ``dn_max``).
    nodata
        No-data DN of the inputs. Invalid pixels (``nodata`` or non-finite, in the PAN or in any
        band of their MS pixel) are excluded from the fit, filled before the forward and set to
        ``nodata`` in the output (NaN when ``nodata`` is ``None``): :mod:`pipeline.infer`.
    overlap
        Run the extractor over the scene concurrently with the tailor fit (``adapt="tailor"``).
    max_feature_bytes
        Largest feature tensor the overlap may hold; bigger scenes run sequentially.
    clip
        Clip valid outputs to ``[0, dn_max]`` (the default; ``False`` keeps overshoots).

    Returns
    -------
    Fused
        The fused image in DN, the fit result and the timings.
    """
    fit = dataclasses.replace(fit or FitConfig(), seed=seed)
    pan, ms = np.asarray(pan), np.asarray(ms)
    _check(pan, ms, sensor, backbone)
    rad = _radiometry(pan, ms, sensor, dn_max, nodata, clip)
    t0 = time.perf_counter()
    sample = sample or SampleConfig()
    patches = sample_patches(
        (pan, ms), sample, seed, ratio=sensor.ratio, dn_max=rad.dn_max, nodata=nodata
    )
    t_sample = time.perf_counter() - t0
    prep = prepare(ms, pan, rad)  # normalised, invalid pixels filled (pipeline.infer)
    backbone = backbone.to("cpu").eval().requires_grad_(False)
    lms_t = upsample(prep.ms, sensor.ratio, backbone.upsampler)
    overlapped = overlap and _overlappable(fit, backbone, prep.pan, max_feature_bytes)
    t1 = time.perf_counter()
    job = _Job(backbone, patches, sensor, fit, _cl(prep.ms, lms_t, prep.pan))
    result, out, t_after = _fit_overlapped(job) if overlapped else _fit_then_infer(job)
    image = to_dn_float(finish(out[0].contiguous().numpy(), prep.bad, rad), rad, nodata)
    total = time.perf_counter() - t0
    seconds = {"sample": t_sample, "fit": total - (t1 - t0) - t_after, "infer": t_after}
    return Fused(image, result, {**seconds, "total": total}, overlapped)


def _radiometry(
    pan: NDArray[Any],
    ms: NDArray[Any],
    sensor: SensorSpec,
    dn_max: float | None,
    nodata: float | None,
    clip: bool,
) -> Radiometry:
    """Scale (``dn_max`` or the sensor's), no-data, clipping and the scene's band gains."""
    dn = float(dn_max if dn_max is not None else sensor.dn_max)
    gains = band_gains(*scene_levels(pan, ms, dn, nodata))
    return Radiometry(
        dn_max=dn,
        ratio=sensor.ratio,
        nodata=nodata,
        clip=clip,
        band_gains=None if gains is None else tuple(gains),
    )


def _overlappable(
    fit: FitConfig, backbone: Backbone, pan_t: torch.Tensor, max_feature_bytes: int
) -> bool:
    """Whether the extractor can run during the fit: a tailor fit, and the scene's features
    (``feat_channels`` float32 per PAN pixel) fit in ``max_feature_bytes``."""
    feat_bytes = 4 * backbone.feat_channels * pan_t.shape[-2] * pan_t.shape[-1]
    return fit.adapt == "tailor" and feat_bytes <= max_feature_bytes


@dataclass(frozen=True)
class _Job:
    """What both fit paths take: the frozen backbone, the sampled patches, the sensor, the fit
    settings and the scene's normalised ``(ms, lms, pan)`` tensors, channels_last."""

    backbone: Backbone
    patches: Any
    sensor: SensorSpec
    fit: FitConfig
    scene: tuple[torch.Tensor, ...]  # (ms, lms, pan)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Torch's intra-op pool at one thread for the block, restored after it.

    Every fit here runs with one thread, overlapped or not: a fit's result depends on its thread
    count (``benchmarks/fit_threads.py``), and one is what the overlapped path can give it and
    what a default worker (2 workers x 1 thread) fits with, so ``fuse`` fits the same tailor
    either way and as ``pantailor run`` does on the same patches.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _fit_then_infer(job: _Job) -> tuple[FitResult, torch.Tensor, float]:
    """The sequential path: adapt, then one whole-scene forward (same returns as below)."""
    with _one_thread():
        model, result = adapt(job.patches, job.backbone, job.sensor, job.fit)
    t_fit_end = time.perf_counter()
    model = _cl_copy(model)
    with torch.inference_mode():
        out = model(*job.scene)
    return result, out, time.perf_counter() - t_fit_end


def _fit_overlapped(job: _Job) -> tuple[FitResult, torch.Tensor, float]:
    """Fit in this thread while another runs the extractor; then the tailored head.

    Returns the fit result, the output ``(1, B, H, W)`` and the seconds spent after the fit.
    """
    extractor = _cl_copy(job.backbone)
    box: dict[str, Any] = {}

    def extract() -> None:
        try:
            with torch.inference_mode():
                box["feats"] = extractor.extract(*job.scene)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=extract, name="pantailor-extract", daemon=True)
    with _one_thread():  # one core each: the fit here, the extractor there
        worker.start()
        result = fit_tailor(job.patches, job.backbone, job.sensor, job.fit, "cpu")
        t_end = time.perf_counter()
        worker.join()
    if "error" in box:
        raise box["error"]
    assert result.tailor_state is not None
    tailor = FeatureTailor.from_state(result.tailor_state).eval().requires_grad_(False)
    with torch.inference_mode():
        feats = box.pop("feats")
        out = extractor.map(feats + tailor.delta(feats), *job.scene)
    return result, out, time.perf_counter() - t_end


__all__ = ["MAX_FEATURE_BYTES", "Fused", "fuse"]
