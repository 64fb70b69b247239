"""Run one scene end to end: the stage table (:mod:`pipeline.stages`) in order, resumable.

:func:`run_scene` first checks everything it can on the client, before a cluster spends time or
anything is written: no output is an input (paths and hard links), the output folders are
writable, the inputs open and validate, the weights load (their checksum joins the run's
settings). It then takes the work-dir lock, opens the journal (:mod:`pipeline.journal`) and runs
the stages; a rerun with the same settings and unchanged inputs skips what the journal records.

- Changed inputs at the same paths (size/mtime, then SHA-256) are noticed: the run says what
  changed and recomputes from scratch.
- Other settings in the same work dir: an unfinished run is discarded (a failed run never blocks
  the corrected rerun); a finished one is refused unless ``overwrite``.
- ``overwrite`` removes what the earlier run's journal says it created, nothing else; a
  ``scene.zarr`` in the work dir that no journal of this output created is refused.
- ``dry_run`` validates the inputs and the weights and returns the plan, writing nothing.

Files of a run writing ``OUT.tif``: ``OUT.report.json``, ``OUT.quicklook.png`` beside it and the
work dir ``OUT.work/`` (``scene.zarr`` unless the input is a store, ``journal.json``, ``run.lock``,
the fitted ``adapter.pt``, or a classical method's ``coefficients.json``). The run's output array
in the store is ``fused-<run key>``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import RunConfig
from .jobs import ClassicalSpec, ModelSpec
from .journal import Journal, RunPaths
from .lock import RunLock, output_lock
from .methods import ADAPTS, CLASSICAL, NETWORKS
from .preflight import check_paths, identify, open_inputs, open_journal
from .report import write_report
from .scene import Scene
from .stages import REPORT, STAGES, RunState, run_ingest, stages_of
from .store import SceneStore
from .tilemap import OUTPUT, Progress, stage_infer, stage_quality

if TYPE_CHECKING:  # imported when a run starts a cluster: planning stays light
    from .distribute import ClusterConfig, Engine

log = logging.getLogger(__name__)


def plan(cfg: RunConfig) -> dict[str, Any]:
    """What :func:`run_scene` would do, after validating inputs and weights; writes nothing."""
    paths = RunPaths.of(cfg)
    check_paths(cfg, paths)
    scene = open_inputs(cfg, paths)
    _, fingerprint = identify(cfg, scene)
    journal, finished = open_journal(cfg, paths, fingerprint, scene, dry_run=True)
    if isinstance(scene, SceneStore):
        grid, sensor = scene.grid, scene.meta.sensor
    else:
        from .grid import TileGrid

        grid, sensor = TileGrid(scene.pan_shape_yx, scene.ratio, cfg.ingest_tile), scene.sensor.name
    left = [s.name for s in stages_of(cfg, paths)] + [REPORT]
    if journal is not None:
        left = [s for s in left if journal.stage(s) is None or s not in ("ingest", "fit")]
    return {
        "dry_run": True,
        "already_complete": finished,
        "sensor": sensor,
        "method": cfg.method,
        "adapt": cfg.effective_adapt,
        "pan_shape_yx": list(grid.pan_shape_yx),
        "tile": grid.tile,
        "tiles": len(grid),
        "tiles_done": len(journal.tiles) if journal else 0,
        "stages": [] if finished else left,
        "inputs_changed": journal.data.get("inputs_changed", []) if journal else [],
        "outputs": _outputs(paths, journal),
    }


def _outputs(paths: RunPaths, journal: Journal | None) -> dict[str, str]:
    out = {
        "cog": str(paths.cog),
        "report": str(paths.report),
        "quicklook": str(paths.quicklook),
        "store": str(paths.store),
        "work_dir": str(paths.work_dir),
    }
    if journal is not None:
        out["array"] = journal.output_array
    return out


@contextmanager
def _engine_for(engine: Engine | None, cluster: ClusterConfig | None) -> Iterator[Engine]:
    if engine is not None:
        yield engine
        return
    from .distribute import open_engine

    with open_engine(cluster) as eng:
        yield eng


def run_scene(
    cfg: RunConfig,
    *,
    cluster: ClusterConfig | None = None,
    engine: Engine | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run one scene through every stage (resuming from its journal); returns the summary.

    Parameters
    ----------
    cfg
        The run.
    cluster
        A :class:`workers.cluster.ClusterConfig` (default: ``workers/defaults.yaml``).
    engine
        A :class:`pipeline.distribute.Engine` to use (else one is started from ``cluster``); one
        engine may serve several concurrent calls from several threads, on different outputs.
    progress
        ``progress(stage, done, total)`` called as tiles finish.

    Returns
    -------
    dict
        method, sensor, adapt, timings (s) by stage, fit, infer, metrics, outputs.
    """
    if cfg.dry_run:
        return plan(cfg)
    with _opened(cfg, engine, cluster, progress) as (state, finished):
        if finished:
            log.warning("%s is complete already (pass --overwrite to recompute)", state.paths.cog)
            return {**state.journal.data.get("summary", {}), "already_complete": True}
        t0 = time.perf_counter()
        with state.exits:
            for stage in stages_of(cfg, state.paths):
                stage.run(state)
            summary = _summary(state)
        return _complete(state, summary, time.perf_counter() - t0)


