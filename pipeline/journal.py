"""A run's identity and record: its files, its inputs, what it finished, what it created.

The driver is the only writer of ``<work dir>/journal.json`` (replaced atomically). It holds:

- ``output``: the COG this run writes (a journal of another output is never touched);
- ``key``: the run key, a digest of the settings and of the weights' checksum; the run's output
  array in the scene store is named after it (``fused-<key>``), so two runs sharing a store
  never write into each other's array;
- ``inputs``: the identity of every input (path, size, mtime; the SHA-256 recorded at ingest),
  compared on every rerun (:func:`changed_inputs`);
- ``created``: every file and folder this run created; ``--overwrite`` and "start over" remove
  these and nothing else;
- ``stages`` and ``tiles``: what finished (each tile with the digest of what it wrote);
  ``complete`` once the COG and the report exist.

:class:`RunLock` (``<work dir>/run.lock``) keeps a second concurrent run of the same work dir
out (:mod:`pipeline.lock`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .config import RunConfig
from .errors import StoreError
from .files import file_sha256, write_json_atomic
from .grid import TileKey
from .lock import RunLock

log = logging.getLogger(__name__)

JOURNAL_VERSION = 2
OUTPUT_PREFIX = "fused"


@dataclass(frozen=True)
class RunPaths:
    """Every file a run writes, and the inputs it reads."""

    work_dir: Path
    store: Path
    journal: Path
    lock: Path
    adapter: Path
    coefficients: Path
    cog: Path
    report: Path
    quicklook: Path
    own_store: bool
    inputs: tuple[Path, ...]

    @classmethod
    def of(cls, cfg: RunConfig) -> RunPaths:
        """The paths of ``cfg`` (nothing is created)."""
        cog = Path(cfg.output).resolve()
        work = Path(cfg.work_dir).resolve() if cfg.work_dir else cog.with_suffix(".work")
        given = Path(cfg.inputs[0])
        is_store = len(cfg.inputs) == 1 and (given / "zarr.json").is_file()
        return cls(
            work_dir=work,
            store=given.resolve() if is_store else work / "scene.zarr",
            journal=work / "journal.json",
            lock=work / "run.lock",
            adapter=work / "adapter.pt",
            coefficients=work / "coefficients.json",
            cog=cog,
            report=cog.with_suffix(".report.json"),
            quicklook=cog.with_suffix(".quicklook.png"),
            own_store=not is_store,
            inputs=tuple(Path(p).resolve() for p in cfg.inputs),
        )

    def outputs(self) -> dict[str, Path]:
        """Every path this run may write, by role."""
        out = {
            "cog": self.cog,
            "report": self.report,
            "quicklook": self.quicklook,
            "work_dir": self.work_dir,
            "journal": self.journal,
            "adapter": self.adapter,
            "coefficients": self.coefficients,
        }
        if self.own_store:
            out["store"] = self.store
        return out


def run_key(fingerprint: Mapping[str, Any], cog: Path) -> str:
    """The run key: 16 hex digits of the settings (weights by checksum) and the output path."""
    blob = json.dumps({"fingerprint": fingerprint, "output": str(cog)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def output_array(key: str) -> str:
    """The name of the run's output array in the scene store."""
    return f"{OUTPUT_PREFIX}-{key}"


