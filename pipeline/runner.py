"""Run one scene end to end: ingest -> sample + fit -> infer -> quality -> export -> report.

:func:`run_scene` reads as the list of its stages. The driver (this process) is the only writer of
the scene's journal (``<work dir>/journal.json``, replaced atomically): it records each finished
stage and each finished tile with the digest of what the tile task wrote. A rerun with the same
settings skips what the journal records; a tile whose task did not report back (a crash while
writing) is not in the journal and is computed again; the scene is marked complete only after
the COG and the report exist. Different settings in the same work dir are refused unless
``overwrite``. ``dry_run`` validates the inputs and returns the plan without writing anything or
starting a cluster.

Files of a run writing ``OUT.tif``: ``OUT.report.json``, ``OUT.quicklook.png`` beside it and the
work dir ``OUT.work/`` (``scene.zarr`` unless the input is a store, ``journal.json``, the fitted
``adapter.pt``, or a classical method's global ``coefficients.json``).

Classical methods run through the same tile map as networks: their "fit" stage computes the
scene's global coefficients once on one worker (:func:`stage_classical_fit`), then every tile
applies them with a halo (:func:`workers.kernel.classical_tile`), for any scene size.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import ConfigError, StoreError
from .grid import TileGrid, TileKey
from .report import quicklook, write_json_atomic, write_report
from .sensors import get_sensor
from .store import SceneStore

log = logging.getLogger(__name__)

OUTPUT = "fused"
CLASSICAL = ("brovey", "gsa", "mtf-glp", "mtf-glp-hpm")
NETWORKS = ("fusionnet", "pnn", "pannet", "dicnn")
ADAPTS = ("tailor", "none", "finetune")
JOURNAL_VERSION = 1

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """One scene's run.

    Attributes
    ----------
    inputs
        PAN then MS file(s), a container, or one existing scene store (``*.zarr``).
    output
        The COG to write (``OUT.tif``).
    sensor
        Sensor name (optional for a store input: taken from it).
    method
        A network (``fusionnet``, ``pnn``, ``pannet``, ``dicnn``) or a classical method.
    weights
        Backbone weights: ``None`` (shipped), ``dlpan:<SENSOR>`` or a path.
    adapt
        ``tailor`` (default), ``none`` or ``finetune``.
    work_dir
        Where the store, journal and adapter live (default ``OUT.work``).
    tile
        Tile edge in PAN pixels for ingest (a store keeps its own).
    overwrite, dry_run
        Start over / only validate and plan.
    seed
        Seed of sampling and fitting.
    sample, fit
        :class:`pipeline.sampling.SampleConfig` / :class:`pipeline.fit.FitConfig` fields.
    quality_tiles
        Tiles scored for the report (0: none).
    ingest
        Extra :func:`pipeline.scene.open_scene` options (``nodata``, ``dn_max``, ...).
    """

    inputs: tuple[str, ...]
    output: str
    sensor: str | None = None
    method: str = "fusionnet"
    weights: str | None = None
    adapt: str = "tailor"
    work_dir: str | None = None
    tile: int = 512
    overwrite: bool = False
    dry_run: bool = False
    seed: int = 0
    sample: Mapping[str, Any] = field(default_factory=dict)
    fit: Mapping[str, Any] = field(default_factory=dict)
    quality_tiles: int = 4
    ingest: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in NETWORKS + CLASSICAL:
            raise ConfigError(
                "Unknown method.",
                expected=", ".join(NETWORKS + CLASSICAL),
                got=repr(self.method),
                fix="choose a listed method.",
            )
        if self.adapt not in ADAPTS:
            raise ConfigError("Unknown adaptation.", expected=", ".join(ADAPTS), got=self.adapt)
        if not self.inputs:
            raise ConfigError("No inputs given.", fix="pass PAN and MS files or a scene store.")
        if not str(self.output).lower().endswith((".tif", ".tiff")):
            raise ConfigError(
                "The output must be a GeoTIFF path.", expected="OUT.tif", got=self.output
            )

    @property
    def effective_adapt(self) -> str:
        """``none`` for classical methods (nothing to adapt), else :attr:`adapt`."""
        return "none" if self.method in CLASSICAL else self.adapt

    def fingerprint(self) -> dict[str, Any]:
        """What makes two runs the same run (compared on resume)."""
        return {
            "inputs": [str(Path(p).resolve()) for p in self.inputs],
            "sensor": self.sensor,
            "method": self.method,
            "weights": self.weights,
            "adapt": self.effective_adapt,
            "tile": self.tile,
            "seed": self.seed,
            "sample": dict(self.sample),
            "fit": dict(self.fit),
            "ingest": dict(self.ingest),
        }


@dataclass(frozen=True)
class RunPaths:
    """Every file a run writes."""

    work_dir: Path
    store: Path
    journal: Path
    adapter: Path
    coefficients: Path
    cog: Path
    report: Path
    quicklook: Path
    own_store: bool

    @classmethod
    def of(cls, cfg: RunConfig) -> RunPaths:
        """The paths of ``cfg`` (nothing is created)."""
        cog = Path(cfg.output).resolve()
        work = Path(cfg.work_dir).resolve() if cfg.work_dir else cog.with_suffix(".work")
        given = Path(cfg.inputs[0])
        is_store = len(cfg.inputs) == 1 and (given / "zarr.json").is_file()
        return cls(
            work_dir=work,
            store=given.resolve() if is_store else work / "scene.zarr",
            journal=work / "journal.json",
            adapter=work / "adapter.pt",
            coefficients=work / "coefficients.json",
            cog=cog,
            report=cog.with_suffix(".report.json"),
            quicklook=cog.with_suffix(".quicklook.png"),
            own_store=not is_store,
        )


class Journal:
    """The driver's record of finished stages and tiles (the only writer is the driver).

    Parameters
    ----------
    path
        ``journal.json`` in the work dir.
    fingerprint
        The run's settings; a journal of other settings is refused.
    """

    def __init__(self, path: Path, fingerprint: Mapping[str, Any]) -> None:
        self.path = path
        self.data: dict[str, Any] = {
            "version": JOURNAL_VERSION,
            "pantailor": __version__,
            "fingerprint": json.loads(json.dumps(dict(fingerprint), default=str)),
            "stages": {},
            "tiles": {},
            "complete": False,
        }
        self._last_flush = 0.0

    @classmethod
    def open(cls, path: Path, fingerprint: Mapping[str, Any]) -> Journal:
        """Load ``path`` if it exists (refusing other settings), else a new journal."""
        journal = cls(path, fingerprint)
        if path.is_file():
            old = json.loads(path.read_text())
            if old.get("fingerprint") != journal.data["fingerprint"]:
                raise StoreError(
                    "The work dir holds a run with other settings.",
                    path=path,
                    expected=json.dumps(journal.data["fingerprint"], sort_keys=True),
                    got=json.dumps(old.get("fingerprint"), sort_keys=True),
                    fix="pass --overwrite to start over, or another --work-dir / -o.",
                )
            journal.data = old
        return journal

    def stage(self, name: str) -> dict[str, Any] | None:
        """The record of a finished stage, or ``None``."""
        rec = self.data["stages"].get(name)
        return dict(rec) if rec is not None else None

    def finish_stage(self, name: str, record: Mapping[str, Any]) -> None:
        """Record a finished stage (flushed at once)."""
        self.data["stages"][name] = dict(record)
        self.flush(force=True)

    def drop_stages(self, *names: str) -> None:
        """Forget stages (to be redone)."""
        for name in names:
            self.data["stages"].pop(name, None)
        self.data["complete"] = False
        self.flush(force=True)

    @property
    def tiles(self) -> dict[str, str]:
        """Finished tiles: ``"row-col"`` -> SHA-256 of the written data."""
        tiles: dict[str, str] = self.data["tiles"]
        return tiles

    def finish_tile(self, key: TileKey, sha256: str) -> None:
        """Record a tile whose task reported success (flushed at most twice a second)."""
        self.tiles[str(key)] = sha256
        self.flush()

    @property
    def complete(self) -> bool:
        """Whether the scene finished (export and report exist)."""
        return bool(self.data.get("complete"))

    def mark_complete(self, summary: Mapping[str, Any]) -> None:
        """Mark the scene complete, keeping the summary."""
        self.data["complete"] = True
        self.data["summary"] = dict(summary)
        self.flush(force=True)

    def flush(self, force: bool = False) -> None:
        """Write the journal atomically (rate-limited unless ``force``)."""
        now = time.monotonic()
        if force or now - self._last_flush > 0.5:
            write_json_atomic(self.path, self.data)
            self._last_flush = now


# ----------------------------------------------------------------------------- stages


def _open_inputs(cfg: RunConfig, paths: RunPaths) -> Any:
    """Validate the inputs on the client (before any cluster work): a Scene or a SceneStore."""
    if not paths.own_store:
        store = SceneStore.open(paths.store)
        if cfg.sensor and get_sensor(cfg.sensor).name != store.meta.sensor:
            raise ConfigError(
                "The sensor does not match the store's.",
                path=paths.store,
                expected=store.meta.sensor,
                got=cfg.sensor,
                fix="drop --sensor or pass the store's sensor.",
            )
        return store
    from .scene import open_scene

    if not cfg.sensor:
        raise ConfigError("--sensor is required for file inputs.", fix="pass e.g. --sensor wv3.")
    return open_scene(list(cfg.inputs), cfg.sensor, rows=cfg.tile, **dict(cfg.ingest))


def stage_ingest(cfg: RunConfig, paths: RunPaths, journal: Journal, scene: Any) -> SceneStore:
    """Write the scene store (skipped for a store input or a finished ingest)."""
    from .store import write_scene

    if isinstance(scene, SceneStore):
        return scene
    if journal.stage("ingest") is not None:
        try:
            return SceneStore.open(paths.store)
        except StoreError:
            journal.drop_stages("ingest", "fit", "infer", "quality", "export", "report")
            journal.tiles.clear()
    t0 = time.perf_counter()
    store = write_scene(scene, paths.store, tile=cfg.tile, overwrite=True)
    journal.finish_stage("ingest", {"seconds": time.perf_counter() - t0})
    return store


def model_spec(cfg: RunConfig, store: SceneStore) -> Any:
    """The pretrained backbone's :class:`workers.plugin.ModelSpec` for this run."""
    from workers.plugin import ModelSpec

    weights = cfg.weights
    if weights and not weights.lower().startswith("dlpan:"):
        weights = str(Path(weights).resolve())
    return ModelSpec(
        backbone=cfg.method,
        weights=weights,
        sensor=store.sensor,
        n_bands=store.meta.n_bands,
    )


