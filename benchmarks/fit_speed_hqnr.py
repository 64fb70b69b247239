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

Usage::

    python benchmarks/fit_speed_hqnr.py [--scenes a,b --seeds 0,1,2] [--control]

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


def main() -> None:
    """Register the two variants and run the ablation on them."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", default=SCENES)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--control", action="store_true", help="only the plain-cl variant")
    args = ap.parse_args()
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
