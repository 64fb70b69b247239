"""Files, once: atomic writes, SHA-256 digests, "is this the same file", leftover temporaries.

Every file pantailor publishes (journal, report, adapter, coefficients, quicklook) is written to a
hidden temporary beside its target and renamed over it (:func:`write_atomic`), so a reader sees
the old file or the new one, never half of one; a failed write removes its temporary. A killed
process can still leave a temporary behind: :func:`remove_temporaries` finds them by their name
pattern (``.NAME.<tag>.<kind>...``) and the next run removes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ConfigError, StoreError

log = logging.getLogger(__name__)

_BLOCK = 1 << 22
#: The kinds of hidden temporaries pantailor writes next to a target ``NAME``:
#: ``.NAME.<tag>.<kind>[.<ext>]``; an export's overview levels are ``ov1``, ``ov2``, ...
TEMP_KINDS = ("tmp", "partial", "stage")
_LEVEL_KIND = re.compile(r"ov[0-9]+")


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file, streamed in 4 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def temporary_for(target: Path, kind: str = "tmp") -> Path:
    """A hidden, unique temporary path beside ``target`` (same folder, so a rename is atomic)."""
    return target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.{kind}")


def write_atomic(path: str | Path, write: Callable[[Path], object], *, kind: str = "tmp") -> Path:
    """Call ``write(tmp)`` then rename ``tmp`` over ``path``; the temporary never survives.

    Parameters
    ----------
    path
        Target file; its folder is created.
    write
        Writes the complete content to the path it is given.
    kind
        Temporary kind (see :data:`TEMP_KINDS`).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_for(target, kind)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return write_atomic(path, lambda p: p.write_text(text))


def write_json_atomic(path: str | Path, obj: Mapping[str, Any], *, indent: int = 2) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (``default=str`` for paths)."""
    return write_text_atomic(path, json.dumps(obj, indent=indent, default=str) + "\n")


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` are one file: equal resolved paths, or one inode (a hard link)."""
    pa, pb = Path(a).resolve(), Path(b).resolve()
    if pa == pb:
        return True
    try:
        sa, sb = pa.stat(), pb.stat()
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def inside(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (resolved)."""
    p, f = Path(path).resolve(), Path(folder).resolve()
    return p == f or f in p.parents


def clashes(out: str | Path, given: str | Path) -> bool:
    """Whether writing ``out`` would overwrite the input ``given`` or write into it (a folder
    input: a scene store)."""
    return same_file(out, given) or (Path(given).is_dir() and inside(out, given))


def check_output_file(out: str | Path, inputs: Sequence[str | Path], *, flag: str = "-o") -> None:
    """Refuse an output file that is a folder, one of ``inputs``, or inside an input folder
    (a scene store): writing it would fail after all the work, or damage an input.

    Raises
    ------
    ConfigError
        Naming the output and the input, with the fix.
    """
    target = Path(out)
    for given in inputs:
        if clashes(target, given):
            raise ConfigError(
                "The output is one of the inputs, or inside one.",
                path=[str(target), str(given)],
                expected="an output apart from the inputs",
                got=f"{target} would overwrite or write into {given}",
                fix=f"choose another {flag} path, outside {given}.",
            )
    if target.is_dir():
        raise ConfigError(
            "The output is a folder.",
            path=target,
            expected="a file path, e.g. OUT.tif",
            got="an existing folder",
            fix=f"pass a file name in {flag}, e.g. {flag} {target / 'out.tif'}.",
        )


def remove_temporaries(target: str | Path) -> list[Path]:
    """Remove the hidden temporaries a killed writer of ``target`` left beside it.

    Returns
    -------
    list of Path
        What was removed (each logged).
    """
    target = Path(target)
    if not target.parent.is_dir():
        return []
    gone = []
    for p in target.parent.glob(f".{target.name}.*"):
        parts = p.name[len(target.name) + 2 :].split(".")
        kind = parts[1] if len(parts) >= 2 else ""
        if (kind in TEMP_KINDS or _LEVEL_KIND.fullmatch(kind)) and p.is_file():
            p.unlink(missing_ok=True)
            log.warning("removed %s, left by an interrupted write of %s", p, target.name)
            gone.append(p)
    return gone


__all__ = [
    "TEMP_KINDS",
    "check_output_file",
    "clashes",
    "file_sha256",
    "inside",
    "remove_temporaries",
    "same_file",
    "temporary_for",
    "write_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


@contextlib.contextmanager
def publishing(out: Path) -> Iterator[None]:
    """Turn a failed write of ``out`` or its temporaries (disk full, I/O error: an ``OSError`` or
    GDAL's error) into a :class:`~pipeline.errors.StoreError` naming ``out`` and the fix."""
    from rasterio._err import CPLE_BaseError
    from rasterio.errors import RasterioError

    try:
        yield
    except (OSError, RasterioError, CPLE_BaseError) as exc:
        free = shutil.disk_usage(out.parent).free if out.parent.is_dir() else 0
        full = "No space left" in str(exc) or getattr(exc, "errno", None) == 28 or free < 2**26
        raise StoreError(
            "The output could not be written"
            + (f": its disk is full ({free / 2**20:.1f} MiB free)." if full else "."),
            path=out,
            expected="room for the COG and its temporaries beside it",
            got=f"{type(exc).__name__}: {exc}",
            fix="free space on that disk (or choose another -o), then rerun: what the run "
            "finished is kept."
            if full
            else "check the output folder's disk, then rerun: what the run finished is kept.",
        ) from exc
