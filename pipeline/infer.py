"""The one inference function: normalise -> invalid mask -> fill -> forward -> crop -> mark invalid.

Every path that turns DN into a fused product goes through here: the tiled engine's tile task
(``workers/kernel.py``), the in-memory :func:`pipeline.fuse.fuse`, the quality tiles' baseline and
the tests' whole-image references. So they agree, pixel for pixel, on what no-data is and what
happens around it.

Semantics
---------
* **Invalid input** (:func:`invalid_mask`): a PAN pixel is invalid when it is non-finite (NaN,
  +-Inf) or equal to the scene's ``nodata``; an MS pixel is invalid when *any* of its bands is.
  On the PAN grid a pixel is invalid when its PAN pixel is, or the MS pixel it lies under
  (corner-aligned ``ratio x ratio`` block).
* **Fill**: invalid values are replaced *before* the network sees them, so a raw no-data DN such
  as 65535 never reaches it: an invalid MS pixel by the mean of the valid PAN pixels under it
  times the scene's band gains (band mean / PAN mean, measured at ingest), an invalid PAN pixel
  by its MS pixel divided by them, and what has neither by :data:`FILL` (0). Radiometry checks keep PAN and MS at one level, so the hole is filled at the
  level of its surroundings and the valid pixels next to it barely move (0 instead would darken
  them through the upsampler and the convolutions: ``benchmarks/results/inputs_bad_*.md``).
  The fill only uses values under the same MS pixel and scene constants, so a tile read with
  the model's halo still equals the whole image.
* **Mark**: the output of an invalid pixel is NaN (normalised units); export writes the scene's
  no-data value there. The output's no-data footprint is exactly the input's.
* **Clip**: valid outputs are clipped to ``[0, 1]`` (``[0, dn_max]`` DN) unless ``clip=False``
  (``run --no-clip``): networks and high-pass injection overshoot, and a negative radiance is not
  a measurement. A valid output that would round to the no-data DN (``nodata = 0`` and a clipped
  dark pixel) is moved one DN away, so it never reads as no-data in the product.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from .backbones import upsample
from .errors import ConfigError
from .grid import Window

FILL = 0.0
"""Normalised value of an invalid input pixel that has no valid pixel of the other input."""

Run = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``run(ms (1, B, h, w), pan (1, 1, H, W)) -> (1, B, H, W)``, normalised, on any device."""


@dataclass(frozen=True, kw_only=True)
class Radiometry:
    """How DN map to what a model sees, and what counts as no-data.

    Attributes
    ----------
    dn_max
        DN mapped to 1.0 (``> 0``).
    ratio
        PAN/MS pixel-size ratio.
    nodata
        The no-data DN of the inputs, or ``None`` (non-finite values are no-data regardless).
    clip
        Clip valid outputs to ``[0, 1]`` normalised (``[0, dn_max]`` DN).
    band_gains
        Per MS band, the scene's band mean over its PAN mean
        (:func:`pipeline.ingest.radiometry.band_gains`, stored at ingest): invalid MS pixels are
        filled with the PAN under them times these, invalid PAN pixels with their MS pixel
        divided by them. ``None``: the plain PAN mean / band mean.
    """

    dn_max: float
    ratio: int
    nodata: float | None = None
    clip: bool = True
    band_gains: tuple[float, ...] | None = None

    @classmethod
    def of(cls, meta: Any, *, clip: bool = True) -> Radiometry:
        """The radiometry of a stored scene (a :class:`pipeline.store_meta.SceneMeta`)."""
        gains = (getattr(meta, "radiometry", None) or {}).get("band_gains")
        return cls(
            dn_max=float(meta.dn_max),
            ratio=int(meta.ratio),
            nodata=meta.nodata,
            clip=clip,
            band_gains=None if gains is None else tuple(float(g) for g in gains),
        )

    def __post_init__(self) -> None:
        if not np.isfinite(self.dn_max) or self.dn_max <= 0:
            raise ConfigError("dn_max must be a finite number > 0.", got=self.dn_max)
        if self.ratio < 1:
            raise ConfigError("ratio must be >= 1.", got=self.ratio)


def _bad(a: NDArray[Any], nodata: float | None) -> NDArray[np.bool_]:
    """Per-value invalid flags of ``a`` (any shape): non-finite, or equal to ``nodata``."""
    bad = ~np.isfinite(a) if a.dtype.kind in "fc" else np.zeros(a.shape, dtype=bool)
    if nodata is not None:
        bad |= a == nodata
    return np.asarray(bad, dtype=bool)


def invalid_ms(ms: NDArray[Any], nodata: float | None) -> NDArray[np.bool_]:
    """``(h, w)`` bool: MS pixels with any band non-finite or equal to ``nodata``; ms ``(B, h, w)``."""
    return np.asarray(_bad(np.asarray(ms), nodata).any(axis=0), dtype=bool)


