"""The sensor table: bands, PAN/MS ratio, radiometry and MTF gains, as data.

The built-in rows live in ``pipeline/sensors.yaml`` (package data, read once at import). Values
for the VHR sensors follow ``METHOD.md`` (MS and PAN Nyquist gains as used by the standard
pansharpening toolboxes). Entries without published per-band Nyquist gains use the conventional
default 0.3 (MS) / 0.15 (PAN) and say so in ``source``.

Users add sensors from a YAML file of the same format (``load_sensor_file``), whose top level maps
names to the fields of :class:`SensorSpec`; both go through :func:`read_sensor_file`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import SensorError

DEFAULT_MS_GAIN = 0.3
DEFAULT_PAN_GAIN = 0.15
#: The built-in sensor table (package data).
BUILTIN_TABLE = Path(__file__).with_name("sensors.yaml")


@dataclass(frozen=True, kw_only=True)
class SensorSpec:
    """One sensor's facts, validated at construction.

    Attributes
    ----------
    name
        Canonical name (lower case, e.g. ``"wv3"``).
    title
        Human-readable name.
    bands
        MS band names, in file order.
    rgb
        0-based indices of the red, green and blue bands in ``bands``.
    ratio
        PAN/MS pixel-size ratio (integer, e.g. 4).
    bit_depth
        Radiometric resolution of the DN values.
    dn_max
        The DN value mapped to 1.0 when scaling to float (``2**bit_depth - 1`` unless stated).
    mtf_ms
        MS MTF gains at Nyquist, one per band.
    mtf_pan
        PAN MTF gain at Nyquist.
    aliases
        Other accepted names.
    source
        Where the numbers come from.
    """

    name: str
    title: str
    bands: tuple[str, ...]
    rgb: tuple[int, int, int]
    ratio: int
    bit_depth: int
    mtf_ms: tuple[float, ...]
    mtf_pan: float
    dn_max: float = 0.0
    aliases: tuple[str, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        if not self.bands:
            raise SensorError(f"Sensor {self.name!r} has no bands.", fix="list its MS bands.")
        if (
            not isinstance(self.bands, tuple)
            or not all(isinstance(b, str) and b for b in self.bands)
            or len(set(self.bands)) != len(self.bands)
        ):
            raise SensorError(
                f"Sensor {self.name!r}: bands must be a list of distinct band names.",
                got=repr(self.bands),
                fix="list its MS bands by name, e.g. bands: [blue, green, red, nir].",
            )
        self._check_gains()
        self._check_whole_numbers()
        if (
            not isinstance(self.rgb, tuple)
            or len(self.rgb) != 3
            or not all(_is_int(i) and 0 <= i < len(self.bands) for i in self.rgb)
        ):
            raise SensorError(
                f"Sensor {self.name!r}: rgb must be 3 0-based band indices.",
                expected=f"3 indices in 0..{len(self.bands) - 1}",
                got=repr(self.rgb),
                fix="give the red, green and blue bands' positions, e.g. rgb: [2, 1, 0].",
            )
        if not _is_number(self.dn_max) or self.dn_max < 0:
            raise SensorError(
                f"Sensor {self.name!r}: dn_max must be a number > 0 (or absent).",
                got=repr(self.dn_max),
                fix="drop dn_max (it is then 2**bit_depth - 1) or give the DN of full scale.",
            )
        if self.dn_max == 0:
            object.__setattr__(self, "dn_max", float(2**self.bit_depth - 1))

    def _check_gains(self) -> None:
        """MTF gains: numbers, one per band, strictly between 0 and 1."""
        gains = self.mtf_ms if isinstance(self.mtf_ms, tuple) else (self.mtf_ms,)
        if not all(_is_number(g) for g in (*gains, self.mtf_pan)):
            raise SensorError(
                f"Sensor {self.name!r}: MTF gains must be numbers.",
                got=f"mtf_ms={self.mtf_ms!r}, mtf_pan={self.mtf_pan!r}",
                fix="give mtf_ms as a list of numbers (one per band) and mtf_pan as a number.",
            )
        if not isinstance(self.mtf_ms, tuple) or len(self.mtf_ms) != len(self.bands):
            raise SensorError(
                f"Sensor {self.name!r}: one MS MTF gain per band is required.",
                expected=f"{len(self.bands)} gains",
                got=f"{len(gains)}" if isinstance(self.mtf_ms, tuple) else repr(self.mtf_ms),
                fix="give mtf_ms as a list as long as bands.",
            )
        if any(not 0.0 < g < 1.0 for g in (*self.mtf_ms, self.mtf_pan)):
            raise SensorError(
                f"Sensor {self.name!r}: MTF gains must lie strictly between 0 and 1.",
                got=f"mtf_ms={self.mtf_ms}, mtf_pan={self.mtf_pan}",
                fix="use Nyquist gains such as 0.3.",
            )

    def _check_whole_numbers(self) -> None:
        """``ratio`` >= 2 and ``bit_depth`` in [1, 32], as integers."""
        if not _is_int(self.ratio) or self.ratio < 2:
            raise SensorError(
                f"Sensor {self.name!r}: ratio must be an integer >= 2.",
                got=repr(self.ratio),
                fix="give the PAN/MS pixel-size ratio as a whole number, e.g. ratio: 4.",
            )
        if not _is_int(self.bit_depth) or not 1 <= self.bit_depth <= 32:
            raise SensorError(
                f"Sensor {self.name!r}: bit_depth must be an integer >= 1 and <= 32.",
                got=repr(self.bit_depth),
                fix="give the radiometric resolution in bits, e.g. bit_depth: 11.",
            )

    @property
    def n_bands(self) -> int:
        """Number of MS bands."""
        return len(self.bands)

    def to_attrs(self) -> dict[str, Any]:
        """The whole spec as a JSON-ready dict (stored with every scene; see :meth:`from_attrs`)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_attrs(cls, raw: Mapping[str, Any]) -> SensorSpec:
        """Inverse of :meth:`to_attrs` (lists become tuples); validated like any spec."""
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        return cls(**kwargs)


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


