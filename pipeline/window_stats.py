"""Windowed statistics of the spatial losses (:mod:`pipeline.losses`): box means, local correlation.

All inputs are normalised ``(N, C, H, W)`` torch tensors; windows have stride 1 and no padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

EPS = 1e-8
LCC_WINDOW = 8  # PAN pixels: two MS pixels at ratio 4


def box_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over ``window x window`` boxes, stride 1, no padding, from running sums.

    ``(N, C, H, W) -> (N, C, H - window + 1, W - window + 1)``; equals
    ``F.avg_pool2d(x, window, stride=1)`` (to float rounding) at a third of its cost with its
    backward on CPU (the pooling backward was the fit's most expensive op, see
    ``benchmarks/results/fit_speed.md``). Meant for patch-sized inputs (float32 running sums).
    """
    w = window
    c = F.pad(x, (0, 0, 1, 0)).cumsum(-2)
    y = c[..., w:, :] - c[..., :-w, :]
    c = F.pad(y, (1, 0, 0, 0)).cumsum(-1)
    return (c[..., w:] - c[..., :-w]) / float(w * w)


@dataclass(frozen=True)
class WindowStats:
    """Windowed mean and variance of a fixed image (e.g. PAN), reused across fit steps."""

    image: torch.Tensor
    mean: torch.Tensor
    var: torch.Tensor
    window: int

    @classmethod
    def of(cls, image: torch.Tensor, window: int) -> WindowStats:
        """Statistics of ``image`` ``(N, 1 or C, H, W)`` over ``window``-pixel boxes."""
        mean = box_mean(image, window)
        var = (box_mean(image * image, window) - mean**2).clamp_min(0.0)
        return cls(image, mean, var, window)


def local_correlation(
    a: torch.Tensor, b: torch.Tensor | WindowStats, window: int = LCC_WINDOW
) -> torch.Tensor:
    """Windowed Pearson correlation of each channel of ``a`` with ``b`` (valid windows).

    Parameters
    ----------
    a
        ``(N, C, H, W)``.
    b
        ``(N, 1, H, W)`` (broadcast over channels) or ``(N, C, H, W)``, or its precomputed
        :class:`WindowStats` (then its window is used).
    window
        Window edge in pixels; stride 1, no padding.

    Returns
    -------
    torch.Tensor
        ``(N, C, H - window + 1, W - window + 1)`` in ``[-1, 1]`` (0 where either is flat).
    """
    st = b if isinstance(b, WindowStats) else WindowStats.of(b, window)
    w = st.window
    mean_a = box_mean(a, w)
    cov = box_mean(a * st.image, w) - mean_a * st.mean
    var_a = (box_mean(a * a, w) - mean_a**2).clamp_min(0.0)
    return cov / torch.sqrt(var_a * st.var + EPS)


def local_uqi(
    a: torch.Tensor, b: torch.Tensor | WindowStats, window: int, stride: int = 1
) -> torch.Tensor:
    """Universal image quality index of each channel of ``a`` with ``b`` over sliding windows.

    ``Q = 4 cov(a, b) mean(a) mean(b) / ((var a + var b)(mean(a)^2 + mean(b)^2))`` per
    ``window x window`` box (the block UQI of the toolbox's D_S when ``stride == window``).

    Parameters
    ----------
    a
        ``(N, C, H, W)``.
    b
        ``(N, 1 or C, H, W)``, or its :class:`WindowStats` (then its window is used).
    window, stride
        Window edge and step in pixels (no padding).

    Returns
    -------
    torch.Tensor
        ``(N, C, (H - window) // stride + 1, (W - window) // stride + 1)``.
    """
    st = b if isinstance(b, WindowStats) else WindowStats.of(b, window)
    w, s = st.window, stride
    mean_a = box_mean(a, w)[..., ::s, ::s]
    mean_b, var_b = st.mean[..., ::s, ::s], st.var[..., ::s, ::s]
    cov = box_mean(a * st.image, w)[..., ::s, ::s] - mean_a * mean_b
    var_a = (box_mean(a * a, w)[..., ::s, ::s] - mean_a**2).clamp_min(0.0)
    den = (var_a + var_b) * (mean_a**2 + mean_b**2)
    return 4.0 * cov * mean_a * mean_b / (den + EPS * EPS)


def lowres_correlation(lms: torch.Tensor, pan_lp: torch.Tensor, window: int) -> torch.Tensor:
    """Target of :func:`spatial_match_loss`: ``LCC(LMS_b, PAN_LP)`` one scale down.

    ``lms`` ``(N, B, H, W)`` is the MS interpolated to the PAN grid; ``pan_lp`` ``(N, 1, H, W)``
    the PAN MTF-filtered with its gain, decimated and interpolated back the same way.
    """
    return local_correlation(lms, WindowStats.of(pan_lp, window))
