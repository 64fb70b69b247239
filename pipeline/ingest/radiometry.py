"""Radiometry checks before anything is computed: value range vs ``dn_max``, PAN vs MS level.

Models see ``DN / dn_max``; a wrong ``dn_max`` gives garbage with exit 0 (a container already in
[0, 1] divided by 2047 again; 8-bit data declared 11-bit). The ingest streams every input pixel
once anyway, so it accumulates :class:`Levels` per input (valid count, min, max, mean, values
above ``dn_max``) and :func:`assess` decides before the store is published:

* **normalise automatically where unambiguous**, and record it (store attrs ``radiometry``):
  both inputs floating point within [0, 1] -> ``dn_max = 1``; both ``uint8`` -> ``dn_max = 255``.
  Only a ``dn_max`` taken from the sensor table is corrected; one given by the user
  (``--dn-max``) or stated by the file is kept;
* **refuse with a fix that works as written** otherwise: values far below the scale (all within
  ``dn_max / 8``: 8-bit data declared as an 11-bit sensor), values above it (more than
  :data:`MAX_ABOVE` of them), or PAN and MS at different levels. The PAN's level is compared with
  the MS's after degradation to the MS grid; the MTF filter sums to one, so this is the ratio of
  the two means, which lies within a factor :data:`MAX_LEVEL_RATIO` on real scenes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError

log = logging.getLogger(__name__)

MAX_ABOVE = 1e-3
"""Largest share of valid values above ``dn_max`` accepted (with a warning)."""
MAX_LEVEL_RATIO = 4.0
"""Largest accepted ratio between the PAN mean and the MS mean (either way)."""
UNDER_RANGE = 8.0
"""Values all below ``dn_max / UNDER_RANGE`` mean the scale is wrong (8-bit data, 11-bit scale)."""


@dataclass
class Levels:
    """Running statistics of one input's valid values (fed block by block during ingest).

    Attributes
    ----------
    dn_max
        The scale ``above`` is counted against.
    nodata
        Values equal to it (and non-finite ones) are invalid, counted in ``invalid``.
    bands
        Also keep per-band sums over axis 0 of ``(B, ...)`` blocks (the MS).
    """

    dn_max: float
    nodata: float | None = None
    bands: bool = False
    band_total: list[float] = field(default_factory=list)
    band_n: list[int] = field(default_factory=list)
    n: int = 0
    invalid: int = 0
    lo: float = math.inf
    hi: float = -math.inf
    total: float = 0.0
    above: int = 0

    def add(self, block: NDArray[Any]) -> None:
        """Account for one block of DN (any shape)."""
        a = np.asarray(block)
        bad = ~np.isfinite(a) if a.dtype.kind == "f" else np.zeros(a.shape, bool)
        if self.nodata is not None:
            bad |= a == self.nodata
        v = a[~bad] if bad.any() else a.ravel()
        self.invalid += int(bad.sum())
        if not v.size:
            return
        self.n += int(v.size)
        self.lo = min(self.lo, float(v.min()))
        self.hi = max(self.hi, float(v.max()))
        self.total += float(v.sum(dtype=np.float64))
        self.above += int((v > self.dn_max).sum())
        if self.bands:
            self._add_bands(a, bad)

    def _add_bands(self, a: NDArray[Any], bad: NDArray[np.bool_]) -> None:
        ok = ~bad.reshape(a.shape[0], -1)
        vals = np.where(ok, a.reshape(a.shape[0], -1), 0).astype(np.float64)
        if not self.band_total:
            self.band_total, self.band_n = [0.0] * a.shape[0], [0] * a.shape[0]
        for b in range(a.shape[0]):
            self.band_total[b] += float(vals[b].sum())
            self.band_n[b] += int(ok[b].sum())

    @property
    def band_means(self) -> list[float]:
        """Per-band means of the valid values (``bands=True``)."""
        return [t / n if n else math.nan for t, n in zip(self.band_total, self.band_n, strict=True)]

    @property
    def mean(self) -> float:
        """Mean of the valid values (NaN if none)."""
        return self.total / self.n if self.n else math.nan

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "valid": self.n,
            "invalid": self.invalid,
            "min": self.lo if self.n else None,
            "max": self.hi if self.n else None,
            "mean": self.mean if self.n else None,
            "above_dn_max": self.above,
        }


def _full_scale(hi: float) -> float:
    """The smallest ``2**k - 1`` at or above ``hi``."""
    return float(2 ** max(1, math.ceil(math.log2(max(hi, 1.0) + 1))) - 1)


def _auto_scale(
    pan: Levels, ms: Levels, dn_max: float, dtypes: tuple[str, str]
) -> tuple[float, str | None]:
    """``(dn_max, what was done or None)`` for the unambiguous cases."""
    floats = all(np.dtype(d).kind == "f" for d in dtypes)
    if floats and dn_max > 1 and max(pan.hi, ms.hi) <= 1.0 and min(pan.lo, ms.lo) >= 0.0:
        return (
            1.0,
            f"inputs are floats within [0, 1] (already normalised): dn_max 1 (was {dn_max:g})",
        )
    if all(np.dtype(d) == np.uint8 for d in dtypes) and dn_max > 255:
        return 255.0, f"inputs are 8-bit (uint8): dn_max 255 (was {dn_max:g})"
    return dn_max, None


def _check_under_range(pan: Levels, ms: Levels, dn_max: float, paths: Sequence[Path]) -> None:
    hi = max(pan.hi, ms.hi)
    if hi > dn_max / UNDER_RANGE:
        return
    if hi <= 1.0:
        guess = "--dn-max 1 if the values are already normalised (reflectance in [0, 1])"
    else:
        guess = f"--dn-max {_full_scale(hi):g} if the data are {_full_scale(hi):g}-scaled products"
    raise InputError(
        "The input values use a small part of the sensor's range: the scale looks wrong.",
        path=list(paths),
        expected=f"values up to dn_max = {dn_max:g} (the sensor's bit depth)",
        got=f"maximum {hi:g} (PAN {pan.hi:g}, MS {ms.hi:g})",
        fix=f"pass {guess}, or --dn-max {dn_max:g} to keep the sensor's scale.",
    )


def _check_above(pan: Levels, ms: Levels, dn_max: float, paths: Sequence[Path]) -> None:
    for name, lv in (("PAN", pan), ("MS", ms)):
        share = lv.above / lv.n if lv.n else 0.0
        if share > MAX_ABOVE:
            raise InputError(
                f"{share:.1%} of the {name} values exceed dn_max {dn_max:g}.",
                path=list(paths),
                expected=f"values within [0, {dn_max:g}] (at most {MAX_ABOVE:.1%} above)",
                got=f"{name} maximum {lv.hi:g}",
                fix=f"pass --dn-max {_full_scale(lv.hi):g} (the data's bit depth), or the "
                "sensor whose bit depth matches (--sensor), or --nodata if those are fill values.",
            )
        if lv.above:
            log.warning("%d %s values exceed dn_max %g (kept)", lv.above, name, dn_max)


def _rescale_fix(name: str, path: Path, dn_max: float) -> str:
    """A command that puts a [0, 1] input into DN (``rio`` ships with rasterio)."""
    if path.suffix.lower() not in (".tif", ".tiff"):
        return (
            f"the {name} looks normalised to [0, 1] and the other input is in DN: store both "
            f"in the same units (multiply the {name} array by {dn_max:g})."
        )
    out = path.with_name(f"{path.stem}_dn.tif")
    return (
        f"the {name} looks normalised to [0, 1] and the other input is in DN: rescale it with "
        f'rio calc "(* (read 1) {dn_max:g})" {path} {out} --dtype float32 --not-masked, '
        f"and pass {out} instead."
    )


def _check_level(pan: Levels, ms: Levels, dn_max: float, paths: Sequence[Path]) -> None:
    ratio = pan.mean / ms.mean if ms.mean > 0 else math.inf
    if 1.0 / MAX_LEVEL_RATIO <= ratio <= MAX_LEVEL_RATIO:
        return
    if pan.hi <= 1.0 < ms.hi:
        fix = _rescale_fix("PAN", paths[0], dn_max)
    elif ms.hi <= 1.0 < pan.hi and len(paths) == 2:
        fix = _rescale_fix("MS", paths[1], dn_max)
    else:
        fix = "bring PAN and MS to the same units (the same product level and bit depth)."
    raise InputError(
        "PAN and MS are at different radiometric levels.",
        path=list(paths),
        expected=f"PAN mean within {MAX_LEVEL_RATIO:g}x of the MS mean (after degradation)",
        got=f"PAN mean {pan.mean:.4g}, MS mean {ms.mean:.4g} (ratio {ratio:.3g})",
        fix=fix,
    )


def assess(
    pan: Levels,
    ms: Levels,
    *,
    dn_max: float,
    dn_max_from: str,
    dtypes: tuple[str, str],
    paths: Sequence[Path],
) -> dict[str, Any]:
    """Decide the scene's ``dn_max`` from its statistics, or refuse.

    ``pan``/``ms``: statistics of every pixel; ``dn_max`` the scale so far and ``dn_max_from``
    where it came from (``sensor``, ``container``, ``option``: only the sensor's default is
    corrected); ``dtypes`` the PAN and MS source dtypes; ``paths`` the inputs (PAN first).
    Returns ``dn_max`` (final), ``dn_max_from``, ``actions`` (what was normalised, for the
    report) and the ``pan``/``ms`` statistics; raises :class:`InputError` with the fix.
    """
    for name, lv in (("PAN", pan), ("MS", ms)):
        if lv.n == 0:
            raise InputError(
                f"The {name} has no valid pixel.",
                path=list(paths),
                expected="some finite values other than the no-data value",
                got=f"{lv.invalid} invalid values",
                fix="check the files and the no-data value (--nodata).",
            )
    actions: list[str] = []
    new = dn_max
    if dn_max_from == "sensor":
        new, done = _auto_scale(pan, ms, dn_max, dtypes)
        if done:
            actions.append(done)
            log.warning("radiometry: %s", done)
            dn_max_from = "inputs"
        else:
            _check_under_range(pan, ms, dn_max, paths)
    if new == dn_max:
        _check_above(pan, ms, new, paths)
    _check_level(pan, ms, new, paths)
    return {
        "dn_max": new,
        "dn_max_from": dn_max_from,
        "band_gains": band_gains(pan, ms),
        "actions": actions,
        "pan": pan.as_dict(),
        "ms": ms.as_dict(),
    }


def band_gains(pan: Levels, ms: Levels) -> list[float] | None:
    """MS band means over the PAN mean: how a PAN level maps to each band on this scene.

    :mod:`pipeline.infer` fills an invalid MS pixel with the PAN under it times these gains (and
    an invalid PAN pixel with its MS pixel divided by them), so a hole is filled at the level
    and colour of the scene. ``None`` when undefined (no per-band statistics, dark PAN).
    """
    means = ms.band_means
    if not means or not pan.mean > 0 or not all(np.isfinite(m) and m > 0 for m in means):
        return None
    return [float(m / pan.mean) for m in means]


def scene_levels(
    pan: NDArray[Any], ms: NDArray[Any], dn_max: float, nodata: float | None
) -> tuple[Levels, Levels]:
    """:class:`Levels` of an in-memory scene (the ingest gathers the same while streaming)."""
    lp, lm = Levels(dn_max=dn_max, nodata=nodata), Levels(dn_max=dn_max, nodata=nodata, bands=True)
    lp.add(pan)
    lm.add(ms)
    return lp, lm


def output_nodata(dtype: str, dn_max: float) -> float | None:
    """A no-data value for an integer product of ``dtype`` outside ``[0, dn_max]``, or ``None``.

    Used when the inputs hold invalid (non-finite) values but declare no no-data value: the
    product must still tag its holes. Floats use NaN (``None`` here); for integers the largest
    value above ``dn_max`` (unsigned) or the most negative one (signed).
    """
    dt = np.dtype(dtype)
    if dt.kind not in "iu":
        return None
    info = np.iinfo(dt)
    if dt.kind == "i":
        return float(info.min)
    return float(info.max) if info.max > dn_max else None


__all__ = [
    "MAX_ABOVE",
    "MAX_LEVEL_RATIO",
    "UNDER_RANGE",
    "Levels",
    "assess",
    "band_gains",
    "output_nodata",
    "scene_levels",
]
