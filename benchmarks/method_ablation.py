"""Ablation of the tailor's losses, graded by the toolbox (``pantailor evaluate``'s protocol).

For each scene (a 512-px PAN crop; pretrained weights of another sensor) and each variant of
``FitConfig`` (named in :data:`VARIANTS`), the tailor runs through :func:`pipeline.fuse.fuse`
on the Wald-degraded pair (scored against the original MS: SAM, ERGAS, Q2n) and on the original
pair (scored with the toolbox-exact D_lambda^K, D_S, HQNR), for ``--seeds`` seeds; the table
gives the median and the spread over seeds. Baselines EXP / none / MTF-GLP once per scene.
Scenes are split into a *tuning* set and a *held-out* set (never looked at while choosing the
defaults; reported separately).

Usage::

    python benchmarks/method_ablation.py --variants old,toolbox --seeds 0,1,2 -o NAME

Writes ``benchmarks/results/NAME.{md,json}`` (the JSON is updated after every scene).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cross_sensor import WV2_4
from fit_speed import machine_info

from pipeline.backbones import load
from pipeline.config import data_dir
from pipeline.evaluate import crop_inputs, to_dn, wald_degrade
from pipeline.fit import FitConfig
from pipeline.fuse import fuse
from pipeline.losses import LossWeights
from pipeline.quality import full_resolution, reduced_resolution
from pipeline.quality.product import ProductInputs
from pipeline.quality.toolbox import interp23tap
from pipeline.sampling import SampleConfig

RESULTS = Path(__file__).resolve().parent / "results"
CROP = 512
SPACENET_NODATA = 0.0  # SpaceNet 6 fills outside the AOI with 0 (as benchmarks/cross_sensor.py)
L7 = "landsat/fusebox_landsat7/cropped"
# name: (files, sensor, weights, open options, nodata, held out)
SCENES: dict[str, tuple[list[str], Any, str | None, dict[str, Any], float | None, bool]] = {
    "wv3->wv2": (["vhr/grip/imgWV2.mat"], "wv2", "dlpan:wv3", {}, None, False),
    "qb->ge1": (["vhr/grip/imgGE1.mat"], "ge1", "dlpan:qb", {}, None, False),
    "l7-26": ([f"{L7}/26_pan.mat", f"{L7}/26_ms.mat"], "landsat7", None, {}, None, False),
    "l7-27": ([f"{L7}/27_pan.mat", f"{L7}/27_ms.mat"], "landsat7", None, {}, None, False),
    "qb->spacenet1": (
        ["vhr/spacenet_wv2/pan1.tif", "vhr/spacenet_wv2/ms1.tif"],
        WV2_4,
        "dlpan:qb",
        {"ms_decimate": 2, "dn_max": 2047.0},
        SPACENET_NODATA,
        True,
    ),
    "l7-29": ([f"{L7}/29_pan.mat", f"{L7}/29_ms.mat"], "landsat7", None, {}, None, True),
    # same-sensor control: a reduced-resolution scene with its reference (scored against ``gt``)
    "wv3-control": (["rr/cdif/WV3_test.mat"], "wv3", "dlpan:wv3", {"dn_max": 1.0}, None, True),
}
OLD = LossWeights(spatial_target="lowres", spatial=0.01, consistency=1.0)  # the previous defaults


def _w(check: str = "none", **kw: Any) -> FitConfig:
    """``OLD`` weights changed by ``kw``; ``check``: ``"none"`` (no held-out patches, as the first
    runs), ``"holdout"`` (held-out check, best held-out state kept) or ``"loss"``."""
    w = dataclasses.replace(OLD, **kw)
    if check == "none":
        return FitConfig(check_every=0, weights=w)
    return FitConfig(weights=w, select=check)


TB3 = {"spatial_target": "toolbox", "spatial": 0.3}
V2 = LossWeights(spatial=0.3)  # method v2's weights (the ``d-*`` variants change one thing)
VARIANTS: dict[str, FitConfig] = {
    "old": _w(),
    "toolbox-0.03": _w(spatial_target="toolbox", spatial=0.03),
    "toolbox-0.1": _w(spatial_target="toolbox", spatial=0.1),
    "toolbox-0.3": _w(**TB3),
    "toolbox-0.1-cons3": _w(spatial_target="toolbox", spatial=0.1, consistency=3.0),
    "old-cons3": _w(consistency=3.0),
    "tb0.3-c3": _w("holdout", **TB3, consistency=3.0),
    "tb0.3-c10": _w("holdout", **TB3, consistency=10.0),
    "tb0.3-c3-s120": dataclasses.replace(_w("holdout", **TB3, consistency=3.0), steps=120),
    "tb0.3-c3-h4": _w("holdout", **TB3, consistency=3.0),
    "tb0.3-c3-nocheck": _w(**TB3, consistency=3.0),
    "tb0.3-c3-p8-nocheck": _w(**TB3, consistency=3.0),
    "v2": FitConfig(weights=V2),  # the default before the spatial weight 0.3 -> 0.2
    "default": FitConfig(),
    "old-product": _w(),
    "finetune": FitConfig(adapt="finetune", weights=V2),
    "d-angle1": FitConfig(weights=dataclasses.replace(V2, angle=1.0)),
    "d-p6": FitConfig(weights=V2),
    "d-c10": FitConfig(weights=dataclasses.replace(V2, consistency=10.0)),
    "d-sp0.1-angle1": FitConfig(weights=dataclasses.replace(V2, angle=1.0, spatial=0.1)),
    "d-wald": FitConfig(guard="wald", weights=V2),
    "d-wald-h4": FitConfig(guard="wald", weights=V2),
    "d-sp0.1": FitConfig(weights=dataclasses.replace(V2, spatial=0.1)),
    "d-sp0.2": FitConfig(weights=dataclasses.replace(V2, spatial=0.2)),
    "d-wald-sp0.1": FitConfig(guard="wald", weights=dataclasses.replace(V2, spatial=0.1)),
    "d-s30": FitConfig(steps=30, weights=V2),
    "d-sp0.1-s120": FitConfig(steps=120, weights=dataclasses.replace(V2, spatial=0.1)),
    "default-wald": FitConfig(guard="wald"),
    "default-p6": FitConfig(),
}


NO_HOLDOUT = SampleConfig(holdout=0)  # the first runs: no held-out patches existed


SAMPLES: dict[str, SampleConfig] = {
    **{v: NO_HOLDOUT for v in ("old", "old-product", "old-cons3", "toolbox-0.1-cons3")},
    **{f"toolbox-{w}": NO_HOLDOUT for w in ("0.03", "0.1", "0.3")},
    "tb0.3-c3-p8-nocheck": SampleConfig(min_patches=8),
    "tb0.3-c3-h4": SampleConfig(holdout=4),
    "d-p6": SampleConfig(min_patches=6),
    "default-p6": SampleConfig(min_patches=6),
    "d-wald-h4": SampleConfig(holdout=4),
}


def load_scene(name: str) -> tuple[ProductInputs, str | None, float | None]:
    from pipeline.quality.product import load_inputs

    files, sensor, weights, opts, nodata, _ = SCENES[name]
    root = data_dir()
    inputs = load_inputs([root / f for f in files], sensor, **opts)
    dn = opts.get("dn_max")
    if dn is not None and dn != inputs.sensor.dn_max:
        inputs = to_dn(inputs, dn)
    crop = CROP if min(inputs.pan.shape) >= CROP else None
    return crop_inputs(inputs, crop), weights, nodata


def _fuse(
    variant: str,
    pan: np.ndarray,
    ms: np.ndarray,
    inputs: ProductInputs,
    backbone: Any,
    fit: FitConfig,
    seed: int,
    nodata: float | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    sample = SAMPLES.get(variant, SampleConfig())
    edge = min(pan.shape) // inputs.sensor.ratio * inputs.sensor.ratio
    if edge < sample.patch:
        sample = dataclasses.replace(sample, patch=max(4 * inputs.sensor.ratio, edge))
    out = fuse(pan, ms, inputs.sensor, backbone, fit=fit, sample=sample, seed=seed, nodata=nodata)
    info = {"steps": out.fit.steps, "stop_rule": out.fit.stop_rule, "fit_s": out.seconds["fit"]}
    info.update({k: v for k, v in out.fit.summary().items() if k in ("kept_step", "fallback")})
    info["holdout"] = out.fit.holdout
    return np.asarray(out.image, dtype=np.float64), info


def _runner(
    variant: str,
    inputs: ProductInputs,
    backbone: Any,
    fit: FitConfig,
    seed: int,
    nodata: float | None,
) -> Any:
    return lambda p, m: _fuse(variant, p, m, inputs, backbone, fit, seed, nodata)


def score(inputs: ProductInputs, run: Any) -> dict[str, Any]:
    """``run(pan, ms) -> (fused, info)`` scored at reduced (Wald) and full resolution."""
    spec = inputs.sensor
    if inputs.gt is not None:  # a reduced-resolution scene: its own reference
        f_fr, i_fr = run(inputs.pan, inputs.ms)
        f_rr, i_rr, ref = f_fr, i_fr, inputs.gt
    else:
        pan_lr, ms_lr = wald_degrade(inputs.pan, inputs.ms, spec)
        f_rr, i_rr = run(pan_lr, ms_lr)
        f_fr, i_fr = run(inputs.pan, inputs.ms)
        ref = inputs.ms
    row: dict[str, Any] = {k: float(v) for k, v in reduced_resolution(f_rr, ref, spec).items()}
    row.update({k: float(v) for k, v in full_resolution(f_fr, inputs.ms, inputs.pan, spec).items()})
    row["rr_info"], row["fr_info"] = i_rr, i_fr
    return row


def baselines(inputs: ProductInputs, backbone: Any, nodata: float | None) -> dict[str, Any]:
    from pipeline.classical import pansharpen

    spec = inputs.sensor
    return {
        "exp": score(inputs, lambda p, m: (interp23tap(m, spec.ratio), {})),
        "none": score(
            inputs,
            lambda p, m: _fuse("none", p, m, inputs, backbone, FitConfig(adapt="none"), 0, nodata),
        ),
        "mtf-glp": score(
            inputs, lambda p, m: (np.asarray(pansharpen("mtf-glp", m, p, spec), float), {})
        ),
    }


LEGEND = """Variants (one change at a time; the rows come from several runs, each command above):

