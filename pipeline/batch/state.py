"""The batch's state: an SQLite database in OUTDIR, and the lock that keeps one driver per OUTDIR.

``OUTDIR/pantailor-batch.sqlite`` holds one row per scene (id, fingerprint, state
``queued | running | done | failed``, error text, timings, tile counts, the COG's checksum, the
quality summary), one row per ``--tailor-scope group`` fit and one row per driver run. It is written by the driver alone (one connection,
serialised by a lock, WAL mode so that ``pantailor status`` can read while a batch runs) and it
names the source it belongs to: an OUTDIR whose database was made for another source is refused.
``OUTDIR/pantailor-batch.lock`` is held (``flock``) for the life of a driver; the kernel drops it
when the driver dies, so a killed batch never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .. import __version__
from ..errors import PantailorError

DB_NAME = "pantailor-batch.sqlite"
LOCK_NAME = "pantailor-batch.lock"
SCHEMA_VERSION = 1
STATES = ("queued", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scenes (
    id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
    error TEXT,
    output TEXT NOT NULL,
    origin TEXT,
    queued_at REAL,
    started_at REAL,
    finished_at REAL,
    seconds REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    tiles INTEGER,
    tiles_computed INTEGER,
    cog_sha256 TEXT,
    hqnr_none REAL,
    hqnr_product REAL
);
CREATE TABLE IF NOT EXISTS groups (
    id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('done', 'failed')),
    error TEXT,
    members TEXT NOT NULL,
    adapter TEXT,
    sha256 TEXT,
    n_patches INTEGER,
    seconds REAL,
    fits INTEGER NOT NULL DEFAULT 0,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    scenes INTEGER NOT NULL DEFAULT 0
);
"""


class BatchStateError(PantailorError):
    """The OUTDIR's batch state cannot be used (another batch, a running driver, a bad file)."""


@dataclass(frozen=True)
class SceneRow:
    """One scene's row of the database."""

    id: str
    position: int
    fingerprint: str
    state: str
    error: str | None
    output: str
    origin: str | None
    queued_at: float | None
    started_at: float | None
    finished_at: float | None
    seconds: float | None
    attempts: int
    tiles: int | None
    tiles_computed: int | None
    cog_sha256: str | None
    hqnr_none: float | None
    hqnr_product: float | None


