"""The frozen, typed specs that travel between the driver and the workers, and what comes back.

Tasks carry keys and paths, never arrays or models: a :class:`ModelSpec` names a model by files
(backbone + weights, optional fitted adapter with its SHA-256); a :class:`TileTask` /
:class:`ClassicalTileTask` names one output tile of one store; a :class:`FitJob` /
:class:`ClassicalFitJob` the per-scene fit; a :class:`QualityJob` one scored tile. Results
(:class:`TileResult`, :class:`FitOutcome`, :class:`ClassicalFitOutcome`, :class:`QualityResult`)
are small: the pixels stay in the store. :mod:`pipeline.distribute` is the only module that ships
them to :mod:`workers`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .grid import TileKey
from .methods import ADAPTS, adapt_mode
from .sensors import SensorSpec


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A model identified by files, small enough to travel with every task.

    Attributes
    ----------
    backbone
        Backbone name (a network of :data:`pipeline.methods.METHODS`).
    weights
        Backbone weights: ``None`` (shipped), ``"dlpan:<SENSOR>"`` or a checkpoint path.
    sensor
        The sensor (band count and ratio): its spec as stored with the scene
        (:attr:`pipeline.store.SceneStore.sensor`), so custom sensors need no lookup by name;
        a name is accepted too.
    n_bands
        MS band count.
    adapter
        An adapt mode of :data:`pipeline.methods.ADAPT_MODES`: ``none`` (the pretrained
        backbone), ``tailor`` (a fitted feature tailor) or ``finetune`` (a fine-tuned copy).
    adapter_path, adapter_sha256
        The fitted file and its SHA-256; checked when loading.
    """

    backbone: str
    weights: str | None
    sensor: str | SensorSpec
    n_bands: int
    adapter: str = "none"
    adapter_path: str | None = None
    adapter_sha256: str | None = None

    def __post_init__(self) -> None:
        mode = adapt_mode(self.adapter)
        if mode.fits and not (self.adapter_path and self.adapter_sha256):
            raise ConfigError(
                f"Adaptation {self.adapter!r} needs its fitted file and checksum.",
                got=f"path={self.adapter_path}, sha256={self.adapter_sha256}",
            )

    def base(self) -> ModelSpec:
        """The same backbone without adaptation."""
        return ModelSpec(
            backbone=self.backbone, weights=self.weights, sensor=self.sensor, n_bands=self.n_bands
        )


@dataclass(frozen=True, kw_only=True)
class ClassicalSpec:
    """A classical method's fitted global coefficients, by reference (what its tiles apply)."""

    method: str
    path: str
    sha256: str


@dataclass(frozen=True, kw_only=True)
class TileTask:
    """One network tile, by reference.

    Attributes
    ----------
    store
        Path of the scene store.
    output
        Output array name (created by the driver before the tasks run).
    key
        The tile.
    model
        The model to run.
    amp
        Mixed precision on GPU.
    clip
        Clip valid outputs to ``[0, dn_max]`` (``run --no-clip`` turns it off).
    """

    store: str
    output: str
    key: TileKey
    model: ModelSpec
    amp: bool = False
    clip: bool = True


@dataclass(frozen=True, kw_only=True)
class ClassicalTileTask:
    """One tile of a classical method with the scene's global coefficients, by reference.

    Attributes
    ----------
    store, output, key
        As for :class:`TileTask`.
    method
        A classical method of :data:`pipeline.methods.METHODS`.
    coefficients, sha256
        The JSON file the classical fit wrote and its digest.
    clip
        As for :class:`TileTask`.
    """

    store: str
    output: str
    key: TileKey
    method: str
    coefficients: str
    sha256: str
    clip: bool = True


@dataclass(frozen=True, kw_only=True)
class TileResult:
    """What a finished tile task reports back (small; the pixels stay in the store).

    Attributes
    ----------
    key
        The tile.
    sha256
        Digest of the float32 bytes written.
    seconds
        ``{"read", "forward", "write"}`` wall times in seconds.
    peak_rss
        The worker process's peak resident memory during the task, bytes.
    pid
        The worker process id.
    speculative
        Whether the tile was finished from features extracted while the fit ran
        (:class:`FeatureTask`); its bytes are those of a plain tile.
    """

    key: TileKey
    sha256: str
    seconds: dict[str, float] = field(default_factory=dict)
    peak_rss: int = 0
    pid: int = 0
    speculative: bool = False


