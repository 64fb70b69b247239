"""Shared fixtures: the real-data folder (skipping where absent) and seeded synthetic scenes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pipeline.config import data_dir

if TYPE_CHECKING:
    from pipeline.distribute import Engine


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


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a test even where an earlier test raised the count; restored
    after. Modules of tiny-tensor tests use it via ``usefixtures``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def cluster_scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The synthetic GeoTIFF PAN/MS pair every cluster test runs (tests/clusters.py)."""
    from tests.clusters import write_scene

    return write_scene(tmp_path_factory.mktemp("cluster-scene"))


@pytest.fixture(scope="session")
def local_run(cluster_scene: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The COG of ``pantailor run`` of ``cluster_scene`` on the default local cluster (2 worker
    processes); its work dir ``local.work/`` (store, fitted ``adapter.pt``) lies beside it."""
    import subprocess

    from tests.clusters import run_argv, summary_of

    out = tmp_path_factory.mktemp("local-run") / "local.tif"
    argv = run_argv(*cluster_scene, out, "--workers", "2")
    summary = summary_of(subprocess.run(argv, capture_output=True, text=True, timeout=300))
    assert summary["infer"]["computed"] == 24
    return out


@pytest.fixture(scope="session")
def local_reference(local_run: Path) -> bytes:
    """The bytes of :func:`local_run`'s COG: what every other deployment must reproduce."""
    return local_run.read_bytes()


@pytest.fixture(scope="session")
def in_process(cluster_scene: tuple[Path, Path]) -> dict[str, Any]:
    """``cluster_scene``'s products computed in the test process (tests/clusters.py
    ``in_process_product``): ``tailored`` with the tailor the cluster runs fit, ``untailored``
    with the backbone alone (uint16 ``(B, H, W)``), and ``tailor_state``."""
    from tests.clusters import in_process_product

    tailored, state = in_process_product(*cluster_scene)
    untailored, _ = in_process_product(*cluster_scene, adapt="none")
    return {"tailored": tailored, "untailored": untailored, "tailor_state": state}


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """A real 2-process local Dask cluster (one per test module that asks for it)."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def engine(client: Any) -> Engine:
    """The pipeline's :class:`~pipeline.distribute.Engine` on :func:`client`, on CPU."""
    from pipeline.distribute import Engine

    return Engine(client, device="cpu")
