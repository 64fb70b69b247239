"""The weights registry: where each known checkpoint comes from, and getting a verified copy.

:func:`resolve` returns a local path whose sha256 was checked on this call, looking in order at

1. the data folder (``PANTAILOR_DATA``, where the project's tests and CI keep the files),
2. the package itself (the project's shipped weights),
3. the cache (``PANTAILOR_CACHE``, default the platform cache dir, e.g. ``~/.cache/pantailor``),
4. the mirror (``PANTAILOR_WEIGHTS_MIRROR``: a directory or a base URL holding the files flat
   under their registry file names; for clusters without internet access), then
5. the upstream URL at its pinned commit (downloaded into the cache).

With a mirror set nothing is downloaded from upstream. A file whose digest differs from the
registry's is refused with :class:`WeightsError` naming it; a download is written to a temporary
file, verified and only then moved into the cache, so the cache never holds an unverified file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from ..config import data_dir
from ..errors import CheckpointError
from .catalog import DLPAN, DLPAN_BANDS, DLPAN_LICENCE, SHIPPED, UPSTREAM_DIR, UPSTREAM_REPO

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent
TIMEOUT_S = 60.0
_CHUNK = 1 << 20


class WeightsError(CheckpointError):
    """A registered weights file is missing, cannot be fetched, or fails its checksum."""


@dataclass(frozen=True, kw_only=True)
class WeightsEntry:
    """One registered checkpoint.

    Attributes
    ----------
    name
        Registry name (``dlpan-fusionnet-wv3``, ``pantailor-fusionnet-4band``).
    network
        The pantailor backbone it loads into.
    sensor
        Training sensor (``qb``, ``wv2``, ...), or ``"mixed"`` for the project's own weights.
    bands
        MS band count.
    file
        Registry file name: the name in the cache and in a mirror.
    sha256
        Hex digest of the file.
    url
        Download URL at a pinned commit (``""`` for files shipped in the package).
    licence
        The file's licence.
    data_path
        Path under ``PANTAILOR_DATA`` where the project's data folder keeps it (``""``: none).
    note
        Provenance caveats.
    """

    name: str
    network: str
    sensor: str
    bands: int
    file: str
    sha256: str
    url: str
    licence: str
    data_path: str = ""
    note: str = ""

    def as_dict(self) -> dict[str, str | int]:
        """The entry as a JSON-ready dict."""
        return asdict(self)


def _dlpan_url(sensor: str, upstream: str, commit: str) -> str:
    path = urllib.parse.quote(f"{UPSTREAM_DIR}/{sensor.upper()}/{upstream}")
    return f"https://raw.githubusercontent.com/{UPSTREAM_REPO}/{commit}/{path}"


def _build() -> dict[str, WeightsEntry]:
    out: dict[str, WeightsEntry] = {}
    for network, sensor, upstream, local, commit, digest, note in DLPAN:
        e = WeightsEntry(
            name=f"dlpan-{network}-{sensor}",
            network=network,
            sensor=sensor,
            bands=DLPAN_BANDS[sensor],
            file=f"dlpan-{network}-{sensor}.pth",
            sha256=digest,
            url=_dlpan_url(sensor, upstream, commit),
            licence=DLPAN_LICENCE,
            data_path=f"weights/dlpan/{sensor.upper()}/{local}",
            note=note,
        )
        out[e.name] = e
    for file, bands, digest in SHIPPED:
        e = WeightsEntry(
            name=f"pantailor-{file.removesuffix('.pt').replace('_', '-')}",
            network=file.split("_", 1)[0],
            sensor="mixed",
            bands=bands,
            file=file,
            sha256=digest,
            url="",
            licence="Apache-2.0 (this project; trained on public-domain and CC BY-SA 4.0 data, "
            "see MODEL_CARD.md)",
            note="shipped in the package",
        )
        out[e.name] = e
    return out


ENTRIES: dict[str, WeightsEntry] = _build()


def entries() -> list[WeightsEntry]:
    """Every registered checkpoint, sorted by name."""
    return [ENTRIES[k] for k in sorted(ENTRIES)]


def get(name: str) -> WeightsEntry:
    """The entry called ``name`` (case-insensitive)."""
    entry = ENTRIES.get(name.strip().lower())
    if entry is None:
        raise WeightsError(
            f"Unknown weights {name!r}.",
            expected="one of " + ", ".join(sorted(ENTRIES)),
            got=repr(name),
            fix="run `pantailor weights list` for the registered names.",
        )
    return entry


def dlpan_entry(network: str, sensor: str) -> WeightsEntry:
    """The DLPan checkpoint of ``network`` trained on ``sensor`` (``dlpan:SENSOR``)."""
    key = f"dlpan-{network.strip().lower()}-{sensor.strip().lower()}"
    if key not in ENTRIES:
        known = sorted(e.sensor for e in ENTRIES.values() if e.network == network and e.url)
        raise WeightsError(
            f"No DLPan checkpoint of {network} for {sensor}.",
            expected="dlpan:" + " or dlpan:".join(known) if known else "another network",
            got=f"dlpan:{sensor}",
            fix="choose a listed sensor (`pantailor weights list`) or pass a checkpoint path.",
        )
    return ENTRIES[key]


def cache_dir() -> Path:
    """``PANTAILOR_CACHE``, else the platform's user cache dir plus ``pantailor``."""
    env = os.environ.get("PANTAILOR_CACHE")
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
        return base / "pantailor" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "pantailor"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pantailor"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify(entry: WeightsEntry, path: Path, *, source: str = "") -> Path:
    """Return ``path`` if its sha256 is the entry's, else raise naming the file."""
    got = file_sha256(path)
    if got != entry.sha256:
        where = f" ({source})" if source else ""
        raise WeightsError(
            f"Checksum mismatch for {entry.file}{where}: refusing to load it.",
            path=path,
            expected=f"sha256 {entry.sha256}",
            got=f"sha256 {got}",
            fix="delete the file and run `pantailor weights fetch "
            f"{entry.name}`, or check the mirror/data copy it came from.",
        )
    return path


