"""``--tailor-scope group``: one tailor per group of scenes (one strip, one acquisition).

Scenes of one acquisition share their radiometry and the sensor's MTF, so one tailor fitted on
patches sampled across the group's scenes serves all of them. The group key is the manifest's
``group`` column (STAC items: platform + acquisition date; a glob has none). A scene without a
group, a group of one scene, and scenes whose method fits nothing (``--adapt none``, classical
methods) keep their own scene scope.

- **Plan** (:func:`plan_groups`): members must share sensor, method, weights and adapt (a mixed
  group is refused, naming its rows). The group's fingerprint hashes its members' own
  fingerprints (inputs by size and mtime, settings); each member's fingerprint then hashes its
  own with the group's. So a changed member input changes the group's fingerprint and with it
  every member's: the group is fitted again and **every member scene is recomputed** (their
  tiles depend on the tailor). A member that is invalid (bad row) is left out of the group.
- **Run** (:func:`prepare_group`, one driver thread per group): ingest the members (journalled
  by :func:`pipeline.runner.ingest_scene`, so each member's run resumes after it), fit once on
  one worker (:meth:`pipeline.distribute.Engine.fit_group`) into ``OUTDIR/_groups/<group>/``
  unless the database records a fit of this fingerprint whose file is intact, then hand the
  members on to the scene pool with ``RunConfig.adapter_file``: each member's journal records
  the tailor (path + SHA-256) as its fit record. A member that fails to ingest fails alone (the
  group is fitted on the others); a failed group fit fails the group's scenes with its error.
  With ``--only``, a fit samples every valid member of the group (members not selected are
  ingested, not run), so the tailor is the one a full run would fit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..methods import adapt_mode
from .sources import ManifestError

if TYPE_CHECKING:
    from ..sampling import PatchBatch, SampleConfig
    from .plan import BatchConfig, PlannedScene
    from .run import Event
    from .state import BatchState, SceneRow

log = logging.getLogger(__name__)

GROUPS_DIR = "_groups"


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:32]


def group_dir(out_dir: Path, group: str) -> Path:
    """``OUTDIR/_groups/<group>-<hash>``: the group's fitted file (any text is a safe name)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", group)[:64]
    return out_dir / GROUPS_DIR / f"{safe}-{hashlib.sha256(group.encode()).hexdigest()[:8]}"


def _check_uniform(group: str, members: Sequence[PlannedScene]) -> None:
    def key(p: PlannedScene) -> tuple[str | None, ...]:
        run = p.run
        assert run is not None  # members have a run (filtered by the caller)
        return (run.sensor, run.method, run.weights, run.effective_adapt)

    kinds = {key(p) for p in members}
    if len(kinds) > 1:
        rows = "; ".join(
            f"{p.spec.id} ({p.spec.origin}): sensor {k[0]}, method {k[1]}, weights {k[2]}, "
            f"adapt {k[3]}"
            for p in members
            for k in [key(p)]
        )
        raise ManifestError(
            f"The scenes of group {group!r} do not share sensor, method, weights and adapt.",
            expected="one sensor, method, weights and adapt per group (one tailor serves all)",
            got=rows,
            fix="give these scenes other groups, or the same settings.",
        )


def plan_groups(
    cfg: BatchConfig, planned: Sequence[PlannedScene], rows: Mapping[str, SceneRow]
) -> list[PlannedScene]:
    """``planned`` with group members tied to their group (see the module docstring)."""
    from .plan import scene_action

    by_group: dict[str, list[PlannedScene]] = {}
    for p in planned:
        key = p.spec.options.get("group")
        if p.run is not None and key and adapt_mode(p.run.effective_adapt).fits:
            by_group.setdefault(str(key), []).append(p)
    out_dir = Path(cfg.out_dir).resolve()
    tied: dict[str, PlannedScene] = {}
    for group, members in by_group.items():
        if len(members) < 2:
            continue  # a group of one is a scene: its own fit
        _check_uniform(group, members)
        adapter = str(group_dir(out_dir, group) / "adapter.pt")
        gfp = _digest([group, adapter, [(p.spec.id, p.fingerprint) for p in members]])
        for p in members:
            assert p.run is not None
            fp = _digest([p.fingerprint, gfp])
            action = scene_action(p.spec, fp, Path(p.output), rows.get(p.spec.id), cfg)
            run = replace(p.run, adapter_file=adapter)
            tied[p.spec.id] = replace(p, action=action, fingerprint=fp, run=run, group=gfp)
    return [tied.get(p.spec.id, p) for p in planned]


