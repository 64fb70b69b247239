"""Worker state: the models a worker process computes with, loaded once and freed on teardown.

A :class:`pipeline.jobs.ModelSpec` names a model by files (backbone name + weights, optional adapter file with
its checksum); tasks carry specs, never modules. :class:`ModelPlugin` is registered on every
worker by :mod:`pipeline.distribute`: on setup it sizes torch's thread pool to the worker's Dask
threads, picks the device and pre-loads the backbone; tasks then fetch models from its
:class:`ModelCache` with :func:`current_cache`. Outside a worker (tests, benchmarks) a
process-wide cache is used.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from distributed import WorkerPlugin
from torch import nn

from pipeline.backbones import Backbone, load, support_ms
from pipeline.backbones.base import conv_chain_radius
from pipeline.errors import CheckpointError
from pipeline.files import file_sha256
from pipeline.grid import halo_ms_for
from pipeline.jobs import ModelSpec
from pipeline.methods import ADAPTS, adapt_mode
from pipeline.sensors import SensorSpec

from .device import ThreadPolicy, memory_format, pick_device, release, threads_for_worker

log = logging.getLogger(__name__)

PLUGIN_NAME = "pantailor-models"
ADAPTERS = ADAPTS


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for tile forwards.

    Attributes
    ----------
    module
        ``forward(ms, lms, pan) -> (N, B, H, W)`` on ``device``.
    backbone
        The (frozen) backbone inside ``module``.
    receptive_field
        PAN pixels of context each side (backbone plus adapter).
    halo_ms
        MS pixels of halo a tile needs (receptive field plus the upsampler's support).
    device
        Where ``module`` lives.
    """

    module: nn.Module
    backbone: Backbone
    receptive_field: int
    halo_ms: int
    device: torch.device


def _verify(spec: ModelSpec) -> Path:
    path = Path(str(spec.adapter_path))
    if not path.is_file():
        raise CheckpointError(
            "The fitted adapter file is missing.",
            path=path,
            expected="the file written by the fit stage",
            got="no such file",
            fix="re-run the scene (the fit stage is redone when its file is missing).",
        )
    got = file_sha256(path)
    if got != spec.adapter_sha256:
        raise CheckpointError(
            "The fitted adapter file does not match its checksum.",
            path=path,
            expected=spec.adapter_sha256,
            got=got,
            fix="re-run with --overwrite; the file was changed after the fit.",
        )
    return path


def _adapted(spec: ModelSpec, backbone: Backbone) -> tuple[nn.Module, Backbone, int]:
    """The module for ``spec`` around ``backbone``, the backbone inside, and its receptive field."""
    artefact = adapt_mode(spec.adapter).artefact
    if artefact is None:
        return backbone, backbone, backbone.receptive_field
    path = _verify(spec)
    if artefact == "backbone":
        tuned = load(spec.backbone, path, n_bands=spec.n_bands, sensor=spec.sensor)
        return tuned, tuned, tuned.receptive_field
    from pipeline.tailor import TailoredModel, load_tailor

    tailor = load_tailor(path, backbone)
    model = TailoredModel(backbone, tailor)
    rf = getattr(model, "receptive_field", None)
    if not isinstance(rf, int):
        rf = backbone.receptive_field + conv_chain_radius(tailor.modules())
    return model, backbone, rf


