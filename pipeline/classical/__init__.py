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

Every method is split in two halves so the whole image and a tiled, distributed run share code:

:func:`fit_coefficients` (once per scene)
    The *global* coefficients as a small JSON-able dict: Brovey band weights; GSA regression
    weights, PAN mean/scale, intensity mean and injection gains; GLP regression gains; HPM PAN
    mean, per-band scales and means. They are computed from the whole scene, exactly as the
    whole-image definitions above, never from a sample of tiles: the weight regressions use the
    same subsampled design (every ``step``-th MS pixel in raster order with the PAN degraded to
    the MS grid) and the means, standard deviations and covariances are accumulated block by
    block (Chan's pairwise update of means and co-moments, float64) over the scene's tiles read
    with a halo that makes each block's LMS / ``P_LP`` equal to the whole image's
    (:func:`fit_halo_ms`). Memory is bounded by one block; the result equals the whole-image
    fit to float rounding. :func:`fit_coefficients_tiled` does this from any window reader
    (e.g. a scene store on a worker).
:func:`apply_coefficients` (per tile)
    The pixelwise fusion of one window (a tile plus :func:`apply_halo_ms` MS pixels of halo:
    the LMS upsampler's support, plus the 41-tap MTF filter's ``ceil(20 / r)`` MS pixels for
    the GLP methods), cropped by the caller like the network kernel's output.

:func:`pansharpen` is fit + apply on the whole image (one block; the LMS and low-passes are
computed once and shared by both halves).

The LMS and the PAN degradations are banded matrix products (:mod:`._banded`); the fit of
MTF-GLP and HPM never forms the PAN-sized LMS or low-passes: its moments are sums on the MS
grid (:mod:`._glp`), the same values as the definitions above to float32 rounding. Passing
``lms`` runs the definitions literally.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..quality.full_resolution import DEFAULT_UPSAMPLER
from ..sensors import SensorSpec, get_sensor
from ._block import Reader, _Block, _check
from ._core import (
    Coefficients,
    _apply_block,
    _fit_blocks,
    _key,
    apply_coefficients,
    apply_halo_ms,
    fit_coefficients,
    fit_coefficients_tiled,
    fit_halo_ms,
)
from ._stats import FloatArray, _lms_of, _nnls  # noqa: F401  (tests reach the fast paths)


def save_coefficients(coeffs: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``coeffs`` as JSON atomically (floats round-trip exactly)."""
    from ..files import write_text_atomic

    return write_text_atomic(path, json.dumps(dict(coeffs), indent=1, sort_keys=True))


def load_coefficients(path: str | Path) -> Coefficients:
    """Inverse of :func:`save_coefficients`."""
    data: Coefficients = json.loads(Path(path).read_text())
    return data


def _run(
    key: str,
    ms: Any,
    pan: Any,
    sensor: str | SensorSpec,
    upsampler: str,
    lms: Any,
    weights: Sequence[float] | None = None,
) -> NDArray[np.float32]:
    """Fit + apply on the whole image (one block: LMS and low-passes computed once)."""
    spec = get_sensor(sensor)
    m, p = _check(ms, pan, spec)
    whole = _Block(m, p, spec, upsampler, lms=lms)
    coeffs = _fit_blocks(key, lambda _: [whole], m.shape[1:], m.shape[0], spec, upsampler, weights)
    return _apply_block(whole, coeffs)


def fit_weights(ms: Any, pan: Any, sensor: str | SensorSpec) -> FloatArray:
    """Non-negative band weights ``(B,)`` with ``degraded PAN ~ sum_i w_i MS_i`` (no offset)."""
    return np.asarray(fit_coefficients("brovey", ms, pan, sensor)["weights"], dtype=np.float64)


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
    return _run("brovey", ms, pan, sensor, upsampler, lms, weights)


def gsa(
    ms: Any,
    pan: Any,
    sensor: str | SensorSpec,
    *,
    upsampler: str = DEFAULT_UPSAMPLER,
    lms: Any = None,
) -> NDArray[np.float32]:
    """Adaptive Gram–Schmidt (GSA) component substitution; arguments as for :func:`brovey`."""
    return _run("gsa", ms, pan, sensor, upsampler, lms)


def mtf_glp(
    ms: Any,
    pan: Any,
    sensor: str | SensorSpec,
    *,
    upsampler: str = DEFAULT_UPSAMPLER,
    lms: Any = None,
) -> NDArray[np.float32]:
    """MTF-GLP with regression injection gains; arguments as for :func:`brovey`."""
    return _run("mtf-glp", ms, pan, sensor, upsampler, lms)


def mtf_glp_hpm(
    ms: Any,
    pan: Any,
    sensor: str | SensorSpec,
    *,
    upsampler: str = DEFAULT_UPSAMPLER,
    lms: Any = None,
) -> NDArray[np.float32]:
    """MTF-GLP with high-pass modulation; arguments as for :func:`brovey`."""
    return _run("mtf-glp-hpm", ms, pan, sensor, upsampler, lms)


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
    """Run the classical ``method`` (a key of :data:`METHODS`) -> ``(B, H, W)`` float32 DN.

    :func:`fit_coefficients` + :func:`apply_coefficients` on the whole image.
    """
    return METHODS[_key(method)](ms, pan, sensor, **options)


__all__ = [
    "METHODS",
    "Coefficients",
    "Reader",
    "apply_coefficients",
    "apply_halo_ms",
    "brovey",
    "fit_coefficients",
    "fit_coefficients_tiled",
    "fit_halo_ms",
    "fit_weights",
    "gsa",
    "load_coefficients",
    "mtf_glp",
    "mtf_glp_hpm",
    "pansharpen",
    "save_coefficients",
]