@dataclass(frozen=True)
class GroupWork:
    """A group with members to run: its id, fingerprint, every valid member and those to run."""

    id: str
    fingerprint: str
    members: tuple[PlannedScene, ...]
    todo: tuple[PlannedScene, ...]

    @property
    def adapter(self) -> str:
        """The group's fitted file."""
        run = self.members[0].run
        assert run is not None and run.adapter_file is not None
        return run.adapter_file


def group_work(
    todo: Sequence[PlannedScene], planned: Sequence[PlannedScene]
) -> list[PlannedScene | GroupWork]:
    """The scenes to run, each group's members gathered into one :class:`GroupWork`."""
    members: dict[str, list[PlannedScene]] = {}
    for p in planned:
        if p.group is not None:
            members.setdefault(p.group, []).append(p)
    to_run: dict[str, list[PlannedScene]] = {}
    out: list[PlannedScene | str] = []
    for p in todo:
        if p.group is None:
            out.append(p)
            continue
        if p.group not in to_run:
            out.append(p.group)
        to_run.setdefault(p.group, []).append(p)
    return [
        w
        if not isinstance(w, str)
        else GroupWork(
            str(members[w][0].spec.options["group"]), w, tuple(members[w]), tuple(to_run[w])
        )
        for w in out
    ]


def _recorded(work: GroupWork, state: BatchState) -> dict[str, Any] | None:
    """The database's fit of this group when it is current and its file intact."""
    from ..files import file_sha256

    rec = state.groups().get(work.id)
    if rec is None or rec["state"] != "done" or rec["fingerprint"] != work.fingerprint:
        return None
    path = Path(work.adapter)
    if not path.is_file() or file_sha256(path) != rec["sha256"]:
        log.warning("group %s: its fitted file is missing or changed; fitting again", work.id)
        return None
    return rec


#: Members ingested at once (each ingest is GDAL reads and Zarr codecs, which release the GIL).
INGEST_THREADS = min(4, os.cpu_count() or 1)


def _ingest(
    work: GroupWork, fit: bool, state: BatchState, on_event: Event | None
) -> tuple[list[str], set[str]]:
    """Ingest the members to run (and, for a fit, the others), a few at once: the stores made
    (in member order, which fixes the group's patch sample), and the members to run that failed
    (recorded failed; the group goes on)."""
    from ..runner import ingest_scene
    from .run import _emit, error_text

    todo = {p.spec.id for p in work.todo}
    items = list(work.members if fit else work.todo)

    def one(p: PlannedScene) -> str | Exception:
        assert p.run is not None  # planned members carry their run
        cfg = replace(p.run, overwrite=p.spec.id in todo and p.action in ("changed", "missing"))
        try:
            return ingest_scene(cfg)
        except Exception as exc:  # that member's own failure
            return exc

    stores: list[str] = []
    failed: set[str] = set()
    with ThreadPoolExecutor(max(1, min(INGEST_THREADS, len(items))), "ingest") as pool:
        for p, got in zip(items, pool.map(one, items), strict=True):
            if isinstance(got, str):
                stores.append(got)
            elif p.spec.id in todo:
                text = error_text(got, p.spec.id)
                state.fail(p.spec.id, text, None, p.entry())
                _emit(on_event, "failed", p.spec.id, error=text, seconds=0.0)
                failed.add(p.spec.id)
            else:
                log.warning("group %s: member %s not ingested: %s", work.id, p.spec.id, got)
    return stores, failed


def _fit(work: GroupWork, stores: list[str], engine: Any) -> dict[str, Any]:
    """One fit on patches of every store, on one worker; the record for the database."""
    from ..jobs import FitJob, GroupFitJob
    from ..preflight import model_spec
    from ..store import SceneStore

    run = work.members[0].run
    assert run is not None
    first = SceneStore.open(stores[0])
    base = model_spec(run, first.sensor, first.meta.n_bands)
    Path(work.adapter).parent.mkdir(parents=True, exist_ok=True)
    job = FitJob(
        store=stores[0], model=base, adapt=run.effective_adapt, out=work.adapter,
        sample=dict(run.sample), fit=dict(run.fit), seed=run.seed,
    )  # fmt: skip
    t0 = time.perf_counter()
    outcome = engine.fit_group(GroupFitJob(fit=job, stores=tuple(stores)))
    return {
        "adapter": outcome.path,
        "sha256": outcome.sha256,
        "n_patches": outcome.n_patches,
        "seconds": time.perf_counter() - t0,
    }


