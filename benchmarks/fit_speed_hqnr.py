"""Quality check of the fit's speed work: toolbox HQNR of the fused fit against the plain one.

Issue 12 item 5 asks for fit + infer <= 1.5 s "at the current quality". The fused objective
(``FitConfig.fused``, the default) computes the same losses as the plain functions to float
rounding, but Adam carries rounding differences along a fit, so the fitted tailors are not
bit-identical: this runs ``benchmarks/method_ablation.py``'s protocol (toolbox-graded, 512-px
crops, reduced and full resolution) with two variants, ``plain`` (``FitConfig(fused=False)``, the
implementation before) and ``fused`` (``FitConfig()``), on the cross-sensor pairs.

``--control`` runs a third variant, ``plain-cl``: the plain losses on channels-last cached
features, i.e. the plain fit with only the convolutions' summation order changed, to show how far
rounding alone moves a fit's HQNR (written to ``fit_speed_hqnr_control``).

``--per-seed N`` instead scores the full-resolution product (toolbox HQNR) of all three
variants seed by seed (seeds ``0..N-1``) on each of ``--scenes`` and writes
``fit_speed_hqnr_seeds.{md,json}``: a fit's HQNR moves by up to about 0.02 between seeds and by
about as much between layouts alone, so medians of 3 seeds differ by chance.

Usage::

    python benchmarks/fit_speed_hqnr.py [--scenes a,b --seeds 0,1,2] [--control]
    python benchmarks/fit_speed_hqnr.py --scenes "qb->ge1" --per-seed 8

Writes ``benchmarks/results/fit_speed_hqnr.{md,json}`` (method_ablation's format).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import method_ablation as ma

from pipeline.fit import FitConfig

SCENES = "wv3->wv2,qb->ge1,l7-26,l7-27,qb->spacenet1"


def per_seed(scenes: list[str], n: int) -> None:
    """Full-resolution toolbox HQNR of plain / plain-cl / fused, seed by seed."""
    import json
    import statistics

    import numpy as np
    import torch

    import pipeline.fit
    from pipeline.backbones import load
    from pipeline.fuse import fuse
    from pipeline.quality import full_resolution

    torch.set_num_threads(1)
    plain_fmt = pipeline.fit._fmt
    doc: dict[str, dict[str, list[float]]] = {}
    lines = ["# Fused vs plain fit, toolbox HQNR seed by seed (512-px crops, full resolution)", ""]
    cmd = f"python benchmarks/fit_speed_hqnr.py --scenes {','.join(scenes)} --per-seed {n}"
    lines += [f"Command: `{cmd}`; 1 torch thread, machine shared (niced).", ""]
    for scene in scenes:
        inputs, weights, nodata = ma.load_scene(scene)
        sensor = inputs.sensor
        bb = load("fusionnet", weights, sensor=sensor)
        rows: dict[str, list[float]] = {"plain": [], "plain-cl": [], "fused": []}
        for seed in range(n):
            for name, rows_v in rows.items():
                cl = name == "plain-cl"
                pipeline.fit._fmt = (lambda c: torch.channels_last) if cl else plain_fmt
                cfg = FitConfig(fused=name == "fused")
                f = fuse(inputs.pan, inputs.ms, sensor, bb, fit=cfg, seed=seed, nodata=nodata)
                q = full_resolution(np.asarray(f.image, float), inputs.ms, inputs.pan, sensor)
                rows_v.append(float(q["hqnr"]))
        pipeline.fit._fmt = plain_fmt
        doc[scene] = rows
        lines += [f"## {scene}", "", "| variant | " + " | ".join(f"seed {s}" for s in range(n))]
        lines[-1] += " | median | mean |"
        lines += ["|---|" + "---|" * (n + 2)]
        for name, v in rows.items():
            cells = " | ".join(f"{x:.4f}" for x in v)
            med, mean = statistics.median(v), statistics.mean(v)
            lines.append(f"| {name} | {cells} | {med:.4f} | {mean:.4f} |")
        lines.append("")
    out = Path(__file__).resolve().parent / "results" / "fit_speed_hqnr_seeds"
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> None:
    """Register the two variants and run the ablation on them."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", default=SCENES)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--control", action="store_true", help="only the plain-cl variant")
    ap.add_argument("--per-seed", type=int, default=0, help="seeds 0..N-1, HQNR per seed")
    args = ap.parse_args()
    if args.per_seed:
        per_seed(args.scenes.split(","), args.per_seed)
        return
    argv = ["--scenes", args.scenes, "--seeds", args.seeds, "--no-baselines"]
    if args.control:
        import torch

        import pipeline.fit

        pipeline.fit._fmt = lambda cfg: torch.channels_last  # the layout only
        ma.VARIANTS["plain-cl"] = FitConfig(fused=False)
        ma.main([*argv, "--variants", "plain-cl", "-o", "fit_speed_hqnr_control"])
        return
    ma.VARIANTS["plain"] = FitConfig(fused=False)
    ma.VARIANTS["fused"] = FitConfig()
    ma.main([*argv, "--variants", "plain,fused", "-o", "fit_speed_hqnr"])


if __name__ == "__main__":
    main()
