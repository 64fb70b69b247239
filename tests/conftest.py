"""Shared fixtures: the real-data folder (skipping where absent) and seeded synthetic scenes."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import data_dir


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real data folder (``PANTAILOR_DATA``); skips the test where it is absent."""
    root = data_dir()
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set PANTAILOR_DATA)")
    return root


@pytest.fixture
def data_file(data_root: Path):  # type: ignore[no-untyped-def]
    """Factory: ``data_file("vhr/grip/imgGE1.mat")`` -> path, skipping where the file is absent."""

    def get(relative: str) -> Path:
        path = data_root / relative
        if not path.exists():
            pytest.skip(f"real data file {relative} not found under {data_root}")
        return path

    return get


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """One torch thread in the test process: on a shared 2-core box, two spin-waiting threads
    were several times slower than one (benchmarks/results/fit_speed.md)."""
    import torch

    torch.set_num_threads(1)
