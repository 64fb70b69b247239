"""Classical pansharpening baselines: weighted Brovey, GSA, MTF-GLP and MTF-GLP-HPM.

All take the observed MS ``(B, h, w)`` and PAN ``(H, W)`` in DN (``H = r h``, ``W = r w``) and
return the fused image ``(B, H, W)`` float32 in DN. ``LMS`` is the MS interpolated to the PAN
grid with the project's upsampler (:func:`pipeline.backbones.upsample`, 23-tap polynomial by
default), so the baselines and the networks start from the same image. Written from the
published definitions:

``brovey`` (weighted, as GDAL's pansharpening does)
    ``pseudo = sum_i w_i LMS_i``; ``out_i = LMS_i * PAN / pseudo`` (0 where ``pseudo = 0``).
    GDAL takes the weights from the user; ``weights=None`` here fits them by non-negative least
    squares of the MTF-degraded PAN on the MS bands. Keeps the band ratios of ``LMS``.
``gsa`` (adaptive Gram–Schmidt, Aiazzi et al. 2007)
    Intensity ``I = sum_i w_i LMS_i + w_0`` with ``(w, w_0)`` the least-squares regression of the
    degraded PAN on the MS bands; PAN matched to ``I`` in mean, and in standard deviation through
    its low-pass ``P_LP`` (PAN MTF, decimated, re-interpolated): ``P' = (P - mean P) std(I) /
    std(P_LP) + mean I``;
    ``out_i = LMS_i + g_i (P' - I)`` with ``g_i = cov(LMS_i, I) / var(I)``.
``mtf_glp`` (generalised Laplacian pyramid with MTF-matched filters, Aiazzi et al. 2006)
    ``P_LP,i`` = PAN filtered with band ``i``'s MS MTF kernel, decimated by ``r`` and
    re-interpolated; ``out_i = LMS_i + g_i (PAN - P_LP,i)`` with the regression gain
    ``g_i = cov(LMS_i, P_LP,i) / var(P_LP,i)``.
``mtf_glp_hpm`` (high-pass modulation)
    PAN matched to each band (``P_i``, mean and standard deviation of ``LMS_i``, scaled by the
    spread of ``P_LP,i``), ``out_i = LMS_i * P_i / P_LP,i`` with ``P_LP,i`` the same affine map
    of the MTF low-pass above (additive fallback where ``P_LP,i`` vanishes).

The gains are global (one per band, from the whole scene).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import nnls

from .errors import ConfigError, InputError
from .quality.full_resolution import DEFAULT_UPSAMPLER, interpolate, mtf_degrade
from .quality.inputs import as_bands, as_plane
from .sensors import SensorSpec, get_sensor

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
_FIT_SAMPLES = 1 << 18  # MS pixels used at most by the weight regressions
_EPS = 1e-12


def _check(ms: Any, pan: Any, spec: SensorSpec) -> tuple[FloatArray, FloatArray]:
    m, p = as_bands(ms, "ms"), as_plane(pan, "pan")
    r = spec.ratio
    if p.shape != (r * m.shape[1], r * m.shape[2]):
        raise InputError(
            "PAN and MS sizes do not match the sensor ratio.",
            expected=f"PAN ({r * m.shape[1]}, {r * m.shape[2]}) for MS {tuple(m.shape)}",
            got=tuple(p.shape),
            fix=f"pass a PAN exactly {r} times the MS size (see pipeline.scene).",
        )
    return m, p


def _lms(m: FloatArray, lms: Any, spec: SensorSpec, upsampler: str) -> FloatArray:
    if lms is None:
        return interpolate(m, spec.ratio, upsampler)
    up = as_bands(lms, "lms")
    want = (m.shape[0], spec.ratio * m.shape[1], spec.ratio * m.shape[2])
    if up.shape != want:
        raise InputError("lms has the wrong shape.", expected=want, got=tuple(up.shape))
    return up


def _design(m: FloatArray, p: FloatArray, spec: SensorSpec) -> tuple[FloatArray, FloatArray]:
    """MS pixels ``(N, B)`` and the PAN degraded to the MS grid ``(N,)`` (subsampled)."""
    p_low = mtf_degrade(p[None], [spec.mtf_pan], spec.ratio)[0]
    x, y = m.reshape(m.shape[0], -1).T, p_low.ravel()
    step = max(1, y.size // _FIT_SAMPLES)
    return x[::step], y[::step]


def fit_weights(ms: Any, pan: Any, sensor: str | SensorSpec) -> FloatArray:
    """Non-negative band weights ``(B,)`` with ``degraded PAN ~ sum_i w_i MS_i`` (no offset)."""
    spec = get_sensor(sensor)
    x, y = _design(*_check(ms, pan, spec), spec)
    w, _ = nnls(x, y)
    if not np.any(w > 0):
        log.warning("Brovey weight fit gave all zeros; using equal weights.")
        w = np.full(x.shape[1], 1.0 / x.shape[1])
    return np.asarray(w, dtype=np.float64)


def brovey(
    ms: Any,
    pan: Any,
    sensor: str | SensorSpec,
    *,
    weights: Sequence[float] | None = None,
    upsampler: str = DEFAULT_UPSAMPLER,
    lms: Any = None,
) -> NDArray[np.float32]:
    """Weighted Brovey transform (GDAL's ``Brovey`` pansharpening algorithm).

    Parameters
    ----------
    ms
        ``(B, h, w)`` MS in DN.
    pan
        ``(H, W)`` PAN in DN, ``H = r h``.
    sensor
        Sensor name or spec (ratio; PAN MTF for the weight fit).
    weights
        ``B`` weights of the pseudo-PAN; ``None`` fits them (:func:`fit_weights`).
    upsampler
        LMS interpolator, ``"poly23"`` or ``"bicubic"``.
    lms
        Precomputed ``(B, H, W)`` LMS.

    Returns
    -------
    numpy.ndarray
        ``(B, H, W)`` float32 in DN.
    """
    spec = get_sensor(sensor)
    m, p = _check(ms, pan, spec)
    w = fit_weights(m, p, spec) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (m.shape[0],):
        raise ConfigError("One Brovey weight per band is required.", expected=m.shape[0], got=w)
    up = _lms(m, lms, spec, upsampler)
    pseudo = np.einsum("b,byx->yx", w, up)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(pseudo != 0, p / pseudo, 0.0)
    return (up * ratio).astype(np.float32)


def _cov_gain(x: FloatArray, ref: FloatArray) -> float:
    """``cov(x, ref) / var(ref)`` over all pixels."""
    rc = ref - ref.mean()
    return float(np.mean((x - x.mean()) * rc) / max(float(np.mean(rc * rc)), _EPS))


def gsa(
    ms: Any,
    pan: Any,
    sensor: str | SensorSpec,
    *,
    upsampler: str = DEFAULT_UPSAMPLER,
    lms: Any = None,
) -> NDArray[np.float32]:
    """Adaptive Gram–Schmidt (GSA) component substitution; arguments as for :func:`brovey`."""
    spec = get_sensor(sensor)
    m, p = _check(ms, pan, spec)
    x, y = _design(m, p, spec)
    coef, *_ = np.linalg.lstsq(np.column_stack([x, np.ones(len(y))]), y, rcond=None)
    up = _lms(m, lms, spec, upsampler)
    intensity = np.einsum("b,byx->yx", coef[:-1], up) + coef[-1]
    p_lp = interpolate(mtf_degrade(p[None], [spec.mtf_pan], spec.ratio), spec.ratio, upsampler)[0]
    p_eq = (p - p.mean()) * (intensity.std() / max(float(p_lp.std()), _EPS)) + intensity.mean()
    detail = p_eq - intensity
    out = np.stack([band + _cov_gain(band, intensity) * detail for band in up])
    return out.astype(np.float32)


def _pan_low_passes(p: FloatArray, spec: SensorSpec, upsampler: str) -> list[FloatArray]:
    """``P_LP,i`` for every band (computed once per distinct MTF gain)."""
    cache: dict[float, FloatArray] = {}
    for g in spec.mtf_ms:
        if g not in cache:
            low = mtf_degrade(p[None], [g], spec.ratio)
            cache[g] = interpolate(low, spec.ratio, upsampler)[0]
    return [cache[g] for g in spec.mtf_ms]


def _glp_inputs(
    ms: Any, pan: Any, sensor: str | SensorSpec, upsampler: str, lms: Any
) -> tuple[FloatArray, FloatArray, list[FloatArray]]:
    spec = get_sensor(sensor)
    m, p = _check(ms, pan, spec)
    if len(spec.mtf_ms) != m.shape[0]:
        raise InputError(
            f"Sensor {spec.name!r} has {spec.n_bands} bands.",
            expected=f"{spec.n_bands} MS bands",
            got=m.shape[0],
            fix="pass the sensor the images come from.",
        )
    return _lms(m, lms, spec, upsampler), p, _pan_low_passes(p, spec, upsampler)


def mtf_glp(
    ms: Any,
    pan: Any,
    sensor: str | SensorSpec,
    *,
    upsampler: str = DEFAULT_UPSAMPLER,
    lms: Any = None,
) -> NDArray[np.float32]:
    """MTF-GLP with regression injection gains; arguments as for :func:`brovey`."""
    up, p, lows = _glp_inputs(ms, pan, sensor, upsampler, lms)
    out = np.stack(
        [band + _cov_gain(band, lp) * (p - lp) for band, lp in zip(up, lows, strict=True)]
    )
    return out.astype(np.float32)


def mtf_glp_hpm(
    ms: Any,
    pan: Any,
    sensor: str | SensorSpec,
    *,
    upsampler: str = DEFAULT_UPSAMPLER,
    lms: Any = None,
) -> NDArray[np.float32]:
    """MTF-GLP with high-pass modulation; arguments as for :func:`brovey`."""
    up, p, lows = _glp_inputs(ms, pan, sensor, upsampler, lms)
    out = np.empty_like(up)
    for i, (band, lp) in enumerate(zip(up, lows, strict=True)):
        scale = band.std() / max(float(lp.std()), _EPS)
        p_i = (p - p.mean()) * scale + band.mean()
        lp_i = (lp - p.mean()) * scale + band.mean()
        small = np.abs(lp_i) < _EPS
        with np.errstate(divide="ignore", invalid="ignore"):
            out[i] = np.where(small, band + p_i - lp_i, band * p_i / lp_i)
    return out.astype(np.float32)


Method = Callable[..., NDArray[np.float32]]
METHODS: dict[str, Method] = {
    "brovey": brovey,
    "gsa": gsa,
    "mtf-glp": mtf_glp,
    "mtf-glp-hpm": mtf_glp_hpm,
}


def pansharpen(
    method: str, ms: Any, pan: Any, sensor: str | SensorSpec, **options: Any
) -> NDArray[np.float32]:
    """Run the classical ``method`` (a key of :data:`METHODS`) -> ``(B, H, W)`` float32 DN."""
    key = method.strip().lower().replace("_", "-")
    if key not in METHODS:
        raise ConfigError(
            "Unknown classical pansharpening method.",
            expected=" or ".join(METHODS),
            got=repr(method),
            fix="choose one of the listed methods.",
        )
    return METHODS[key](ms, pan, sensor, **options)


__all__ = ["METHODS", "brovey", "fit_weights", "gsa", "mtf_glp", "mtf_glp_hpm", "pansharpen"]
