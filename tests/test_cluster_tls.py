"""TLS: a scheduler and worker started with Dask's security; pantailor joins with the certificates
of a cluster config (``security:``), a client without them is refused, a foreign CA too."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import pytest

from pipeline.cli import main
from tests.clusters import (
    REPO,
    Procs,
    assert_product_of_the_tailor,
    read_scheduler_file,
    run_argv,
    summary_of,
    tool,
)
from workers.cluster import connect, load_cluster_config

pytestmark = pytest.mark.slow


def write_tls_files(folder: Path) -> dict[str, Path]:
    """A fresh self-signed certificate (its own CA) and key, as PEM files."""
    from distributed.security import Security

    sec = Security.temporary()
    files = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    files["ca"].write_text(sec.tls_ca_file)
    files["cert"].write_text(sec.tls_client_cert)
    files["key"].write_text(sec.tls_client_key)
    files["key"].chmod(0o600)
    return files


def tls_config(path: Path, kind: str, **extra: object) -> Path:
    """A cluster config with a security section naming ca.pem, cert.pem, key.pem beside it."""
    lines = [f"  {k}: {v}" for k, v in {"kind": kind, **extra}.items()]
    path.write_text(
        "cluster:\n" + "\n".join(lines) + "\n  security:\n    tls_ca_file: ca.pem\n"
        "    tls_client_cert: cert.pem\n    tls_client_key: key.pem\n"
    )
    return path


@pytest.fixture(scope="module")
def tls_scheduler(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, dict[str, Path]]]:
    """``tls://127.0.0.1:PORT`` of a TLS-only ``dask scheduler`` with one TLS worker."""
    tmp_path = tmp_path_factory.mktemp("tls")
    files = write_tls_files(tmp_path)
    tls = ["--tls-ca-file", str(files["ca"]), "--tls-cert", str(files["cert"]),
           "--tls-key", str(files["key"])]  # fmt: skip
    procs = Procs(tmp_path / "logs")
    try:
        sched_file = tmp_path / "scheduler.json"
        procs.start("scheduler", [tool("dask"), "scheduler", "--protocol", "tls", "--host",
                                  "127.0.0.1", "--port", "0", "--no-dashboard",
                                  "--scheduler-file", str(sched_file), *tls])  # fmt: skip
        address = read_scheduler_file(sched_file, procs, "scheduler")
        procs.start("worker", [tool("dask"), "worker", address, "--nthreads", "1", "--host",
                               "127.0.0.1", "--no-dashboard", *tls],
                    {"DASK_CONFIG": str(REPO / "deploy" / "worker.yaml")})  # fmt: skip
        yield address, files
    finally:
        procs.close()


def test_tls_scheduler_refuses_clients_without_its_certificates(
    tls_scheduler: tuple[str, dict[str, Path]],
    cluster_scene: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from distributed import Client
    from distributed.security import Security

    address, _ = tls_scheduler
    assert address.startswith("tls://127.0.0.1:")
    # pantailor without the certificates: exit 2 with the fix, and no product
    out = tmp_path / "plain.tif"
    before = dask.config.get("scheduler", None)
    assert main(run_argv(*cluster_scene, out, "--scheduler", address)[1:]) == 2
    err = capsys.readouterr().err
    assert "Could not connect" in err and "security:" in err and not out.exists()
    # ... and the failed connection left no distributed default behind for later dask work
    assert dask.config.get("scheduler", None) == before
    # a client presenting another CA's certificate: the handshake fails
    with pytest.raises((OSError, TimeoutError)):
        Client(address, security=Security.temporary(), timeout="5s", set_as_default=False)
    # and a plain-TCP client on the TLS port gets nowhere either
    with pytest.raises((OSError, TimeoutError)):
        Client(address.replace("tls://", "tcp://"), timeout="5s", set_as_default=False)


def test_run_with_a_tls_cluster_config_equals_the_local_run(
    tls_scheduler: tuple[str, dict[str, Path]],
    cluster_scene: tuple[Path, Path],
    local_reference: bytes,
    in_process: dict[str, Any],
    tmp_path: Path,
) -> None:
    address, files = tls_scheduler
    config = tls_config(files["ca"].parent / "tls.yaml", "address", address=address)
    out = tmp_path / "tls.tif"
    argv = run_argv(*cluster_scene, out, "--cluster-config", str(config))
    summary = summary_of(subprocess.run(argv, capture_output=True, text=True, timeout=300))
    assert summary["infer"]["computed"] == 24
    assert_product_of_the_tailor(out, in_process["tailored"], in_process["untailored"])
    assert out.read_bytes() == local_reference


def test_local_cluster_with_tls_refuses_plain_clients(tmp_path: Path) -> None:
    from distributed import Client

    write_tls_files(tmp_path)
    cfg = load_cluster_config(tls_config(tmp_path / "local.yaml", "local", n_workers=1))
    assert cfg.security["tls_ca_file"] == str(tmp_path / "ca.pem")  # relative to the file
    with connect(cfg) as client:
        address = client.scheduler.address
        assert address.startswith("tls://")
        assert client.submit(sum, [1, 2, 3]).result() == 6
        with pytest.raises(TypeError, match="TLS"):  # no certificates: no connection at all
            Client(address, timeout="5s", set_as_default=False)