class ModelCache:
    """Models of one process, loaded on first use, kept most-recently-used (thread-safe).

    Parameters
    ----------
    device
        Where models are placed.
    capacity
        How many adapted models to keep (backbones are shared between them).
    """

    def __init__(self, device: torch.device, capacity: int = 4) -> None:
        self.device = device
        self.capacity = capacity
        self.loads: dict[str, int] = {}  # what was loaded how often (tests, diagnostics)
        self._backbones: dict[ModelSpec, Backbone] = {}
        self._models: OrderedDict[ModelSpec, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def _backbone(self, spec: ModelSpec) -> Backbone:
        base = spec.base()
        if base not in self._backbones:
            model = load(spec.backbone, spec.weights, n_bands=spec.n_bands, sensor=spec.sensor)
            self._backbones[base] = _place(model, self.device)
            self.loads["backbone"] = self.loads.get("backbone", 0) + 1
        return self._backbones[base]

    def get(self, spec: ModelSpec) -> LoadedModel:
        """The model for ``spec``, loading it (once) if needed."""
        with self._lock:
            if spec in self._models:
                self._models.move_to_end(spec)
                return self._models[spec]
            module, backbone, rf = _adapted(spec, self._backbone(spec))
            module = _place(module, self.device).eval()
            if spec.adapter != "none":
                self.loads[spec.adapter] = self.loads.get(spec.adapter, 0) + 1
            loaded = LoadedModel(module, backbone, rf, halo_of(rf, backbone, spec), self.device)
            self._models[spec] = loaded
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return loaded

    def clear(self) -> None:
        """Drop every model and give cached device memory back."""
        with self._lock:
            self._models.clear()
            self._backbones.clear()
        release(self.device)


def halo_of(receptive_field: int, backbone: Backbone, spec: ModelSpec) -> int:
    """MS pixels of halo a tile of a model with ``receptive_field`` (PAN px) around ``backbone``
    needs: the field plus the backbone's upsampler support."""
    ratio = int(backbone.ratio or _ratio(spec.sensor))
    return halo_ms_for(receptive_field, ratio, support_ms(backbone.upsampler, ratio))


def _place(module: Any, device: torch.device) -> Any:
    """Move ``module`` to ``device`` in the device's preferred memory format."""
    return module.to(device, memory_format=memory_format(device))


def _ratio(sensor: str | SensorSpec) -> int:
    from pipeline.sensors import get_sensor

    return get_sensor(sensor).ratio


class ModelPlugin(WorkerPlugin):  # type: ignore[misc]
    """Worker plugin: thread policy, device and a model cache per worker process.

    Parameters
    ----------
    device
        ``auto``, ``cpu`` or ``cuda``.
    preload
        Specs loaded at setup (the scene's backbone), so the first tiles do not pay for it.
    """

    idempotent = False
    name = PLUGIN_NAME

    def __init__(self, device: str = "auto", preload: Sequence[ModelSpec] = ()) -> None:
        self.device_name = device
        self.preload = tuple(preload)
        self.cache: ModelCache | None = None
        self.policy: ThreadPolicy | None = None

    def setup(self, worker: Any) -> None:
        """Apply the thread policy, pick the device and load the preloaded models."""
        nthreads = getattr(getattr(worker, "state", None), "nthreads", None) or getattr(
            worker, "nthreads", None
        )
        self.policy = threads_for_worker(nthreads)
        self.policy.apply()
        self.cache = ModelCache(pick_device(self.device_name))
        for spec in self.preload:
            self.cache.get(spec)
        log.info("worker models ready on %s (%d threads)", self.cache.device, self.policy.intra_op)

    def teardown(self, worker: Any) -> None:
        """Free the models and the device memory."""
        if self.cache is not None:
            self.cache.clear()
            self.cache = None


_LOCAL: ModelCache | None = None
_LOCAL_LOCK = threading.Lock()


def current_cache() -> ModelCache:
    """The model cache of this worker's plugin, or a process-wide one outside a worker."""
    global _LOCAL
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        worker = None
    if worker is not None:
        plugin = worker.plugins.get(PLUGIN_NAME)
        cache = getattr(plugin, "cache", None)
        if isinstance(cache, ModelCache):
            return cache
    with _LOCAL_LOCK:
        if _LOCAL is None:
            _LOCAL = ModelCache(pick_device("auto"))
        return _LOCAL


def preload(specs: Sequence[ModelSpec], dask_worker: Any = None) -> int:
    """Load ``specs`` into this worker's plugin cache (``client.run`` passes ``dask_worker``)."""
    plugin = getattr(dask_worker, "plugins", {}).get(PLUGIN_NAME) if dask_worker else None
    cache = getattr(plugin, "cache", None)
    if not isinstance(cache, ModelCache):
        cache = current_cache()
    for spec in specs:
        cache.get(spec)
    return len(specs)


__all__ = [
    "ADAPTERS",
    "PLUGIN_NAME",
    "LoadedModel",
    "ModelCache",
    "ModelPlugin",
    "ModelSpec",
    "current_cache",
    "file_sha256",
    "halo_of",
    "preload",
]