- `old`, `old-product`: the previous defaults (spatial target `lowres`: local correlation against
  an MTF-filtered PAN, weight 0.01; consistency 1; 4 fit patches; the lowest training loss kept).
- `toolbox-W`: the spatial term on the toolbox's D_S relation with weight W (consistency 1,
  no held-out patches); `-cons3` / `old-cons3`: consistency (the Wald term) 3.
- `tb0.3-c3`, `tb0.3-c10`, `-s120`, `-h4`: toolbox 0.3, consistency 3 / 10, 2 held-out patches
  (4 for `-h4`) and the **best held-out HQNR kept** (`select="holdout"`); `-s120`: 120-step
  budget. `-h4` gave the same kept steps as 2 held-out patches on every seed, hence equal rows.
- `-nocheck`: no held-out check, so the 2 extra patches are fitted on (6 fit patches;
  `p8-nocheck`: 10).
- **`default`**: the product default now: toolbox 0.3, consistency 3, angle 0.3, 4 fit + 2
  held-out patches, lowest training loss kept unless it scores a lower held-out HQNR than the
  pretrained network (then the identity). `d-*`: the default with one change (`angle1`: angle
  weight 1; `p6`: 6 fit patches; `c10`: consistency 10; `sp0.1`: spatial 0.1).