def invalid_mask(
    pan: NDArray[Any], ms: NDArray[Any], ratio: int, nodata: float | None
) -> NDArray[np.bool_]:
    """``(H, W)`` bool on the PAN grid: PAN invalid, or under an invalid MS pixel.

    Parameters
    ----------
    pan
        ``(H, W)`` PAN DN.
    ms
        ``(B, H/ratio, W/ratio)`` MS DN.
    ratio
        PAN/MS ratio.
    nodata
        No-data DN or ``None``.
    """
    up = np.repeat(np.repeat(invalid_ms(ms, nodata), ratio, axis=0), ratio, axis=1)
    return np.asarray(_bad(np.asarray(pan), nodata) | up, dtype=bool)


@dataclass(frozen=True)
class Prepared:
    """Model inputs of one window.

    Attributes
    ----------
    ms
        ``(1, B, h, w)`` float32, ``DN / dn_max``, invalid values set to :data:`FILL`.
    pan
        ``(1, 1, H, W)`` float32 likewise.
    bad
        ``(H, W)`` bool invalid mask on the PAN grid, or ``None`` when every pixel is valid.
    """

    ms: torch.Tensor
    pan: torch.Tensor
    bad: NDArray[np.bool_] | None


def _normalised(a: NDArray[Any], bad: NDArray[np.bool_], dn_max: float) -> NDArray[np.float32]:
    x = np.asarray(a, dtype=np.float32) / np.float32(dn_max)
    if bad.any():
        x = np.where(bad, np.float32(FILL), x)
    return np.ascontiguousarray(x, dtype=np.float32)


def _cross_fill(
    ms: NDArray[np.float32],
    pan: NDArray[np.float32],
    bad_ms: NDArray[np.bool_],
    bad_pan: NDArray[np.bool_],
    rad: Radiometry,
) -> None:
    """Fill invalid values in place from the other input at the same place (see module doc).

    An invalid MS pixel takes the mean of the valid PAN pixels under it, times each band's gain;
    an invalid PAN pixel takes the mean over bands of its (possibly just filled) MS pixel divided
    by the gains; what has neither keeps :data:`FILL`. Every value used lies under the same MS
    pixel and the gains are the scene's, so a window (aligned on MS pixels) is filled exactly
    as the whole image.
    """
    r, (h, w) = rad.ratio, bad_ms.shape
    gains = np.ones(ms.shape[0], np.float32)
    if rad.band_gains is not None and len(rad.band_gains) == ms.shape[0]:
        gains = np.asarray(rad.band_gains, dtype=np.float32)
    if bad_ms.any():
        ok = (~bad_pan).reshape(h, r, w, r)
        total = np.where(ok, pan.reshape(h, r, w, r), 0.0).sum(axis=(1, 3))
        count = ok.sum(axis=(1, 3))
        level = np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)
        fill = level[bad_ms][None] * gains[:, None]
        ms[:, bad_ms] = np.where(np.isnan(fill), np.float32(FILL), fill)
    if bad_pan.any():
        level = (ms / gains[:, None, None]).mean(axis=0)
        pan[bad_pan] = np.repeat(np.repeat(level, r, axis=0), r, axis=1)[bad_pan]


def prepare(ms_dn: NDArray[Any], pan_dn: NDArray[Any], rad: Radiometry) -> Prepared:
    """Normalise, mask and fill one window: ms ``(B, h, w)``, pan ``(r h, r w)`` DN."""
    ms_dn, pan_dn = np.asarray(ms_dn), np.asarray(pan_dn)
    bad_ms = np.asarray(_bad(ms_dn, rad.nodata).any(axis=0), dtype=bool)
    bad_pan = _bad(pan_dn, rad.nodata)
    ms = _normalised(ms_dn, np.broadcast_to(bad_ms, ms_dn.shape), rad.dn_max)
    pan = _normalised(pan_dn, bad_pan, rad.dn_max)
    r = rad.ratio
    _cross_fill(ms, pan, bad_ms, bad_pan, rad)
    bad = bad_pan | np.repeat(np.repeat(bad_ms, r, axis=0), r, axis=1)
    return Prepared(
        ms=torch.from_numpy(ms)[None],
        pan=torch.from_numpy(pan)[None, None],
        bad=bad if bad.any() else None,
    )


def _avoid_nodata(y: NDArray[np.float32], rad: Radiometry) -> None:
    """Move valid outputs that would round to the no-data DN one DN away, in place.

    With ``nodata = 0`` (common) and clipping, a dark valid pixel would otherwise become
    indistinguishable from no-data in the product.
    """
    nd = rad.nodata
    if nd is None or not 0.0 <= nd <= rad.dn_max:
        return
    hit = np.abs(y * np.float32(rad.dn_max) - np.float32(nd)) < 0.5
    if hit.any():
        y[hit] = np.float32((nd + (1.0 if nd < rad.dn_max else -1.0)) / rad.dn_max)


