"""Where a batch's scenes come from: a manifest (CSV, YAML, JSON Lines) or a directory glob.

Every source becomes a list of :class:`SceneSpec` rows, validated before anything runs. A
manifest row names the scene (``id``), its files (``inputs``: PAN first, then the MS file(s) or
one container; ``;``-separated in CSV, a list in YAML / JSONL), its ``sensor``, and any per-scene
option named like its ``pantailor run`` / ``ingest`` flag with ``_`` for ``-``
(:data:`OPTION_TYPES`). An empty cell means the batch-wide value. Paths may use environment
variables (``$PANTAILOR_DATA/...``) and ``~``; relative paths are relative to the manifest's
folder. Structural faults (unknown or missing column, a value of the wrong type,
a duplicate id) are refused with the file, line and the fix; a row whose files turn out to be
bad fails alone later, when its scene runs.

STAC sources live in :mod:`pipeline.batch.stac`.
"""

from __future__ import annotations

import csv
import difflib
import glob
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError

#: Per-scene options a manifest may set, with their types (the run/ingest flag names).
OPTION_TYPES: dict[str, type] = {
    "nodata": float,
    "dn_max": float,
    "ms_decimate": int,
    "patch": int,
    "weights": str,
    "method": str,
    "adapt": str,
    "group": str,
    "output": str,
}
#: Options that go to the reader (:func:`pipeline.scene.open_scene`), not the run.
INGEST_OPTIONS = ("nodata", "dn_max", "ms_decimate", "patch")
REQUIRED = ("id", "inputs")
COLUMNS = (*REQUIRED, "sensor", *OPTION_TYPES)
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MANIFEST_SUFFIXES = (".csv", ".yaml", ".yml", ".jsonl", ".ndjson")


class ManifestError(InputError):
    """A manifest, catalog or glob that cannot describe a batch (nothing has run)."""


@dataclass(frozen=True, kw_only=True)
class SceneSpec:
    """One scene of a batch, as its source describes it.

    Attributes
    ----------
    id
        Unique name of the scene (also names its output folder).
    inputs
        Absolute paths: PAN first, then MS file(s), or one container / scene store.
    sensor
        Sensor name, or ``None`` for the batch-wide ``--sensor``.
    options
        Per-scene values of :data:`OPTION_TYPES` (only those the source set).
    origin
        Where the row came from, e.g. ``scenes.csv line 4`` (for messages).
    links
        Source STAC item hrefs (the products link back to them).
    properties
        Source properties worth keeping (STAC datetime, platform, ...).
    error
        Set when the scene is known to be unusable before it runs (e.g. a STAC item that lacks
        an asset): it is recorded as failed with this text and the batch goes on.
    """

    id: str
    inputs: tuple[str, ...]
    sensor: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    origin: str = ""
    links: tuple[str, ...] = ()
    properties: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None


def _fault(path: Path, where: str, problem: str, **kw: Any) -> ManifestError:
    return ManifestError(f"{path.name} {where}: {problem}", path=path, **kw)


