"""Compare methods on one scene the way quality teams do: ``pantailor evaluate``.

For every method (``exp`` = the toolbox's 23-tap interpolation of the MS, the network with
``none`` / ``tailor`` / ``finetune`` adaptation through :func:`pipeline.fuse.fuse`, or a classical
method of :data:`pipeline.classical.METHODS`):

1. **Reduced resolution (Wald protocol).** PAN and MS are degraded by the sensor's MTF (Gaussian
   filters matched to the PAN and MS Nyquist gains) and decimated by the ratio; the method runs
   on the degraded pair, in memory; its product is scored against the original MS with SAM
   (degrees), ERGAS, Q2n (32x32 blocks) and SCC.
2. **Full resolution.** The method runs on the original pair; its product is scored with the
   toolbox-exact D_lambda^K, D_S, HQNR, D_lambda and QNR (:mod:`pipeline.quality`).

One table (markdown, CSV, JSON) and a PNG of the same crop of every reduced-resolution product
beside the reference. The JSON names the convention of every number.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from .errors import ConfigError, InputError
from .quality import (
    CONVENTION_NOTES,
    DEFAULT_CONVENTION,
    FULL_RESOLUTION_KEYS,
    REDUCED_RESOLUTION_KEYS,
    full_resolution,
    reduced_resolution,
)
from .quality.full_resolution import mtf_degrade
from .quality.product import ProductInputs
from .quality.toolbox import interp23tap
from .sensors import SensorSpec

if TYPE_CHECKING:
    from .fit_config import FitConfig
    from .sampling import SampleConfig

log = logging.getLogger(__name__)

NETWORK_METHODS = ("none", "tailor", "finetune")
EXP = "exp"
DEFAULT_METHODS = ("exp", "none", "tailor", "brovey", "mtf-glp")
WALD_NOTE = (
    "Wald protocol: PAN and MS filtered with the sensor's MTF-matched Gaussians (PAN and MS "
    "Nyquist gains) and decimated by the ratio; products scored against the original MS. SAM in "
    "degrees, ERGAS with the ratio, Q2n on 32x32 blocks, SCC of Laplacian high-passes"
)

FloatImage = NDArray[np.float64]


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    """What ``pantailor evaluate`` compares.

    Attributes
    ----------
    methods
        Method names in table order (see the module docstring).
    backbone, weights
        Network and weights for the network methods (``None``: the shipped weights).
    seed
        Seed of the adaptation (sampling and tailor initialisation).
    crop
        Square PAN crop edge from the scene centre (a multiple of ``ratio**2``), or ``None``.
    block
        Q/Q2n block edge (32).
    figure_px
        Edge of the crop shown per method in the figure (reduced-resolution PAN pixels).
    """

    methods: tuple[str, ...] = DEFAULT_METHODS
    backbone: str = "fusionnet"
    weights: str | None = None
    seed: int = 0
    crop: int | None = None
    block: int = 32
    figure_px: int = 128

    def __post_init__(self) -> None:
        from .classical import METHODS

        known = (EXP, *NETWORK_METHODS, *METHODS)
        bad = [m for m in self.methods if m.lower() not in known]
        if bad or not self.methods:
            raise ConfigError(
                "Unknown evaluation method.",
                expected="some of " + ", ".join(known),
                got=", ".join(bad) or "none",
                fix="e.g. --methods exp,none,tailor,brovey,mtf-glp",
            )
        if self.crop is not None and self.crop <= 0:
            raise ConfigError("The crop must be > 0 PAN pixels.", got=self.crop)


def to_dn(inputs: ProductInputs, dn_max: float | None) -> ProductInputs:
    """Rescale inputs read with ``dn_max`` (e.g. 1.0 for [0, 1] containers) to the sensor's DN.

    The toolbox's indices round to integer DN (``q2n.m``), so they are defined on DN only.
    """
    if dn_max is None or dn_max == inputs.sensor.dn_max:
        return inputs
    if dn_max <= 0:
        raise ConfigError("dn_max must be > 0.", got=dn_max, fix="e.g. --dn-max 1 for [0, 1].")
    k = inputs.sensor.dn_max / dn_max
    gt = None if inputs.gt is None else inputs.gt * k
    return dataclasses.replace(inputs, ms=inputs.ms * k, pan=inputs.pan * k, gt=gt)


def crop_inputs(inputs: ProductInputs, crop: int | None) -> ProductInputs:
    """Centre-crop PAN to ``crop x crop`` (MS accordingly); also trims sizes to ``ratio**2``.

    Raises :class:`ConfigError` if the crop is not a multiple of ``ratio**2`` or too large.
    """
    r = inputs.sensor.ratio
    step = r * r
    h, w = inputs.pan.shape
    if crop is not None and (crop % step or crop > min(h, w)):
        raise ConfigError(
            "The crop does not fit the scene.",
            expected=f"a multiple of {step} (ratio squared), at most {min(h, w)}",
            got=crop,
            fix=f"use e.g. --crop {min(256, min(h, w) // step * step)}.",
        )
    ch, cw = (crop, crop) if crop is not None else (h // step * step, w // step * step)
    y0, x0 = (h - ch) // 2 // step * step, (w - cw) // 2 // step * step
    pan = inputs.pan[y0 : y0 + ch, x0 : x0 + cw]
    ms = inputs.ms[:, y0 // r : (y0 + ch) // r, x0 // r : (x0 + cw) // r]
    gt = None if inputs.gt is None else inputs.gt[:, y0 : y0 + ch, x0 : x0 + cw]
    return dataclasses.replace(inputs, pan=pan, ms=ms, gt=gt)


def wald_degrade(
    pan: FloatImage, ms: FloatImage, spec: SensorSpec
) -> tuple[FloatImage, FloatImage]:
    """The Wald-protocol pair: ``(PAN (H/r, W/r), MS (B, h/r, w/r))`` from ``PAN (H, W), MS (B, h, w)``."""
    r = spec.ratio
    pan_lr = mtf_degrade(pan[None], [spec.mtf_pan], r)[0]
    ms_lr = mtf_degrade(ms, spec.mtf_ms, r)
    return np.asarray(pan_lr, dtype=np.float64), np.asarray(ms_lr, dtype=np.float64)


class MethodRunner:
    """Runs one method on a PAN/MS pair (DN) and returns ``(fused (B, H, W) DN, info)``.

    ``backbone`` (default: loaded from ``cfg``), ``fit`` (the network methods' configuration,
    its ``adapt`` replaced per method; default :class:`pipeline.fit.FitConfig`), ``dn_max``
    (normalisation; default the sensor's), ``overlap`` and ``sample`` (patch sampling; default
    :class:`pipeline.sampling.SampleConfig`) are passed to :func:`pipeline.fuse.fuse`.
    """

    def __init__(
        self,
        spec: SensorSpec,
        cfg: EvaluateConfig,
        *,
        backbone: Any = None,
        fit: FitConfig | None = None,
        dn_max: float | None = None,
        overlap: bool = True,
        sample: SampleConfig | None = None,
    ) -> None:
        self.spec, self.cfg, self._backbone = spec, cfg, backbone
        self.fit, self.dn_max, self.overlap = fit, dn_max, overlap
        self.sample = sample

    def backbone(self) -> Any:
        if self._backbone is None:
            from .backbones import load

            self._backbone = load(self.cfg.backbone, self.cfg.weights, sensor=self.spec)
        return self._backbone

    def __call__(
        self,
        method: str,
        pan: FloatImage,
        ms: FloatImage,
        *,
        seed: int | None = None,
        nodata: float | None = None,
    ) -> tuple[FloatImage, dict[str, Any]]:
        """Run ``method``; ``seed`` overrides the config's, ``nodata`` marks invalid DN."""
        m = method.lower()
        t0 = time.perf_counter()
        info: dict[str, Any] = {}
        if m == EXP:
            fused = interp23tap(ms, self.spec.ratio)
        elif m in NETWORK_METHODS:
            fused, info = self._network(m, pan, ms, self.cfg.seed if seed is None else seed, nodata)
        else:
            from .classical import pansharpen

            fused = np.asarray(pansharpen(m, ms, pan, self.spec), dtype=np.float64)
        info["seconds"] = time.perf_counter() - t0
        return fused, info

    def _network(
        self, m: str, pan: FloatImage, ms: FloatImage, seed: int, nodata: float | None
    ) -> tuple[FloatImage, dict[str, Any]]:
        from .fit import FitConfig
        from .fuse import fuse
        from .sampling import SampleConfig

        sample = self.sample or SampleConfig()
        r = self.spec.ratio
        edge = min(pan.shape) // r * r
        if edge < sample.patch:  # small (reduced-resolution) scenes: one patch per scene
            sample = dataclasses.replace(sample, patch=max(4 * r, edge))
        fit = dataclasses.replace(self.fit or FitConfig(), adapt=m)
        out = fuse(
            pan,
            ms,
            self.spec,
            self.backbone(),
            fit=fit,
            sample=sample,
            seed=seed,
            dn_max=self.dn_max,
            nodata=nodata,
            overlap=self.overlap,
        )
        sec = out.seconds
        info: dict[str, Any] = {
            "fit_s": sec.get("sample", 0.0) + sec.get("fit", 0.0),
            "infer_s": sec.get("infer", 0.0),
        }
        if m != "none":
            info["fit_steps"] = out.fit.steps
            info["step_budget"] = out.fit.step_budget
            info["stop_rule"] = out.fit.stop_rule
            for key in ("kept_step", "fallback"):  # the stopping rule's word, where it has one
                if hasattr(out.fit, key):
                    info[key] = getattr(out.fit, key)
        return np.asarray(out.image, dtype=np.float64), info


