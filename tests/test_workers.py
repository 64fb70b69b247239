"""workers/ without a cluster: config, cluster builders, device policy, model cache, tile kernel."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import __version__
from pipeline.backbones import build, save_backbone, upsample
from pipeline.errors import CheckpointError, ConfigError, MissingDependencyError
from pipeline.grid import Window
from pipeline.store import SceneMeta, SceneStore, create_store
from pipeline.synthetic import make_scene
from workers.cluster import (
    ClusterConfig,
    kubernetes_kwargs,
    load_cluster_config,
    local_kwargs,
    make_cluster,
    resolve_kind,
    slurm_kwargs,
)
from workers.device import ThreadPolicy, pick_device, threads_for_worker
from workers.kernel import TileTask, infer_tile
from workers.plugin import ModelCache, ModelSpec, file_sha256


def small_store(path: Path, shape: tuple[int, int], tile: int, sensor: str = "qb") -> SceneStore:
    """A synthetic scene written straight into a store (pixel grid)."""
    syn = make_scene(shape, sensor, seed=3)
    r = syn.sensor.ratio
    meta = SceneMeta(
        version=__version__,
        sensor=syn.sensor.name,
        ratio=r,
        tile=tile,
        pan_shape_yx=shape,
        n_bands=syn.sensor.n_bands,
        crs=None,
        pan_transform=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
        ms_transform=(float(r), 0.0, 0.0, 0.0, float(r), 0.0),
        alignment="corner",
        nodata=None,
        dtype="uint16",
        pan_dtype="uint16",
        dn_max=syn.sensor.dn_max,
        bands=syn.sensor.bands,
    )
    return create_store(path, meta, pan=syn.pan, ms=syn.ms)


def random_weights(path: Path, name: str, n_bands: int, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    save_backbone(build(name, n_bands), path, {"test": 1})
    return path


# ----------------------------------------------------------------------------- cluster config


def test_defaults_load_and_user_file_overrides(tmp_path: Path) -> None:
    cfg = load_cluster_config()
    assert cfg.kind == "auto" and cfg.threads_per_worker == 1 and cfg.slurm["walltime"]
    user = tmp_path / "c.yaml"
    user.write_text("cluster:\n  n_workers: 3\n  slurm:\n    queue: gpu\n")
    cfg = load_cluster_config(user, threads_per_worker=2)
    assert (cfg.n_workers, cfg.threads_per_worker) == (3, 2)
    assert cfg.slurm["queue"] == "gpu" and cfg.slurm["cores"] == 4  # merged, not replaced


def test_scheduler_address_implies_kind_address() -> None:
    cfg = load_cluster_config(None, address="tcp://127.0.0.1:1")
    assert cfg.kind == "address" and make_cluster(cfg) is None


@pytest.mark.parametrize(
    "text",
    [
        "cluster:\n  n_wokers: 2\n",
        "cluster:\n  kind: yarn\n",
        "cluster: [1, 2]\n",
        "cluster:\n  n_workers: two\n",
    ],
)
def test_bad_cluster_config_is_refused_with_the_file(tmp_path: Path, text: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_cluster_config(bad)
    assert str(bad) in str(err.value)


def test_invalid_counts_and_missing_address() -> None:
    with pytest.raises(ConfigError, match="--workers"):
        ClusterConfig(n_workers=0)
    with pytest.raises(ConfigError, match="--scheduler"):
        ClusterConfig(kind="address")


def test_local_kwargs_are_processes_and_auto_is_local_without_gpu() -> None:
    kw = local_kwargs(ClusterConfig(n_workers=2, threads_per_worker=1))
    assert kw["processes"] is True and kw["n_workers"] == 2 and kw["threads_per_worker"] == 1
    if not torch.cuda.is_available():
        assert resolve_kind(ClusterConfig()) == "local"
    assert resolve_kind(ClusterConfig(kind="auto", device="cpu")) == "local"


def test_slurm_kwargs_translate_gpus_and_jobs() -> None:
    cfg = load_cluster_config(None, slurm={"queue": "gpu", "gpus_per_job": 1, "jobs": 3})
    kwargs, jobs = slurm_kwargs(cfg)
    assert jobs == 3
    assert kwargs["queue"] == "gpu" and kwargs["cores"] == 4 and kwargs["processes"] == 1
    assert "--gres=gpu:1" in kwargs["job_extra_directives"]
    assert kwargs["worker_extra_args"] == ["--resources", "GPU=1"]
    assert "account" not in kwargs  # unset values are not passed


def test_kubernetes_kwargs_request_gpus() -> None:
    cfg = load_cluster_config(None, kubernetes={"gpus": 1, "n_workers": 5}, threads_per_worker=2)
    kw = kubernetes_kwargs(cfg)
    assert kw["n_workers"] == 5
    assert kw["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert kw["worker_command"][:3] == ["dask-worker", "--nthreads", "2"]
    assert "GPU=1" in kw["worker_command"]


@pytest.mark.parametrize(
    ("kind", "module", "extra"),
    [
        ("slurm", "dask_jobqueue", "slurm"),
        ("kubernetes", "dask_kubernetes", "kubernetes"),
        ("local-cuda", "dask_cuda", "gpu"),
    ],
)
def test_optional_backends_name_the_install_command(kind: str, module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    with pytest.raises(MissingDependencyError, match=rf"pip install 'pantailor\[{extra}\]'"):
        make_cluster(ClusterConfig(kind=kind))


# ----------------------------------------------------------------------------- device


def test_device_policy() -> None:
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert pick_device("auto").type == "cpu"
        with pytest.raises(ConfigError, match="CUDA"):
            pick_device("cuda")
    with pytest.raises(ConfigError):
        pick_device("tpu")
    assert threads_for_worker(3).intra_op == 3
    before = torch.get_num_threads()
    try:
        ThreadPolicy(intra_op=1).apply()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------------- model cache


def test_model_cache_loads_backbone_once_and_checks_adapter(tmp_path: Path) -> None:
    w = random_weights(tmp_path / "w.pt", "dicnn", 4)
    spec = ModelSpec(backbone="dicnn", weights=str(w), sensor="qb", n_bands=4)
    cache = ModelCache(torch.device("cpu"))
    a, b = cache.get(spec), cache.get(spec)
    assert a is b and cache.loads == {"backbone": 1}
    assert a.receptive_field == a.backbone.receptive_field > 0
    tuned = random_weights(tmp_path / "ft.pt", "dicnn", 4, seed=1)
    ft = ModelSpec(
        backbone="dicnn",
        weights=str(w),
        sensor="qb",
        n_bands=4,
        adapter="finetune",
        adapter_path=str(tuned),
        adapter_sha256=file_sha256(tuned),
    )
    assert cache.get(ft).module is not a.module and cache.loads["backbone"] == 1
    bad = ModelSpec(**{**ft.__dict__, "adapter_sha256": "0" * 64})
    with pytest.raises(CheckpointError, match="checksum"):
        cache.get(bad)
    with pytest.raises(ConfigError):
        ModelSpec(backbone="dicnn", weights=None, sensor="qb", n_bands=4, adapter="tailor")


# ----------------------------------------------------------------------------- kernel


def test_kernel_writes_exactly_its_own_chunk_and_matches_whole_image(tmp_path: Path) -> None:
    store = small_store(tmp_path / "s.zarr", (72, 100), tile=32)
    w = random_weights(tmp_path / "w.pt", "fusionnet", 4)
    spec = ModelSpec(backbone="fusionnet", weights=str(w), sensor="qb", n_bands=4)
    store.create_output("out")
    keys = list(store.grid.keys())
    res = infer_tile(TileTask(store=str(store.path), output="out", key=keys[4], model=spec))
    full = store.read_output("out", Window(0, 72, 0, 100))
    own = store.grid.pan_window(keys[4])
    written = ~np.isnan(full).all(axis=0)
    assert written[own.slices].all() and written.sum() == own.shape_yx[0] * own.shape_yx[1]
    assert res.key == keys[4] and res.peak_rss > 0 and len(res.sha256) == 64
    for k in keys:
        infer_tile(TileTask(store=str(store.path), output="out", key=k, model=spec))
    tiled = store.read_output("out", Window(0, 72, 0, 100))
    # untiled reference: the model on the whole image, straight from torch
    model = ModelCache(torch.device("cpu")).get(spec).module
    ms = torch.from_numpy(store.read_ms(Window(0, 18, 0, 25)).astype(np.float32) / 2047.0)[None]
    pan = torch.from_numpy(store.read_pan(Window(0, 72, 0, 100)).astype(np.float32) / 2047.0)
    with torch.no_grad():
        whole = model(ms, upsample(ms, 4, "poly23"), pan[None, None])[0].numpy()
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=2e-5)


@pytest.mark.parametrize("name", ["slurm/cluster-gpu.yaml", "kubernetes.yaml"])
def test_shipped_deploy_configs_load(name: str) -> None:
    cfg = load_cluster_config(Path(__file__).resolve().parent.parent / "deploy" / name)
    if cfg.kind == "slurm":
        kwargs, jobs = slurm_kwargs(cfg)
        assert jobs >= 1 and "--gres=gpu:1" in kwargs["job_extra_directives"]
    else:
        assert kubernetes_kwargs(cfg)["n_workers"] >= 1


def test_local_workers_are_spawned_without_distributed_malloc_trim_threshold() -> None:
    # distributed's MALLOC_TRIM_THRESHOLD_ made the tailor fit 3-4x slower inside workers
    from distributed import Client

    cluster = make_cluster(
        ClusterConfig(kind="local", n_workers=1, threads_per_worker=1, dashboard_address=None)
    )
    try:
        with Client(cluster) as client:
            env = client.run(lambda: dict(os.environ))
    finally:
        cluster.close()
    (worker_env,) = env.values()
    assert "MALLOC_TRIM_THRESHOLD_" not in worker_env
    assert worker_env.get("OMP_NUM_THREADS") == "1"  # the other pre-spawn settings stay
