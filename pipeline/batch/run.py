"""The batch driver: one cluster, several scenes in flight, every scene's fate in the database.

:func:`run_batch` reads the source, plans (:mod:`pipeline.batch.plan`), takes OUTDIR's lock,
records the plan, then starts **one** engine (:func:`pipeline.distribute.open_engine`) and runs
the scenes through :func:`pipeline.runner.run_scene` from a pool of ``scenes_in_flight`` driver
threads sharing it: while one scene's tiles infer on the workers, another scene ingests or fits.
Workers keep their model cache across scenes (the plugin is registered once per backbone), and
scenes are ordered by model so that a mixed batch switches backbones as rarely as possible.

A scene that raises is recorded ``failed`` with its error text and the batch goes on; errors are
deterministic (bad input, bad settings), so they are not retried here; a worker lost mid-scene is
retried by Dask inside the scene's tile map. A driver that is killed leaves its scenes
``running``: the next run resumes them from their journals and skips what is done.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import PantailorError
from .groups import GroupWork, group_work, prepare_group
from .plan import (
    RUN_ACTIONS,
    BatchConfig,
    PlannedScene,
    check_inputs,
    load_scenes,
    make_plan,
    plan_summary,
)
from .sources import SceneSpec
from .state import DB_NAME, BatchState, BatchStateError, batch_lock

log = logging.getLogger(__name__)

PERFORMANCE_REPORT = "dask-performance.html"

#: ``on_event(kind, scene_id, info)``: kind is ``plan``, ``engine`` (with the dashboard link),
#: ``start``, ``tiles``, ``done`` or ``failed``.
Event = Callable[[str, str, dict[str, Any]], None]


@dataclass
class BatchResult:
    """What a batch run did.

    Attributes
    ----------
    plan
        Counts by action, the ids to run, the invalid ids with their errors.
    ran, done, failed
        Ids run this time; ids done / failed (with their error) in the database afterwards.
    seconds
        Wall time of the driver run.
    dashboard
        The Dask dashboard link, if any.
    """

    plan: dict[str, Any]
    ran: list[str] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    dashboard: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def exit_status(self) -> int:
        """0 when every scene is done, 1 when some failed."""
        return 1 if self.failed else 0


def _sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _facts(summary: dict[str, Any], cog: str) -> dict[str, Any]:
    metrics = summary.get("metrics") or {}
    infer = summary.get("infer") or {}
    return {
        "tiles": infer.get("tiles"),
        "tiles_computed": infer.get("computed", 0),
        "cog_sha256": _sha256(cog),
        "hqnr_none": (metrics.get("baseline") or {}).get("hqnr"),
        "hqnr_product": (metrics.get("product") or {}).get("hqnr"),
    }


def _emit(on_event: Event | None, kind: str, scene: str, **info: Any) -> None:
    if on_event is not None:
        on_event(kind, scene, info)
    elif kind in ("done", "failed"):
        log.info("scene %s %s %s", scene, kind, info.get("error") or "")


def error_text(exc: Exception, what: str) -> str:
    """What the database records for a failure (a PantailorError's own text; else the type)."""
    if isinstance(exc, PantailorError):
        return str(exc)
    log.warning("%s failed unexpectedly", what, exc_info=exc)
    return f"{type(exc).__name__}: {exc}"


def clean_work(summary: dict[str, Any]) -> None:
    """Delete the scene's own store (inside its work dir; never an input store)."""
    outputs = summary.get("outputs") or {}
    store, work = outputs.get("store"), outputs.get("work_dir")
    if store and work and Path(store).resolve().is_relative_to(Path(work).resolve()):
        shutil.rmtree(store, ignore_errors=True)


def _starts_over(p: PlannedScene) -> bool:
    """Whether the scene's run starts over (``overwrite``): its inputs or settings changed, or
    its COG is gone together with the store it would be exported again from (``--clean-work``).
    A COG deleted alone is exported again from the finished run: nothing is recomputed."""
    if p.action == "changed":
        return True
    if p.action != "missing" or p.run is None:
        return False
    from ..journal import RunPaths

    return not (RunPaths.of(p.run).store / "zarr.json").is_file()


def run_one(
    p: PlannedScene,
    engine: Any,
    state: BatchState,
    on_event: Event | None,
    clean: bool = False,
) -> bool:
    """Run one planned scene on ``engine``, recording its fate; True when done."""
    scene = p.spec.id
    if p.run is None:
        raise ValueError(f"scene {scene} has no run configuration (action {p.action})")
    cfg = replace(p.run, overwrite=_starts_over(p))
    state.start(scene)
    _emit(on_event, "start", scene)
    t0 = time.perf_counter()

    def tiles(stage: str, done: int, total: int) -> None:
        _emit(on_event, "tiles", scene, stage=stage, done=done, total=total)

    from ..runner import run_scene

    try:
        summary = run_scene(cfg, engine=engine, progress=tiles)
        facts = _facts(summary, p.output)
    except Exception as exc:  # every scene's failure is its own: record it and go on
        text = error_text(exc, scene)
        seconds = time.perf_counter() - t0
        state.fail(scene, text, seconds, p.entry())
        _emit(on_event, "failed", scene, error=text, seconds=seconds)
        return False
    seconds = time.perf_counter() - t0
    state.finish(scene, seconds, facts)
    if clean:
        clean_work(summary)
    _emit(on_event, "done", scene, seconds=seconds, **facts)
    return True


Work = PlannedScene | GroupWork


def _model_key(w: Work) -> tuple[str, str, str]:
    run = (w.members[0] if isinstance(w, GroupWork) else w).run
    if run is None:
        return ("", "", "")
    return (run.method, str(run.weights or ""), str(run.sensor or ""))


def _work(
    w: Work, engine: Any, state: BatchState, on_event: Event | None, clean: bool
) -> tuple[list[str], list[PlannedScene]]:
    """Run one work item: the ids it ran, and the scenes it hands on (a group's members)."""
    if isinstance(w, GroupWork):
        return prepare_group(w, engine, state, on_event)
    run_one(w, engine, state, on_event, clean)
    return [w.spec.id], []


def drive(
    todo: Sequence[Work],
    engine: Any,
    state: BatchState,
    scenes_in_flight: int,
    on_event: Event | None = None,
    clean: bool = False,
) -> list[str]:
    """Run ``todo`` with at most ``scenes_in_flight`` items at once; returns the ids run.

    Submission is lazy (a new item starts when one finishes), so the driver holds at most
    ``scenes_in_flight`` scenes' state whatever the batch size. A group (``--tailor-scope
    group``) is one item while it ingests and fits; its members then go first in the queue.
    """
    queue: deque[Work] = deque(sorted(todo, key=_model_key))
    ran: list[str] = []
    with ThreadPoolExecutor(scenes_in_flight, thread_name_prefix="scene") as pool:
        running: set[Future[tuple[list[str], list[PlannedScene]]]] = set()
        while queue or running:
            while queue and len(running) < scenes_in_flight:
                running.add(pool.submit(_work, queue.popleft(), engine, state, on_event, clean))
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                ids, follow = fut.result()  # scene errors are recorded; this re-raises bugs
                ran.extend(ids)
                queue.extendleft(reversed(follow))
    return ran


@contextmanager
def _engine(engine: Any, cluster: Any) -> Iterator[Any]:
    if engine is not None:
        yield engine
        return
    from ..distribute import open_engine

    with open_engine(cluster) as eng:
        yield eng


def _performance_report(engine: Any, path: Path) -> Any:
    """Dask's performance report of the whole run (HTML), when the engine has a client."""
    from ..distribute import performance_report

    return performance_report(engine, path)


def _record_plan(state: BatchState, planned: Sequence[PlannedScene]) -> None:
    state.queue(p.entry() for p in planned if p.action in RUN_ACTIONS)
    for p in planned:
        if p.action == "invalid":
            state.fail(p.spec.id, p.error or "invalid", None, p.entry())


def _dry_run(cfg: BatchConfig, out_dir: Path, specs: Sequence[SceneSpec]) -> BatchResult:
    """The plan against OUTDIR's database (if any), writing nothing."""
    known = (out_dir / DB_NAME).is_file()
    planned = make_plan(cfg, specs, BatchState.read(out_dir).rows() if known else {})
    summary = plan_summary(planned)
    if cfg.check_inputs:
        summary.update(check_inputs(planned))
    return BatchResult(plan=summary)


def _run(
    cfg: BatchConfig, state: BatchState, planned: Sequence[PlannedScene], result: BatchResult,
    engine: Any, cluster: Any, on_event: Event | None,
) -> None:  # fmt: skip
    """Run what the plan says to run, on one engine, under Dask's performance report."""
    todo = group_work([p for p in planned if p.action in RUN_ACTIONS], planned)
    if not todo:
        return
    with _engine(engine, cluster) as eng:
        result.dashboard = getattr(getattr(eng, "client", None), "dashboard_link", None)
        _emit(on_event, "engine", "", dashboard=result.dashboard)
        report = Path(cfg.out_dir).resolve() / PERFORMANCE_REPORT
        with _performance_report(eng, report):
            result.ran = drive(todo, eng, state, cfg.scenes_in_flight, on_event, cfg.clean_work)


def _out_folder(out_dir: str | Path) -> Path:
    """``-o`` resolved; refused (before anything is read or made) where it is not a folder."""
    path = Path(out_dir).resolve()
    if path.exists() and not path.is_dir():
        raise BatchStateError(
            "The batch output must be a folder.",
            path=path,
            expected="a folder (made if missing) for the scenes' products and the batch state",
            got="an existing file",
            fix="pass a folder to -o, e.g. -o products/ (the manifest or an input is not an output).",
        )
    return path


def run_batch(
    cfg: BatchConfig,
    *,
    cluster: Any = None,
    engine: Any = None,
    on_event: Event | None = None,
) -> BatchResult:
    """Plan and run a batch (or only plan it with ``cfg.dry_run``).

    Parameters
    ----------
    cfg
        The batch.
    cluster
        A :class:`workers.cluster.ClusterConfig` for the one engine of the batch.
    engine
        An engine to use instead (tests; a notebook's running cluster).
    on_event
        Progress callback (see :data:`Event`); default: one log line per finished scene.

    Returns
    -------
    BatchResult
        ``exit_status`` is 0 when every scene is done, 1 when some failed.
    """
    from .outputs import write_outputs

    t0 = time.perf_counter()
    out_dir = _out_folder(cfg.out_dir)
    specs = load_scenes(cfg)
    if cfg.dry_run:
        result = _dry_run(cfg, out_dir, specs)
        result.seconds = time.perf_counter() - t0
        return result
    with batch_lock(out_dir):
        state = BatchState.open(out_dir, cfg.source_id)
        try:
            planned = make_plan(cfg, specs, state.rows())
            _record_plan(state, planned)
            result = BatchResult(plan=plan_summary(planned))
            _emit(on_event, "plan", "", **result.plan)
            state.begin_run()
            _run(cfg, state, planned, result, engine, cluster, on_event)
            state.end_run(len(result.ran))
            rows = state.rows([p.spec.id for p in planned])
            result.done = [i for i, r in rows.items() if r.state == "done"]
            result.failed = {i: r.error or "" for i, r in rows.items() if r.state == "failed"}
            result.outputs = write_outputs(out_dir, planned, rows)
        finally:
            state.close()
    result.seconds = time.perf_counter() - t0
    return result


__all__ = [
    "PERFORMANCE_REPORT",
    "BatchResult",
    "Event",
    "Work",
    "drive",
    "error_text",
    "run_batch",
    "run_one",
]