def evaluate_methods(
    inputs: ProductInputs,
    cfg: EvaluateConfig,
    dn_max: float | None = None,
    *,
    paths: Sequence[str] = (),
) -> dict[str, Any]:
    """Score every method of ``cfg`` at reduced and full resolution on ``inputs``.

    ``dn_max``: the value of the sensor's full scale in ``inputs`` (``None``: already in DN);
    ``paths``: the input files, named by errors.

    Returns
    -------
    dict
        ``{"sensor", "shape", "conventions", "rows": [{"method", sam, ergas, q2n, scc,
        d_lambda_k, d_s, hqnr, d_lambda, qnr, "rr_info", "fr_info"}], "products": {...}}``;
        ``products`` holds the reduced-resolution products (for the figure), not serialised.
    """
    spec = inputs.sensor
    scene = crop_inputs(to_dn(inputs, dn_max), cfg.crop)
    if min(scene.ms.shape[1:]) // spec.ratio < 4:  # checked before degrading an empty image
        raise InputError(
            "The scene is too small for the reduced-resolution protocol.",
            path=paths or None,
            expected=f"MS of at least {4 * spec.ratio} pixels a side (PAN {4 * spec.ratio**2})",
            got=f"MS {tuple(inputs.ms.shape)}, {tuple(scene.ms.shape)} after cropping",
            fix="use a larger --crop or scene.",
        )
    pan_lr, ms_lr = wald_degrade(scene.pan, scene.ms, spec)
    run = MethodRunner(spec, cfg)
    rows, products = [], {}
    for method in cfg.methods:
        log.info("evaluate: %s", method)
        fused_rr, rr_info = run(method, pan_lr, ms_lr)
        row: dict[str, Any] = {"method": method}
        row.update(reduced_resolution(fused_rr, scene.ms, spec, block=cfg.block))
        fused_fr, fr_info = run(method, scene.pan, scene.ms)
        row.update(full_resolution(fused_fr, scene.ms, scene.pan, spec, block=cfg.block))
        row["rr_info"], row["fr_info"] = rr_info, fr_info
        rows.append(row)
        products[method] = fused_rr
    return {
        "sensor": spec.name,
        "shape": {"pan": list(scene.pan.shape), "ms": list(scene.ms.shape)},
        "conventions": {
            "reduced_resolution": WALD_NOTE,
            "full_resolution": f"{DEFAULT_CONVENTION}: {CONVENTION_NOTES[DEFAULT_CONVENTION]}",
        },
        "rows": rows,
        "products": products,
        "reference": scene.ms,
    }


