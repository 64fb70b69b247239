"""Reduced-resolution (Wald) term in ERGAS form: scale invariance graded like the RR protocol.

The tailored network, run on its fit patches degraded by the sensor's MTF and the ratio (the
pair :func:`pipeline.losses.degrade_inputs` makes, with :mod:`pipeline.mtf`, the degradation
``pantailor evaluate`` and :func:`pipeline.evaluate.wald_degrade` apply to whole scenes), should
give back the observed MS: a network that is scale-invariant fuses the pair one scale down as
well as the pair it is asked to fuse. The existing ``consistency`` term asks it by ``mean |.|``
in normalised DN, so bright bands (NIR over vegetation) dominate it and large local errors count
linearly. ERGAS, the index the reduced-resolution protocol grades, weighs every band by its
*relative* root-mean-square error:

    rr = sqrt( mean_b  MSE_b / mu_b^2 ),   MSE_b = mean (out_d_b - ms_b)^2,  mu_b = mean ms_b

over the valid MS pixels of all fit patches (one pool, as ERGAS pools one image), i.e.
``ERGAS * ratio / 100`` one scale down. ``mu_b`` is fixed per fit (the observed MS); it is
floored at :data:`MIN_MEAN` (normalised DN) so a band that is almost black on the patches cannot
blow the term up.

Configured by ``LossWeights.rr`` (0: off, the default of the measured configuration is in
:class:`pipeline.losses.LossWeights`); evaluated by :class:`pipeline.fit_objective.FitObjective`
on the same ``out_d`` as the consistency term (no extra network run when both are on).
"""

from __future__ import annotations

import math

import torch

from .errors import ConfigError

MIN_MEAN = 1e-3  # normalised DN: floor of a band's mean in the relative error
_EPS = 1e-12  # inside the square root: a finite gradient at a perfect fit


def check_rr_weight(value: float) -> None:
    """Raise :class:`~pipeline.errors.ConfigError` unless ``value`` is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            "Loss weight 'rr' must be a number.", got=repr(value), fix="e.g. rr=1.0 (0: off)."
        )
    if not math.isfinite(value) or value < 0:
        raise ConfigError(
            "Loss weight 'rr' must be finite and >= 0.", got=value, fix="e.g. rr=1.0 (0: off)."
        )


def needs_degraded(w: object) -> bool:
    """Whether a fit with loss weights ``w`` runs the network on the degraded patches (the
    ``consistency`` or the ``rr`` term is on)."""
    return float(getattr(w, "consistency", 0.0)) > 0 or float(getattr(w, "rr", 0.0)) > 0


def _per_band_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``x`` ``(N, B, h, w)`` per band over the pixels where ``mask`` ``(N, 1, h, w)``
    (bool or 0/1, or ``None``: all) is true: ``(B,)``; 0 for a band with nothing valid."""
    if mask is None:
        return x.mean((0, 2, 3))
    m = mask.to(x.dtype).expand_as(x)
    return (x * m).sum((0, 2, 3)) / m.sum((0, 2, 3)).clamp_min(1.0)


def band_means(ms: torch.Tensor, mask_ms: torch.Tensor | None) -> torch.Tensor:
    """Per-band mean of ``ms`` ``(N, B, h, w)`` over valid pixels, floored: ``(B,)``.

    ``mask_ms`` ``(N, 1, h, w)`` (bool or 0/1) or ``None``.
    """
    return _per_band_mean(ms, mask_ms).clamp_min(MIN_MEAN)


def rr_loss(
    out_degraded: torch.Tensor,
    ms: torch.Tensor,
    mask_ms: torch.Tensor | None = None,
    *,
    means: torch.Tensor | None = None,
) -> torch.Tensor:
    """ERGAS-form error of the network's output on the degraded patches against the MS.

    Parameters
    ----------
    out_degraded
        ``(N, B, h, w)``: the model run on ``degrade_inputs(ms, pan)`` (normalised DN).
    ms
        ``(N, B, h, w)`` observed MS (normalised DN), the reference one scale down.
    mask_ms
        ``(N, 1, h, w)`` validity, or ``None``.
    means
        :func:`band_means` of ``(ms, mask_ms)`` when precomputed (fixed during a fit).

    Returns
    -------
    torch.Tensor
        Scalar ``sqrt(mean_b MSE_b / mu_b^2)`` (``ERGAS * ratio / 100`` of the patches); 0 when
        nothing is valid.
    """
    mu = band_means(ms, mask_ms) if means is None else means
    mse = _per_band_mean((out_degraded - ms).pow(2), mask_ms)
    return torch.sqrt((mse / mu.pow(2)).mean() + _EPS)


__all__ = ["MIN_MEAN", "band_means", "check_rr_weight", "needs_degraded", "rr_loss"]