def local_candidates(entry: WeightsEntry) -> list[tuple[str, Path]]:
    """(source, path) of every local place the entry may be, in lookup order."""
    out: list[tuple[str, Path]] = []
    if entry.data_path:
        out.append(("PANTAILOR_DATA", data_dir() / entry.data_path))
    if not entry.url:
        out.append(("package", PACKAGE_DIR / entry.file))
    out.append(("cache", cache_dir() / entry.file))
    mirror = os.environ.get("PANTAILOR_WEIGHTS_MIRROR", "")
    if mirror and not _is_url(mirror):
        out.append(("mirror", Path(mirror).expanduser() / entry.file))
    return out


def _is_url(text: str) -> bool:
    try:
        scheme = urllib.parse.urlsplit(text).scheme
    except ValueError as exc:  # e.g. "http://[::1": a URL that cannot be parsed
        raise WeightsError(
            "PANTAILOR_WEIGHTS_MIRROR is not a valid URL.",
            expected="a directory or a base URL such as https://host/weights",
            got=f"{text!r} ({exc})",
            fix="correct or unset PANTAILOR_WEIGHTS_MIRROR.",
        ) from exc
    if scheme not in ("", "http", "https", "file") and "://" in text:  # ftp://, s3://, ...
        raise WeightsError(
            "PANTAILOR_WEIGHTS_MIRROR uses a scheme pantailor cannot fetch from.",
            expected="a directory, or an http://, https:// or file:// base URL",
            got=repr(text),
            fix="copy the weights to a directory (or an HTTP server) and point "
            "PANTAILOR_WEIGHTS_MIRROR there.",
        )
    return scheme in ("http", "https", "file")


def _download(entry: WeightsEntry, url: str, source: str) -> Path:
    """Fetch ``url`` into the cache as ``entry.file`` (verified before it is moved in)."""
    target = cache_dir() / entry.file
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.file}.", dir=target.parent)
    except OSError as exc:
        raise WeightsError(
            "Cannot write into the weights cache.",
            path=target.parent,
            expected="a writable folder (PANTAILOR_CACHE)",
            got=f"{type(exc).__name__}: {exc.strerror or exc}",
            fix="point PANTAILOR_CACHE at a writable folder, or remove what is in the way.",
        ) from exc
    log.info("downloading %s from %s", entry.file, url)
    tmp = Path(tmp_name)
    try:
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp, os.fdopen(fd, "wb") as f:
                shutil.copyfileobj(resp, f, _CHUNK)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise WeightsError(
                f"Cannot download {entry.file} ({source}).",
                path=url,
                expected="a reachable URL serving the file",
                got=str(getattr(exc, "reason", exc)),
                fix="check the network, or set PANTAILOR_WEIGHTS_MIRROR to a directory or URL "
                f"holding {entry.file} (or PANTAILOR_DATA to the project's data folder).",
            ) from exc
        try:
            verify(entry, tmp, source=f"downloaded from {url}")
        except WeightsError as exc:  # name the URL, not the removed temporary
            raise WeightsError(
                exc.problem,
                path=url,
                expected=exc.expected,
                got=exc.got,
                fix=f"the {source} serves another file than the registered {entry.file}: "
                + (
                    "replace it there, or unset PANTAILOR_WEIGHTS_MIRROR."
                    if source == "mirror"
                    else "set PANTAILOR_WEIGHTS_MIRROR to a copy of the registered file."
                ),
            ) from exc
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def resolve(entry: WeightsEntry, *, download: bool = True) -> Path:
    """A verified local copy of ``entry`` (see the module docstring for the lookup order).

    Raises
    ------
    WeightsError
        If a copy fails its checksum, or no copy is found (and ``download`` is false or fails).
    """
    for source, path in local_candidates(entry):
        if path.is_file():
            return verify(entry, path, source=source)
    mirror = os.environ.get("PANTAILOR_WEIGHTS_MIRROR", "")
    if mirror and _is_url(mirror) and download:
        return _download(entry, f"{mirror.rstrip('/')}/{entry.file}", "mirror")
    if download and entry.url and not mirror:
        return _download(entry, entry.url, "upstream")
    places = [str(p) for _, p in local_candidates(entry)]
    raise WeightsError(
        f"Weights {entry.name} are not available locally.",
        path=places,
        expected=f"{entry.file} in one of these places",
        got="no such file" + (" (download disabled)" if not download else ""),
        fix=f"run `pantailor weights fetch {entry.name}`"
        + (" (the mirror directory lacks it: copy it there)" if mirror else ""),
    )


def status(entry: WeightsEntry) -> dict[str, str]:
    """Check every local copy of ``entry`` without downloading: source -> ok/mismatch/missing."""
    out: dict[str, str] = {}
    for source, path in local_candidates(entry):
        if not path.is_file():
            out[source] = "missing"
        else:
            out[source] = "ok" if file_sha256(path) == entry.sha256 else "MISMATCH"
    return out


__all__ = [
    "ENTRIES",
    "WeightsEntry",
    "WeightsError",
    "cache_dir",
    "dlpan_entry",
    "entries",
    "file_sha256",
    "get",
    "local_candidates",
    "resolve",
    "status",
    "verify",
]
