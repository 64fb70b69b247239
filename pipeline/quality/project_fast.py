"""The ``"project"`` convention's indices on the batched torch engine (same values to 1e-6).

The filters and interpolators are the ones :mod:`.full_resolution` uses for this convention
(float32 torch, separable MTF, mirror-bordered 23-tap); the block statistics (every UQI and
Q2n moment) come from :mod:`.fast`'s block Gram matrices instead of the NumPy loops.
"""

from __future__ import annotations

import numpy as np
import torch

from ..sensors import SensorSpec
from . import fast
from .inputs import FloatArray, cut_edges


def project_torch(
    f: FloatArray,
    m: FloatArray,
    p: FloatArray,
    spec: SensorSpec,
    block: int,
    edge: int,
    upsampler: str,
) -> dict[str, float]:
    """``d_lambda_k, d_s, hqnr, d_lambda, qnr`` of the ``"project"`` convention (DN inputs)."""
    from .full_resolution import interpolate, mtf_filter, pan_low_pass

    r = spec.ratio
    up = interpolate(m, r, upsampler)
    lp = mtf_filter(f, spec.mtf_ms, r)
    p_lp = pan_low_pass(p, spec, upsampler, convention="project")
    f, up, lp, p, p_lp = (cut_edges(a, edge) for a in (f, up, lp, p, p_lp))
    m = cut_edges(m, edge // r)
    t = {
        k: torch.from_numpy(np.ascontiguousarray(v))
        for k, v in {"f": f, "up": up, "lp": lp, "p": p[None], "p_lp": p_lp[None], "m": m}.items()
    }
    with torch.no_grad():
        dk = 1.0 - float(fast.q2n_blocks(t["lp"], t["up"], block, flat="unit").mean())
        n = f.shape[0]
        q_high = fast.uqi_matrix(*fast.block_moments([t["f"], t["p"]], block))
        q_low = fast.uqi_matrix(*fast.block_moments([t["up"], t["p_lp"]], block))
        ds = float((q_high[:n, n] - q_low[:n, n]).abs().mean())
        q_ms = fast.uqi_matrix(*fast.block_moments(t["m"], max(2, block // r)))
        iu = torch.triu_indices(n, n, 1)
        dl = float((q_high[iu[0], iu[1]] - q_ms[iu[0], iu[1]]).abs().mean()) if n > 1 else 0.0
    return {
        "d_lambda_k": dk,
        "d_s": ds,
        "hqnr": (1.0 - dk) * (1.0 - ds),
        "d_lambda": dl,
        "qnr": (1.0 - dl) * (1.0 - ds),
    }


__all__ = ["project_torch"]
