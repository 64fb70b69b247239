"""The cluster configuration: defaults, a user YAML file and CLI flags, checked key by key.

``workers/defaults.yaml`` holds every key; a file passed with ``--cluster-config`` overrides any
of them, keyword overrides (the CLI flags) override both. Every value is type-checked where it is
read, so a bad value is reported with the file it came from (``n_workers: "two"`` in a cluster
file is a :class:`~pipeline.errors.ConfigError` naming that file, not a ``TypeError`` later).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

from .device import DEVICES

DEFAULTS_FILE = Path(__file__).resolve().parent / "defaults.yaml"
KINDS = ("auto", "local", "local-cuda", "address", "slurm", "kubernetes")
#: Keys of the ``security:`` section: Dask's TLS settings of the client (and of the workers a
#: local or SLURM cluster starts). Relative paths are relative to the config file.
SECURITY_KEYS = ("tls_ca_file", "tls_client_cert", "tls_client_key")
SECTIONS = ("slurm", "kubernetes", "security")

# accepted types per key (bool is refused where an int is meant: yaml reads `yes` as True)
_TYPES: dict[str, tuple[type, ...]] = {
    "kind": (str,),
    "n_workers": (int, type(None)),
    "threads_per_worker": (int,),
    "memory_limit": (str, type(None)),
    "dashboard_address": (str, type(None)),
    "address": (str, type(None)),
    "device": (str,),
    "amp": (bool,),
    "retries": (int,),
    "slurm": (Mapping,),
    "kubernetes": (Mapping,),
    "security": (Mapping, type(None)),
}
_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", Mapping: "a mapping"}


@dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    """Where and how the workers run (see ``workers/defaults.yaml`` for every key).

    Attributes
    ----------
    kind
        One of :data:`KINDS`.
    n_workers
        Local worker processes (``None``: cores // threads_per_worker, or one per GPU).
    threads_per_worker
        Dask threads per worker, also its torch intra-op threads.
    memory_limit
        Per worker process, e.g. ``"4GiB"`` (``None``: no limit).
    dashboard_address
        ``":0"`` for a free port, ``None`` for no dashboard.
    address
        Scheduler address for ``kind="address"`` (``tls://host:port`` with ``security``).
    device
        ``auto``, ``cpu`` or ``cuda``.
    amp
        Mixed precision for GPU forwards.
    retries
        Retries of a tile task whose worker died.
    slurm, kubernetes
        Sections passed (after translation) to dask-jobqueue / dask-kubernetes.
    security
        TLS: absolute paths of ``tls_ca_file``, ``tls_client_cert`` and ``tls_client_key``
        (PEM); empty for plain TCP.
    """

    kind: str = "auto"
    n_workers: int | None = None
    threads_per_worker: int = 1
    memory_limit: str | None = "4GiB"
    dashboard_address: str | None = ":0"
    address: str | None = None
    device: str = "auto"
    amp: bool = False
    retries: int = 3
    slurm: Mapping[str, Any] = field(default_factory=dict)
    kubernetes: Mapping[str, Any] = field(default_factory=dict)
    security: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError("Unknown cluster kind.", expected=", ".join(KINDS), got=self.kind)
        if self.device not in DEVICES:
            raise ConfigError("Unknown device.", expected=", ".join(DEVICES), got=self.device)
        if self.threads_per_worker < 1 or (self.n_workers is not None and self.n_workers < 1):
            raise ConfigError(
                "Worker and thread counts must be >= 1.",
                got=f"n_workers={self.n_workers}, threads_per_worker={self.threads_per_worker}",
                fix="pass --workers N and --threads-per-worker K with N, K >= 1.",
            )
        if self.kind == "address" and not self.address:
            raise ConfigError(
                "kind 'address' needs a scheduler address.",
                expected="e.g. tcp://scheduler:8786",
                got="none",
                fix="pass --scheduler ADDRESS or set cluster.address in the config file.",
            )
        if self.retries < 0:
            raise ConfigError("retries must be >= 0.", got=self.retries)
        _check_security_kind(self.kind, self.security, None)


def _check_security_kind(kind: str, security: Mapping[str, str], path: Path | None) -> None:
    if security and kind in ("slurm", "kubernetes"):
        raise ConfigError(
            f"TLS settings (security:) are supported for a local cluster or an address, not {kind}.",
            path=path,
            expected="kind auto, local, local-cuda or address with a security section",
            got=f"kind {kind}",
            fix="start the scheduler with TLS yourself and join it with kind: address.",
        )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(
            "Cannot read the cluster configuration.",
            path=path,
            expected="a YAML file with a top-level 'cluster:' mapping",
            got=str(exc).splitlines()[0],
            fix="check the path and the YAML syntax (see workers/defaults.yaml).",
        ) from exc
    section = raw.get("cluster", raw) if isinstance(raw, dict) else None
    if not isinstance(section, dict):
        raise ConfigError(
            "The cluster configuration is not a mapping.",
            path=path,
            expected="cluster: {kind: ..., n_workers: ...}",
            got=type(section).__name__,
        )
    return section


def _check_type(key: str, value: Any, path: Path | None) -> None:
    accepted = _TYPES[key]
    ok = isinstance(value, accepted) and not (
        isinstance(value, bool) and bool not in accepted and int in accepted
    )
    if not ok:
        names = [_TYPE_NAMES.get(t, "null") for t in accepted]
        raise ConfigError(
            f"The cluster setting '{key}' has the wrong type.",
            path=path,
            expected=" or ".join(names),
            got=f"{value!r} ({type(value).__name__})",
            fix=f"write {key}: as {names[0]}"
            + (" in this file (see workers/defaults.yaml)." if path else "."),
        )


def _security(value: Mapping[str, Any], path: Path | None) -> dict[str, str]:
    """The ``security:`` section with its three PEM files resolved and checked to exist."""
    base = path.parent if path is not None else Path.cwd()
    unknown = sorted(set(value) - set(SECURITY_KEYS))
    missing = [k for k in SECURITY_KEYS if not value.get(k)]
    if unknown or missing:
        raise ConfigError(
            "The security section needs exactly the three TLS files.",
            path=path,
            expected=", ".join(SECURITY_KEYS),
            got=f"unknown: {', '.join(unknown) or 'none'}; missing: {', '.join(missing) or 'none'}",
            fix="give the CA certificate, the client certificate and its key as PEM files.",
        )
    out = {}
    for key in SECURITY_KEYS:
        if not isinstance(value[key], str):
            raise ConfigError(
                f"security.{key} must be a file path.", path=path, got=repr(value[key])
            )
        file = (base / value[key]).resolve()
        if not file.is_file():
            raise ConfigError(
                f"The TLS file of security.{key} does not exist.",
                path=(path, file) if path is not None else file,
                expected="a PEM file",
                got="no such file",
                fix="fix the path (relative paths are relative to the config file).",
            )
        out[key] = str(file)
    return out


def _merge(base: dict[str, Any], extra: Mapping[str, Any], path: Path | None) -> dict[str, Any]:
    known = {f.name for f in fields(ClusterConfig)}
    unknown = sorted(set(extra) - known)
    if unknown:
        raise ConfigError(
            "Unknown cluster configuration keys.",
            path=path,
            expected=", ".join(sorted(known)),
            got=", ".join(unknown),
            fix="remove or rename them (see workers/defaults.yaml).",
        )
    out = dict(base)
    for key, value in extra.items():
        _check_type(key, value, path)
        choices = {"kind": KINDS, "device": DEVICES}.get(key)
        if choices is not None and value not in choices:
            raise ConfigError(
                f"Unknown cluster {key}.", path=path, expected=", ".join(choices), got=value
            )
        if key == "security":
            out[key] = _security(value, path) if value else {}
        elif key in SECTIONS:
            out[key] = {**out.get(key, {}), **value}
        else:
            out[key] = value
    return out


def load_cluster_config(path: str | Path | None = None, **overrides: Any) -> ClusterConfig:
    """Defaults, then the YAML file ``path`` (if any), then non-``None`` ``overrides``.

    Parameters
    ----------
    path
        A YAML file whose ``cluster:`` section overrides ``workers/defaults.yaml``.
    **overrides
        Field values (e.g. ``n_workers=2``); ``None`` values are ignored.

    Raises
    ------
    ConfigError
        Naming the file, for an unknown key, a value of the wrong type or a missing TLS file.
    """
    merged = _merge({}, _read_yaml(DEFAULTS_FILE), DEFAULTS_FILE)
    if path is not None:
        merged = _merge(merged, _read_yaml(Path(path)), Path(path))
    merged = _merge(merged, {k: v for k, v in overrides.items() if v is not None}, None)
    if overrides.get("address") and "kind" not in overrides:
        merged["kind"] = "address"
    _check_security_kind(merged["kind"], merged["security"], Path(path) if path else None)
    return ClusterConfig(**merged)


__all__ = [
    "DEFAULTS_FILE",
    "KINDS",
    "SECURITY_KEYS",
    "ClusterConfig",
    "load_cluster_config",
]
