"""The stages of a scene run and the table that orders them.

:data:`STAGES` lists every stage with what it depends on and its ``run`` function; it drives
:func:`pipeline.runner.plan` (which stages are left), resume (a finished stage is skipped) and
invalidation (redoing a stage drops its :func:`dependents` from the journal, e.g. a refit drops
the tiles, the quality, the export and the report). Each ``run`` takes the run's state
(:class:`RunState`) and records into its journal; the engine is opened on first use, so ingest
and a finished run never start a cluster.

Classical methods run through the same tile map as networks: their fit stage computes the scene's
global coefficients once on one worker, then every tile applies them with a halo.

While a tailor is fitted, the other workers extract the frozen backbone's features of the first
``RunConfig.speculate`` tiles per spare thread (:mod:`workers.speculate`); the infer stage
finishes those tiles from them (same bytes, same journal), the others as usual.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import RunConfig
from .errors import ConfigError, InputError, StoreError
from .jobs import ClassicalFitJob, ClassicalSpec, FeatureTask, FitJob, FitOutcome, ModelSpec
from .journal import Journal, RunPaths
from .methods import adapt_mode, method
from .scene import Scene
from .stage_export import run_export, start_export
from .store import SceneStore
from .tilemap import Progress, stage_infer, stage_quality

if TYPE_CHECKING:  # the engine imports distributed and workers: only when a run starts one
    from .distribute import Engine, Speculation
    from .export_stream import ExportStream

log = logging.getLogger(__name__)


@dataclass
class RunState:
    """What the stages of one run share (the driver's side only; nothing here travels)."""

    cfg: RunConfig
    paths: RunPaths
    journal: Journal
    scene: Scene | SceneStore
    open_engine: Callable[[], AbstractContextManager[Engine]]
    progress: Progress | None = None
    base: ModelSpec | None = None
    store: SceneStore | None = None
    spec: ModelSpec | ClassicalSpec | None = None
    speculation: Speculation | None = None
    export: ExportStream | None = None
    timings: dict[str, float] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    exits: ExitStack = field(default_factory=ExitStack)
    _engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        """The engine, opened on first use (closed with :attr:`exits`).

        Opening it also registers the worker plugin with the run's backbone preloaded (a
        classical run: imports its task code on every worker), so the fit and the first tiles
        find it loaded on every worker; the seconds this takes (cluster start, imports, weights)
        are timed as ``start``, apart from the stages.
        """
        if self._engine is None:
            t0 = time.perf_counter()
            self._engine = self.exits.enter_context(self.open_engine())
            if self.base is not None:
                self._engine.prepare(self.base)
            else:  # a classical run: its workers import the task code now, not in the fit
                self._engine.warm()
            _timed(self, "start", t0)
        return self._engine

    @property
    def scene_store(self) -> SceneStore:
        """The scene store (after the ingest stage)."""
        if self.store is None:
            raise StoreError("The scene store is not ready: the ingest stage has not run.")
        return self.store


@dataclass(frozen=True)
class Stage:
    """One stage: its name, what it depends on, whether a run has it, and what it does."""

    name: str
    depends_on: tuple[str, ...]
    applies: Callable[[RunConfig, RunPaths], bool]
    run: Callable[[RunState], None]


def _timed(state: RunState, name: str, t0: float) -> None:
    state.timings[name] = state.timings.get(name, 0.0) + time.perf_counter() - t0


def run_ingest(state: RunState) -> None:
    """Write the scene store (skipped for a store input or a finished ingest)."""
    from .store import write_scene

    t0 = time.perf_counter()
    if isinstance(state.scene, SceneStore):
        state.store = state.scene
        return
    journal, paths = state.journal, state.paths
    if journal.stage("ingest") is not None:
        try:
            state.store = SceneStore.open(paths.store)
            state.store.verify_chunks()  # a lost chunk: ingest again
            return
        except StoreError:
            journal.drop_stages(*dependents("ingest"), "ingest", tiles=True)
    journal.creates(paths.store)
    state.store = write_scene(state.scene, paths.store, tile=state.cfg.ingest_tile, overwrite=True)
    journal.finish_stage("ingest", {"seconds": time.perf_counter() - t0})
    record_input_checksums(journal, state.store)
    _timed(state, "ingest", t0)


def record_input_checksums(journal: Journal, store: SceneStore) -> None:
    """Copy the SHA-256 of each input file, taken once at ingest, into the journal's inputs."""
    digests = {str(Path(s.path).resolve()): s.sha256 for s in store.meta.sources}
    for rec in journal.data["inputs"]:
        if rec.get("kind") == "file" and digests.get(rec["path"]):
            rec["sha256"] = digests[rec["path"]]
    journal.flush(force=True)


def check_sampling(cfg: RunConfig, pan_shape_yx: tuple[int, int], ratio: int) -> None:
    """Fail on the driver (before submission) on sample/fit options the fit would refuse."""
    from .jobs import fit_config
    from .sampling import SampleConfig, patch_grid

    sample = SampleConfig(**dict(cfg.sample))
    fit_config(cfg.effective_adapt, cfg.fit)
    grid = patch_grid(pan_shape_yx, ratio, sample.patch)
    full = [k for k in grid.keys() if grid.pan_window(k).shape_yx == (sample.patch,) * 2]  # noqa: SIM118
    if not full:
        raise InputError(
            "The scene is smaller than one fit patch.",
            path=list(cfg.inputs),
            expected=f"PAN of at least {sample.patch} x {sample.patch}",
            got=pan_shape_yx,
            fix=f"use a smaller --fit-patch (a multiple of {ratio}), or --adapt none.",
        )


def run_fit(state: RunState) -> None:
    """Fit once for the scene on one worker: the adapter of a network, or classical coefficients.

    The fitted file is journalled with its digest; a missing or changed file is fitted again and
    the fit's dependents (tiles included) are dropped.
    """
    from .files import file_sha256

    cfg, paths, journal, store = state.cfg, state.paths, state.journal, state.scene_store
    classical = not method(cfg.method).network
    file = paths.coefficients if classical else paths.adapter
    rec = journal.stage("fit")
    t0, start0 = time.perf_counter(), state.timings.get("start", 0.0)
    if cfg.adapter_file is not None:
        rec = _given_adapter(journal, cfg.adapter_file, rec)
    elif rec is None or not file.is_file() or file_sha256(file) != rec["sha256"]:
        journal.creates(file)
        if classical:
            job = ClassicalFitJob(store=str(store.path), method=cfg.method, out=str(file))
            rec = asdict(state.engine.fit_classical(job))
        else:
            rec = asdict(_fit_adapter(state, _fit_job(state, file)))
        journal.drop_stages(*dependents("fit"), tiles=True)
        journal.finish_stage("fit", rec)
        rec = {**rec, "ran": True}
    state.records["fit"] = {k: v for k, v in rec.items() if k != "ran"}
    t0 += state.timings.get("start", 0.0) - start0  # the cluster start is not the fit's
    if classical:
        state.spec = ClassicalSpec(method=cfg.method, path=rec["path"], sha256=rec["sha256"])
        _timed(state, "fit", t0)
        return
    base = _base(state)
    state.spec = replace(
        base, adapter=cfg.effective_adapt, adapter_path=rec["path"], adapter_sha256=rec["sha256"]
    )
    sample = float(rec.get("seconds", {}).get("sample", 0.0)) if rec.get("ran") else 0.0
    state.timings["sample"] = sample
    state.timings["fit"] = time.perf_counter() - t0 - sample


def _fit_adapter(state: RunState, job: FitJob) -> FitOutcome:
    """The adapter fit; for a tailor with spare workers, the first tiles' features are extracted
    meanwhile (kept in :attr:`RunState.speculation` for the infer stage)."""
    tasks = _feature_tasks(state, job)
    if not tasks:
        return state.engine.fit_once(job)
    outcome, spec = state.engine.fit_speculating(job, tasks)
    if spec is not None:
        state.speculation = spec
        state.exits.callback(spec.release)  # unused features go when the run ends, however
    return outcome


def _feature_tasks(state: RunState, job: FitJob) -> list[FeatureTask]:
    """The speculative extractions of a tailor fit: ``speculate`` tiles per spare thread."""
    from .jobs import fit_config

    cfg = state.cfg
    if adapt_mode(cfg.effective_adapt).artefact != "tailor" or cfg.speculate <= 0:
        return []
    n = cfg.speculate * state.engine.spare_slots()
    fit = fit_config(cfg.effective_adapt, cfg.fit)
    return [
        FeatureTask(
            store=job.store,
            key=k,
            model=job.model,
            tailor_width=fit.width,
            tailor_kernel=fit.kernel,
            amp=state.engine.amp,
        )
        for k in list(state.scene_store.grid.keys())[:n]
    ]


def _given_adapter(journal: Journal, file: str, rec: dict[str, Any] | None) -> dict[str, Any]:
    """``RunConfig.adapter_file`` as the fit record; tiles made with another file are dropped."""
    from .files import file_sha256

    path = Path(file).resolve()
    if not path.is_file():
        raise InputError(
            "The fitted adapter file given to the run is missing.",
            path=path,
            expected="the file a fit saved (a batch group's tailor)",
            got="no such file",
            fix="fit it again (rerun the batch), or run without it.",
        )
    given = {"path": str(path), "sha256": file_sha256(path), "given": True}
    if rec is None or (rec.get("path"), rec.get("sha256")) != (given["path"], given["sha256"]):
        journal.drop_stages(*dependents("fit"), tiles=True)
        journal.finish_stage("fit", given)
        return given
    return rec


def _fit_job(state: RunState, file: Path) -> FitJob:
    cfg = state.cfg
    return FitJob(
        store=str(state.scene_store.path),
        model=_base(state),
        adapt=cfg.effective_adapt,
        out=str(file),
        sample=dict(cfg.sample),
        fit=dict(cfg.fit),
        seed=cfg.seed,
    )


def _base(state: RunState) -> ModelSpec:
    if state.base is None:
        raise ConfigError("No backbone for this run.", got=state.cfg.method)
    return state.base


def run_infer(state: RunState) -> None:
    """Infer every tile not yet in the journal into the run's own output array; the COG export
    takes each tile as it is journaled (:func:`pipeline.stage_export.start_export`)."""
    if state.spec is None:
        state.spec = _base(state)
    if isinstance(state.spec, ModelSpec):
        state.engine.prepare(state.spec.base())
    stream = start_export(state)
    state.records["infer"] = stage_infer(
        state.journal,
        state.engine,
        state.scene_store,
        state.spec,
        output=state.journal.output_array,
        amp=state.engine.amp,
        clip=state.cfg.clip,
        progress=state.progress,
        speculation=state.speculation,
        on_tile=None if stream is None else lambda key: stream.add((key,)),
    )
    state.speculation = None
    state.timings["infer"] = state.records["infer"]["seconds"]


def run_quality(state: RunState) -> None:
    """Quality indices on a sample of tiles (and the unadapted backbone's, when adapted)."""
    adapted = isinstance(state.spec, ModelSpec) and state.spec.adapter != "none"
    state.records["metrics"] = stage_quality(
        state.cfg,
        state.engine,
        state.scene_store,
        state.base if adapted else None,
        output=state.journal.output_array,
    )
    state.timings["quality"] = float(state.records["metrics"].get("seconds", 0.0))


def _needs_fit(cfg: RunConfig, paths: RunPaths) -> bool:
    return not method(cfg.method).network or adapt_mode(cfg.effective_adapt).fits


def _always(cfg: RunConfig, paths: RunPaths) -> bool:
    return True


STAGES: tuple[Stage, ...] = (
    Stage("ingest", (), lambda cfg, paths: paths.own_store, run_ingest),
    Stage("fit", ("ingest",), _needs_fit, run_fit),
    Stage("infer", ("ingest", "fit"), _always, run_infer),
    Stage("quality", ("infer",), lambda cfg, paths: cfg.quality_tiles > 0, run_quality),
    Stage("export", ("infer",), _always, run_export),
)
#: Written by the runner after the export (it needs the whole summary); depends on everything.
REPORT = "report"


def dependents(name: str) -> list[str]:
    """Every stage that depends on ``name``, directly or not (in table order, plus the report)."""
    out: list[str] = []
    for stage in STAGES:
        if name in stage.depends_on or any(d in out for d in stage.depends_on):
            out.append(stage.name)
    return [*out, REPORT]


def stages_of(cfg: RunConfig, paths: RunPaths) -> Iterator[Stage]:
    """The stages this run has, in order."""
    return (s for s in STAGES if s.applies(cfg, paths))


__all__ = [
    "REPORT",
    "STAGES",
    "RunState",
    "Stage",
    "check_sampling",
    "dependents",
    "record_input_checksums",
    "run_export",
    "run_fit",
    "run_infer",
    "run_ingest",
    "run_quality",
    "stages_of",
]
