"""Coverage sampling: one fit patch per texture quantile, seeded, spread apart, nodata-aware."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.grid import TileKey
from pipeline.sampling import ArraySource, SampleConfig, patch_grid, sample_keys, sample_patches
from pipeline.sampling_coverage import POOL_PER_PATCH

R, P = 4, 16  # ratio; patch edge in PAN pixels (4 MS pixels)
ROWS, COLS = 11, 9  # full candidate patches; the scene adds a partial row and column
H, W = ROWS * P + 4, COLS * P + 4


def _ranked_scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[TileKey, int]]:
    """A scene whose 99 candidates have known texture ranks (checkerboards of rising amplitude,
    placed in a seeded random order), and that rank per key."""
    rng = np.random.default_rng(seed)
    keys = [TileKey(r, c) for r in range(ROWS) for c in range(COLS)]
    rank = {k: int(i) for k, i in zip(keys, rng.permutation(len(keys)), strict=True)}
    m = P // R
    board = np.indices((m, m)).sum(axis=0) % 2 * 2 - 1  # +-1 checkerboard
    ms = np.full((4, H // R, W // R), 1000.0)
    for k, i in rank.items():
        ms[:, k.row * m : (k.row + 1) * m, k.col * m : (k.col + 1) * m] += (10 + 10 * i) * board
    pan = np.full((H, W), 1000.0)
    return pan, ms, rank


def _keys(cfg: SampleConfig, seed: int, pan, ms, nodata=None, extra: int = 0) -> list[TileKey]:
    grid = patch_grid(pan.shape, R, cfg.patch)
    return sample_keys(ArraySource(pan, ms), grid, cfg, seed, nodata=nodata, extra=extra)


def _cfg(mode: str = "coverage", k: int = 4) -> SampleConfig:
    return SampleConfig(patch=P, fraction=0.01, min_patches=k, max_patches=k, mode=mode)


def test_every_draw_takes_one_fit_patch_per_texture_quantile() -> None:
    pan, ms, rank = _ranked_scene()
    for seed in range(12):
        keys = _keys(_cfg(), seed, pan, ms)
        # 99 ranks in 4 equal-count quantiles: 0-24, 25-49, 50-74, 75-98
        assert sorted(rank[k] // 25 for k in keys) == [0, 1, 2, 3], seed


def test_random_mode_misses_quantiles_where_coverage_does_not() -> None:
    """The property above is not automatic: random draws often leave a quantile out."""
    pan, ms, rank = _ranked_scene()
    missed = [
        len({rank[k] // 25 for k in _keys(_cfg("random"), s, pan, ms)}) < 4 for s in range(12)
    ]
    assert sum(missed) >= 3


def test_held_out_patches_come_from_the_low_and_high_halves_apart_from_the_fit() -> None:
    pan, ms, rank = _ranked_scene(1)
    for seed in range(8):
        keys = _keys(_cfg(), seed, pan, ms, extra=2)
        fit, held = keys[:4], keys[4:]
        assert len(held) == 2 and not set(fit) & set(held)
        assert fit == sorted(fit) and held == sorted(held)
        # the 95 left in 2 quantiles: ranks below / above the median of what is left
        rest = sorted(rank[k] for k in rank if k not in fit)
        halves = sorted(int(rank[k] >= rest[48]) for k in held)
        assert halves == [0, 1], seed


def test_same_seed_same_draw_other_seeds_other_draws() -> None:
    pan, ms, _ = _ranked_scene()
    draws = [tuple(_keys(_cfg(), s, pan, ms, extra=2)) for s in range(6)]
    assert draws[0] == tuple(_keys(_cfg(), 0, pan, ms, extra=2))
    assert len(set(draws)) == len(draws)  # the seed changes the patches, not only their order


def test_fit_patches_spread_over_the_scene() -> None:
    """On a scene of one texture the draw spreads out: its closest pair lies farther apart than
    a random draw's, on average over seeds."""
    pan = np.full((H, W), 1000.0)
    ms = np.random.default_rng(3).normal(1000.0, 30.0, (4, H // R, W // R))

    def closest(keys: list[TileKey]) -> float:
        return min(
            np.hypot(a.row - b.row, a.col - b.col) for a, b in itertools.combinations(keys, 2)
        )

    cov = np.mean([closest(_keys(_cfg(k=6), s, pan, ms)) for s in range(20)])
    rnd = np.mean([closest(_keys(_cfg("random", k=6), s, pan, ms)) for s in range(20)])
    assert cov > rnd + 0.5


def test_nodata_patches_are_never_drawn() -> None:
    pan, ms, _ = _ranked_scene()
    pan[:, : W // 2] = 0  # left half of PAN is nodata: patch columns 0..4 touch it
    grid = patch_grid(pan.shape, R, P)
    for seed in range(6):
        keys = _keys(_cfg(), seed, pan, ms, nodata=0.0, extra=2)
        assert len(keys) == 6
        for k in keys:
            assert (pan[grid.pan_window(k).slices] != 0).all()


def test_coverage_batch_has_its_held_out_patches() -> None:
    pan, ms, _ = _ranked_scene()
    cfg = SampleConfig(
        patch=P, fraction=0.01, min_patches=4, max_patches=4, mode="coverage", holdout=2
    )
    batch = sample_patches((pan, ms), cfg, seed=2, ratio=R, dn_max=2047.0)
    assert len(batch) == 6 and batch.holdout == 2
    fit, held = batch.split()
    assert held is not None and len(fit) == 4 and len(held) == 2


class _CountingSource(ArraySource):
    reads = 0

    def read_ms(self, window):  # type: ignore[no-untyped-def]
        type(self).reads += 1
        return super().read_ms(window)


@pytest.mark.parametrize("wanted", [1, 2])
def test_a_large_scene_scores_a_capped_pool(wanted: int) -> None:
    """Only POOL_PER_PATCH windows per wanted patch are read to score (then the draw's)."""
    side = 160 * P  # 25 600 candidates
    pan = np.full((side, side), 1000, dtype=np.uint16)
    ms = np.full((4, side // R, side // R), 1000, dtype=np.uint16)
    src = _CountingSource(pan, ms)
    cfg = SampleConfig(
        patch=P, fraction=0.001, min_patches=wanted, max_patches=wanted, mode="coverage"
    )
    _CountingSource.reads = 0
    keys = sample_keys(src, patch_grid(pan.shape, R, P), cfg, 0)
    assert len(keys) == wanted
    assert _CountingSource.reads == POOL_PER_PATCH * wanted


def test_unknown_mode_still_names_the_modes() -> None:
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="mode"):
        SampleConfig(mode="cover")