- `finetune`: all backbone weights fine-tuned with the v2 losses and held-out rule (1 seed).
- `v2`: the default of method v2 (spatial 0.3; rows labelled `default` before the change).
  **`default`** now: spatial 0.2 (= `d-sp0.2`), everything else as v2. `d-sp0.1`, `d-s30` (30
  steps), `d-sp0.1-s120`: v2 with that change; `d-wald`: v2 with the `"wald"` guard (the kept
  state must not lose held-out ERGAS/SAM of the reduced-resolution self-check against the
  pretrained network, else the best-HQNR checked state that passes, else identity);
  `default-wald`, `default-p6`: the new default with the Wald guard / with 6 fit patches.
- Reduced-resolution rows of a 512-px crop run on a 128-px (VHR) or 256-px (Landsat) degraded
  scene: too small for held-out patches, so the check does not run there.
- `fit s`: median wall time of the full-resolution fit on this machine while shared by several
  engineers' niced jobs (not a speed measurement; see `fit_speed.md`)."""

KEYS = ("hqnr", "d_lambda_k", "d_s", "ergas", "sam", "q2n")
SUMMARY = (
    "none",
    "mtf-glp",
    "v2",
    "default",
    "d-sp0.1",
    "d-s30",
    "d-wald",
    "default-wald",
    "default-p6",
)


