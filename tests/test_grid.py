"""Tile grid: exact cover, PAN/MS alignment, halos clipped at edges, crops, keys, errors."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import ConfigError
from pipeline.grid import TileGrid, TileKey, Window, halo_ms_for


def test_window_basics() -> None:
    w = Window(2, 7, 3, 11)
    assert w.shape_yx == (5, 8)
    assert np.zeros((10, 12))[w.slices].shape == (5, 8)
    assert w.scaled(4) == Window(8, 28, 12, 44)
    assert Window(4, 6, 5, 9).relative_to(w) == Window(2, 4, 2, 6)


def test_tile_key_text_round_trip_and_order() -> None:
    k = TileKey(3, 12)
    assert str(k) == "3-12" and TileKey.parse("3-12") == k
    assert sorted([TileKey(1, 0), TileKey(0, 5), TileKey(0, 1)]) == [
        TileKey(0, 1),
        TileKey(0, 5),
        TileKey(1, 0),
    ]
    assert len({TileKey(1, 2), TileKey(1, 2)}) == 1


@pytest.mark.parametrize(
    "shape,ratio,tile",
    [((148, 116), 4, 32), ((82, 82), 2, 32), ((512, 512), 4, 512), ((36, 1000), 4, 64)],
)
def test_tiles_cover_the_scene_exactly_once(shape: tuple[int, int], ratio: int, tile: int) -> None:
    grid = TileGrid(shape, ratio, tile)
    pan_hits = np.zeros(shape, dtype=int)
    ms_hits = np.zeros(grid.ms_shape_yx, dtype=int)
    keys = list(grid.keys())
    assert len(keys) == len(grid) == grid.shape[0] * grid.shape[1]
    for key in keys:
        pan_hits[grid.pan_window(key).slices] += 1
        ms_hits[grid.ms_window(key).slices] += 1
        assert grid.pan_window(key) == grid.ms_window(key).scaled(ratio)
    assert (pan_hits == 1).all() and (ms_hits == 1).all()


def test_ragged_edge_tiles() -> None:
    grid = TileGrid((148, 116), 4, 32)
    assert grid.shape == (5, 4) and grid.ms_shape_yx == (37, 29) and grid.ms_tile == 8
    assert grid.pan_window(TileKey(4, 3)) == Window(128, 148, 96, 116)
    assert grid.ms_window(TileKey(4, 3)) == Window(32, 37, 24, 29)


def test_read_windows_with_halo_clip_at_edges() -> None:
    grid = TileGrid((148, 116), 4, 32)
    corner = grid.read(TileKey(0, 0), halo_ms=3)
    assert corner.ms == Window(0, 11, 0, 11) and corner.pan == Window(0, 44, 0, 44)
    assert corner.out == Window(0, 32, 0, 32) and corner.crop == Window(0, 32, 0, 32)
    inner = grid.read(TileKey(2, 1), halo_ms=3)
    assert inner.ms == Window(13, 27, 5, 19)
    assert inner.crop == Window(12, 44, 12, 44)
    last = grid.read(TileKey(4, 3), halo_ms=3)
    assert last.ms == Window(29, 37, 21, 29) and last.crop == Window(12, 32, 12, 32)


def test_crop_of_a_read_recovers_the_tile() -> None:
    grid = TileGrid((148, 116), 4, 32)
    img = np.arange(148 * 116).reshape(148, 116)
    for key in list(grid.keys()):
        rd = grid.read(key, halo_ms=2)
        np.testing.assert_array_equal(img[rd.pan.slices][rd.crop.slices], img[rd.out.slices])


@pytest.mark.parametrize(
    "shape,ratio,tile,match",
    [
        ((148, 116), 4, 30, "multiple of the PAN/MS ratio"),
        ((148, 116), 4, 0, "multiple of the PAN/MS ratio"),
        ((150, 116), 4, 32, "PAN shape must be a positive multiple"),
        ((0, 116), 4, 32, "PAN shape must be a positive multiple"),
        ((148, 116), 0, 32, "ratio must be a positive integer"),
    ],
)
def test_invalid_grids(shape: tuple[int, int], ratio: int, tile: int, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TileGrid(shape, ratio, tile)


def test_bad_keys_and_halos() -> None:
    grid = TileGrid((148, 116), 4, 32)
    with pytest.raises(ConfigError, match="outside the grid"):
        grid.pan_window(TileKey(5, 0))
    with pytest.raises(ConfigError, match="halo must be >= 0"):
        grid.read(TileKey(0, 0), halo_ms=-1)


@pytest.mark.parametrize(
    "rf,ratio,support,want",
    [(0, 4, 0, 0), (1, 4, 0, 1), (4, 4, 0, 1), (5, 4, 2, 4), (17, 2, 1, 10)],
)
def test_halo_ms_for(rf: int, ratio: int, support: int, want: int) -> None:
    assert halo_ms_for(rf, ratio, support) == want