def check_columns(columns: Iterable[str], path: Path, where: str) -> None:
    """Refuse unknown columns (with "did you mean") and missing required ones."""
    cols = list(columns)
    for col in cols:
        if col not in COLUMNS:
            close = difflib.get_close_matches(col, COLUMNS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "remove the column."
            raise _fault(
                path,
                where,
                f"unknown column {col!r}.",
                expected=", ".join(COLUMNS),
                got=col,
                fix=hint,
            )
    for col in REQUIRED:
        if col not in cols:
            raise _fault(
                path,
                where,
                f"the required column {col!r} is missing.",
                expected=", ".join(REQUIRED) + " (then any of " + ", ".join(COLUMNS[2:]) + ")",
                got=", ".join(cols) or "no columns",
                fix=f"add a {col!r} column.",
            )


def _convert(name: str, value: Any, path: Path, where: str) -> Any:
    """``value`` as the option's type; ``None`` for an empty cell."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    want = OPTION_TYPES[name]
    bad = _fault(
        path,
        where,
        f"{name!r} must be {'an integer' if want is int else 'a number' if want is float else 'text'}.",
        expected=want.__name__,
        got=repr(value),
        fix=f"correct the {name!r} value or leave it empty for the batch-wide one.",
    )
    if isinstance(value, bool):
        raise bad
    if want is str:
        if not isinstance(value, str | int | float):
            raise bad
        return str(value).strip()
    try:
        if want is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(str(value).strip()) if isinstance(value, str) else int(value)
        return float(value)
    except (TypeError, ValueError):
        raise bad from None


def _expand(path: str) -> str:
    """``$VAR`` / ``${VAR}`` and ``~`` expanded (e.g. ``$PANTAILOR_DATA/vhr/pan1.tif``).

    ``PANTAILOR_DATA`` falls back to :func:`pipeline.config.data_dir` when it is not set.
    """
    text = path.strip()
    if "PANTAILOR_DATA" in text and "PANTAILOR_DATA" not in os.environ:
        from ..config import data_dir

        for token in ("${PANTAILOR_DATA}", "$PANTAILOR_DATA"):
            text = text.replace(token, str(data_dir()))
    return os.path.expanduser(os.path.expandvars(text))


def _inputs(value: Any, base: Path, path: Path, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        parts = [_expand(p) for p in value.split(";") if p.strip()]
    elif isinstance(value, list) and all(isinstance(p, str) for p in value):
        parts = [_expand(p) for p in value if p.strip()]
    else:
        parts = []
    if not parts:
        raise _fault(
            path,
            where,
            "'inputs' is empty or not a list of paths.",
            expected="PAN first, then MS file(s) ('pan.tif;ms.tif' in CSV, a list in YAML/JSONL)",
            got=repr(value),
            fix="list the scene's files.",
        )
    # absolute, normalised, symlinks kept (no file system access: fast for 10,000 rows)
    return tuple(os.path.normpath(os.path.join(base, p)) for p in parts)


def spec_from_row(row: Mapping[str, Any], path: Path, where: str) -> SceneSpec:
    """One validated :class:`SceneSpec` from a manifest row (columns already checked)."""
    raw_id = row.get("id")
    scene_id = str(raw_id).strip() if isinstance(raw_id, str | int) else ""
    if not ID_PATTERN.match(scene_id):
        raise _fault(
            path,
            where,
            "'id' must be a short name of letters, digits, '.', '_' or '-'.",
            expected=ID_PATTERN.pattern,
            got=repr(raw_id),
            fix="give every row a unique id usable as a folder name.",
        )
    inputs = _inputs(row.get("inputs"), path.parent, path, where)
    sensor = row.get("sensor")
    if sensor is not None and not isinstance(sensor, str):
        raise _fault(path, where, "'sensor' must be text.", got=repr(sensor))
    options = {}
    for name in OPTION_TYPES:
        value = _convert(name, row.get(name), path, where)
        if name == "weights" and value and not value.lower().startswith("dlpan:"):
            value = os.path.normpath(os.path.join(path.parent, _expand(value)))
        if value is not None:
            options[name] = value
    return SceneSpec(
        id=scene_id,
        inputs=inputs,
        sensor=sensor.strip() or None if sensor else None,
        options=options,
        origin=f"{path.name} {where}",
    )


def _csv_rows(path: Path) -> Iterable[tuple[str, dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        check_columns([c.strip() for c in reader.fieldnames or []], path, "line 1")
        for row in reader:
            where = f"line {reader.line_num}"
            if None in row:
                raise _fault(
                    path,
                    where,
                    "the row has more cells than the header.",
                    fix="quote cells holding commas, or separate inputs with ';'.",
                )
            yield where, {k.strip(): v for k, v in row.items()}


def _jsonl_rows(path: Path) -> Iterable[tuple[str, dict[str, Any]]]:
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"line {n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _fault(path, where, f"not valid JSON ({exc.msg}).") from None
            if not isinstance(row, dict):
                raise _fault(
                    path, where, "each line must be a JSON object.", got=type(row).__name__
                )
            check_columns(row, path, where)
            yield where, row


def _yaml_rows(path: Path) -> Iterable[tuple[str, dict[str, Any]]]:
    import yaml

    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _fault(path, "", f"not valid YAML ({exc}).") from None
    if isinstance(data, dict) and isinstance(data.get("scenes"), list):
        data = data["scenes"]
        root = next(v for k, v in root.value if k.value == "scenes")
    if not isinstance(data, list) or root is None:
        raise _fault(path, "", "expected a list of scenes.", expected="- id: ...\\n  inputs: [...]")
    for node, row in zip(root.value, data, strict=True):
        where = f"line {node.start_mark.line + 1}"
        if not isinstance(row, dict):
            raise _fault(path, where, "each scene must be a mapping.", got=type(row).__name__)
        check_columns(row, path, where)
        yield where, row


def read_manifest(path: str | Path) -> list[SceneSpec]:
    """Read and validate a manifest (``.csv``, ``.yaml``/``.yml``, ``.jsonl``/``.ndjson``).

    Raises
    ------
    ManifestError
        Unknown or missing column, wrong type, empty inputs, or a duplicate id.
    """
    file = Path(path).resolve()
    if not file.is_file():
        raise ManifestError("The manifest does not exist.", path=file, fix="check the path.")
    suffix = file.suffix.lower()
    readers = {".csv": _csv_rows, ".jsonl": _jsonl_rows, ".ndjson": _jsonl_rows}
    rows = readers.get(suffix, _yaml_rows)(file)
    specs: list[SceneSpec] = []
    seen: dict[str, str] = {}
    for where, row in rows:
        spec = spec_from_row(row, file, where)
        if spec.id in seen:
            raise _fault(
                file,
                where,
                f"duplicate id {spec.id!r} (first at {seen[spec.id]}).",
                fix="give every scene a unique id.",
            )
        seen[spec.id] = where
        specs.append(spec)
    if not specs:
        raise ManifestError("The manifest lists no scenes.", path=file, fix="add rows.")
    return specs


def _capture_regex(pattern: str) -> re.Pattern[str]:
    """A regex capturing what each ``*`` / ``?`` of a glob pattern matched."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("([^/]*)")
        elif c == "?":
            out.append("([^/])")
        elif c == "[" and "]" in pattern[i + 1 :]:
            j = pattern.index("]", i + 1)
            out.append("[" + pattern[i + 1 : j].replace("!", "^", 1) + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def natural_key(text: str) -> list[Any]:
    """Sort key putting ``2`` before ``10`` (digit runs compare as numbers)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def glob_scenes(pan_pattern: str, ms_pattern: str) -> list[SceneSpec]:
    """Scenes from a PAN glob and an MS pattern.

    ``ms_pattern`` may use ``{dir}`` (the PAN file's folder), ``{stem}`` (its name without
    suffix) and ``{1}``, ``{2}``, ... (what the PAN pattern's wildcards matched); it may itself
    be a glob naming several band files (stacked in natural order: ``B2`` before ``B10``).
    Scenes come in natural order too. A scene's id is its matched
    wildcard text joined by ``-`` (or the PAN file's stem).

    Example: ``glob_scenes("cropped/*_pan.mat", "{dir}/{1}_ms.mat")``.
    """
    pans = sorted(glob.glob(pan_pattern), key=natural_key)
    if not pans:
        raise ManifestError(
            "The PAN pattern matches no file.",
            path=pan_pattern,
            fix="quote the pattern so the shell does not expand it, and check the folder.",
        )
    regex = _capture_regex(pan_pattern)
    specs: list[SceneSpec] = []
    seen: set[str] = set()
    for pan in pans:
        m = regex.match(pan)
        groups = [g for g in (m.groups() if m else ()) if g]
        p = Path(pan)
        try:  # {0} is the stem too, so that {1} is the first wildcard
            ms_glob = ms_pattern.format(p.stem, *groups, dir=str(p.parent), stem=p.stem)
        except (KeyError, IndexError) as exc:
            raise ManifestError(
                f"The MS pattern uses an unknown field {exc}.",
                expected="{dir}, {stem}, {1}.." + f"{{{len(groups)}}}",
                got=ms_pattern,
            ) from None
        # a missing MS file is kept by name: its scene fails alone when it runs
        ms = sorted(glob.glob(ms_glob), key=natural_key) or [ms_glob]
        scene_id = re.sub(r"[^A-Za-z0-9._-]", "_", "-".join(groups) or p.stem)
        if scene_id in seen:
            scene_id = re.sub(r"[^A-Za-z0-9._-]", "_", f"{scene_id}-{p.stem}")
        seen.add(scene_id)
        specs.append(
            SceneSpec(
                id=scene_id,
                inputs=(str(p.resolve()), *(str(Path(f).resolve()) for f in ms)),
                origin=f"glob match {pan}",
            )
        )
    return specs


def is_manifest(source: str | Path) -> bool:
    """Whether ``source`` is a manifest file by its suffix."""
    return Path(source).suffix.lower() in MANIFEST_SUFFIXES


__all__ = [
    "COLUMNS",
    "INGEST_OPTIONS",
    "OPTION_TYPES",
    "ManifestError",
    "SceneSpec",
    "check_columns",
    "glob_scenes",
    "is_manifest",
    "read_manifest",
    "spec_from_row",
]