@contextmanager
def _opened(
    cfg: RunConfig,
    engine: Engine | None = None,
    cluster: ClusterConfig | None = None,
    progress: Progress | None = None,
) -> Iterator[tuple[RunState, bool]]:
    """The run's state with its lock held, and whether the run is complete already: paths checked
    (no output is an input; output folders writable), the inputs opened and the weights loaded on
    the client before any cluster time is spent, the journal opened."""
    paths = RunPaths.of(cfg)
    check_paths(cfg, paths)
    scene = open_inputs(cfg, paths)
    base, fingerprint = identify(cfg, scene)
    with (
        RunLock.acquire(paths.lock),
        RunLock.acquire(output_lock(paths.cog), what=f"the output {paths.cog.name}"),
    ):
        journal, finished = open_journal(cfg, paths, fingerprint, scene)
        state = RunState(
            cfg=cfg,
            paths=paths,
            journal=journal,
            scene=scene,
            open_engine=lambda: _engine_for(engine, cluster),
            progress=progress,
            base=base,
            store=scene if isinstance(scene, SceneStore) else None,
        )
        yield state, finished


def _complete(state: RunState, summary: dict[str, Any], total: float) -> dict[str, Any]:
    """Add the weights record and the timings to ``summary``; write the report; mark complete."""
    base, paths, journal = state.base, state.paths, state.journal
    if base is not None:  # the weights used: file, sha256, band groups
        from .backbones import load, weights_record

        model = load(base.backbone, base.weights, n_bands=base.n_bands, sensor=base.sensor)
        summary["weights"] = weights_record(model)
    summary["timings"] = {**state.timings, "total": total}
    journal.creates(paths.report)
    write_report(paths.report, summary)
    journal.mark_complete(summary)
    return summary


def ingest_scene(cfg: RunConfig) -> str:
    """Only the ingest stage of ``cfg``, journalled as :func:`run_scene` journals it.

    The full run later resumes after it. ``pantailor batch --tailor-scope group`` ingests a
    group's scenes this way, then fits one tailor on patches of all of them. Returns the path of
    the scene store.
    """
    with _opened(cfg) as (state, _):
        run_ingest(state)
        return str(state.scene_store.path)


def _summary(state: RunState) -> dict[str, Any]:
    store, cfg = state.scene_store, state.cfg
    return {
        "scene": str(store.path),
        "method": cfg.method,
        "sensor": store.meta.sensor,
        "adapt": cfg.effective_adapt,
        "pan_shape_yx": list(store.meta.pan_shape_yx),
        "n_bands": store.meta.n_bands,
        "tile": store.meta.tile,
        "workers": state.engine.n_workers,
        "run_key": state.journal.key,
        "inputs_changed": state.journal.data.get("inputs_changed", []),
        "fit": state.records.get("fit", {}),
        "infer": state.records["infer"],
        "metrics": state.records.get("metrics", {}),
        "outputs": _outputs(state.paths, state.journal),
    }


def demo_config(
    out_dir: str | Path, *, size: int = 2048, tile: int = 512, overwrite: bool = False
) -> RunConfig:
    """The built-in demo: a seeded synthetic 8-band WorldView-3-like scene, FusionNet + tailor.

    The scene store is made once under ``out_dir`` (``demo-scene.zarr``); the run writes
    ``out_dir/demo.tif`` with its report and quicklook.
    """
    from .store import write_scene
    from .synthetic import make_scene

    out = Path(out_dir).resolve()
    store = out / "demo-scene.zarr"
    if overwrite or not (store / "zarr.json").is_file():
        out.mkdir(parents=True, exist_ok=True)
        syn = make_scene((size, size), "wv3", seed=0)
        r = syn.sensor.ratio
        scene = Scene(
            pan=syn.pan,
            ms=syn.ms,
            sensor=syn.sensor,
            crs=None,
            pan_transform=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
            ms_transform=(float(r), 0.0, 0.0, 0.0, float(r), 0.0),
            nodata=None,
            dn_max=syn.sensor.dn_max,
        )
        write_scene(scene, store, tile=tile, overwrite=True, hash_sources=False)
    return RunConfig(
        inputs=(str(store),), output=str(out / "demo.tif"), method="fusionnet", overwrite=overwrite
    )


__all__ = [
    "ADAPTS",
    "CLASSICAL",
    "NETWORKS",
    "OUTPUT",
    "STAGES",
    "ClassicalSpec",
    "Journal",
    "ModelSpec",
    "RunConfig",
    "RunPaths",
    "demo_config",
    "ingest_scene",
    "plan",
    "run_scene",
    "stage_infer",
    "stage_quality",
]
