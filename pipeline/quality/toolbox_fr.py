"""Full-resolution indices with the Matlab toolbox's conventions (the default convention).

With ``F`` the fused image ``(B, H, W)``, ``MS`` the observed MS, ``P`` the PAN, all in DN,
``r`` the ratio and ``S`` the block (32, shift 32, no edge cut), as ``HQNR.m`` computes them:

* ``MS~ = interp23tap(MS)`` (:func:`.toolbox.interp23tap`, circular borders);
* ``D_lambda^K = 1 - Q2n(uint16(MTF(F)), uint16(MS~))`` with the toolbox's 2-D MTF filters
  (:func:`.toolbox.mtf_kernel`), ``MS~`` the reference of the Q2n normalisation, both images
  rounded to integers by ``q2n.m``'s ``uint16`` cast;
* ``D_S = mean_b |Q(F_b, P) - Q(MS~_b, P_LP)|``, ``P_LP = interp23tap(imresize(P, 1/r))``
  (Matlab bicubic with antialiasing), block UQI in float64 (no rounding);
* ``HQNR = (1 - D_lambda^K)(1 - D_S)``;
* classic ``D_lambda = mean_{i<j} |Q(F_i, F_j) - Q(MS~_i, MS~_j)|`` (``D_lambda.m``, toolbox
  option 1: both at full resolution) and ``QNR = (1 - D_lambda)(1 - D_S)``.

Where the toolbox is undefined this module is not: sizes that are not multiples of ``S`` are
mirror-completed (as ``q2n.m`` does for Q2n), and windows with zero variance or zero mean get the
limits of :mod:`.indices` instead of Matlab's NaN. ``engine="torch"`` (default) runs the batched
engine of :mod:`.fast`; ``engine="numpy"`` the NumPy reference; they agree to 1e-6.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from ..errors import ConfigError
from ..sensors import SensorSpec
from . import fast, toolbox
from .indices import q2n_map, uqi
from .inputs import FloatArray, cut_edges
from .strips import strip_moments

ENGINES = ("torch", "numpy")


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ConfigError(
            "Unknown quality engine.", expected=" or ".join(ENGINES), got=repr(engine)
        )


def toolbox_numpy(
    f: FloatArray, m: FloatArray, p: FloatArray, spec: SensorSpec, block: int, edge: int
) -> dict[str, float]:
    """The toolbox indices, NumPy float64 reference (``f (B,H,W)``, ``m (B,h,w)``, ``p (H,W)``)."""
    r = spec.ratio
    up = toolbox.interp23tap(m, r)
    lp = toolbox.mtf_filter(f, spec.mtf_ms, r)
    p_lp = toolbox.pan_low_pass(p, r)
    f, up, lp, p, p_lp = (cut_edges(a, edge) for a in (f, up, lp, p, p_lp))
    qmap = q2n_map(toolbox.to_uint16(lp), toolbox.to_uint16(up), block, flat="toolbox")
    dk = 1.0 - float(np.mean(qmap))
    ds = float(np.mean([abs(uqi(f[b], p, block) - uqi(up[b], p_lp, block)) for b in range(len(f))]))
    pairs = list(itertools.combinations(range(f.shape[0]), 2))
    dl = (
        float(np.mean([abs(uqi(f[i], f[j], block) - uqi(up[i], up[j], block)) for i, j in pairs]))
        if pairs
        else 0.0
    )
    return assemble(dk, ds, dl)


def toolbox_torch(
    f: FloatArray,
    m: FloatArray,
    p: FloatArray,
    spec: SensorSpec,
    block: int,
    edge: int,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """The toolbox indices on the batched torch engine; same inputs as the reference.

    ``f`` may be float32 (it is read as is: exact in float64 moments). ``MS~`` and ``P_LP`` are
    float64, ``MTF(F)`` a float64 FFT (rounded to integer DN next, :func:`fast.mtf_filter`; a
    float32 FFT moved D_lambda^K of an 8-bit GE1 crop by 1.3e-6 on an AMD EPYC host); the
    block moments of all three groups come from one strip pass (:func:`strip_moments`).
    """
    r = spec.ratio
    with torch.no_grad():
        ft = torch.as_tensor(f, device=device)
        if ft.dtype not in (torch.float32, torch.float64):
            ft = ft.to(torch.float64)
        mt, pt = (torch.as_tensor(a, dtype=torch.float64, device=device) for a in (m, p))
        up = fast.interp23tap(mt, r)
        lp = fast.mtf_filter(ft, spec.mtf_ms, r, torch.float64)  # float32: 1.3e-6 off on GE1
        p_lp = fast.pan_low_pass(pt, r)
        ft, up, lp, pt, p_lp = (_cut(a, edge) for a in (ft, up, lp, pt, p_lp))
        (mq, sq), high, low = strip_moments(
            [
                [(up, True), (lp, True)],
                [(ft, False), (pt[None], False)],
                [(up, False), (p_lp[None], False)],
            ],
            block,
            split=(ft.shape[0], None, None),  # Q2n: cross moments and variances only
        )
        del lp
        n = ft.shape[0]
        dk = 1.0 - float(fast.q2n_from_moments(mq, sq, n, block * block).mean())
        q_high, q_low = fast.uqi_matrix(*high), fast.uqi_matrix(*low)
        ds = float((q_high[:n, n] - q_low[:n, n]).abs().mean())
        iu = torch.triu_indices(n, n, 1)
        dl = float((q_high[iu[0], iu[1]] - q_low[iu[0], iu[1]]).abs().mean()) if n > 1 else 0.0
    return assemble(dk, ds, dl)


def _cut(x: torch.Tensor, edge: int) -> torch.Tensor:
    if edge == 0:
        return x
    cut_edges(np.zeros((1, *x.shape[-2:])), edge)  # validates the cut
    return x[..., edge:-edge, edge:-edge]


def assemble(dk: float, ds: float, dl: float) -> dict[str, float]:
    """The five indices from ``D_lambda^K``, ``D_S`` and the classic ``D_lambda``."""
    return {
        "d_lambda_k": dk,
        "d_s": ds,
        "hqnr": (1.0 - dk) * (1.0 - ds),
        "d_lambda": dl,
        "qnr": (1.0 - dl) * (1.0 - ds),
    }


def toolbox_indices(
    f: FloatArray,
    m: FloatArray,
    p: FloatArray,
    spec: SensorSpec,
    *,
    block: int,
    edge: int,
    engine: str = "torch",
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Dispatch to :func:`toolbox_torch` or :func:`toolbox_numpy`."""
    _check_engine(engine)
    if engine == "numpy":
        return toolbox_numpy(f, m, p, spec, block, edge)
    return toolbox_torch(f, m, p, spec, block, edge, device)


__all__ = ["ENGINES", "assemble", "toolbox_indices", "toolbox_numpy", "toolbox_torch"]
