"""The tile map's order (issue 12, item 1): full tiles first, the clipped edge tiles last.

Small clipped tiles at the end of the map keep the tail short (a worker idles while the other
finishes the last tile). On one worker thread tiles complete in the order they are submitted,
which the journal records; the bytes do not depend on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline import tilemap
from pipeline.distribute import Engine
from pipeline.grid import Window
from pipeline.runner import Journal, stage_infer
from tests.test_workers import random_weights, small_store
from workers.plugin import ModelSpec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def one_worker() -> Iterator[Engine]:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as c,
        Client(c) as client,
    ):
        yield Engine(client, device="cpu")


def test_clipped_edge_tiles_run_last_and_the_bytes_do_not_change(
    one_worker: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = small_store(tmp_path / "s.zarr", (80, 112), 32)  # 3 x 4 tiles: row 2, col 3 clipped
    weights = random_weights(tmp_path / "w.pt", "dicnn", 4)
    spec = ModelSpec(backbone="dicnn", weights=str(weights), sensor="qb", n_bands=4)
    orders, digests = {}, {}
    for largest_first in (False, True):
        monkeypatch.setattr(tilemap, "LARGEST_FIRST", largest_first)
        journal = Journal(tmp_path / f"j{largest_first}.json", {})
        info = stage_infer(journal, one_worker, store, spec, output=f"o{largest_first}")
        assert info["tail_seconds"] == 0.0  # one worker: nobody waits for the last tile
        orders[largest_first] = [tuple(map(int, k.split("-"))) for k in journal.tiles]
        digests[largest_first] = dict(sorted(journal.tiles.items()))
    clipped = [(r, c) for r, c in orders[True] if r == 2 or c == 3]
    assert len(clipped) == 6 and orders[True][-6:] == clipped
    assert orders[False] == sorted(orders[False])  # raster order
    assert digests[True] == digests[False]
    a, b = (store.read_output(f"o{x}", Window(0, 80, 0, 112)) for x in (True, False))
    np.testing.assert_array_equal(a, b)
