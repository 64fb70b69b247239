"""A batch's settings and its plan: what each scene's run is, and whether it must run.

:func:`make_plan` turns the source's :class:`SceneSpec` rows into one :class:`PlannedScene` each
(its :class:`pipeline.runner.RunConfig`, its fingerprint, and the action), comparing with the
database's rows. The fingerprint is the run's settings (:meth:`RunConfig.fingerprint`, plus the
output) and the size and modification time of every input and weights file: ``stat`` only, no
hashing, so planning a 10,000-scene manifest takes seconds. Actions:

``new``       never run here;            ``changed`` inputs or settings changed (recomputed);
``resume``    queued/running when the last driver stopped (resumes from its journal);
``missing``   done, but its COG is gone (recomputed);  ``retry`` failed, ``--retry-failed``;
``replaced``  done, but its COG was written after the scene finished (by someone else): the run
              refuses it, the scene is recorded failed naming the file, which is kept;
``done``      done and unchanged (skipped);   ``failed`` failed and unchanged (skipped);
``invalid``   unusable before running (bad option, STAC item without an asset): recorded failed;
``excluded``  not in ``--only``.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import PantailorError
from .sources import INGEST_OPTIONS, ManifestError, SceneSpec, glob_scenes, read_manifest
from .state import SceneRow

if TYPE_CHECKING:
    from ..runner import RunConfig

RUN_ACTIONS = ("new", "changed", "resume", "missing", "replaced", "retry")
#: Seconds a done scene's COG may be younger than its row's finish time (clock and file-system
#: time-stamp granularity) before it counts as replaced.
REPLACED_SLACK_S = 2.0
SKIP_ACTIONS = ("done", "failed", "excluded")
SCOPES = ("scene", "group")


@dataclass(frozen=True, kw_only=True)
class BatchConfig:
    """One batch: the source, the output folder and the batch-wide run settings.

    Attributes
    ----------
    source
        A manifest (``.csv``, ``.yaml``, ``.jsonl``), a STAC JSON file, or a PAN glob pattern.
    out_dir
        OUTDIR: one folder per scene (``ID/ID.tif`` with its report, quicklook and work dir),
        the state database, the summaries and the products' ItemCollection.
    ms_pattern
        With a PAN glob: the MS file pattern (see :func:`pipeline.batch.sources.glob_scenes`).
    sensor, method, weights, adapt, tile, seed, sample, fit, quality_tiles
        Batch-wide run settings (:class:`pipeline.runner.RunConfig`); rows may override
        ``sensor``, ``method``, ``weights``, ``adapt``.
    ingest
        Batch-wide reader options (``nodata``, ``dn_max``, ``ms_decimate``, ``patch``); rows may
        override each.
    scenes_in_flight
        Scenes run at once on the one cluster (1-64).
    retry_failed, only, dry_run
        Rerun failed scenes / run only these ids / print the plan and write nothing.
    check_inputs
        With ``dry_run``: also open every scene to be run (file headers; no pixels) to count its
        tiles and report unreadable inputs (slower: one header read per file).
    clean_work
        Delete a finished scene's own Zarr store (its copy of the inputs and the float32
        output) once the COG's checksum is recorded; the journal, adapter and products stay.
    tailor_scope
        ``scene`` (one fit per scene) or ``group`` (one fit per group of scenes: the ``group``
        column, STAC platform + date; see :mod:`pipeline.batch.groups`).
    """

    source: str
    out_dir: str
    ms_pattern: str | None = None
    sensor: str | None = None
    method: str = "fusionnet"
    weights: str | None = None
    adapt: str = "tailor"
    tile: int | None = None
    seed: int = 0
    sample: Mapping[str, Any] = field(default_factory=dict)
    fit: Mapping[str, Any] = field(default_factory=dict)
    quality_tiles: int = 4
    ingest: Mapping[str, Any] = field(default_factory=dict)
    scenes_in_flight: int = 2
    retry_failed: bool = False
    only: tuple[str, ...] = ()
    dry_run: bool = False
    check_inputs: bool = False
    clean_work: bool = False
    tailor_scope: str = "scene"

    def __post_init__(self) -> None:
        from ..errors import ConfigError

        if not 1 <= self.scenes_in_flight <= 64:
            raise ConfigError(
                "--scenes-in-flight is out of range.", expected="1 to 64", got=self.scenes_in_flight
            )
        if self.tailor_scope not in SCOPES:
            raise ConfigError(
                "Unknown --tailor-scope.", expected="scene or group", got=self.tailor_scope
            )
        unknown = set(self.ingest) - set(INGEST_OPTIONS)
        if unknown:
            raise ConfigError(
                "Unknown reader options.", expected=INGEST_OPTIONS, got=sorted(unknown)
            )

    @property
    def source_id(self) -> str:
        """What identifies the source (stored in the database; another one is refused)."""
        if self.ms_pattern is not None:
            return f"glob {os.path.abspath(self.source)} ms {self.ms_pattern}"
        return str(Path(self.source).resolve())


@dataclass(frozen=True)
class PlannedScene:
    """One scene of the plan."""

    spec: SceneSpec
    position: int
    action: str
    fingerprint: str
    run: RunConfig | None
    output: str
    error: str | None = None
    group: str | None = None  # the group's fingerprint (--tailor-scope group), else None

    def entry(self) -> dict[str, Any]:
        """The database fields identifying this scene."""
        return {
            "id": self.spec.id,
            "position": self.position,
            "fingerprint": self.fingerprint,
            "output": self.output,
            "origin": self.spec.origin,
        }


def load_scenes(cfg: BatchConfig) -> list[SceneSpec]:
    """The scenes of ``cfg.source`` (manifest, STAC or glob), validated."""
    from .sources import is_manifest
    from .stac import is_stac, read_stac

    if cfg.ms_pattern is not None:
        return glob_scenes(cfg.source, cfg.ms_pattern)
    if is_manifest(cfg.source):
        return read_manifest(cfg.source)
    if is_stac(cfg.source):
        return read_stac(cfg.source, cfg.sensor)
    raise ManifestError(
        "The batch source is not a manifest, a STAC file or a glob.",
        path=cfg.source,
        expected="scenes.csv|.yaml|.jsonl, catalog.json / collection.json / items.json, or "
        "'scenes/*/PAN.tif' with --ms PATTERN",
        got=cfg.source,
        fix="pass one of these (quote a glob so the shell does not expand it).",
    )


def output_of(spec: SceneSpec, out_dir: Path) -> Path:
    """The scene's COG: ``OUTDIR/ID/ID.tif``, or the row's ``output`` relative to OUTDIR."""
    given = spec.options.get("output")
    if given:
        return Path(os.path.normpath(os.path.join(out_dir, given)))
    return out_dir / spec.id / f"{spec.id}.tif"


def _run_config_class() -> type[RunConfig]:
    """``RunConfig`` without importing the runner (and torch) where the layout allows it."""
    try:
        from ..config import RunConfig as cls  # type: ignore[attr-defined]
    except ImportError:
        from ..runner import RunConfig as cls
    return cls  # type: ignore[no-any-return]


def run_config(spec: SceneSpec, cfg: BatchConfig, output: Path) -> RunConfig:
    """The scene's :class:`RunConfig`: batch-wide settings overridden by the row's (batch-wide
    ingest options skip a row whose input is a scene store: it keeps its own)."""
    RunConfig = _run_config_class()
    opts = spec.options
    from ..store_meta import is_store_dir

    store_row = len(spec.inputs) == 1 and is_store_dir(Path(spec.inputs[0]))
    wide = {} if store_row else cfg.ingest  # a store keeps its ingest: only its row's own
    ingest = {**wide, **{k: opts[k] for k in INGEST_OPTIONS if k in opts}}
    return RunConfig(
        inputs=spec.inputs,
        output=str(output),
        sensor=spec.sensor or cfg.sensor,
        method=opts.get("method", cfg.method),
        weights=opts.get("weights", cfg.weights),
        adapt=opts.get("adapt", cfg.adapt),
        tile=None if store_row else cfg.tile,
        seed=cfg.seed,
        sample=dict(cfg.sample),
        fit=dict(cfg.fit),
        quality_tiles=cfg.quality_tiles,
        ingest={k: v for k, v in ingest.items() if v is not None},
    )


def _stat(path: str) -> list[Any]:
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):  # a scene store: its root metadata changes on rewrite
            st = os.stat(os.path.join(path, "zarr.json"))
    except OSError:
        return [path, None, None]
    return [path, st.st_size, st.st_mtime_ns]


def fingerprint(run: RunConfig) -> str:
    """Settings + output + (size, mtime) of every input and weights file, hashed.

    Only ``stat`` touches the file system (no reads, no symlink resolution), so planning a
    10,000-scene manifest takes seconds. Any change to an input file's size or modification time,
    to the weights file, or to a setting gives another fingerprint.
    """
    files = [_stat(os.path.abspath(p)) for p in run.inputs]
    if run.weights and not run.weights.lower().startswith("dlpan:"):
        files.append(_stat(os.path.abspath(run.weights)))
    settings = {
        "inputs": [os.path.abspath(p) for p in run.inputs],
        "output": os.path.abspath(run.output),
        "sensor": run.sensor,
        "method": run.method,
        "weights": run.weights,
        "adapt": run.effective_adapt,
        "tile": run.ingest_tile,
        "seed": run.seed,
        "sample": dict(run.sample),
        "fit": dict(run.fit),
        "quality_tiles": run.quality_tiles,
        "ingest": dict(run.ingest),
    }
    blob = json.dumps({"run": settings, "files": files}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def scene_action(
    spec: SceneSpec, fp: str, output: Path, row: SceneRow | None, cfg: BatchConfig
) -> str:
    if cfg.only and spec.id not in cfg.only:
        return "excluded"
    if row is None:
        return "new"
    if row.fingerprint != fp:
        return "changed"
    if row.state == "done":
        if not output.is_file():
            return "missing"
        finished = row.finished_at or 0.0
        return "replaced" if output.stat().st_mtime > finished + REPLACED_SLACK_S else "done"
    if row.state == "failed":
        return "retry" if cfg.retry_failed else "failed"
    return "resume"


def _collisions(planned: Sequence[PlannedScene]) -> None:
    seen: dict[str, PlannedScene] = {}
    for p in planned:
        key = p.output.lower()  # case-insensitive file systems collide too
        other = seen.get(key)
        if other is not None:
            raise ManifestError(
                f"Scenes {other.spec.id!r} ({other.spec.origin}) and {p.spec.id!r} "
                f"({p.spec.origin}) would write the same output.",
                path=p.output,
                expected="one output per scene",
                got="two scenes writing " + p.output,
                fix="give one of them another 'output' (or id).",
            )
        seen[key] = p
    read_by = {os.path.realpath(f): p for p in planned for f in p.spec.inputs}
    for p in planned:
        reader = read_by.get(os.path.realpath(p.output))
        if reader is not None and reader is not p:
            raise ManifestError(
                f"Scene {p.spec.id!r} ({p.spec.origin}) would write an input of scene "
                f"{reader.spec.id!r} ({reader.spec.origin}).",
                path=p.output,
                expected="outputs apart from every scene's inputs",
                got=f"{p.output} is an input of {reader.spec.id!r}",
                fix=f"give {p.spec.id!r} another 'output' (or drop its 'output' column value).",
            )


def make_plan(
    cfg: BatchConfig, specs: Sequence[SceneSpec], rows: Mapping[str, SceneRow]
) -> list[PlannedScene]:
    """Plan every scene (source order); refuses output collisions and unknown ``--only`` ids."""
    out_dir = Path(cfg.out_dir).resolve()
    unknown = sorted(set(cfg.only) - {s.id for s in specs})
    if unknown:
        raise ManifestError(
            "--only names scenes the source does not list.",
            path=cfg.source,
            got=", ".join(unknown[:10]),
            fix="check the ids (pantailor status OUTDIR lists them).",
        )
    planned = []
    for pos, spec in enumerate(specs):
        output = output_of(spec, out_dir)
        try:
            if spec.error:
                raise ManifestError(spec.error)
            run = run_config(spec, cfg, output)
            fp = fingerprint(run)
        except PantailorError as exc:
            err = spec.error or f"{spec.origin}: {exc}"
            fp = hashlib.sha256(err.encode()).hexdigest()[:32]
            row = rows.get(spec.id)
            action = "excluded" if cfg.only and spec.id not in cfg.only else "invalid"
            if action == "invalid" and row is not None and row.fingerprint == fp:
                action = "failed"  # recorded already: nothing new to say
            planned.append(PlannedScene(spec, pos, action, fp, None, str(output), err))
            continue
        action = scene_action(spec, fp, output, rows.get(spec.id), cfg)
        planned.append(PlannedScene(spec, pos, action, fp, run, str(output)))
    _collisions(planned)
    if cfg.tailor_scope == "group":
        from .groups import plan_groups

        return plan_groups(cfg, planned, rows)
    return planned


def check_inputs(planned: Sequence[PlannedScene]) -> dict[str, Any]:
    """Open the inputs of every scene to be run (headers only): tiles and input errors."""
    from dataclasses import replace

    from ..runner import plan as plan_scene

    tiles, errors = 0, {}
    for p in planned:
        if p.action not in RUN_ACTIONS or p.run is None:
            continue
        try:
            tiles += int(plan_scene(replace(p.run, dry_run=True))["tiles"])
        except PantailorError as exc:
            errors[p.spec.id] = str(exc)
    return {"tiles": tiles, "input_errors": errors}


def plan_summary(planned: Sequence[PlannedScene]) -> dict[str, Any]:
    """Counts by action and the ids to run."""
    counts: dict[str, int] = {}
    for p in planned:
        counts[p.action] = counts.get(p.action, 0) + 1
    return {
        "scenes": len(planned),
        "actions": counts,
        "to_run": [p.spec.id for p in planned if p.action in RUN_ACTIONS],
        "groups_to_run": len({p.group for p in planned if p.group and p.action in RUN_ACTIONS}),
        "invalid": {p.spec.id: p.error for p in planned if p.action == "invalid"},
    }


__all__ = [
    "RUN_ACTIONS",
    "SKIP_ACTIONS",
    "BatchConfig",
    "PlannedScene",
    "check_inputs",
    "fingerprint",
    "load_scenes",
    "make_plan",
    "output_of",
    "plan_summary",
    "run_config",
    "scene_action",
]
