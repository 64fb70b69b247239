"""Quality check of the fit's speed work: toolbox HQNR of the fused fit against the plain one.

Issue 12 item 5 asks for fit + infer <= 1.5 s "at the current quality". The fused objective
(``FitConfig.fused``, the default) computes the same losses as the plain functions to float
rounding, but Adam carries rounding differences along a fit, so the fitted tailors are not
bit-identical: this runs ``benchmarks/method_ablation.py``'s protocol (toolbox-graded, 512-px
crops, reduced and full resolution) with two variants, ``plain`` (``FitConfig(fused=False)``, the
implementation before) and ``fused`` (``FitConfig()``), on the cross-sensor pairs.

Usage::

    python benchmarks/fit_speed_hqnr.py [--scenes a,b --seeds 0,1,2]

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
    args = ap.parse_args()
    ma.VARIANTS["plain"] = FitConfig(fused=False)
    ma.VARIANTS["fused"] = FitConfig()
    argv = ["--variants", "plain,fused", "--scenes", args.scenes, "--seeds", args.seeds]
    ma.main([*argv, "--no-baselines", "-o", "fit_speed_hqnr"])


if __name__ == "__main__":
    main()
