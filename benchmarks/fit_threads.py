"""Does a tailor fit depend on the torch thread count? -> benchmarks/results/fit_threads.{md,json}.

The same fit (synthetic 512² WV3 scene, shipped FusionNet weights, default sampling, ``--steps``
steps, seed 0) in fresh processes with 1 and 2 intra-op threads; reports the largest difference
of the fitted tailor's weights. A non-zero difference is why the engine never lends a fit more
threads than its worker's own (until 2026-12-01 it lent idle threads, capped by the load average,
so a fit's result depended on the cluster's state when it ran); the fit record names its
``threads``.

Usage: ``python benchmarks/fit_threads.py [--steps 30]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

FIT = """
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
from pipeline.backbones import load
from pipeline.fit import fit_tailor
from pipeline.fit_config import FitConfig
from pipeline.sampling import SampleConfig, sample_patches
from pipeline.sensors import get_sensor
from pipeline.synthetic import make_scene
s = make_scene((512, 512), "wv3", seed=2)
p = sample_patches((s.pan, s.ms), SampleConfig(), 0, ratio=4, dn_max=2047.0)
r = fit_tailor(p, load("fusionnet", None, sensor="wv3"), get_sensor("wv3"), FitConfig(steps=int(sys.argv[3])))
torch.save(r.tailor_state, sys.argv[2])
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as d:
        states = {}
        for n in (1, 2):
            path = Path(d) / f"t{n}.pt"
            subprocess.run(
                [sys.executable, "-c", FIT, str(n), str(path), str(args.steps)], check=True
            )
            states[n] = torch.load(path)
    diff = max(float((states[1][k] - states[2][k]).abs().max()) for k in states[1])
    same = all(torch.equal(states[1][k], states[2][k]) for k in states[1])
    r = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"python benchmarks/fit_threads.py --steps {args.steps}",
        "torch": torch.__version__,
        "max_abs_weight_difference_1_vs_2_threads": diff,
        "bit_identical": same,
    }
    (RESULTS / "fit_threads.json").write_text(json.dumps(r, indent=1))
    md = (
        "# Tailor fit: 1 vs 2 torch threads\n\n"
        f"{r['date']}; torch {r['torch']}. Command: `{r['command']}`.\n\n"
        f"Largest difference of the fitted tailor's weights: **{diff:.3g}**; "
        f"bit-identical: **{same}**.\n"
    )
    (RESULTS / "fit_threads.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
