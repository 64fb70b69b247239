"""Full-resolution (no-reference) indices: Khan's D_lambda, D_S, HQNR and the classic QNR.

Two conventions (``convention=``):

``"toolbox"`` (default)
    The Matlab pansharpening toolbox's own definitions (Vivone et al., as in DLPan-Toolbox),
    equal to its outputs to 1e-6: :mod:`.toolbox_fr`. Every paper's full-resolution table uses it.
``"project"``
    This project's earlier variants, kept for comparison with earlier results (described below).
    They differ from the toolbox's by far more than rounding (``docs/notes/quality.md``).

The ``"project"`` convention: with ``F`` the fused image ``(B, H, W)``, ``MS`` the observed MS ``(B, h, w)``, ``P`` the PAN
``(H, W)``, ``r`` the ratio and ``S`` the block size (32), all in DN:

* ``MS~``: the MS interpolated to the PAN grid (23-tap polynomial, :func:`pipeline.backbones.upsample`).
* Khan's spectral distortion ``D_lambda^K = 1 - Q2n(MTF(F), MS~)``: each fused band filtered with
  the sensor's MS MTF kernel (:func:`mtf_filter`, no decimation), compared with
  ``MS~`` (the reference of the Q2n normalisation) on ``S x S`` blocks.
* Spatial distortion ``D_S = mean_b |Q(F_b, P) - Q(MS~_b, P_LP)|`` with the block UQI
  (:func:`pipeline.quality.indices.uqi`, ``S x S``), ``P_LP`` the PAN filtered with the sensor's
  PAN MTF gain, decimated by ``r`` and re-interpolated with the same interpolator.
* ``HQNR = (1 - D_lambda^K)(1 - D_S)``.
* Classic ``D_lambda = mean_{i != j} |Q(F_i, F_j) - Q(MS_i, MS_j)|`` (blocks ``S`` on ``F``,
  ``S / r`` on ``MS``) and ``QNR = (1 - D_lambda)(1 - D_S)``.

``edge`` PAN pixels (``edge // r`` MS pixels) are cut from every side after filtering and
interpolation, before any index is computed.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, InputError
from ..mtf import degrade_f32, filter_torch, kernels_1d
from ..sensors import SensorSpec, get_sensor
from . import toolbox
from .indices import DEFAULT_BLOCK, q2n, uqi
from .inputs import FloatArray, as_bands, as_plane, cut_edges, upsampled
from .toolbox_fr import assemble, toolbox_indices

DEFAULT_UPSAMPLER = "poly23"
CONVENTIONS = ("toolbox", "project")
DEFAULT_CONVENTION = "toolbox"
#: One line per convention, written beside every number that uses it (reports, benchmarks).
CONVENTION_NOTES = {
    "toolbox": "Matlab toolbox (HQNR.m): genMTF 41x41 Kaiser-windowed MTF, q2n uint16 cast, "
    "interp23tap (circular), P_LP = interp23tap(imresize(P, 1/r) bicubic antialiased); "
    "32x32 blocks, shift 32",
    "project": "pantailor <= 0.1: separable normalised MTF, float Q2n, mirror-bordered 23-tap, "
    "P_LP = MTF(PAN gain)-degraded PAN re-interpolated; 32x32 blocks",
}


def check_convention(convention: str) -> str:
    """Return ``convention`` or raise :class:`ConfigError` naming the known ones."""
    if convention not in CONVENTIONS:
        raise ConfigError(
            "Unknown full-resolution convention.",
            expected=" or ".join(CONVENTIONS),
            got=repr(convention),
            fix="use convention='toolbox' (the Matlab toolbox's indices) or 'project'.",
        )
    return convention


def _project_only(convention: str, ms_up: Any = None, upsampler: str = DEFAULT_UPSAMPLER) -> str:
    """Check ``convention``; refuse ``ms_up`` / ``upsampler`` where the toolbox ignores them.

    The toolbox's indices build their own ``MS~`` (its 23-tap interpolator) and never see a
    given one: accepting it silently would grade something other than what the caller passed.
    """
    if check_convention(convention) == "toolbox" and (
        ms_up is not None or upsampler != DEFAULT_UPSAMPLER
    ):
        given = "ms_up" if ms_up is not None else f"upsampler={upsampler!r}"
        raise ConfigError(
            f"{given} has no effect with the toolbox convention.",
            expected=f"no ms_up and upsampler={DEFAULT_UPSAMPLER!r} (the toolbox builds its own MS~)",
            got=given,
            fix="drop the argument, or pass convention='project' to use your own MS~ / upsampler.",
        )
    return convention


def interpolate(ms: FloatArray, ratio: int, method: str = DEFAULT_UPSAMPLER) -> FloatArray:
    """``(B, h, w)`` -> ``(B, r*h, r*w)`` with the project's LMS upsampler.

    Runs in float32 (several times faster than float64 on CPU; deviations below 1e-3 DN on
    11-bit data) and returns float64.
    """
    from ..backbones import upsample

    x = torch.from_numpy(np.ascontiguousarray(ms, dtype=np.float32))[None]
    with torch.no_grad():
        up = upsample(x, ratio, method)[0]
    return np.asarray(up.numpy(), dtype=np.float64)


def mtf_filter(img: FloatArray, gains: Sequence[float], ratio: int) -> FloatArray:
    """Filter each band of ``(B, H, W)`` with its MTF kernel (float32 torch, edges replicated).

    The float32 twin of :func:`pipeline.mtf.filter_np`, several times faster on CPU.
    """
    x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None]
    taps = torch.from_numpy(kernels_1d(gains, ratio))
    with torch.no_grad():
        y = filter_torch(x, taps)[0]
    return np.asarray(y.numpy(), dtype=np.float64)


def mtf_degrade(img: FloatArray, gains: Sequence[float], ratio: int) -> FloatArray:
    """:func:`mtf_filter` then keep pixel ``ratio // 2`` of each block: ``(B, H/r, W/r)``.

    Computes only the kept samples (strided convolutions, ``ratio**2`` times fewer products);
    equals :func:`pipeline.mtf.degrade_np` to float32 precision.
    """
    return degrade_f32(img, gains, ratio)


def _inputs(
    fused: Any, ms: Any, spec: SensorSpec, keep_float32: bool = False
) -> tuple[FloatArray, FloatArray]:
    f, m = as_bands(fused, "fused", keep_float32=keep_float32), as_bands(ms, "ms")
    r = spec.ratio
    if f.shape[0] != m.shape[0] or f.shape[1:] != (r * m.shape[1], r * m.shape[2]):
        raise InputError(
            "Fused image and MS do not match.",
            expected=f"fused (B, {r}h, {r}w) for MS {tuple(m.shape)}",
            got=tuple(f.shape),
            fix=f"pass the fused product and the MS it was made from (ratio {r}).",
        )
    if len(spec.mtf_ms) != f.shape[0]:
        raise InputError(
            f"Sensor {spec.name!r} has {spec.n_bands} bands.",
            expected=f"{spec.n_bands} bands",
            got=f"{f.shape[0]} bands",
            fix="pass the sensor the images come from.",
        )
    return f, m


def _ms_up(m: FloatArray, ms_up: Any, spec: SensorSpec, upsampler: str) -> FloatArray:
    if ms_up is None:
        return interpolate(m, spec.ratio, upsampler)
    return upsampled(ms_up, m, spec.ratio, "ms_up")


def _toolbox(
    fused: Any, ms: Any, pan: Any, spec: SensorSpec, block: int, edge: int, engine: str
) -> dict[str, float]:
    f, m = _inputs(fused, ms, spec, keep_float32=engine == "torch")
    p = _pan(pan, f)
    return toolbox_indices(f, m, p, spec, block=block, edge=edge, engine=engine)


def _pan(pan: Any, f: FloatArray) -> FloatArray:
    p = as_plane(pan, "pan")
    if p.shape != f.shape[1:]:
        raise InputError("PAN and fused grids differ.", expected=f.shape[1:], got=p.shape)
    return p


def d_lambda_khan(
    fused: Any,
    ms: Any,
    sensor: str | SensorSpec,
    *,
    block: int = DEFAULT_BLOCK,
    edge: int = 0,
    ms_up: Any = None,
    upsampler: str = DEFAULT_UPSAMPLER,
    convention: str = DEFAULT_CONVENTION,
    engine: str = "torch",
) -> float:
    """Khan's spectral distortion ``1 - Q2n(MTF(F), MS~)`` in ``[0, 1]``; 0 is best.

    Parameters
    ----------
    fused
        ``(B, H, W)`` fused image in DN.
    ms
        ``(B, H/r, W/r)`` observed MS in DN.
    sensor
        Sensor name or spec (ratio and MS MTF gains).
    block, edge
        Q2n block edge and the pixels cut from every side (PAN pixels).
    ms_up
        ``MS~`` if already computed, ``(B, H, W)`` (``"project"`` convention only).
    upsampler
        ``"poly23"`` (the definition) or ``"bicubic"`` (``"project"`` convention only).
    convention
        ``"toolbox"`` (default) or ``"project"`` (see the module docstring).
    engine
        ``"torch"`` or ``"numpy"`` (``"toolbox"`` convention: same values to 1e-6).
    """
    spec = get_sensor(sensor)
    f, m = _inputs(fused, ms, spec)
    if _project_only(convention, ms_up, upsampler) == "toolbox":
        zero = np.zeros(f.shape[1:])
        return toolbox_indices(f, m, zero, spec, block=block, edge=edge, engine=engine)[
            "d_lambda_k"
        ]
    up = _ms_up(m, ms_up, spec, upsampler)
    lp = mtf_filter(f, spec.mtf_ms, spec.ratio)
    return 1.0 - q2n(cut_edges(lp, edge), cut_edges(up, edge), block)


def pan_low_pass(
    pan: Any,
    sensor: str | SensorSpec,
    upsampler: str = DEFAULT_UPSAMPLER,
    convention: str = DEFAULT_CONVENTION,
) -> FloatArray:
    """``P_LP`` of the PAN ``(H, W)``, the PAN as the MS would see it.

    ``"toolbox"``: ``interp23tap(imresize(P, 1/r))`` (Matlab bicubic with antialiasing);
    ``"project"``: MTF-filtered with the PAN gain, decimated by ``r``, re-interpolated.
    """
    spec = get_sensor(sensor)
    p = as_plane(pan, "pan")
    if check_convention(convention) == "toolbox":
        return toolbox.pan_low_pass(p, spec.ratio)
    low = mtf_degrade(p[None], [spec.mtf_pan], spec.ratio)
    return np.asarray(interpolate(low, spec.ratio, upsampler)[0])


def d_s(
    fused: Any,
    ms: Any,
    pan: Any,
    sensor: str | SensorSpec,
    *,
    block: int = DEFAULT_BLOCK,
    edge: int = 0,
    ms_up: Any = None,
    upsampler: str = DEFAULT_UPSAMPLER,
    convention: str = DEFAULT_CONVENTION,
    engine: str = "torch",
) -> float:
    """Spatial distortion ``mean_b |Q(F_b, P) - Q(MS~_b, P_LP)|`` in ``[0, 1]``; 0 is best.

    Parameters are those of :func:`d_lambda_khan` plus ``pan`` ``(H, W)`` in DN.
    """
    spec = get_sensor(sensor)
    if _project_only(convention, ms_up, upsampler) == "toolbox":
        return _toolbox(fused, ms, pan, spec, block, edge, engine)["d_s"]
    f, m = _inputs(fused, ms, spec)
    p = _pan(pan, f)
    up = _ms_up(m, ms_up, spec, upsampler)
    p_lp = pan_low_pass(p, spec, upsampler, convention="project")
    f, up, p, p_lp = (cut_edges(a, edge) for a in (f, up, p, p_lp))
    diffs = [abs(uqi(f[b], p, block) - uqi(up[b], p_lp, block)) for b in range(f.shape[0])]
    return float(np.mean(diffs))


def d_lambda_qnr(
    fused: Any,
    ms: Any,
    sensor: str | SensorSpec,
    *,
    block: int = DEFAULT_BLOCK,
    edge: int = 0,
    convention: str = DEFAULT_CONVENTION,
    engine: str = "torch",
) -> float:
    """Classic QNR spectral distortion ``mean_{i != j} |Q(F_i, F_j) - Q(MS_i, MS_j)|``.

    ``"toolbox"``: the MS band pairs are those of ``MS~`` on ``block`` blocks (``D_lambda.m``);
    ``"project"``: those of the observed MS on ``block // r`` blocks. 0 for a single band.
    """
    spec = get_sensor(sensor)
    f, m = _inputs(fused, ms, spec)
    if check_convention(convention) == "toolbox":
        zero = np.zeros(f.shape[1:])
        return toolbox_indices(f, m, zero, spec, block=block, edge=edge, engine=engine)["d_lambda"]
    f, m = cut_edges(f, edge), cut_edges(m, edge // spec.ratio)
    ms_block = max(2, block // spec.ratio)
    pairs = list(itertools.combinations(range(f.shape[0]), 2))
    if not pairs:
        return 0.0
    diffs = [abs(uqi(f[i], f[j], block) - uqi(m[i], m[j], ms_block)) for i, j in pairs]
    return float(np.mean(diffs))


def full_resolution(
    fused: Any,
    ms: Any,
    pan: Any,
    sensor: str | SensorSpec,
    *,
    block: int = DEFAULT_BLOCK,
    edge: int = 0,
    upsampler: str = DEFAULT_UPSAMPLER,
    convention: str = DEFAULT_CONVENTION,
    engine: str = "torch",
) -> dict[str, float]:
    """All no-reference indices of a fused product.

    Parameters
    ----------
    fused
        ``(B, H, W)`` fused image in DN (NumPy, xarray, Dask or torch).
    ms
        ``(B, H/r, W/r)`` observed MS in DN.
    pan
        ``(H, W)`` PAN in DN.
    sensor
        Sensor name or spec: ratio, MS (and PAN) MTF gains.
    block
        Block edge ``S`` (32).
    edge
        PAN pixels cut from every side (0: the toolbox cuts none).
    upsampler
        ``"project"`` convention: interpolator for ``MS~`` and ``P_LP`` (``"poly23"``).
    convention
        ``"toolbox"`` (default: the Matlab toolbox's indices) or ``"project"``.
    engine
        ``"torch"`` (batched block statistics, default) or ``"numpy"`` (the reference loops);
        same values to 1e-6 in both conventions.

    Returns
    -------
    dict
        ``{"d_lambda_k", "d_s", "hqnr", "d_lambda", "qnr"}``, floats; distortions 0 and
        quality indices 1 are best. :data:`CONVENTION_NOTES` describes the convention.
    """
    spec = get_sensor(sensor)
    if _project_only(convention, upsampler=upsampler) == "toolbox":
        return _toolbox(fused, ms, pan, spec, block, edge, engine)
    f, m = _inputs(fused, ms, spec)
    if engine == "torch":
        from .project_fast import project_torch

        return project_torch(f, m, _pan(pan, f), spec, block, edge, upsampler)
    up = interpolate(m, spec.ratio, upsampler)
    kw: dict[str, Any] = {"block": block, "edge": edge, "convention": "project"}
    dk = d_lambda_khan(f, m, spec, ms_up=up, upsampler=upsampler, **kw)
    ds = d_s(f, m, pan, spec, ms_up=up, upsampler=upsampler, **kw)
    return assemble(dk, ds, d_lambda_qnr(f, m, spec, **kw))


__all__ = [
    "CONVENTIONS",
    "CONVENTION_NOTES",
    "DEFAULT_CONVENTION",
    "check_convention",
    "d_lambda_khan",
    "d_lambda_qnr",
    "d_s",
    "full_resolution",
    "interpolate",
    "mtf_degrade",
    "mtf_filter",
    "pan_low_pass",
]