def table_markdown(result: dict[str, Any]) -> str:
    """The comparison table as markdown (one row per method)."""
    keys = (*REDUCED_RESOLUTION_KEYS, *FULL_RESOLUTION_KEYS)
    head = "| method | " + " | ".join(keys) + " | seconds (RR + FR) |"
    lines = [head, "|" + "---|" * (len(keys) + 2)]
    for row in result["rows"]:
        secs = row["rr_info"]["seconds"] + row["fr_info"]["seconds"]
        cells = " | ".join(f"{row[k]:.4f}" for k in keys)
        lines.append(f"| {row['method']} | {cells} | {secs:.1f} |")
    notes = [f"- {k}: {v}" for k, v in result["conventions"].items()]
    return "\n".join([*lines, "", *notes, ""])


def table_csv(result: dict[str, Any]) -> str:
    """The comparison table as CSV."""
    keys = (*REDUCED_RESOLUTION_KEYS, *FULL_RESOLUTION_KEYS)
    out = ["method," + ",".join(keys) + ",seconds_rr,seconds_fr"]
    for row in result["rows"]:
        vals = ",".join(f"{row[k]:.6f}" for k in keys)
        out.append(
            f"{row['method']},{vals},{row['rr_info']['seconds']:.3f},{row['fr_info']['seconds']:.3f}"
        )
    return "\n".join(out) + "\n"