def finish(
    out: NDArray[Any],
    bad: NDArray[np.bool_] | None,
    rad: Radiometry,
    crop: Window | None = None,
) -> NDArray[np.float32]:
    """Mark invalid pixels NaN, clip the valid ones, crop: ``(B, H, W) -> (B, H', W')`` float32.

    Parameters
    ----------
    out
        ``(B, H, W)`` normalised model output of the window.
    bad
        ``(H, W)`` invalid mask of the window (:class:`Prepared`), or ``None``.
    rad
        Clip or not.
    crop
        The part of the window to keep (window coordinates), or ``None`` for all of it.
    """
    y = np.array(out, dtype=np.float32, copy=True)
    if rad.clip:
        np.clip(y, 0.0, 1.0, out=y)
    _avoid_nodata(y, rad)
    if bad is not None:
        y[:, bad] = np.nan
    if crop is not None:
        y = y[(slice(None), *crop.slices)]
    return np.ascontiguousarray(y, dtype=np.float32)


def model_run(
    module: Callable[..., torch.Tensor],
    upsampler: str,
    ratio: int,
    *,
    device: torch.device | str = "cpu",
    memory_format: torch.memory_format = torch.contiguous_format,
    context: Callable[[], AbstractContextManager[Any]] | None = None,
    tta: str = "none",
) -> Run:
    """A :data:`Run` for a network ``module(ms, lms, pan)``: upsample MS to LMS, one forward.

    ``context`` is entered around the forward (default ``torch.inference_mode``); the tile
    kernel passes its device policy (AMP on GPU). ``tta``: test-time augmentation
    (:mod:`pipeline.tta`; ``"flips"`` 4 forwards, ``"d4"`` 8, averaged; ``"none"`` one).
    """
    from .tta import check_mode, tta_forward

    check_mode(tta)

    def run(ms: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        ms, pan = ms.to(device), pan.to(device)
        with context() if context is not None else torch.inference_mode():
            inputs = model_inputs(ms, pan, ratio, upsampler, memory_format)
            out = tta_forward(module, *inputs, tta)
        return out

    return run


def model_inputs(
    ms: torch.Tensor,
    pan: torch.Tensor,
    ratio: int,
    upsampler: str,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ms, lms, pan)`` as a network's forward takes them: the LMS interpolated from ``ms``,
    all three in ``memory_format`` (call inside the forward's context, tensors on its device).

    The one place the inputs are made, for whole forwards (:func:`model_run`) and for the
    speculative extractor (:mod:`workers.speculate`), whose tiles must equal the plain ones.
    """
    lms = upsample(ms, ratio, upsampler)
    return (
        ms.contiguous(memory_format=memory_format),
        lms.contiguous(memory_format=memory_format),
        pan.contiguous(memory_format=memory_format),
    )


def infer_window(
    run: Run,
    ms_dn: NDArray[Any],
    pan_dn: NDArray[Any],
    rad: Radiometry,
    *,
    crop: Window | None = None,
) -> NDArray[np.float32]:
    """The whole inference of one window (a tile plus halo, or a whole scene).

    Parameters
    ----------
    run
        The forward (:func:`model_run` for a network; a classical method's apply likewise).
    ms_dn, pan_dn
        ``(B, h, w)`` MS and ``(ratio h, ratio w)`` PAN in source DN.
    rad
        Scale, ratio, no-data and clipping.
    crop
        Window-coordinates part to return (the tile inside its halo); ``None``: all.

    Returns
    -------
    numpy.ndarray
        ``(B, H', W')`` float32 normalised output, NaN where the input is invalid.
    """
    prep = prepare(ms_dn, pan_dn, rad)
    out = run(prep.ms, prep.pan)
    return finish(out[0].float().cpu().numpy(), prep.bad, rad, crop)


def to_dn_float(x: NDArray[Any], rad: Radiometry, nodata: float | None) -> NDArray[np.float32]:
    """Normalised output -> float32 DN; NaN (invalid) -> ``nodata`` when given."""
    y = (np.asarray(x, dtype=np.float32) * np.float32(rad.dn_max)).astype(np.float32)
    if nodata is not None:
        y[np.isnan(y)] = np.float32(nodata)
    return y


__all__ = [
    "FILL",
    "Prepared",
    "Radiometry",
    "Run",
    "finish",
    "infer_window",
    "invalid_mask",
    "invalid_ms",
    "model_inputs",
    "model_run",
    "prepare",
    "to_dn_float",
]
