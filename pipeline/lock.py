"""The work-dir lock: one run at a time per work dir.

``<work dir>/run.lock`` holds the holder's host, pid, start time and a token. It is created
atomically with its content (written to a temporary, then hard-linked to the lock name, which
fails if the lock exists). A second run finds it and refuses, naming the holder. A lock whose
holder is a dead process on this host is stale: it is taken over with a log line. A lock held
on another host cannot be checked from here; the error says how to remove it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import StoreError
from .files import temporary_for

log = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0] != "Z"
    except (OSError, IndexError):
        return True


class RunLockedError(StoreError):
    """Another run holds the work dir."""


class RunLock:
    """An acquired work-dir lock; release with :meth:`release` or as a context manager.

    Parameters
    ----------
    path
        The lock file (``<work dir>/run.lock``).
    holder
        What was written into it.
    """

    def __init__(self, path: Path, holder: dict[str, Any]) -> None:
        self.path = path
        self.holder = holder

    @classmethod
    def acquire(cls, path: str | Path, what: str = "this work dir") -> RunLock:
        """Take the lock at ``path`` (taking over a stale one) or raise :class:`RunLockedError`
        (saying that another run is using ``what``)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "token": uuid.uuid4().hex,
        }
        for _ in range(2):
            if cls._create(target, holder):
                return cls(target, holder)
            other = cls._read(target)
            if not cls._stale(other):
                raise cls._refusal(target, other, what)
            log.warning(
                "taking over the stale lock %s of pid %s on %s (started %s; that process is gone)",
                target,
                other.get("pid"),
                other.get("host"),
                other.get("started"),
            )
            target.unlink(missing_ok=True)
        raise cls._refusal(target, cls._read(target), what)

    @staticmethod
    def _create(target: Path, holder: dict[str, Any]) -> bool:
        """Create the lock with its content at once; ``False`` if it exists."""
        tmp = temporary_for(target)
        tmp.write_text(json.dumps(holder))
        try:
            os.link(tmp, target)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links here (some network or FAT file systems)
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(holder))
            return True
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def _read(target: Path) -> dict[str, Any]:
        try:
            data = json.loads(target.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _stale(other: dict[str, Any]) -> bool:
        pid = other.get("pid")
        if other.get("host") != socket.gethostname() or not isinstance(pid, int):
            return False
        return not pid_alive(pid)

    @staticmethod
    def _refusal(target: Path, other: dict[str, Any], what: str) -> RunLockedError:
        return RunLockedError(
            f"Another run is using {what}.",
            path=target,
            expected="no other run of this output at the same time",
            got=f"held by host {other.get('host', '?')}, pid {other.get('pid', '?')}, "
            f"started {other.get('started', '?')}",
            fix="wait for that run to finish; if no such process runs any more, delete the "
            "lock file.",
        )

    def release(self) -> None:
        """Remove the lock if it is still ours."""
        if self._read(self.path).get("token") == self.holder["token"]:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def output_lock(product: str | Path) -> Path:
    """The lock a writer of ``product`` holds beside it (``.NAME.lock``): two runs with their
    own work dirs but one output must not export into each other's temporaries."""
    p = Path(product)
    return p.with_name(f".{p.name}.lock")


__all__ = ["RunLock", "RunLockedError", "output_lock", "pid_alive"]