def _rgb(img: FloatImage, rgb: Sequence[int], lo: FloatImage, hi: FloatImage) -> NDArray[np.uint8]:
    x = img[list(rgb)]
    x = (x - lo[:, None, None]) / np.where(hi > lo, hi - lo, 1.0)[:, None, None]
    return np.asarray(np.clip(x, 0, 1).transpose(1, 2, 0) * 255 + 0.5, dtype=np.uint8)


def figure(result: dict[str, Any], spec: SensorSpec, px: int, path: Path) -> None:
    """PNG: the same centre crop of the reference and of every reduced-resolution product."""
    from PIL import Image, ImageDraw

    ref = result["reference"]
    h, w = ref.shape[1:]
    e = min(px, h, w)
    y0, x0 = (h - e) // 2, (w - e) // 2
    sub = ref[list(spec.rgb), y0 : y0 + e, x0 : x0 + e]
    lo, hi = np.percentile(sub, 2, axis=(1, 2)), np.percentile(sub, 98, axis=(1, 2))
    panels = [("reference (MS)", ref), *result["products"].items()]
    scale = max(1, 192 // e)
    cell = e * scale
    canvas = Image.new("RGB", (cell * len(panels), cell + 16), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (name, img) in enumerate(panels):
        tile = Image.fromarray(_rgb(img[:, y0 : y0 + e, x0 : x0 + e], spec.rgb, lo, hi))
        canvas.paste(tile.resize((cell, cell), Image.Resampling.NEAREST), (i * cell, 16))
        draw.text((i * cell + 2, 2), name, fill="black")
    canvas.save(path)


def write_outputs(
    result: dict[str, Any], spec: SensorSpec, px: int, out: Path, meta: dict[str, Any]
) -> dict[str, str]:
    """Write ``evaluate.{md,csv,json,png}`` under ``out``; returns their paths by kind.

    Files are written under temporary names and renamed last, so an interrupted run leaves no
    complete-looking table.
    """
    import json

    out.mkdir(parents=True, exist_ok=True)
    rows = [{k: v for k, v in r.items()} for r in result["rows"]]
    doc = {**meta, "sensor": result["sensor"], "shape": result["shape"]}
    doc.update(conventions=result["conventions"], rows=rows)
    paths = {k: out / f"evaluate.{k}" for k in ("md", "csv", "json", "png")}
    tmp = {k: p.with_name(p.name + ".part") for k, p in paths.items()}
    tmp["md"].write_text(f"# Evaluation: {result['sensor']}\n\n" + table_markdown(result))
    tmp["csv"].write_text(table_csv(result))
    tmp["json"].write_text(json.dumps(doc, indent=1))
    figure(result, spec, px, tmp["png"].with_suffix(".part.png"))
    tmp["png"].with_suffix(".part.png").replace(paths["png"])
    for k in ("md", "csv", "json"):
        tmp[k].replace(paths[k])
    return {k: str(p) for k, p in paths.items()}


__all__ = [
    "DEFAULT_METHODS",
    "EXP",
    "NETWORK_METHODS",
    "EvaluateConfig",
    "MethodRunner",
    "crop_inputs",
    "evaluate_methods",
    "figure",
    "table_csv",
    "table_markdown",
    "to_dn",
    "wald_degrade",
    "write_outputs",
]
