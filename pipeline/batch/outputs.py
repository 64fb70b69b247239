"""What a batch leaves in OUTDIR besides the per-scene products.

``summary.csv`` and ``summary.md`` (one row per scene: state, HQNR of the unadapted backbone and
of the product, tiles, seconds, error) and ``products.json``: a STAC ItemCollection with one item
per finished product (the COG, its report and quicklook as assets; ``proj:`` fields read from the
COG; ``processing:`` fields and ``pantailor:`` method, adapter and weights checksum; links to the
source STAC items). Written atomically at the end of every driver run, from the database.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import __version__
from .plan import PlannedScene
from .state import SceneRow

SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
PRODUCTS = "products.json"
CSV_COLUMNS = (
    "id",
    "state",
    "hqnr_none",
    "hqnr_product",
    "tiles",
    "tiles_computed",
    "seconds",
    "attempts",
    "output",
    "error",
)
EXTENSIONS = [
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
]


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def summary_csv(rows: Sequence[SceneRow]) -> str:
    """The per-scene CSV (header :data:`CSV_COLUMNS`)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow([_fmt(getattr(r, c)) for c in CSV_COLUMNS])
    return buf.getvalue()


def summary_md(rows: Sequence[SceneRow], source: str) -> str:
    """The per-scene Markdown table with totals and the failed scenes' errors."""
    counts = {s: sum(r.state == s for r in rows) for s in ("done", "failed", "queued", "running")}
    lines = [
        f"# Batch summary: {source}",
        "",
        f"{len(rows)} scenes: {counts['done']} done, {counts['failed']} failed, "
        f"{counts['queued'] + counts['running']} pending. pantailor {__version__}.",
        "",
        "| scene | state | HQNR none | HQNR product | tiles | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.id} | {r.state} | {_fmt(r.hqnr_none)} | {_fmt(r.hqnr_product)} | "
            f"{_fmt(r.tiles)} | {_fmt(r.seconds)} |"
        )
    failed = [r for r in rows if r.state == "failed"]
    if failed:
        lines += ["", "## Failed scenes", ""]
        lines += [f"- **{r.id}**: {(r.error or '').replace(chr(10), ' ')}" for r in failed]
    return "\n".join(lines) + "\n"


@lru_cache(maxsize=64)
def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def weights_sha256(method: str, weights: str | None, sensor: str, n_bands: int) -> str | None:
    """SHA-256 of the backbone's weights file (shipped, ``dlpan:`` or a path); None if none."""
    from ..backbones.checkpoints import default_weights, dlpan_checkpoint
    from ..errors import PantailorError

    try:
        if weights is None:
            path = default_weights(method, n_bands)
        elif weights.lower().startswith("dlpan:"):
            path = dlpan_checkpoint(method, weights.split(":", 1)[1])
        else:
            path = Path(weights)
        return _file_sha256(str(path.resolve()))
    except (PantailorError, OSError):
        return None


def _proj(cog: Path) -> tuple[dict[str, Any], list[float] | None, dict[str, Any] | None]:
    """``proj:`` fields of the COG, its WGS84 bbox and footprint (None when not georeferenced)."""
    import rasterio
    from rasterio.warp import transform_bounds

    with rasterio.open(cog) as src:
        props: dict[str, Any] = {
            "proj:shape": [src.height, src.width],
            "proj:transform": list(src.transform)[:6],
            "proj:bbox": list(src.bounds),
        }
        if src.crs is None:
            props["proj:code"] = None
            return props, None, None
        epsg = src.crs.to_epsg()
        props["proj:code"] = f"EPSG:{epsg}" if epsg else None
        if not epsg:
            props["proj:wkt2"] = src.crs.to_wkt()
        w, s, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    geom = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    return props, [w, s, e, n], geom


