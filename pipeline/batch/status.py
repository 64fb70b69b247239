"""A batch's progress from its database: per-scene rows, totals, scenes per hour and the ETA.

Reads OUTDIR's database read-only, so it works while a driver runs (WAL mode) and after.
The rate is that of the latest driver run: scenes it finished per hour of its wall time so far;
the ETA is the pending scenes at that rate.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .state import BatchState, lock_holder


def batch_status(out_dir: str | Path, now: float | None = None) -> dict[str, Any]:
    """The status of the batch in ``out_dir``.

    Returns
    -------
    dict
        ``source``; ``scenes``: one dict per scene (id, state, error, seconds, attempts, tiles,
        hqnr_none, hqnr_product, started_at, finished_at); ``totals``: done, failed, running,
        queued, pending (= running + queued), scenes; ``scenes_per_hour`` and ``eta_seconds``
        (``None`` until the latest run finished a scene); ``running_driver``: who holds the
        driver lock (``pid N on HOST since T``), or ``None``; ``groups``: the
        ``--tailor-scope group`` fits by group (state, error, members, seconds, fits).
    """
    state = BatchState.read(out_dir)
    try:
        rows = list(state.rows().values())
        runs = state.runs()
        meta = state.meta()
        groups = state.groups()
    finally:
        state.close()
    now = time.time() if now is None else now
    totals = {s: sum(r.state == s for r in rows) for s in ("done", "failed", "running", "queued")}
    totals["pending"] = totals["running"] + totals["queued"]
    totals["scenes"] = len(rows)
    rate = None
    last = runs[-1] if runs else None
    if last is not None:
        end = last["finished_at"] or now
        finished = [
            r for r in rows if r.state == "done" and (r.finished_at or 0) >= last["started_at"]
        ]
        if finished and end > last["started_at"]:
            rate = 3600.0 * len(finished) / (end - last["started_at"])
    keys = ("id", "state", "error", "seconds", "attempts", "tiles", "hqnr_none", "hqnr_product")
    return {
        "source": meta.get("source"),
        "scenes": [{k: v for k, v in asdict(r).items() if k in keys} for r in rows],
        "totals": totals,
        "scenes_per_hour": rate,
        "eta_seconds": 3600.0 * totals["pending"] / rate if rate and totals["pending"] else None,
        "running_driver": lock_holder(out_dir),
        "groups": {
            g: {k: rec[k] for k in ("state", "error", "members", "seconds", "fits")}
            for g, rec in groups.items()
        },
    }


def format_status(status: dict[str, Any]) -> str:
    """The status as a text table plus a totals line."""
    lines = [f"{'scene':<24} {'state':<8} {'seconds':>8}  error"]
    for s in status["scenes"]:
        secs = f"{s['seconds']:.1f}" if s["seconds"] is not None else "-"
        err = (s["error"] or "").replace("\n", " ")
        lines.append(f"{s['id']:<24} {s['state']:<8} {secs:>8}  {err[:120]}")
    t = status["totals"]
    rate, eta = status["scenes_per_hour"], status["eta_seconds"]
    lines.append(
        f"{t['scenes']} scenes: {t['done']} done, {t['failed']} failed, {t['pending']} pending "
        f"({t['running']} running); "
        + (f"{rate:.1f} scenes/hour" if rate else "rate unknown")
        + (f", ETA {eta / 60:.1f} min" if eta else "")
    )
    for g, rec in status.get("groups", {}).items():
        secs = f"{rec['seconds']:.1f} s" if rec["seconds"] is not None else rec["error"]
        lines.append(f"group {g}: {rec['state']}, {len(rec['members'])} scenes, fit {secs}")
    if status["running_driver"]:
        lines.append(f"driver running: {status['running_driver']}")
    return "\n".join(lines)


__all__ = ["batch_status", "format_status"]
