"""The fast paths of the classical methods against their references (scipy, the filter bank)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import nnls

from pipeline import classical
from pipeline.quality import interpolate


@pytest.mark.parametrize("seed", range(40))
def test_active_set_nnls_equals_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 10))
    a = rng.normal(size=(int(rng.integers(n, 300)), n))
    if seed % 2:  # correlated, all-positive columns like MS bands
        a = np.abs(a) + 3 * rng.normal(size=(a.shape[0], 1))
    b = rng.normal(size=a.shape[0]) * rng.uniform(0.1, 100)
    want = nnls(a, b)[0]
    got = classical._nnls(a, b)
    assert (got >= 0).all()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())


@pytest.mark.parametrize(("shape", "upsampler"), [((8, 37, 52), "poly23"), ((4, 9, 30), "bicubic")])
def test_matrix_lms_equals_the_filter_bank(shape: tuple[int, int, int], upsampler: str) -> None:
    ms = np.random.default_rng(0).uniform(0, 2047, shape)
    got = classical._lms_of(ms, 4, upsampler)
    want = interpolate(ms, 4, upsampler)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-3)


@pytest.mark.parametrize(("shape", "ratio"), [((37, 52), 4), ((30, 9), 4), ((25, 31), 3)])
def test_matrix_degrade_equals_the_strided_convolutions(shape: tuple[int, int], ratio: int) -> None:
    from pipeline.classical._stats import _low_of
    from pipeline.mtf import degrade_f32

    h, w = shape
    pan = np.random.default_rng(1).uniform(0, 2047, (ratio * h + 1, ratio * w - 1))
    gains = (0.29, 0.34, 0.15)
    got = _low_of(pan, gains, ratio)
    want = degrade_f32(np.broadcast_to(pan, (3, *pan.shape)), gains, ratio)
    assert got.dtype == np.float32
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-3)


@pytest.mark.parametrize("halo", [0, 3, 11])
def test_chunk_rows_reader_equals_window_reads(halo: int, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The classical fit's reader (whole rows of chunks, kept while the pass walks down) cuts
    every tile window, halo and clipped edges included, exactly as a window read of the store;
    rows above the pass are dropped."""
    from pipeline.scene import Scene
    from pipeline.store import write_scene
    from pipeline.synthetic import make_scene
    from workers.kernel import read_window
    from workers.scene_tasks import _ChunkRows

    s = make_scene((200, 236), "wv3", seed=1)
    scene = Scene(pan=s.pan, ms=s.ms, sensor=s.sensor, crs=None, nodata=None,
                  pan_transform=(1.0, 0, 0, 0, 1.0, 0), ms_transform=(4.0, 0, 0, 0, 4.0, 0),
                  dn_max=s.sensor.dn_max)  # fmt: skip
    store = write_scene(scene, tmp_path / "s.zarr", tile=64)
    reader = _ChunkRows(store)
    for key in store.grid:
        tr = store.grid.read(key, halo)
        for got, want in zip(reader(tr), read_window(store, tr), strict=True):
            np.testing.assert_array_equal(got, want)
        assert len(reader.rows) <= 3


def test_engine_warm_imports_the_classical_task_code_on_every_worker() -> None:
    """A classical run has no backbone to preload: ``Engine.warm`` (run in the engine's start)
    imports its task code on every worker, so the fit and the first tiles do not."""
    from distributed import Client, LocalCluster

    from pipeline.distribute import Engine

    def loaded() -> bool:
        import sys

        return "pipeline.classical" in sys.modules

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        assert not any(client.run(loaded).values())  # fresh workers
        engine = Engine(client, device="cpu")
        engine.warm()
        engine.warm()  # once per engine
        assert list(client.run(loaded).values()) == [True, True]


@pytest.mark.parametrize("torch_threads", [1, 2])
@pytest.mark.parametrize("method", ["brovey", "mtf-glp", "mtf-glp-hpm"])
def test_the_tiled_fit_does_not_depend_on_its_threads(method: str, torch_threads: int) -> None:
    """The per-block work runs on threads, merged in block order: the same coefficients,
    bit for bit, with one thread or several, whatever torch's thread count (a worker's is 1;
    a pool thread left at torch's default rounds Brovey's design differently)."""
    import torch

    from pipeline.classical import _block
    from pipeline.synthetic import make_scene

    s = make_scene((256, 192), "wv3", seed=2)
    got, before = {}, torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        for threads in (1, 2, 3):
            _block.per_block.__defaults__ = (threads,)
            got[threads] = classical.fit_coefficients(method, s.ms, s.pan, "wv3", tile=64)
    finally:
        _block.per_block.__defaults__ = (_block.FIT_THREADS,)
        torch.set_num_threads(before)
    assert got[1] == got[2] == got[3]


def test_per_block_keeps_the_order_and_reads_a_bounded_number_ahead() -> None:
    from pipeline.classical._block import per_block

    taken: list[int] = []

    def blocks():  # type: ignore[no-untyped-def]
        for i in range(20):
            taken.append(i)
            yield i

    out = per_block(lambda b: b * b, blocks(), threads=2)  # type: ignore[arg-type, return-value]
    assert next(out) == 0
    assert len(taken) <= 4  # the first result waits for at most threads + 1 blocks (+ 1 taken)
    assert [0, *out] == [i * i for i in range(20)]


def test_ingest_stores_the_inputs_with_lz4(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The tile tasks decode the input chunks their halo reaches (up to nine per array per
    tile): the ingest writes them with Blosc LZ4 (bit shuffle), not zarr's default zstd."""
    from pipeline.scene import Scene
    from pipeline.store import write_scene
    from pipeline.synthetic import make_scene

    s = make_scene((128, 128), "wv3", seed=1)
    scene = Scene(pan=s.pan, ms=s.ms, sensor=s.sensor, crs=None, nodata=None,
                  pan_transform=(1.0, 0, 0, 0, 1.0, 0), ms_transform=(4.0, 0, 0, 0, 4.0, 0),
                  dn_max=s.sensor.dn_max)  # fmt: skip
    store = write_scene(scene, tmp_path / "s.zarr", tile=64)
    for name in ("pan", "ms"):
        (codec,) = store.array(name).compressors
        assert (type(codec).__name__, codec.cname.value, codec.shuffle.value) == (
            "BloscCodec",
            "lz4",
            "bitshuffle",
        )
    np.testing.assert_array_equal(store.read_pan(store.grid.pan_window(next(iter(store.grid)))),
                                  s.pan[:64, :64])  # fmt: skip