def product_item(p: PlannedScene, row: SceneRow, out_dir: Path) -> Any:
    """The STAC Item of one finished product (asset hrefs relative to ``out_dir``)."""
    import pystac

    def rel(path: Path) -> str:
        return os.path.relpath(path, out_dir)

    cog = Path(row.output)
    report: dict[str, Any] = {}
    report_path = cog.with_suffix(".report.json")
    if report_path.is_file():
        report = json.loads(report_path.read_text())
    proj, bbox, geom = _proj(cog)
    run = p.run
    method = report.get("method") or (run.method if run else None)
    sensor = str(report.get("sensor") or (run.sensor if run else ""))
    source_dt = p.spec.properties.get("datetime")
    when = datetime.fromtimestamp(row.finished_at or 0.0, UTC)
    props: dict[str, Any] = {
        **proj,
        "processing:software": {"pantailor": __version__},
        "processing:datetime": when.isoformat(timespec="seconds"),
        "processing:lineage": f"pansharpened by pantailor ({method}, adapt "
        f"{report.get('adapt')}) from {', '.join(Path(i).name for i in p.spec.inputs)}",
        "pantailor:method": method,
        "pantailor:adapter": report.get("adapt"),
        "pantailor:adapter_sha256": (report.get("fit") or {}).get("sha256"),
        "pantailor:tailor_group": p.spec.options.get("group") if p.group else None,
        "pantailor:weights_sha256": weights_sha256(
            str(method), run.weights if run else None, sensor, int(report.get("n_bands") or 0)
        ),
        "pantailor:sensor": sensor,
        "pantailor:inputs": list(p.spec.inputs),
        "pantailor:hqnr": row.hqnr_product,
        "pantailor:hqnr_none": row.hqnr_none,
        "pantailor:cog_sha256": row.cog_sha256,
    }
    item = pystac.Item(
        id=p.spec.id,
        geometry=geom,
        bbox=bbox,
        datetime=datetime.fromisoformat(source_dt.replace("Z", "+00:00")) if source_dt else when,
        properties=props,
        stac_extensions=list(EXTENSIONS),
    )
    item.add_asset("data", pystac.Asset(str(cog), media_type=pystac.MediaType.COG, roles=["data"]))
    item.add_asset(
        "report", pystac.Asset(str(report_path), media_type="application/json", roles=["metadata"])
    )
    quick = cog.with_suffix(".quicklook.png")
    item.add_asset(
        "quicklook", pystac.Asset(str(quick), media_type="image/png", roles=["overview"])
    )
    for href in p.spec.links:
        item.add_link(pystac.Link("derived_from", href, media_type="application/json"))
    return item


def write_outputs(
    out_dir: Path, planned: Sequence[PlannedScene], rows: Mapping[str, SceneRow]
) -> dict[str, str]:
    """Write the summaries and the products' ItemCollection; returns their paths by name."""
    import pystac

    ordered = [rows[p.spec.id] for p in planned if p.spec.id in rows]
    source = str(out_dir)
    _atomic_text(out_dir / SUMMARY_CSV, summary_csv(ordered))
    _atomic_text(out_dir / SUMMARY_MD, summary_md(ordered, source))
    items = [
        product_item(p, rows[p.spec.id], out_dir)
        for p in planned
        if p.spec.id in rows and rows[p.spec.id].state == "done" and Path(p.output).is_file()
    ]
    collection = pystac.ItemCollection(items)
    _atomic_text(
        out_dir / PRODUCTS, json.dumps(collection.to_dict(transform_hrefs=False), indent=1)
    )
    return {
        "summary_csv": str(out_dir / SUMMARY_CSV),
        "summary_md": str(out_dir / SUMMARY_MD),
        "products": str(out_dir / PRODUCTS),
    }


__all__ = [
    "CSV_COLUMNS",
    "PRODUCTS",
    "SUMMARY_CSV",
    "SUMMARY_MD",
    "product_item",
    "summary_csv",
    "summary_md",
    "weights_sha256",
    "write_outputs",
]