def prepare_group(
    work: GroupWork, engine: Any, state: BatchState, on_event: Event | None
) -> tuple[list[str], list[PlannedScene]]:
    """Ingest the group's scenes and fit its tailor once (or reuse the recorded one).

    Returns the ids that failed here, and the members to run next on the scene pool (with
    ``action="resume"``: their ingest has started them over already where it had to).
    """
    from .run import _emit, error_text

    rec = _recorded(work, state)
    ids = [p.spec.id for p in work.members]
    stores, failed = _ingest(work, rec is None, state, on_event)
    ready = [p for p in work.todo if p.spec.id not in failed]
    if rec is None and ready:
        try:
            rec = _fit(work, stores, engine)
        except Exception as exc:  # the group's failure is its scenes' failure
            text = f"group {work.id}: {error_text(exc, work.id)}"
            state.record_group(work.id, work.fingerprint, ids, error=text)
            for p in ready:
                state.fail(p.spec.id, text, None, p.entry())
                _emit(on_event, "failed", p.spec.id, error=text, seconds=0.0)
            return [*failed, *(p.spec.id for p in ready)], []
        state.record_group(work.id, work.fingerprint, ids, **rec)
        log.info("group %s: one fit for %d scenes (%.1f s)", work.id, len(stores), rec["seconds"])
        _emit(on_event, "group", work.id, **rec)
    return sorted(failed), [replace(p, action="resume") for p in ready]


def shares(sample: SampleConfig, n: int) -> list[SampleConfig]:
    """The group's patch budget split over ``n`` scenes: ``min_patches`` and ``max_patches``
    divided, the remainder to the first scenes, at least one patch each; the held-out patches
    divided the same way (the last scenes may hold none out)."""

    def split(total: int, i: int, least: int = 1) -> int:
        return max(least, total // n + (1 if i < total % n else 0))

    out = []
    for i in range(n):
        hi = split(sample.max_patches, i)
        lo = min(hi, split(sample.min_patches, i))
        out.append(
            replace(sample, max_patches=hi, min_patches=lo, holdout=split(sample.holdout, i, 0))
        )
    return out


def concat_patches(batches: Sequence[PatchBatch]) -> PatchBatch:
    """One :class:`~pipeline.sampling.PatchBatch` of several (same band count, patch, ratio): the
    fit patches of every batch first, then every batch's held-out patches."""
    import torch

    from ..sampling import PatchBatch

    parts = [b.split() for b in batches]
    held = [h for _, h in parts if h is not None]
    batches = [f for f, _ in parts] + held

    def cat(name: str, like: str) -> torch.Tensor | None:
        parts = [getattr(b, name) for b in batches]
        if all(t is None for t in parts):
            return None
        return torch.cat(
            [
                t if t is not None else torch.ones_like(getattr(b, like)[:, :1], dtype=torch.bool)
                for t, b in zip(parts, batches, strict=True)
            ]
        )

    return PatchBatch(
        torch.cat([b.ms for b in batches]),
        torch.cat([b.pan for b in batches]),
        cat("valid", "pan"),
        cat("valid_ms", "ms"),
        tuple(k for b in batches for k in b.keys),
        batches[0].ratio,
        sum(len(h) for h in held),
    )


def sample_group(stores: Sequence[str], sample: Mapping[str, Any], seed: int) -> PatchBatch:
    """Fit patches sampled across a group's scene stores, the budget shared (runs on a worker)."""
    from ..sampling import SampleConfig, sample_patches
    from ..store import SceneStore

    cfgs = shares(SampleConfig(**dict(sample)), len(stores))
    return concat_patches(
        [sample_patches(SceneStore.open(s), c, seed) for s, c in zip(stores, cfgs, strict=True)]
    )


__all__ = [
    "GROUPS_DIR",
    "GroupWork",
    "concat_patches",
    "group_dir",
    "group_work",
    "plan_groups",
    "prepare_group",
    "sample_group",
    "shares",
]