def input_identity(paths: RunPaths, store_meta: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """What identifies the inputs now: files by size and mtime, a store by its metadata digest."""
    if store_meta is not None:
        digest = hashlib.sha256(json.dumps(store_meta, sort_keys=True, default=str).encode())
        return [{"path": str(paths.store), "kind": "store", "meta_sha256": digest.hexdigest()}]
    out = []
    for p in paths.inputs:
        st = p.stat()
        out.append({"path": str(p), "kind": "file", "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def changed_inputs(old: Sequence[Mapping[str, Any]], now: Sequence[Mapping[str, Any]]) -> list[str]:
    """What differs between the recorded inputs ``old`` and ``now``, one line per input.

    A file whose size and mtime are unchanged is the same file (cheap); otherwise its SHA-256 is
    compared with the one recorded at ingest (a touched but identical file is the same file).
    """
    if [o.get("path") for o in old] != [n.get("path") for n in now]:
        return [f"inputs {[o.get('path') for o in old]} -> {[n.get('path') for n in now]}"]
    diffs = []
    for o, n in zip(old, now, strict=True):
        if n["kind"] == "store":
            if o.get("meta_sha256") != n["meta_sha256"]:
                diffs.append(f"{n['path']}: the store's scene metadata changed")
            continue
        if (o.get("size"), o.get("mtime_ns")) == (n["size"], n["mtime_ns"]):
            continue
        same_size = o.get("sha256") and o.get("size") == n["size"]
        if same_size and file_sha256(n["path"]) == o["sha256"]:
            continue
        diffs.append(
            f"{n['path']}: size {o.get('size')} -> {n['size']} bytes, "
            f"mtime {_stamp(o.get('mtime_ns'))} -> {_stamp(n['mtime_ns'])}"
        )
    return diffs


def file_identity(path: Path) -> dict[str, int]:
    """What identifies a file cheaply: its size and modification time (ns)."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _stamp(ns: object) -> str:
    if not isinstance(ns, int):
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9))


class Journal:
    """The driver's record of one run (the only writer is the driver).

    Parameters
    ----------
    path
        ``journal.json`` in the work dir.
    fingerprint
        The run's settings (weights by checksum).
    output
        The run's COG (``None``: a bare journal, as benchmarks use).
    """

    def __init__(
        self, path: Path, fingerprint: Mapping[str, Any], output: Path | None = None
    ) -> None:
        self.path = path
        fp = json.loads(json.dumps(dict(fingerprint), default=str))
        key = run_key(fp, output or path)
        self.data: dict[str, Any] = {
            "version": JOURNAL_VERSION,
            "pantailor": __version__,
            "output": str(output) if output else None,
            "key": key,
            "output_array": output_array(key),
            "fingerprint": fp,
            "inputs": [],
            "created": [],
            "stages": {},
            "tiles": {},
            "complete": False,
        }
        self._last_flush = 0.0

    @classmethod
    def read(cls, path: Path) -> dict[str, Any] | None:
        """The journal at ``path`` (``None`` if absent); a corrupt one is a :class:`StoreError`."""
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            data = exc
        if not isinstance(data, dict) or not {"fingerprint", "stages", "tiles"} <= set(data):
            raise StoreError(
                "The work dir's journal is not a pantailor journal (corrupt or foreign).",
                path=path,
                expected="the journal.json a pantailor run writes",
                got=str(data)[:120] if isinstance(data, Exception) else "other JSON content",
                fix="delete the file if it is left from an earlier run of this output, "
                "or choose another --work-dir.",
            )
        return data

    @property
    def key(self) -> str:
        """The run key."""
        return str(self.data["key"])

    @property
    def output_array(self) -> str:
        """The run's output array name in the store."""
        return str(self.data["output_array"])

    @property
    def fingerprint(self) -> dict[str, Any]:
        """The recorded settings."""
        fp: dict[str, Any] = self.data["fingerprint"]
        return fp

    def stage(self, name: str) -> dict[str, Any] | None:
        """The record of a finished stage, or ``None``."""
        rec = self.data["stages"].get(name)
        return dict(rec) if rec is not None else None

    def finish_stage(self, name: str, record: Mapping[str, Any]) -> None:
        """Record a finished stage (flushed at once)."""
        self.data["stages"][name] = dict(record)
        self.flush(force=True)

    def drop_stages(self, *names: str, tiles: bool = False) -> None:
        """Forget stages (to be redone), and the finished tiles with ``tiles``."""
        for name in names:
            self.data["stages"].pop(name, None)
        if tiles:
            self.tiles.clear()
        self.data["complete"] = False
        self.flush(force=True)

    def creates(self, path: Path) -> None:
        """Record that this run is about to create ``path`` (before creating it)."""
        if str(path) not in self.data["created"]:
            self.data["created"].append(str(path))
            self.flush(force=True)

    def created(self, path: Path) -> bool:
        """Whether this run's journal says it created ``path``."""
        return str(path) in self.data["created"]

    @property
    def tiles(self) -> dict[str, str]:
        """Finished tiles: ``"row-col"`` -> SHA-256 of the written data."""
        tiles: dict[str, str] = self.data["tiles"]
        return tiles

    def finish_tile(self, key: TileKey, sha256: str) -> None:
        """Record a tile whose task reported success (flushed at most twice a second)."""
        self.tiles[str(key)] = sha256
        self.flush()

    @property
    def complete(self) -> bool:
        """Whether the scene finished (export and report exist)."""
        return bool(self.data.get("complete"))

    def mark_complete(self, summary: Mapping[str, Any]) -> None:
        """Mark the scene complete, keeping the summary and the COG's identity (size, mtime),
        so that a COG replaced later is noticed (:meth:`replaced`)."""
        self.data["complete"] = True
        self.data["summary"] = dict(summary)
        cog = Path(self.data["output"]) if self.data.get("output") else None
        self.data["products"] = {str(cog): file_identity(cog)} if cog and cog.is_file() else {}
        self.flush(force=True)

    def replaced(self) -> list[str]:
        """The recorded products that exist now with another size or mtime than the run left
        (one line each); a missing product is not listed (the run redoes it)."""
        out = []
        for name, was in dict(self.data.get("products") or {}).items():
            p = Path(name)
            now = file_identity(p) if p.is_file() else was
            if now != was:
                out.append(
                    f"{name}: size {was.get('size')} -> {now['size']} bytes, "
                    f"mtime {_stamp(was.get('mtime_ns'))} -> {_stamp(now['mtime_ns'])}"
                )
        return out

    def flush(self, force: bool = False) -> None:
        """Write the journal atomically (rate-limited unless ``force``)."""
        now = time.monotonic()
        if force or now - self._last_flush > 0.5:
            write_json_atomic(self.path, self.data)
            self._last_flush = now


def remove_created(old: Mapping[str, Any], store: Path, *, keep: Sequence[Path] = ()) -> None:
    """Remove what the journal ``old`` says its run created (and its output array in ``store``).

    Folders are removed only if they are scene stores (``zarr.json`` inside); nothing outside the
    journal's ``created`` list is touched.
    """
    for name in old.get("created", []):
        p = Path(name)
        if p in keep:
            continue
        if p.is_dir() and (p / "zarr.json").is_file():
            shutil.rmtree(p)
        elif p.is_file():
            p.unlink()
    array = old.get("output_array")
    target = store / str(array) if array else None
    if target is not None and (target / "zarr.json").is_file() and store.is_dir():
        shutil.rmtree(target)
    log.info("removed what the earlier run of %s created", old.get("output"))


__all__ = [
    "JOURNAL_VERSION",
    "Journal",
    "RunLock",
    "RunPaths",
    "changed_inputs",
    "file_identity",
    "input_identity",
    "output_array",
    "remove_created",
    "run_key",
]
