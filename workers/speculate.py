"""Speculative tiles: the frozen extractor runs on the first tiles while the tailor is fitted.

A tailored network is ``mapper(tailor(extractor(x)))`` and the extractor (nearly all of the
FLOPs) is frozen, so a tile's features do not depend on the fit. While one worker fits the
scene's tailor, the others have nothing else to do: :func:`extract_features` reads a tile with
the halo the *tailored* model will need, prepares it exactly as :func:`pipeline.infer.prepare`
does and runs the backbone's extractor, keeping everything in the worker's memory (a Dask result
that never travels to the driver). Once the tailor is saved, :func:`finish_tile` applies the
tailor and the mapper (about a tenth of the work) and writes the tile through the same path as
:func:`workers.kernel.infer_tile`; its bytes are the plain tile's (the same operations on the same
tensors, ``tests/test_run_speculative.py``).

Safety: a finish checks that the features were made for its store, tile, backbone and halo and
that its model is a tailor around that backbone; anything else (another adapter kind, a changed
halo, a failed extraction) falls back to computing the tile from scratch. The features are
never cached beyond the one run's futures, so no other adapter or run ever sees them.

Memory: one tile's features are ``feat_channels`` float32 per PAN pixel of the read window plus
its inputs (about 50 MB for FusionNet at tile 512); the driver caps how many tiles are extracted
ahead (:data:`pipeline.stages.SPECULATE`). Features are kept on the CPU, so Dask may move them
between workers (or spill them) without a device in the way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import numpy as np
import torch
from distributed import Client, Future
from numpy.typing import NDArray

from pipeline.grid import TileKey, TileRead
from pipeline.infer import Radiometry, finish, model_inputs, prepare
from pipeline.jobs import FeatureTask, TileResult, TileTask
from pipeline.store import SceneStore

from .device import inference, memory_format
from .kernel import _reset_peak_rss, _write_tile, infer_tile, read_window
from .plugin import LoadedModel, current_cache, halo_of


@dataclass(frozen=True)
class Features:
    """One tile's extracted backbone features and the model inputs they came from (CPU).

    Attributes
    ----------
    task
        What was extracted.
    halo_ms
        The halo the window was read with (the tailored model's).
    read
        The windows read.
    feats
        ``(1, C, H', W')`` backbone features of the window.
    inputs
        ``(ms (1, B, h', w'), lms (1, B, H', W'), pan (1, 1, H', W'))`` as the model saw them
        (normalised, filled, in the device's memory format).
    bad
        ``(H', W')`` invalid mask of the window, or ``None``.
    seconds
        ``{"read", "extract"}`` wall times.
    """

    task: FeatureTask
    halo_ms: int
    read: TileRead
    feats: torch.Tensor
    inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    bad: NDArray[np.bool_] | None
    seconds: dict[str, float]


def tailored_halo(task: FeatureTask, loaded: LoadedModel) -> int:
    """The halo (MS px) of the tailored model the fit of ``task`` will produce."""
    from pipeline.tailor import FeatureTailor, TailorSpec

    backbone = loaded.backbone
    spec = TailorSpec(
        channels=backbone.feat_channels, width=task.tailor_width, kernel=task.tailor_kernel
    )
    rf = int(backbone.receptive_field) + FeatureTailor(spec).receptive_field
    return halo_of(rf, backbone, task.model)


def extract_features(task: FeatureTask) -> Features:
    """Read one tile with the tailored model's halo and run the backbone's extractor on it."""
    t0 = time.perf_counter()
    store = SceneStore.open(task.store)
    loaded = current_cache().get(task.model)
    halo = tailored_halo(task, loaded)
    read = store.grid.read(task.key, halo)
    ms_dn, pan_dn = read_window(store, read)
    t1 = time.perf_counter()
    prep = prepare(ms_dn, pan_dn, Radiometry.of(store.meta))
    dev, fmt = loaded.device, memory_format(loaded.device)
    ms, pan = prep.ms.to(dev), prep.pan.to(dev)  # as pipeline.infer.model_run does
    with inference(dev, task.amp):
        x = model_inputs(ms, pan, store.meta.ratio, loaded.backbone.upsampler, fmt)
        feats = loaded.backbone.extract(*x)
    cpu = torch.device("cpu")
    return Features(
        task=task,
        halo_ms=halo,
        read=read,
        feats=feats.to(cpu),
        inputs=(x[0].to(cpu), x[1].to(cpu), x[2].to(cpu)),
        bad=prep.bad,
        seconds={"read": t1 - t0, "extract": time.perf_counter() - t1},
    )


def usable(task: TileTask, feats: Any, loaded: LoadedModel) -> bool:
    """Whether ``feats`` were made for ``task``'s tile, store, backbone and halo, and ``task``'s
    model is a tailor around that backbone (else the tile is computed from scratch)."""
    from pipeline.tailor import TailoredModel

    if not isinstance(feats, Features) or not isinstance(loaded.module, TailoredModel):
        return False
    made = feats.task
    return (made.store, made.key, made.model, made.amp) == (
        task.store,
        task.key,
        task.model.base(),
        task.amp,
    ) and feats.halo_ms == loaded.halo_ms


def finish_tile(task: TileTask, feats: Any) -> TileResult:
    """Finish a tile from its speculative features: tailor, mapper, finish, write (a worker).

    ``feats`` is the extraction's result (:class:`Features`; anything else, e.g. the extraction's
    input error, or features that do not match, computes the tile from scratch with
    :func:`workers.kernel.infer_tile`). The tile is written and reported exactly as there.
    """
    loaded = current_cache().get(task.model)
    if not usable(task, feats, loaded):
        return infer_tile(task)
    from pipeline.tailor import TailoredModel

    _reset_peak_rss()
    t0 = time.perf_counter()
    store = SceneStore.open(task.store)
    module, dev = cast(TailoredModel, loaded.module), loaded.device
    with inference(dev, task.amp):
        ms, lms, pan = (t.to(dev) for t in feats.inputs)
        out = module.map(module.tailor(feats.feats.to(dev)), ms, lms, pan)
    rad = Radiometry.of(store.meta, clip=task.clip)
    tile = finish(out[0].float().cpu().numpy(), feats.bad, rad, feats.read.crop)
    res = _write_tile(store, task, feats.read, tile, t0, time.perf_counter())
    forward = res.seconds["forward"] + feats.seconds["extract"]
    seconds = {**res.seconds, "read": feats.seconds["read"], "forward": forward}
    return replace(res, seconds=seconds, speculative=True)


def split_workers(
    info: Mapping[str, Mapping[str, Any]], allowed: Sequence[str] | None, *, gpu: bool
) -> tuple[dict[str, int], dict[str, int]]:
    """``({fit's worker: slots}, {speculating workers: slots})`` from the scheduler's worker
    ``info``: the first allowed worker fits, the others extract (all of them on a cluster of one
    worker); a GPU worker has one slot, a CPU worker its threads."""
    slots = {
        a: 1 if gpu else int(w.get("nthreads", 1))
        for a, w in sorted(info.items())
        if allowed is None or a in allowed
    }
    fit_at = dict(list(slots.items())[:1])
    return fit_at, {a: n for a, n in slots.items() if a not in fit_at} or slots


#: A speculative extraction on the cluster: its :class:`Features`, or the task's input error.
FeatureFuture = Future[object]


class Speculation:
    """The driver's handle on the features extracted during a fit: their futures, by tile.

    The features stay on the workers; :meth:`take` hands them to the tile map (which finishes
    those tiles where they lie), :meth:`release` cancels what no tile took (idempotent) and
    calls ``on_release`` once.
    """

    def __init__(
        self, client: Client, futures: dict[TileKey, FeatureFuture], on_release: Callable[[], None]
    ) -> None:
        self._client, self._futures, self._on_release = client, futures, on_release
        self._live = True

    def take(self, tasks: Sequence[object]) -> dict[int, FeatureFuture]:
        """``{i: features of tasks[i]}`` for the tile tasks it holds (handed over once)."""
        keys = [t.key if isinstance(t, TileTask) else None for t in tasks]
        return {i: self._futures.pop(k) for i, k in enumerate(keys) if k in self._futures}

    def release(self) -> None:
        """Cancel and forget the features not taken by a tile."""
        futures, self._futures = list(self._futures.values()), {}
        if futures:
            self._client.cancel(futures)
        if self._live:
            self._live = False
            self._on_release()


__all__ = [
    "FeatureFuture",
    "Features",
    "Speculation",
    "extract_features",
    "finish_tile",
    "split_workers",
    "tailored_halo",
    "usable",
]