_REGISTRY: dict[str, SensorSpec] = {}


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def register_sensor(spec: SensorSpec, *, replace: bool = False) -> None:
    """Add ``spec`` to the table under its name and aliases."""
    for key in (spec.name, *spec.aliases):
        k = _key(key)
        if k in _REGISTRY and not replace and _REGISTRY[k].name != spec.name:
            raise SensorError(
                f"Sensor name {key!r} is already taken by {_REGISTRY[k].title}.",
                fix="choose another name or pass replace=True.",
            )
        _REGISTRY[k] = spec


def sensor_names() -> list[str]:
    """Canonical names of all known sensors, sorted."""
    return sorted({s.name for s in _REGISTRY.values()})


def get_sensor(name: str | SensorSpec) -> SensorSpec:
    """Look a sensor up by name or alias (case-insensitive).

    Raises
    ------
    SensorError
        If the name is unknown; the message lists the closest known names.
    """
    if isinstance(name, SensorSpec):
        return name
    spec = _REGISTRY.get(_key(name))
    if spec is not None:
        return spec
    close = difflib.get_close_matches(_key(name), list(_REGISTRY), n=4, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    raise SensorError(
        f"Unknown sensor {name!r}.",
        expected="one of " + ", ".join(sensor_names()),
        got=repr(name),
        fix=f"{hint}Pass a known --sensor or add yours with a sensor YAML file (--sensor-file).",
    )


def load_sensor_file(path: str | Path) -> list[SensorSpec]:
    """Register the sensors defined in a YAML file (replacing same-named ones) and return them.

    The file maps each sensor name to the fields of :class:`SensorSpec`, as
    ``pipeline/sensors.yaml`` does for the built-in sensors, e.g.::

        mysat:
          title: MySat-1
          bands: [blue, green, red, nir]
          rgb: [2, 1, 0]
          ratio: 4
          bit_depth: 12
          mtf_ms: [0.3, 0.3, 0.3, 0.3]
          mtf_pan: 0.15
    """
    specs = read_sensor_file(path)
    for spec in specs:
        register_sensor(spec, replace=True)
    return specs


def read_sensor_file(path: str | Path) -> list[SensorSpec]:
    """The validated sensors of a sensor YAML file, in file order, without registering them.

    Raises
    ------
    SensorError
        If the file cannot be read, is not a mapping, or an entry is invalid; the message names
        the file.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SensorError(
            "Cannot read the sensor file.",
            path=path,
            got=str(exc),
            fix="give a readable YAML file mapping sensor names to their fields.",
        ) from exc
    if not isinstance(raw, Mapping):
        raise SensorError(
            "The sensor file must map sensor names to their fields.",
            path=path,
            expected="a YAML mapping",
            got=type(raw).__name__,
            fix="see pipeline.sensors.load_sensor_file or pipeline/sensors.yaml for an example.",
        )
    return [_spec_from(str(name), body, path) for name, body in raw.items()]


def _spec_from(name: str, body: object, path: Path) -> SensorSpec:
    """One sensor of a sensor file; errors name the file."""
    allowed = {f.name for f in fields(SensorSpec)}
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", name):
        raise SensorError(
            f"Sensor name {name!r} is not a name.",
            path=path,
            expected="a letter, then letters, digits, '_', '.' or '-' (e.g. mysat-2)",
            got=repr(name),
            fix="rename the sensor in the file (and in --sensor).",
        )
    if not isinstance(body, Mapping):
        raise SensorError(f"Sensor {name!r} must be a mapping.", path=path, got=body)
    unknown = set(body) - allowed
    if unknown:
        raise SensorError(
            f"Sensor {name!r} has unknown fields.",
            path=path,
            expected="fields among " + ", ".join(sorted(allowed - {"name"})),
            got=", ".join(sorted(unknown)),
            fix="remove or rename them.",
        )
    kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in body.items()}
    kwargs.setdefault("title", name)
    try:
        return SensorSpec(name=name.lower(), **kwargs)
    except SensorError as exc:
        raise SensorError(
            exc.problem, path=path, expected=exc.expected, got=exc.got, fix=exc.fix
        ) from exc
    except TypeError as exc:
        raise SensorError(
            f"Sensor {name!r} is incomplete.",
            path=path,
            got=str(exc),
            fix="give title, bands, rgb, ratio, bit_depth, mtf_ms and mtf_pan.",
        ) from exc


for _spec in read_sensor_file(BUILTIN_TABLE):
    register_sensor(_spec)

__all__ = [
    "BUILTIN_TABLE",
    "DEFAULT_MS_GAIN",
    "DEFAULT_PAN_GAIN",
    "SensorSpec",
    "get_sensor",
    "load_sensor_file",
    "read_sensor_file",
    "register_sensor",
    "sensor_names",
]