@dataclass(frozen=True, kw_only=True)
class FeatureTask:
    """Extract one tile's backbone features before its tailor exists (speculative, by reference).

    The tailor sits after the frozen extractor, so the features of a tile do not depend on the
    fit: while one worker fits, the others run the extractor on the first tiles and keep the
    features in their memory; the tile is finished (tailor + mapper) once the fit is saved.

    Attributes
    ----------
    store
        Scene store path.
    key
        The tile.
    model
        The pretrained backbone (``adapter="none"``).
    tailor_width, tailor_kernel
        The tailor the fit will make (:class:`pipeline.tailor.TailorSpec`): its receptive field
        sets the halo the tile is read with.
    amp
        Mixed precision on GPU, as the tile's :class:`TileTask`.
    """

    store: str
    key: TileKey
    model: ModelSpec
    tailor_width: int = 16
    tailor_kernel: int = 3
    amp: bool = False


@dataclass(frozen=True, kw_only=True)
class FitJob:
    """The per-scene fit of an adapter, by reference.

    Attributes
    ----------
    store
        Scene store path.
    model
        The pretrained backbone (``adapter="none"``).
    adapt
        An adapt mode that fits (``tailor`` or ``finetune``).
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
class GroupFitJob:
    """One adapter fit for a group of scenes (``pantailor batch --tailor-scope group``).

    Attributes
    ----------
    fit
        The fit as for one scene: ``fit.store`` is the group's first scene, ``fit.out`` the
        group's file, ``fit.sample`` the group's whole patch budget.
    stores
        Every member's scene store (the first is ``fit.store``): the budget is shared between
        them (:func:`pipeline.batch.groups.sample_group`).
    """

    fit: FitJob
    stores: tuple[str, ...]


def fit_config(adapt: str, fields: Mapping[str, Any]) -> Any:
    """A :class:`pipeline.fit.FitConfig` from plain fields (``weights`` may be a mapping)."""
    from .fit import FitConfig
    from .losses import LossWeights

    kw = dict(fields)
    if isinstance(kw.get("weights"), Mapping):
        kw["weights"] = LossWeights(**kw["weights"])
    return FitConfig(**{**kw, "adapt": adapt})


@dataclass(frozen=True, kw_only=True)
class FitOutcome:
    """What the adapter fit reports back.

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
        Steps allowed, and why the fit stopped (``"budget"``, the plateau or the held-out rule).
    kept_step, fallback
        Steps applied to the kept state, and ``"identity"`` when the fit kept the pretrained
        network (it did not beat it on its held-out patches) (:class:`pipeline.fit.FitResult`).
    holdout_hqnr
        Held-out toolbox HQNR ``{"initial", "kept"}`` (empty without held-out patches).
    threads
        Torch intra-op threads the fit ran with: its worker's own (a fit's result depends on
        it, so it is fixed by the cluster's configuration, never lent at run time).
    augment
        The fit patches' augmentation (:data:`pipeline.fit_config.AUGMENTS`; ``--augment``).
    """

    path: str
    sha256: str
    n_patches: int
    steps: int
    seconds: dict[str, float]
    losses: dict[str, float]
    step_budget: int = 0
    stop_rule: str = ""
    kept_step: int = 0
    fallback: str = ""
    holdout_hqnr: dict[str, float] = field(default_factory=dict)
    threads: int = 0
    augment: str = "none"


@dataclass(frozen=True, kw_only=True)
class ClassicalFitJob:
    """The per-scene fit of a classical method's global coefficients, by reference.

    Attributes
    ----------
    store
        Scene store path.
    method
        A classical method of :data:`pipeline.methods.METHODS`.
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


@dataclass(frozen=True, kw_only=True)
class QualityResult:
    """One scored tile: its pixel count and the indices of the product (and of the baseline)."""

    key: TileKey
    pixels: int
    product: dict[str, float]
    baseline: dict[str, float] | None = None


__all__ = [
    "ADAPTS",
    "ClassicalFitJob",
    "ClassicalFitOutcome",
    "ClassicalSpec",
    "ClassicalTileTask",
    "FeatureTask",
    "FitJob",
    "FitOutcome",
    "GroupFitJob",
    "ModelSpec",
    "QualityJob",
    "QualityResult",
    "TileResult",
    "TileTask",
    "fit_config",
]