def summary(doc: dict[str, Any]) -> list[str]:
    """Before (``v2``) / after (``default``) per scene: HQNR / RR ERGAS / RR SAM (medians)."""
    cols = [c for c in SUMMARY if any(c in r for r in doc["scenes"].values())]
    lines = ["## Summary: HQNR / RR ERGAS / RR SAM (median of 3 seeds; `fb`: seeds that fell back)"]
    lines += ["", "| scene | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for scene, res in doc["scenes"].items():
        cells = []
        for c in cols:
            r = res.get(c)
            if r is None:
                cells.append("")
                continue
            infos = r["fr_info"] if isinstance(r.get("fr_info"), list) else []
            fb = sum(1 for i in infos if i.get("fallback"))
            cell = f"{r['hqnr']:.3f} / {r['ergas']:.2f} / {r['sam']:.2f}" + (
                f" ({fb} fb)" if fb else ""
            )
            cells.append(f"**{cell}**" if c == "default" else cell)
        lines.append(f"| {scene} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {k: statistics.median(r[k] for r in rows) for k in KEYS}
    out["hqnr_spread"] = max(r["hqnr"] for r in rows) - min(r["hqnr"] for r in rows)
    out["ergas_spread"] = max(r["ergas"] for r in rows) - min(r["ergas"] for r in rows)
    out["fr_steps"] = [r["fr_info"].get("steps") for r in rows]
    out["fr_info"] = [r["fr_info"] for r in rows]
    return out


def markdown(doc: dict[str, Any], out: str = "method_ablation") -> str:
    lines = [
        "# Method ablation (toolbox-graded)",
        "",
        f"Command: `{doc['command']}`  ",
        f"Merged by: `{doc['merged_by']} -o {out}`  " if "merged_by" in doc else "",
        f"Date: {doc['date']}; machine: {doc['machine'].get('cpu_count', '?')} CPUs, torch "
        f"{doc['machine'].get('torch', '?')}, 1 torch thread per run, shared by several engineers' "
        "niced jobs (load average 10-17).  ",
        f"{CROP}-px PAN crops (centre); median over seeds {doc['seeds']}; HQNR = toolbox-exact "
        "full resolution; ERGAS/SAM/Q2n = reduced resolution (Wald protocol of `pantailor "
        "evaluate`). Spread = max - min over seeds.",
        "",
    ]
    lines += [LEGEND, ""]
    lines += summary(doc)
    for held in (False, True):
        lines += [f"## {'Held-out scenes (not used to choose)' if held else 'Tuning scenes'}", ""]
        lines += [
            "| scene | method | HQNR | D_lambda^K | D_S | ERGAS | SAM | Q2n | HQNR spread | steps |"
        ]
        lines += ["|---|---|---|---|---|---|---|---|---|---|"]
        for scene, res in doc["scenes"].items():
            if SCENES[scene][5] != held:
                continue
            for method, r in res.items():
                steps = r.get("fr_steps", "")
                spread = f"{r['hqnr_spread']:.4f}" if "hqnr_spread" in r else ""
                cells = " | ".join(f"{r[k]:.4f}" for k in KEYS)
                infos = r.get("fr_info") if isinstance(r.get("fr_info"), list) else []
                secs = [i["fit_s"] for i in infos if "fit_s" in i]
                fit_s = f"{statistics.median(secs):.1f}" if secs else ""
                lines.append(f"| {scene} | {method} | {cells} | {spread} | {steps} | {fit_s} |")
        lines.append("")
    return "\n".join(lines)


def merge(paths: list[Path], out: str) -> None:
    """One table from several runs' JSONs (rows of a later file win); lists every command."""
    docs = [json.loads(p.read_text()) for p in paths]
    doc = dict(docs[0], scenes={}, variants={})
    doc["command"] = " ; ".join(d["command"] for d in docs)
    doc["merged_by"] = "python benchmarks/method_ablation.py --merge " + " ".join(map(str, paths))
    for d in docs:
        doc["variants"].update(d["variants"])
        for scene, rows in d["scenes"].items():
            doc["scenes"].setdefault(scene, {}).update(rows)
    (RESULTS / f"{out}.json").write_text(json.dumps(doc, indent=1, default=str))
    (RESULTS / f"{out}.md").write_text(markdown(doc, out))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="old,default")
    ap.add_argument("--scenes", default=",".join(SCENES))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("-o", "--out", default="method_ablation")
    ap.add_argument("--merge", nargs="+", help="merge these result JSONs into -o instead")
    args = ap.parse_args(argv)
    if args.merge:
        merge([Path(m) for m in args.merge], args.out)
        return
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    out_json = RESULTS / f"{args.out}.json"
    doc: dict[str, Any] = {
        "command": "python benchmarks/method_ablation.py " + " ".join(argv or sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine_info(),
        "seeds": seeds,
        "variants": {v: repr(VARIANTS[v]) for v in args.variants.split(",")},
        "scenes": {},
    }
    for scene in args.scenes.split(","):
        inputs, weights, nodata = load_scene(scene)
        backbone = load("fusionnet", weights, sensor=inputs.sensor)
        res: dict[str, Any] = {} if args.no_baselines else baselines(inputs, backbone, nodata)
        for v in args.variants.split(","):
            rows = [
                score(inputs, _runner(v, inputs, backbone, VARIANTS[v], s, nodata)) for s in seeds
            ]
            res[v] = summarise(rows)
            print(scene, v, {k: round(res[v][k], 4) for k in (*KEYS, "hqnr_spread")}, flush=True)
        doc["scenes"][scene] = res
        out_json.write_text(json.dumps(doc, indent=1, default=str))
        (RESULTS / f"{args.out}.md").write_text(markdown(doc))


if __name__ == "__main__":
    main()
