"""Physics-aware unsupervised losses for fitting on the test scene alone (no reference).

All inputs are normalised (``DN / dn_max``) torch tensors; every loss takes an optional validity
mask (``True`` = valid pixel) and averages over valid pixels only.

- **Spectral**: the output, MTF-filtered band by band with the sensor's MS Nyquist gains and
  decimated by the ratio, must equal the observed MS: ``mean |D(out) - ms|``.
- **Spatial** (default target ``"toolbox"``): the toolbox's D_S relation window by window,
  ``|Q(out_b, PAN) - Q(MS~_b, P_LP)|`` (:mod:`pipeline.losses_toolbox`); or ``"lowres"``, the
  same relation with local correlations and an MTF-filtered PAN; or ``"pan"``, ``1 -`` the
  local correlation between each output band and PAN.
- **Consistency**: scale invariance: the model run on the scene degraded by the ratio (MS and PAN
  MTF-filtered with their own gains and decimated, :func:`degrade_inputs`) must give back the
  observed MS: ``mean |model(D(ms), D(pan)) - ms|``.
- **Angle**: the spectral direction of the degraded output must match the MS's, pixel by pixel:
  ``mean || D(out)/|D(out)| - ms/|ms| ||`` (the chord between unit spectra, ``2 sin(SAM/2)``:
  smooth where ``acos`` is not). It guards the band ratios, which the L1 term weighs little.
- **Penalty**: ``mean T(F)^2``, keeps the tailored features close to the pretrained ones.

Each is a function plus an ``nn.Module`` holding its constants. :func:`degrade` is the MTF
degradation of :mod:`pipeline.mtf` (computed only at the kept samples) for sizes that are
multiples of the ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .errors import ConfigError
from .losses_rr import check_rr_weight
from .losses_toolbox import (
    Q_BLOCK,
    toolbox_interp,
    toolbox_pan_low_pass,
    toolbox_spatial_loss,
    toolbox_spatial_target,
)
from .mtf import degrade_torch, kernels_1d
from .sensors import SensorSpec
from .window_stats import (
    EPS,
    LCC_WINDOW,
    WindowStats,
    box_mean,
    local_correlation,
    lowres_correlation,
)

SPATIAL_TARGETS = ("pan", "lowres", "toolbox")


@dataclass(frozen=True, kw_only=True)
class LossWeights:
    """Weights of the loss terms (measured defaults, see ``benchmarks/results/method_ablation.md``).

    Attributes
    ----------
    spectral, angle, spatial, consistency, penalty
        Non-negative weights; a zero weight skips the term's computation.
    lcc_window
        Window edge (PAN pixels) of the local correlation in the spatial term.
    spatial_target
        ``"pan"``: the spatial term is ``1 - LCC(out_b, PAN)`` (more PAN-like is always better);
        ``"lowres"``: ``|LCC(out_b, PAN) - LCC(LMS_b, PAN_LP)|``, each band's local correlation
        with PAN must equal the one its MS has with the low-passed PAN one scale down (the
        relation HQNR's D_S checks; too much PAN is penalised as much as too little);
        ``"toolbox"``: the toolbox's D_S relation, window by window: ``|Q(out_b, PAN) -
        Q(MS~_b, P_LP)|`` with ``Q`` the UQI over ``q_block``-pixel windows, ``MS~`` the
        toolbox's 23-tap interpolation of the MS and ``P_LP`` the 23-tap interpolation of the
        antialiased bicubic ``imresize(PAN, 1/ratio)`` (:func:`toolbox_pan_low_pass`).
    q_block
        Window edge (PAN pixels) of the UQI in the ``"toolbox"`` spatial term (the toolbox: 32).
    q_stride
        Stride (PAN pixels) between the UQI windows of the ``"toolbox"`` term.
    """

    spectral: float = 1.0
    angle: float = 0.3
    spatial: float = 0.2
    consistency: float = 3.0
    penalty: float = 0.0
    lcc_window: int = LCC_WINDOW
    spatial_target: str = "toolbox"
    q_block: int = Q_BLOCK
    q_stride: int = 8
    rr: float = 0.0

    def __post_init__(self) -> None:
        check_rr_weight(self.rr)
        for name in ("spectral", "angle", "spatial", "consistency", "penalty"):
            if getattr(self, name) < 0:
                raise ConfigError(f"Loss weight {name!r} must be >= 0.", got=getattr(self, name))
        if self.spectral + self.angle + self.spatial + self.consistency + self.rr == 0:
            raise ConfigError(
                "At least one of the spectral, spatial and consistency weights must be > 0.",
                fix="e.g. spectral=1, consistency=1.",
            )
        if self.lcc_window < 2:
            raise ConfigError("lcc_window must be >= 2 pixels.", got=self.lcc_window)
        if self.q_block < 2 or self.q_stride < 1:
            raise ConfigError(
                "q_block must be >= 2 and q_stride >= 1.", got=(self.q_block, self.q_stride)
            )
        if self.spatial_target not in SPATIAL_TARGETS:
            raise ConfigError(
                "Unknown spatial target.", expected=SPATIAL_TARGETS, got=self.spatial_target
            )


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``x`` over the pixels where ``mask`` (broadcastable, bool or 0/1) is true.

    Returns 0 (with gradient) when nothing is valid.
    """
    if mask is None:
        return x.mean()
    m = mask.to(x.dtype).expand_as(x)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def mtf_taps(gains: tuple[float, ...] | list[float], ratio: int) -> torch.Tensor:
    """1-D MTF taps per band ``(len(gains), 41)`` float32, from :func:`pipeline.mtf.kernels_1d`."""
    return torch.from_numpy(kernels_1d(list(gains), ratio)).to(torch.float32)


def degrade(x: torch.Tensor, taps: torch.Tensor, ratio: int) -> torch.Tensor:
    """MTF-filter (replicate edges) and decimate by ``ratio``: :func:`pipeline.mtf.degrade_torch`
    for sizes that are multiples of the ratio.

    Parameters
    ----------
    x
        ``(N, C, H, W)`` with ``H, W`` multiples of ``ratio``.
    taps
        ``(C, K)`` 1-D taps per channel (``K`` odd), or ``(1, K)`` shared by all channels.
    ratio
        Decimation factor; the kept sample of each block is ``ratio // 2``.

    Returns
    -------
    torch.Tensor
        ``(N, C, H / ratio, W / ratio)``.
    """
    h, w = x.shape[-2:]
    if h % ratio or w % ratio:
        raise ConfigError("degrade needs H and W divisible by the ratio.", got=(h, w))
    return degrade_torch(x, taps, ratio)


def degrade_inputs(
    ms: torch.Tensor, pan: torch.Tensor, sensor: SensorSpec
) -> tuple[torch.Tensor, torch.Tensor]:
    """The scene degraded by the ratio for the consistency loss (Wald protocol).

    Parameters
    ----------
    ms
        ``(N, B, h, w)`` observed MS (normalised).
    pan
        ``(N, 1, H, W)`` PAN, ``H = ratio * h``.
    sensor
        Gives the ratio and the MS (per band) and PAN MTF gains.

    Returns
    -------
    tuple of torch.Tensor
        ``ms_d`` ``(N, B, h/r, w/r)`` and ``pan_d`` ``(N, 1, h, w)``.
    """
    r = sensor.ratio
    ms_d = degrade(ms, mtf_taps(sensor.mtf_ms, r), r)
    pan_d = degrade(pan, mtf_taps((sensor.mtf_pan,), r), r)
    return ms_d, pan_d


def spectral_loss(
    out: torch.Tensor,
    ms: torch.Tensor,
    taps: torch.Tensor,
    ratio: int,
    mask_ms: torch.Tensor | None = None,
    *,
    degraded: torch.Tensor | None = None,
) -> torch.Tensor:
    """``mean |degrade(out) - ms|`` over valid MS pixels.

    Parameters
    ----------
    out
        ``(N, B, H, W)`` fused output.
    ms
        ``(N, B, H/r, W/r)`` observed MS.
    taps
        ``(B, K)`` MS MTF taps (:func:`mtf_taps` of the sensor's ``mtf_ms``).
    ratio
        PAN/MS ratio.
    mask_ms
        ``(N, 1, H/r, W/r)`` validity at MS resolution.
    degraded
        ``degrade(out, taps, ratio)`` when already computed (shared with :func:`angle_loss`).
    """
    d = degrade(out, taps, ratio) if degraded is None else degraded
    return masked_mean((d - ms).abs(), mask_ms)


def spectral_chord(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel chord ``|| a/|a| - b/|b| ||`` between the spectra of ``a`` and ``b``.

    ``(N, C, H, W)`` each -> ``(N, 1, H, W)`` in ``[0, 2]``; equals ``2 sin(SAM / 2)``, so it
    grows like the spectral angle for small angles, without ``acos``'s unbounded gradient at 0.
    A zero spectrum counts as the zero vector (distance 1 to any unit spectrum).
    """
    ua = a / a.norm(dim=1, keepdim=True).clamp_min(EPS)
    ub = b / b.norm(dim=1, keepdim=True).clamp_min(EPS)
    sq: torch.Tensor = (ua - ub).pow(2).sum(1, keepdim=True)
    return torch.sqrt(sq + EPS * EPS)


def angle_loss(
    out: torch.Tensor,
    ms: torch.Tensor,
    taps: torch.Tensor,
    ratio: int,
    mask_ms: torch.Tensor | None = None,
    *,
    degraded: torch.Tensor | None = None,
) -> torch.Tensor:
    """``mean spectral_chord(degrade(out), ms)`` over valid MS pixels.

    Parameters are those of :func:`spectral_loss`; ``degraded`` (``degrade(out, taps, ratio)``)
    may be given to share it with the spectral term.
    """
    d = degrade(out, taps, ratio) if degraded is None else degraded
    return masked_mean(spectral_chord(d, ms), mask_ms)


def _windowed_correlation(
    out: torch.Tensor,
    pan: torch.Tensor | WindowStats,
    window: int,
    mask: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Local correlation of each band with PAN, and the mask of the fully valid windows."""
    if isinstance(pan, WindowStats):
        window = pan.window
    lcc = local_correlation(out, pan, window)
    wmask = None
    if mask is not None:
        wmask = box_mean(mask.to(out.dtype), window) > 1.0 - 1e-6
    return lcc, wmask


def spatial_loss(
    out: torch.Tensor,
    pan: torch.Tensor | WindowStats,
    window: int = LCC_WINDOW,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``mean (1 - local_correlation(out_b, pan))`` over bands and fully valid windows.

    Parameters
    ----------
    out
        ``(N, B, H, W)`` fused output.
    pan
        ``(N, 1, H, W)`` PAN, or its :class:`WindowStats` (then its window is used).
    window
        Correlation window edge (PAN pixels).
    mask
        ``(N, 1, H, W)`` validity; a window counts only if all its pixels are valid.
    """
    lcc, wmask = _windowed_correlation(out, pan, window, mask)
    return masked_mean(1.0 - lcc, wmask)


def spatial_match_loss(
    out: torch.Tensor,
    pan: torch.Tensor | WindowStats,
    target: torch.Tensor,
    window: int = LCC_WINDOW,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``mean |local_correlation(out_b, pan) - target_b|`` over bands and fully valid windows.

    Parameters
    ----------
    out
        ``(N, B, H, W)`` fused output.
    pan
        ``(N, 1, H, W)`` PAN, or its :class:`WindowStats`.
    target
        ``(N, B, H - window + 1, W - window + 1)`` correlation each band should have with PAN,
        e.g. :func:`lowres_correlation` (fixed during a fit).
    window, mask
        As for :func:`spatial_loss`.
    """
    lcc, wmask = _windowed_correlation(out, pan, window, mask)
    return masked_mean((lcc - target).abs(), wmask)


def consistency_loss(
    out_degraded: torch.Tensor, ms: torch.Tensor, mask_ms: torch.Tensor | None = None
) -> torch.Tensor:
    """``mean |out_degraded - ms|``: the model's output on the degraded scene vs the observed MS.

    Parameters
    ----------
    out_degraded
        ``(N, B, h, w)``: the model run on ``degrade_inputs(ms, pan)`` (its PAN is ``h x w``).
    ms
        ``(N, B, h, w)`` observed MS.
    mask_ms
        ``(N, 1, h, w)`` validity.
    """
    return masked_mean((out_degraded - ms).abs(), mask_ms)


def tailor_penalty(delta: torch.Tensor) -> torch.Tensor:
    """``mean T(F)^2`` of the tailor's residual ``(N, C, H, W)``."""
    return delta.pow(2).mean()


class SpectralLoss(nn.Module):
    """Module form of :func:`spectral_loss` for one sensor (holds the MTF taps as a buffer).

    Parameters
    ----------
    sensor
        Gives the MS MTF gains and the ratio.
    """

    taps: torch.Tensor

    def __init__(self, sensor: SensorSpec) -> None:
        super().__init__()
        self.ratio = sensor.ratio
        self.register_buffer("taps", mtf_taps(sensor.mtf_ms, sensor.ratio), persistent=False)

    def forward(
        self, out: torch.Tensor, ms: torch.Tensor, mask_ms: torch.Tensor | None = None
    ) -> torch.Tensor:
        """See :func:`spectral_loss`."""
        return spectral_loss(out, ms, self.taps, self.ratio, mask_ms)


class SpatialLoss(nn.Module):
    """Module form of :func:`spatial_loss`.

    Parameters
    ----------
    window
        Correlation window edge (PAN pixels).
    """

    def __init__(self, window: int = LCC_WINDOW) -> None:
        super().__init__()
        self.window = window

    def forward(
        self, out: torch.Tensor, pan: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """See :func:`spatial_loss`."""
        return spatial_loss(out, pan, self.window, mask)


class ConsistencyLoss(nn.Module):
    """Module form of :func:`consistency_loss`."""

    def forward(
        self, out_degraded: torch.Tensor, ms: torch.Tensor, mask_ms: torch.Tensor | None = None
    ) -> torch.Tensor:
        """See :func:`consistency_loss`."""
        return consistency_loss(out_degraded, ms, mask_ms)


__all__ = [
    "ConsistencyLoss",
    "LossWeights",
    "SpatialLoss",
    "SpectralLoss",
    "WindowStats",
    "angle_loss",
    "box_mean",
    "consistency_loss",
    "degrade",
    "degrade_inputs",
    "local_correlation",
    "lowres_correlation",
    "masked_mean",
    "mtf_taps",
    "spatial_loss",
    "spatial_match_loss",
    "spectral_chord",
    "spectral_loss",
    "tailor_penalty",
    "toolbox_interp",
    "toolbox_pan_low_pass",
    "toolbox_spatial_loss",
    "toolbox_spatial_target",
]