_COLUMNS = tuple(SceneRow.__dataclass_fields__)
_GROUP_COLUMNS = (
    "id", "fingerprint", "state", "error", "members", "adapter", "sha256", "n_patches",
    "seconds", "fits",
)  # fmt: skip


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    try:
        if readonly:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        else:
            con = sqlite3.connect(path, timeout=30, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise BatchStateError(
            "The batch database cannot be opened.",
            path=path,
            expected="an SQLite database written by pantailor batch",
            got=str(exc),
            fix="choose another -o, or remove the file to start the batch over.",
        ) from None
    return con


class BatchState:
    """The scene table of one OUTDIR (thread-safe; the driver is the only writer).

    Parameters
    ----------
    con
        An open connection.
    path
        The database file (for messages).
    """

    def __init__(self, con: sqlite3.Connection, path: Path) -> None:
        self.con = con
        self.path = path
        self._lock = threading.Lock()
        self.run_id: int | None = None

    @classmethod
    def open(cls, out_dir: str | Path, source: str) -> BatchState:
        """Open (creating) ``OUTDIR``'s database, refusing one made for another source."""
        path = Path(out_dir) / DB_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        con = _connect(path)
        with con:
            con.executescript(_SCHEMA)
            meta = dict(con.execute("SELECT key, value FROM batch").fetchall())
            if not meta:
                con.executemany(
                    "INSERT INTO batch VALUES (?, ?)",
                    [
                        ("schema", str(SCHEMA_VERSION)),
                        ("source", source),
                        ("created_by", f"pantailor {__version__}"),
                        ("created_at", str(time.time())),
                    ],
                )
                meta = {"source": source, "schema": str(SCHEMA_VERSION)}
        if meta.get("source") != source or meta.get("schema") != str(SCHEMA_VERSION):
            con.close()
            raise BatchStateError(
                "The output folder holds the state of another batch.",
                path=path,
                expected=f"a batch of {source} (schema {SCHEMA_VERSION})",
                got=f"a batch of {meta.get('source')} (schema {meta.get('schema')})",
                fix="choose another -o for this source, or rerun with that batch's source.",
            )
        return cls(con, path)

    @classmethod
    def read(cls, out_dir: str | Path) -> BatchState:
        """Open an existing database read-only (``pantailor status``)."""
        path = Path(out_dir) / DB_NAME
        if not path.is_file():
            raise BatchStateError(
                "No batch state in this folder.",
                path=path,
                expected=f"{DB_NAME} written by pantailor batch",
                got="no such file",
                fix="pass the -o folder of a batch.",
            )
        con = _connect(path, readonly=True)
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"batch", "scenes"} <= tables:  # e.g. an empty file: a batch stopped at its start
            con.close()
            raise BatchStateError(
                "The batch database holds no batch state.",
                path=path,
                expected="the tables batch and scenes, written by pantailor batch",
                got="tables: " + (", ".join(sorted(tables)) or "none"),
                fix="run the batch again (pantailor batch SOURCE -o OUTDIR starts its state).",
            )
        return cls(con, path)

    def close(self) -> None:
        """Close the connection."""
        self.con.close()

    def meta(self) -> dict[str, str]:
        """The batch's key/value facts (source, schema, created_at, ...)."""
        return dict(self.con.execute("SELECT key, value FROM batch").fetchall())

    def rows(self, ids: Iterable[str] | None = None) -> dict[str, SceneRow]:
        """Scene rows by id (all, or those in ``ids``), in source order."""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM scenes ORDER BY position"
        rows = {r[0]: SceneRow(*r) for r in self.con.execute(sql)}
        if ids is None:
            return rows
        return {i: rows[i] for i in ids if i in rows}

    def runs(self) -> list[dict[str, Any]]:
        """Driver runs, oldest first."""
        cur = self.con.execute(
            "SELECT id, pid, host, started_at, finished_at, scenes FROM runs ORDER BY id"
        )
        keys = ("id", "pid", "host", "started_at", "finished_at", "scenes")
        return [dict(zip(keys, r, strict=True)) for r in cur]

    def _write(self, sql: str, params: Iterable[Any] | Iterable[Iterable[Any]], many: bool = False):  # type: ignore[no-untyped-def]
        with self._lock, self.con:
            if many:
                self.con.executemany(sql, params)  # type: ignore[arg-type]
            else:
                self.con.execute(sql, tuple(params))  # type: ignore[arg-type]

    def queue(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Insert or reset scenes to ``queued`` (keys: id, position, fingerprint, output, origin)."""
        now = time.time()
        self._write(
            "INSERT INTO scenes (id, position, fingerprint, state, output, origin, queued_at) "
            "VALUES (:id, :position, :fingerprint, 'queued', :output, :origin, :now) "
            "ON CONFLICT(id) DO UPDATE SET position=excluded.position, "
            "fingerprint=excluded.fingerprint, state='queued', error=NULL, "
            "output=excluded.output, origin=excluded.origin, queued_at=excluded.queued_at",
            ({**e, "now": now} for e in entries),
            many=True,
        )

    def start(self, scene_id: str) -> None:
        """Mark a scene running (one more attempt)."""
        self._write(
            "UPDATE scenes SET state='running', started_at=?, attempts=attempts+1 WHERE id=?",
            (time.time(), scene_id),
        )

    def finish(self, scene_id: str, seconds: float, facts: Mapping[str, Any]) -> None:
        """Mark a scene done with its facts (tiles, tiles_computed, cog_sha256, hqnr_*)."""
        cols = ("tiles", "tiles_computed", "cog_sha256", "hqnr_none", "hqnr_product")
        self._write(
            "UPDATE scenes SET state='done', error=NULL, finished_at=?, seconds=?, "
            + ", ".join(f"{c}=?" for c in cols)
            + " WHERE id=?",
            (time.time(), seconds, *(facts.get(c) for c in cols), scene_id),
        )

    def fail(
        self, scene_id: str, error: str, seconds: float | None, entry: Mapping[str, Any]
    ) -> None:
        """Mark a scene failed with its error text (inserting it if it never ran)."""
        self.queue([entry])
        self._write(
            "UPDATE scenes SET state='failed', error=?, finished_at=?, seconds=? WHERE id=?",
            (error, time.time(), seconds, scene_id),
        )

    def groups(self) -> dict[str, dict[str, Any]]:
        """The ``--tailor-scope group`` fits by group id: fingerprint, state, error, members
        (list of ids), adapter, sha256, n_patches, seconds, fits (how many fits ran, ever)."""
        try:
            cur = self.con.execute(f"SELECT {', '.join(_GROUP_COLUMNS)} FROM groups ORDER BY id")
        except sqlite3.OperationalError:  # a database of a version without the table
            return {}
        out = {r[0]: dict(zip(_GROUP_COLUMNS, r, strict=True)) for r in cur}
        for g in out.values():
            g["members"] = json.loads(g["members"])
        return out

    def record_group(self, group: str, fingerprint: str, members: list[str], **fit: Any) -> None:
        """Record a group's fit: done (``adapter``, ``sha256``, ``n_patches``, ``seconds``; one
        more fit) or failed (``error``)."""
        failed = fit.get("error") is not None
        self._write(
            "INSERT INTO groups (id, fingerprint, state, error, members, adapter, sha256, "
            "n_patches, seconds, fits, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET fingerprint=excluded.fingerprint, "
            "state=excluded.state, error=excluded.error, members=excluded.members, "
            "adapter=excluded.adapter, sha256=excluded.sha256, n_patches=excluded.n_patches, "
            "seconds=excluded.seconds, fits=groups.fits+excluded.fits, "
            "finished_at=excluded.finished_at",
            (
                group,
                fingerprint,
                "failed" if failed else "done",
                fit.get("error"),
                json.dumps(members),
                fit.get("adapter"),
                fit.get("sha256"),
                fit.get("n_patches"),
                fit.get("seconds"),
                0 if failed else 1,
                time.time(),
            ),
        )

    def begin_run(self) -> None:
        """Record that a driver run starts."""
        with self._lock, self.con:
            cur = self.con.execute(
                "INSERT INTO runs (pid, host, started_at) VALUES (?, ?, ?)",
                (os.getpid(), socket.gethostname(), time.time()),
            )
            self.run_id = cur.lastrowid

    def end_run(self, scenes: int) -> None:
        """Record that the driver run ended after ``scenes`` scenes."""
        self._write(
            "UPDATE runs SET finished_at=?, scenes=? WHERE id=?", (time.time(), scenes, self.run_id)
        )


def _holder(fh: TextIO) -> str:
    fh.seek(0)
    try:
        info = json.loads(fh.read() or "{}")
    except ValueError:
        info = {}
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')} since {info.get('since', '?')}"


def lock_holder(out_dir: str | Path) -> str | None:
    """Who holds OUTDIR's driver lock (``pid ... on host``), or ``None`` when no driver runs."""
    path = Path(out_dir) / LOCK_NAME
    if not path.is_file():
        return None
    with path.open() as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(fh)
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return None


@contextmanager
def batch_lock(out_dir: str | Path) -> Iterator[Path]:
    """Hold OUTDIR's driver lock for the block; refuse if another driver holds it."""
    path = Path(out_dir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BatchStateError(
                "Another batch driver is running on this output folder.",
                path=path,
                expected="one driver per output folder",
                got=f"the lock is held by {_holder(fh)}",
                fix="wait for it (pantailor status OUTDIR shows its progress) or use another -o.",
            ) from None
        fh.seek(0)
        fh.truncate()
        since = time.strftime("%Y-%m-%dT%H:%M:%S")
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}))
        fh.flush()
        try:
            yield path
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


__all__ = [
    "DB_NAME",
    "LOCK_NAME",
    "STATES",
    "BatchState",
    "BatchStateError",
    "SceneRow",
    "batch_lock",
    "lock_holder",
]
