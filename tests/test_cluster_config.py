"""Cluster configuration files: every bad value is a ConfigError naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from workers.cluster import load_cluster_config, make_cluster, slurm_kwargs


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('n_workers: "two"', "'n_workers'"),
        ("threads_per_worker: 1.5", "'threads_per_worker'"),
        ("retries: yes", "'retries'"),  # YAML's yes is a bool, not a count
        ("amp: 1", "'amp'"),
        ("slurm: [1, 2]", "'slurm'"),
        ("kind: yarn", "kind"),
        ("device: tpu", "device"),
        ("security: {tls_ca_file: ca.pem}", "tls_client_cert"),
        ("security: {tls_ca_file: a.pem, tls_client_cert: b.pem, tls_client_key: c.pem}", "a.pem"),
        (
            "kind: slurm\n  security: {tls_ca_file: x, tls_client_cert: x, tls_client_key: x}",
            "slurm",
        ),
    ],
)
def test_bad_values_name_the_file(tmp_path: Path, body: str, needle: str) -> None:
    (tmp_path / "x").write_text("not a certificate, but a file")
    bad = tmp_path / "site.yaml"
    bad.write_text(f"cluster:\n  {body}\n")
    with pytest.raises(ConfigError) as err:
        load_cluster_config(bad)
    assert str(bad) in str(err.value) and needle in str(err.value)


def test_cli_overrides_are_checked_too() -> None:
    with pytest.raises(ConfigError, match="'n_workers'"):
        load_cluster_config(None, n_workers="2")


def test_slurm_worker_jobs_drop_malloc_trim_threshold() -> None:
    kwargs, _ = slurm_kwargs(load_cluster_config(None, kind="slurm"))
    (line,) = [p for p in kwargs["job_script_prologue"] if "PRE_SPAWN_ENVIRON" in p]
    assert line.startswith("export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON=")
    assert "MALLOC_TRIM_THRESHOLD_" in line and "None" in line


def test_security_is_refused_where_it_is_not_wired() -> None:
    with pytest.raises(ConfigError, match="slurm"):
        make_cluster(load_cluster_config(None, kind="slurm"), security={"tls_ca_file": "x"})
