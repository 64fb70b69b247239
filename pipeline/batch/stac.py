"""STAC sources: a Catalog, Collection or ItemCollection on disk, one scene per item.

Assets are chosen by their bands (``eo:bands`` in STAC 1.0, ``bands`` with ``eo:common_name``
in 1.1): the PAN is the asset keyed ``pan`` or whose one band has the common name ``pan``; the
MS is either one single-band asset per sensor band (as Landsat items have them), matched by
common name or band name, or one multi-band asset with the sensor's band count (or an asset
keyed ``ms``). The sensor is the batch-wide ``--sensor`` or inferred from the item's
``platform`` / ``constellation``. Relative hrefs are resolved against the file that holds them.
An item that lacks a needed asset becomes a scene that fails alone, naming the item and the
asset. Per-scene options may be set as ``pantailor:<option>`` properties (e.g.
``pantailor:ms_decimate``); the group defaults to platform + acquisition date.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import SensorError
from ..sensors import SensorSpec, get_sensor
from .sources import OPTION_TYPES, ManifestError, SceneSpec, spec_from_row

log = logging.getLogger(__name__)

#: STAC common names accepted for each of the sensor table's band names.
COMMON_NAMES: dict[str, tuple[str, ...]] = {
    "coastal": ("coastal",),
    "blue": ("blue",),
    "green": ("green",),
    "yellow": ("yellow",),
    "red": ("red",),
    "red_edge": ("rededge",),
    "nir": ("nir", "nir08"),
    "nir1": ("nir", "nir08"),
    "nir2": ("nir09",),
    "swir1": ("swir16",),
    "swir2": ("swir22",),
}
#: Sensors sharing a platform, tried in order until the band count fits.
PLATFORM_VARIANTS: dict[str, tuple[str, ...]] = {"wv2": ("wv2", "wv2-4band")}


def _band_list(asset: Any) -> list[Mapping[str, Any]]:
    bands = asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []
    return [b for b in bands if isinstance(b, Mapping)]


def _names(band: Mapping[str, Any]) -> set[str]:
    keys = ("common_name", "eo:common_name", "name")
    return {str(band[k]).lower() for k in keys if band.get(k)}


def _matches(band_name: str, names: set[str]) -> bool:
    wanted = {band_name.lower(), *COMMON_NAMES.get(band_name, ())}
    if re.fullmatch(r"b0\d", band_name):  # Sentinel-2 "b05" is also written "B5"
        wanted.add("b" + band_name[2:])
    return bool(wanted & names)


def _href(asset: Any, base: Path) -> str:
    href = asset.get_absolute_href() or asset.href
    path = Path(href)
    return str(path if path.is_absolute() else (base / path).resolve())


def _pan_key(assets: Mapping[str, Any]) -> str | None:
    for key, asset in assets.items():
        bands = _band_list(asset)
        if key.lower() == "pan" or (len(bands) == 1 and "pan" in _names(bands[0])):
            return key
    return None


def _ms_keys(assets: Mapping[str, Any], pan: str, sensor: SensorSpec) -> list[str] | str:
    """The MS asset keys in band order, or the name of the first band no asset provides."""
    single = {
        k: _names(_band_list(a)[0])
        for k, a in assets.items()
        if k != pan and len(_band_list(a)) == 1
    }
    per_band: list[str] = []
    for band in sensor.bands:
        key = next((k for k, names in single.items() if _matches(band, names)), None)
        if key is None:
            break
        per_band.append(key)
    if len(per_band) == sensor.n_bands:
        return per_band
    for key, asset in assets.items():
        if key != pan and len(_band_list(asset)) == sensor.n_bands:
            return [key]
    if "ms" in {k.lower() for k in assets}:
        return [next(k for k in assets if k.lower() == "ms")]
    return sensor.bands[len(per_band)]


def infer_sensor(properties: Mapping[str, Any], n_ms_hint: int | None = None) -> SensorSpec:
    """The sensor of an item from ``platform`` then ``constellation`` (``SensorError`` if none)."""
    tried = []
    for key in ("platform", "constellation"):
        value = properties.get(key)
        if not isinstance(value, str):
            continue
        for name in (value, re.sub(r"[-_]?[a-d]$", "", value)):  # sentinel-2a -> sentinel-2
            tried.append(name)
            try:
                spec = get_sensor(name)
            except SensorError:
                continue
            for variant in PLATFORM_VARIANTS.get(spec.name, (spec.name,)):
                cand = get_sensor(variant)
                if n_ms_hint is None or cand.n_bands == n_ms_hint:
                    return cand
            return spec
    raise SensorError(
        "The sensor cannot be inferred from the item's platform / constellation.",
        expected="a platform such as landsat-7, landsat-8, sentinel-2a, worldview-2",
        got=", ".join(tried) or "no platform or constellation property",
        fix="pass --sensor for the batch.",
    )


def _ms_count(assets: Mapping[str, Any], pan: str) -> int | None:
    counts = [len(_band_list(a)) for k, a in assets.items() if k != pan and _band_list(a)]
    if len(counts) > 1 and all(c == 1 for c in counts):
        return len(counts)
    multi = [c for c in counts if c > 1]
    return multi[0] if len(multi) == 1 else None


def scene_from_item(item: Any, base: Path, sensor: str | None, file: Path) -> SceneSpec:
    """One :class:`SceneSpec` from a pystac Item; problems become the spec's ``error``.

    ``base`` resolves relative hrefs; ``file`` is the STAC file named in messages.
    """
    origin = f"{file.name} item {item.id}"
    scene_id = re.sub(r"[^A-Za-z0-9._-]", "_", str(item.id))[:128] or "item"
    props = dict(item.properties)
    assets = dict(item.assets)
    row: dict[str, Any] = {
        k.split(":", 1)[1]: v for k, v in props.items() if k.startswith("pantailor:")
    }
    row = {k: v for k, v in row.items() if k in OPTION_TYPES}
    date = str(props.get("datetime") or props.get("start_datetime") or "")[:10]
    row.setdefault("group", f"{props.get('platform') or props.get('constellation') or ''}-{date}")
    keep = {k: props[k] for k in ("datetime", "platform", "constellation") if k in props}
    links = (item.get_self_href(),) if item.get_self_href() else ()

    def failed(text: str) -> SceneSpec:
        return SceneSpec(
            id=scene_id,
            inputs=(),
            sensor=sensor,
            error=text,
            origin=origin,
            links=links,
            properties=keep,
        )

    pan = _pan_key(assets)
    if pan is None:
        return failed(f"STAC item {item.id!r} lacks the asset 'pan' (a band with common name pan).")
    try:
        spec = get_sensor(sensor) if sensor else infer_sensor(props, _ms_count(assets, pan))
    except SensorError as exc:
        return failed(f"STAC item {item.id!r}: {exc}")
    ms = _ms_keys(assets, pan, spec)
    if isinstance(ms, str):
        return failed(
            f"STAC item {item.id!r} lacks an MS asset for band {ms!r} of sensor {spec.name} "
            f"(common names {', '.join(COMMON_NAMES.get(ms, (ms,)))}), and has no "
            f"{spec.n_bands}-band MS asset."
        )
    row.update(id=scene_id, inputs=[_href(assets[k], base) for k in (pan, *ms)], sensor=spec.name)
    parsed = spec_from_row(row, file, f"item {item.id}")
    return replace(parsed, origin=origin, links=links, properties=keep)


def _load(path: Path) -> tuple[str, Any]:
    import pystac

    try:
        kind = json.loads(path.read_text(encoding="utf-8")).get("type")
        if kind == "FeatureCollection":
            return kind, pystac.ItemCollection.from_file(str(path))
        if kind in ("Catalog", "Collection"):
            return kind, pystac.read_file(str(path))
    except (OSError, ValueError, KeyError, pystac.STACError) as exc:
        raise ManifestError(
            "The STAC file cannot be read.",
            path=path,
            expected="a STAC Catalog, Collection or ItemCollection (JSON)",
            got=f"{type(exc).__name__}: {exc}",
            fix="check the file (validate it with stac-validator).",
        ) from None
    raise ManifestError(
        "The JSON file is not a STAC Catalog, Collection or ItemCollection.",
        path=path,
        expected="type Catalog, Collection or FeatureCollection",
        got=repr(kind),
    )


def read_stac(path: str | Path, sensor: str | None = None) -> list[SceneSpec]:
    """Scenes of a STAC Catalog / Collection (items found recursively) or ItemCollection.

    Raises
    ------
    ManifestError
        Unreadable JSON, not STAC, no items, or two items with the same id.
    """
    file = Path(path).resolve()
    kind, obj = _load(file)
    items: Sequence[Any]
    try:
        items = (
            list(obj.items) if kind == "FeatureCollection" else list(obj.get_items(recursive=True))
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ManifestError(
            "A STAC item linked from the catalog cannot be read.",
            path=file,
            got=f"{type(exc).__name__}: {exc}",
            fix="check the catalog's item links.",
        ) from None
    specs: list[SceneSpec] = []
    seen: set[str] = set()
    for item in items:
        self_href = item.get_self_href()
        base = Path(self_href).parent if self_href else file.parent
        spec = scene_from_item(item, base, sensor, file)
        if spec.id in seen:
            raise ManifestError(
                f"Two STAC items have the id {spec.id!r}.", path=file, fix="make item ids unique."
            )
        seen.add(spec.id)
        specs.append(spec)
    if not specs:
        raise ManifestError("The STAC file holds no items.", path=file, fix="add items.")
    return specs


def is_stac(source: str | Path) -> bool:
    """Whether ``source`` looks like a STAC JSON file (by suffix)."""
    return Path(source).suffix.lower() == ".json"


__all__ = ["COMMON_NAMES", "infer_sensor", "is_stac", "read_stac", "scene_from_item"]
