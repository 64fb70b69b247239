"""Stratified patch draws: texture quantiles (``"texture"``) and coverage (``"coverage"``).

:func:`stratified_draw` (``mode="texture"``) draws round-robin from texture quantiles of a seeded
pool. :func:`coverage_draw` (``mode="coverage"``) makes every draw span the scene's texture range
and spread over its area; it is ``mode="coverage"`` of :func:`pipeline.sampling.sample_keys`. The pool is every valid candidate
patch of the scene (at most :data:`POOL_PER_PATCH` per wanted patch, visited in seeded order on a
large scene), each scored by the mean gradient magnitude of its MS window (texture). The ``k`` fit
patches come one from each of ``k`` equal-count texture quantiles of the pool and the held-out
patches one from each of ``extra`` quantiles of what is left. Within a quantile the seed draws
:data:`CHOICES` candidates and keeps the one farthest (grid distance) from the patches chosen so
far, so a draw also spreads over the scene and the held-out patches lie apart from the fit ones.

The seed changes which patches are drawn, never which texture quantiles are covered: two seeds
fit on equally representative sets (the seed spread of a fit comes mostly from the draw; see
``docs/notes/method.md``).
"""

from __future__ import annotations

import numpy as np

from .grid import TileKey

POOL_PER_PATCH = 64  # candidates scored per wanted patch (the whole scene up to 64 * (k + extra))
CHOICES = 3  # seeded candidates per quantile; the one farthest from the chosen patches is kept


def pool_size(wanted: int, n_candidates: int) -> int:
    """How many valid candidates to score for ``wanted`` patches."""
    return min(n_candidates, POOL_PER_PATCH * max(wanted, 1))


def stratified_draw(
    pool: list[tuple[TileKey, float]], k: int, strata: int, rng: np.random.Generator
) -> list[TileKey]:
    """Draw ``k`` keys round-robin from ``strata`` texture quantiles of ``pool``."""
    ranked = sorted(pool, key=lambda kv: (kv[1], kv[0]))
    n_strata = min(strata, len(ranked))
    bins = np.array_split(np.arange(len(ranked)), n_strata)
    queues = [[ranked[i][0] for i in rng.permutation(b)] for b in bins]
    chosen: list[TileKey] = []
    while len(chosen) < min(k, len(ranked)):
        for q in queues:
            if q and len(chosen) < k:
                chosen.append(q.pop())
    return chosen


def coverage_draw(
    pool: list[tuple[TileKey, float]], k: int, extra: int, rng: np.random.Generator
) -> list[TileKey]:
    """``k`` fit keys (one per texture quantile of ``pool``), then up to ``extra`` held-out keys
    (one per quantile of the rest); ``pool`` holds ``(key, texture)``."""
    ranked = [key for key, _ in sorted(pool, key=lambda kv: (kv[1], kv[0]))]
    fit = _one_per_quantile(ranked, k, [], rng)
    taken = set(fit)
    held = _one_per_quantile([key for key in ranked if key not in taken], extra, fit, rng)
    return fit + held


def _one_per_quantile(
    ranked: list[TileKey], m: int, taken: list[TileKey], rng: np.random.Generator
) -> list[TileKey]:
    """One key from each of ``m`` equal-count slices of ``ranked`` (quantile order), visited in
    seeded order; each the farthest from ``taken`` and the keys already picked of ``CHOICES``
    seeded candidates of its slice."""
    m = min(m, len(ranked))
    chosen = list(taken)
    bins = np.array_split(np.arange(len(ranked)), m) if m else []
    for b in rng.permutation(m):
        idx = bins[b]
        draw = rng.choice(idx, size=min(CHOICES, len(idx)), replace=False)
        best = max(draw, key=lambda i: _gap(ranked[int(i)], chosen))  # ties: the first drawn
        chosen.append(ranked[int(best)])
    return chosen[len(taken) :]


def _gap(key: TileKey, chosen: list[TileKey]) -> int:
    """Squared grid distance from ``key`` to the nearest of ``chosen`` (0 when none)."""
    if not chosen:
        return 0
    return min((key.row - c.row) ** 2 + (key.col - c.col) ** 2 for c in chosen)


__all__ = ["CHOICES", "POOL_PER_PATCH", "coverage_draw", "pool_size", "stratified_draw"]