def stage_fit(
    cfg: RunConfig, paths: RunPaths, journal: Journal, engine: Any, store: SceneStore, base: Any
) -> tuple[Any, dict[str, Any]]:
    """Fit the adapter once for the scene on one worker; returns (model spec, fit record)."""
    from dataclasses import replace

    from workers.plugin import file_sha256
    from workers.scene_tasks import FitJob, fit_adapter

    adapt = cfg.effective_adapt
    if adapt == "none":
        return base, {}
    rec = journal.stage("fit")
    if rec is None or not paths.adapter.is_file() or file_sha256(paths.adapter) != rec["sha256"]:
        job = FitJob(
            store=str(store.path),
            model=base,
            adapt=adapt,
            out=str(paths.adapter),
            sample=dict(cfg.sample),
            fit=dict(cfg.fit),
            seed=cfg.seed,
        )
        outcome = engine.run_once(fit_adapter, job, name="fit")
        rec = asdict(outcome)
        journal.drop_stages("infer", "quality", "export", "report")
        journal.tiles.clear()
        journal.finish_stage("fit", rec)
        rec = {**rec, "ran": True}
    spec = replace(base, adapter=adapt, adapter_path=rec["path"], adapter_sha256=rec["sha256"])
    return spec, rec


def _report_progress(progress: Progress | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)
    elif total and (done == total or done % max(1, total // 10) == 0):
        log.info("%s: %d/%d", stage, done, total)


def stage_infer(
    journal: Journal,
    engine: Any,
    store: SceneStore,
    spec: Any,
    *,
    amp: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Infer every tile not yet in the journal; journal each as it completes.

    ``spec`` is a :class:`workers.plugin.ModelSpec` (a network) or a :class:`ClassicalSpec` (a
    classical method's fitted coefficients); both run through the same tile map.
    """
    from workers.kernel import ClassicalTileTask, TileTask, classical_tile, infer_tile

    store.create_output(OUTPUT, "float32", overwrite=not journal.tiles)
    grid = store.grid
    todo = [k for k in grid.keys() if str(k) not in journal.tiles]  # noqa: SIM118
    tasks: list[Any]
    if isinstance(spec, ClassicalSpec):
        fn: Callable[[Any], Any] = classical_tile
        tasks = [
            ClassicalTileTask(
                store=str(store.path),
                output=OUTPUT,
                key=k,
                method=spec.method,
                coefficients=spec.path,
                sha256=spec.sha256,
            )
            for k in todo
        ]
    else:
        fn = infer_tile
        tasks = [
            TileTask(store=str(store.path), output=OUTPUT, key=k, model=spec, amp=amp) for k in todo
        ]
    total, done = len(grid), len(grid) - len(todo)
    _report_progress(progress, "infer", done, total)
    t0 = time.perf_counter()
    peak: dict[int, int] = {}
    forward = 0.0
    try:
        for res in engine.map_tiles(tasks, fn):
            journal.finish_tile(res.key, res.sha256)
            peak[res.pid] = max(peak.get(res.pid, 0), res.peak_rss)
            forward += res.seconds.get("forward", 0.0)
            done += 1
            _report_progress(progress, "infer", done, total)
    finally:
        journal.flush(force=True)
    return {
        "seconds": time.perf_counter() - t0,
        "tiles": total,
        "computed": len(tasks),
        "skipped": total - len(tasks),
        "forward_seconds": forward,
        "peak_rss_bytes": max(peak.values(), default=0),
        "workers_used": len(peak),
    }


def _quality_keys(grid: TileGrid, n: int, seed: int) -> list[TileKey]:
    full = [k for k in grid.keys() if grid.pan_window(k).shape_yx == (grid.tile, grid.tile)]  # noqa: SIM118
    pool = full or list(grid.keys())
    return sorted(random.Random(seed).sample(pool, min(n, len(pool))))


def _weighted(results: Sequence[Mapping[str, Any]], which: str) -> dict[str, float]:
    rows = [r for r in results if which in r]
    if not rows:
        return {}
    w = np.asarray([r["pixels"] for r in rows], dtype=np.float64)
    return {k: float(np.average([r[which][k] for r in rows], weights=w)) for k in rows[0][which]}


def stage_quality(
    cfg: RunConfig, engine: Any, store: SceneStore, base: Any, adapted: bool
) -> dict[str, Any]:
    """Quality indices on a sample of tiles: the product, and the unadapted backbone beside it."""
    from workers.scene_tasks import QualityJob, tile_quality

    if cfg.quality_tiles <= 0:
        return {}
    t0 = time.perf_counter()
    keys = _quality_keys(store.grid, cfg.quality_tiles, cfg.seed)
    jobs = [
        QualityJob(store=str(store.path), output=OUTPUT, key=k, baseline=base if adapted else None)
        for k in keys
    ]
    results = list(engine.map_tiles(jobs, tile_quality))  # type: ignore[arg-type]
    from .quality import conventions

    out: dict[str, Any] = {
        "conventions": conventions(),
        "tiles": [str(k) for k in keys],
        "product": _weighted(results, "product"),
        "seconds": time.perf_counter() - t0,
    }
    if adapted:
        out["baseline"] = _weighted(results, "baseline")
    return out


def stage_export(paths: RunPaths, store: SceneStore) -> float:
    """Write the COG from the output array; returns seconds."""
    from .export import export_cog

    t0 = time.perf_counter()
    export_cog(store.path, OUTPUT, paths.cog, overwrite=True)
    return time.perf_counter() - t0


# ----------------------------------------------------------------------------- driver


def _check_target(cfg: RunConfig, paths: RunPaths) -> Journal | None:
    """Refuse to clobber; wipe on overwrite; return a finished journal (nothing to do) or None."""
    if cfg.overwrite:
        if cfg.dry_run:
            return None
        for p in (
            paths.journal,
            paths.adapter,
            paths.coefficients,
            paths.cog,
            paths.report,
            paths.quicklook,
        ):
            p.unlink(missing_ok=True)
        if paths.own_store and paths.store.exists():
            shutil.rmtree(paths.store)
        return None
    journal = Journal.open(paths.journal, cfg.fingerprint()) if paths.journal.is_file() else None
    if journal is not None and journal.complete and paths.cog.is_file():
        return journal
    if paths.cog.exists() and journal is None:
        raise StoreError(
            "The output file already exists.",
            path=paths.cog,
            expected="a new path, or an unfinished run of the same settings",
            got="an existing file not written by this run",
            fix="pass --overwrite or choose another -o.",
        )
    return None


def plan(cfg: RunConfig) -> dict[str, Any]:
    """What :func:`run_scene` would do, after validating the inputs; writes nothing."""
    paths = RunPaths.of(cfg)
    finished = _check_target(cfg, paths)
    scene = _open_inputs(cfg, paths)
    if isinstance(scene, SceneStore):
        grid, sensor = scene.grid, scene.meta.sensor
    else:
        grid, sensor = TileGrid(scene.pan_shape_yx, scene.ratio, cfg.tile), scene.sensor.name
    journal = None
    if not cfg.overwrite and paths.journal.is_file():
        journal = Journal.open(paths.journal, cfg.fingerprint())
    done = set(journal.tiles) if journal else set()
    stages = ["ingest"] if paths.own_store else []
    if cfg.method in CLASSICAL:
        stages += ["fit"]  # the global coefficients
    elif cfg.effective_adapt != "none":
        stages += ["sample", "fit"]
    stages += ["infer", "quality", "export", "report"]
    if journal:
        stages = [s for s in stages if journal.stage(s) is None or s == "infer"]
    return {
        "dry_run": True,
        "already_complete": finished is not None,
        "sensor": sensor,
        "method": cfg.method,
        "adapt": cfg.effective_adapt,
        "pan_shape_yx": list(grid.pan_shape_yx),
        "tile": grid.tile,
        "tiles": len(grid),
        "tiles_done": len(done),
        "stages": [] if finished else stages,
        "outputs": _outputs(paths),
    }


def _outputs(paths: RunPaths) -> dict[str, str]:
    return {
        "cog": str(paths.cog),
        "report": str(paths.report),
        "quicklook": str(paths.quicklook),
        "store": str(paths.store),
        "work_dir": str(paths.work_dir),
    }


@contextmanager
def _engine_for(engine: Any, cluster: Any) -> Iterator[Any]:
    if engine is not None:
        yield engine
        return
    from .distribute import open_engine

    with open_engine(cluster) as eng:
        yield eng


def run_scene(
    cfg: RunConfig,
    *,
    engine: Any = None,
    cluster: Any = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run one scene through every stage (resuming from its journal); returns the summary.

    Parameters
    ----------
    cfg
        The run.
    engine
        A :class:`pipeline.distribute.Engine` to use (else one is started from ``cluster``).
    cluster
        A :class:`workers.cluster.ClusterConfig` (default: ``workers/defaults.yaml``).
    progress
        ``progress(stage, done, total)`` called as tiles finish.

    Returns
    -------
    dict
        method, sensor, adapt, timings (s) by stage, fit, infer, metrics, outputs.
    """
    if cfg.dry_run:
        return plan(cfg)
    paths = RunPaths.of(cfg)
    finished = _check_target(cfg, paths)
    if finished is not None:
        log.warning("%s is complete already (pass --overwrite to recompute)", paths.cog)
        return {**finished.data.get("summary", {}), "already_complete": True}
    scene = _open_inputs(cfg, paths)  # fail on the client before the cluster spends time
    paths.work_dir.mkdir(parents=True, exist_ok=True)
    journal = Journal.open(paths.journal, cfg.fingerprint())
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    store = stage_ingest(cfg, paths, journal, scene)
    timings["ingest"] = time.perf_counter() - t0
    if cfg.method in NETWORKS:  # missing or mismatched weights fail here, not on every worker
        from .backbones import load

        spec = model_spec(cfg, store)
        load(spec.backbone, spec.weights, n_bands=spec.n_bands, sensor=spec.sensor)
    with _engine_for(engine, cluster) as eng:
        summary = _run_on(cfg, paths, journal, eng, store, timings, progress)
    timings["total"] = time.perf_counter() - t_start
    summary["timings"] = timings
    write_report(paths.report, summary)
    journal.mark_complete(summary)
    return summary


@dataclass(frozen=True)
class ClassicalSpec:
    """A classical method's fitted global coefficients, by reference (what its tiles apply)."""

    method: str
    path: str
    sha256: str


def stage_classical_fit(
    paths: RunPaths, journal: Journal, engine: Any, store: SceneStore, method: str
) -> tuple[ClassicalSpec, dict[str, Any]]:
    """Fit a classical method's global coefficients once for the scene on one worker.

    They are saved as JSON in the work dir (``coefficients.json``, beside the adapter) and
    journalled with their digest; a missing or changed file is fitted again (and the tiles
    recomputed).
    """
    from workers.plugin import file_sha256
    from workers.scene_tasks import ClassicalFitJob, fit_classical

    rec = journal.stage("fit")
    file = paths.coefficients
    if rec is None or not file.is_file() or file_sha256(file) != rec["sha256"]:
        job = ClassicalFitJob(store=str(store.path), method=method, out=str(file))
        outcome = engine.run_once(fit_classical, job, name="fit")
        rec = asdict(outcome)
        journal.drop_stages("infer", "quality", "export", "report")
        journal.tiles.clear()
        journal.finish_stage("fit", rec)
        rec = {**rec, "ran": True}
    return ClassicalSpec(method=method, path=rec["path"], sha256=rec["sha256"]), rec


def _run_on(
    cfg: RunConfig,
    paths: RunPaths,
    journal: Journal,
    eng: Any,
    store: SceneStore,
    timings: dict[str, float],
    progress: Progress | None,
) -> dict[str, Any]:
    if cfg.method in CLASSICAL:
        t0 = time.perf_counter()
        coeffs, fit = stage_classical_fit(paths, journal, eng, store, cfg.method)
        timings["fit"] = time.perf_counter() - t0
        infer = stage_infer(journal, eng, store, coeffs, progress=progress)
        metrics = stage_quality(cfg, eng, store, None, False)
        return _finish(cfg, paths, eng, store, timings, fit, infer, metrics)
    base = model_spec(cfg, store)
    eng.prepare(base)
    t0 = time.perf_counter()
    spec, fit = stage_fit(cfg, paths, journal, eng, store, base)
    timings["sample"] = float(fit.get("seconds", {}).get("sample", 0.0)) if fit.get("ran") else 0.0
    timings["fit"] = time.perf_counter() - t0 - timings["sample"]
    infer = stage_infer(
        journal, eng, store, spec, amp=getattr(eng, "amp", False), progress=progress
    )
    timings["infer"] = infer["seconds"]
    metrics = stage_quality(cfg, eng, store, base, spec.adapter != "none")
    return _finish(cfg, paths, eng, store, timings, fit, infer, metrics)


def _finish(
    cfg: RunConfig,
    paths: RunPaths,
    eng: Any,
    store: SceneStore,
    timings: dict[str, float],
    fit: dict[str, Any],
    infer: dict[str, Any],
    metrics: dict[str, Any],
) -> dict[str, Any]:
    timings["infer"] = infer["seconds"]
    timings["quality"] = float(metrics.get("seconds", 0.0))
    timings["export"] = stage_export(paths, store)
    t0 = time.perf_counter()
    quicklook(store, OUTPUT, paths.quicklook)
    timings["quicklook"] = time.perf_counter() - t0
    return {
        "scene": str(store.path),
        "method": cfg.method,
        "sensor": store.meta.sensor,
        "adapt": cfg.effective_adapt,
        "pan_shape_yx": list(store.meta.pan_shape_yx),
        "n_bands": store.meta.n_bands,
        "tile": store.meta.tile,
        "workers": eng.n_workers,
        "fit": {k: v for k, v in fit.items() if k != "ran"},
        "infer": infer,
        "metrics": metrics,
        "outputs": _outputs(paths),
    }


def demo_config(
    out_dir: str | Path, *, size: int = 2048, tile: int = 512, overwrite: bool = False
) -> RunConfig:
    """The built-in demo: a seeded synthetic 8-band WorldView-3-like scene, FusionNet + tailor.

    The scene store is made once under ``out_dir`` (``demo-scene.zarr``); the run writes
    ``out_dir/demo.tif`` with its report and quicklook.
    """
    from .scene import Scene
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
    "ClassicalSpec",
    "Journal",
    "RunConfig",
    "RunPaths",
    "demo_config",
    "model_spec",
    "plan",
    "run_scene",
    "stage_classical_fit",
    "stage_export",
    "stage_fit",
    "stage_infer",
    "stage_ingest",
    "stage_quality",
]
