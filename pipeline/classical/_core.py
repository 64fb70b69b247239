"""Fit and apply halves of the classical methods, block by block (see :mod:`pipeline.classical`)."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, InputError
from ..grid import TileGrid, TileRead
from ..mtf import DEFAULT_SIZE
from ..quality.full_resolution import DEFAULT_UPSAMPLER
from ..sensors import SensorSpec, get_sensor
from ._block import BlockSource, Reader, _Block, _check, per_block
from ._glp import fit_glp
from ._stats import _EPS, FloatArray, _gain, _Moments, _nnls_weights, _std

log = logging.getLogger(__name__)

#: The global coefficients of one method on one scene (JSON-able; see :func:`fit_coefficients`).
Coefficients = dict[str, Any]

_FIT_SAMPLES = 1 << 18  # MS pixels used at most by the weight regressions
_KEYS = ("brovey", "gsa", "mtf-glp", "mtf-glp-hpm")


def _key(method: str) -> str:
    key = method.strip().lower().replace("_", "-")
    if key not in _KEYS:
        raise ConfigError(
            "Unknown classical pansharpening method.",
            expected=" or ".join(_KEYS),
            got=repr(method),
            fix="choose one of the listed methods.",
        )
    return key


def _check_bands(key: str, n_bands: int, spec: SensorSpec) -> None:
    if key in ("mtf-glp", "mtf-glp-hpm") and len(spec.mtf_ms) != n_bands:
        raise InputError(
            f"Sensor {spec.name!r} has {spec.n_bands} bands.",
            expected=f"{spec.n_bands} MS bands",
            got=n_bands,
            fix="pass the sensor the images come from.",
        )


def _mtf_reach_ms(ratio: int) -> int:
    """MS pixels each side a PAN sample degraded to the MS grid depends on (41 taps -> 20 px)."""
    return math.ceil((DEFAULT_SIZE // 2) / ratio)


def fit_halo_ms(method: str, sensor: str | SensorSpec, upsampler: str = DEFAULT_UPSAMPLER) -> int:
    """MS-pixel halo the per-block statistics of :func:`fit_coefficients_tiled` read."""
    from ..backbones import support_ms

    spec = get_sensor(sensor)
    reach = _mtf_reach_ms(spec.ratio)
    return reach if _key(method) == "brovey" else support_ms(upsampler, spec.ratio) + reach


def apply_halo_ms(method: str, sensor: str | SensorSpec, upsampler: str = DEFAULT_UPSAMPLER) -> int:
    """MS-pixel halo a tile needs for :func:`apply_coefficients` to equal the whole image.

    The LMS upsampler's support, plus the MTF filter's reach (``ceil(20 / r)``) where the
    fusion uses the PAN low-pass ``P_LP`` (MTF-GLP and HPM).
    """
    from ..backbones import support_ms

    spec = get_sensor(sensor)
    halo = support_ms(upsampler, spec.ratio)
    return halo if _key(method) in ("brovey", "gsa") else halo + _mtf_reach_ms(spec.ratio)


def _design(
    blocks: Iterable[_Block], shape_ms: tuple[int, int], spec: SensorSpec
) -> tuple[FloatArray, FloatArray]:
    """MS pixels ``(N, B)`` and the PAN degraded to the MS grid ``(N,)``.

    Every ``step``-th MS pixel of the scene in raster order, ``step = max(1, h w // 2**18)``,
    whatever the blocks are.
    """
    h, w = shape_ms
    step = max(1, (h * w) // _FIT_SAMPLES)

    def rows(b: _Block) -> tuple[NDArray[np.int64], FloatArray, FloatArray]:
        x, y = b.own_ms(b.m), b.own_ms(b.low(spec.mtf_pan))
        iy = np.arange(y.shape[0]) + b.origin[0]
        ix = np.arange(y.shape[1]) + b.origin[1]
        flat = (iy[:, None] * w + ix[None, :]).ravel()
        keep = flat % step == 0
        return flat[keep], x.reshape(x.shape[0], -1).T[keep], y.ravel()[keep]

    idx, xs, ys = [], [], []
    for i, x, y in per_block(rows, blocks):
        idx.append(i)
        xs.append(x)
        ys.append(y)
    order = np.argsort(np.concatenate(idx), kind="stable")
    return np.concatenate(xs)[order], np.concatenate(ys)[order]


def _fit_blocks(
    key: str,
    blocks: BlockSource,
    shape_ms: tuple[int, int],
    n_bands: int,
    spec: SensorSpec,
    upsampler: str,
    weights: Sequence[float] | None = None,
) -> Coefficients:
    _check_bands(key, n_bands, spec)
    coeffs: Coefficients = {
        "method": key,
        "sensor": spec.name,
        "ratio": spec.ratio,
        "n_bands": n_bands,
        "upsampler": upsampler,
        "halo_ms": apply_halo_ms(key, spec, upsampler),
    }
    if key == "brovey":
        if weights is None:
            w = _nnls_weights(*_design(blocks(fit_halo_ms(key, spec)), shape_ms, spec))
        else:
            w = np.asarray(weights, dtype=np.float64)
        if w.shape != (n_bands,):
            raise ConfigError("One Brovey weight per band is required.", expected=n_bands, got=w)
        return {**coeffs, "weights": [float(v) for v in w]}
    if key == "gsa":
        return {**coeffs, **_fit_gsa(blocks, shape_ms, n_bands, spec, upsampler)}
    it = iter(blocks(fit_halo_ms(key, spec, upsampler)))
    first = next(it)
    every = itertools.chain([first], it)
    if first.fast:  # LMS not given: moments on the MS grid (pipeline.classical._glp)
        return {**coeffs, **fit_glp(key, every, n_bands, spec)}
    return {**coeffs, **_fit_glp(key, every, n_bands, spec)}


def _fit_gsa(
    blocks: BlockSource, shape_ms: tuple[int, int], n_bands: int, spec: SensorSpec, upsampler: str
) -> Coefficients:
    """GSA's regression weights, then its means, scales and gains over the blocks."""
    acc = _Moments()
    x, y = _design(blocks(fit_halo_ms("brovey", spec)), shape_ms, spec)
    coef, *_ = np.linalg.lstsq(np.column_stack([x, np.ones(len(y))]), y, rcond=None)
    for b in blocks(fit_halo_ms("gsa", spec, upsampler)):
        up = b.own_pan(b.up).reshape(n_bands, -1)
        inten = np.einsum("b,bn->n", coef[:-1], up) + coef[-1]
        p = b.own_pan(b.p).ravel()
        lp = b.own_pan(b.lp(spec.mtf_pan)).ravel()
        acc.add([up, inten, p, lp])
    cov, i_, p_, lp_ = acc.cov, n_bands, n_bands + 1, n_bands + 2
    return {
        "weights": [float(v) for v in coef[:-1]],
        "offset": float(coef[-1]),
        "pan_mean": float(acc.mean[p_]),
        "pan_scale": _std(cov, i_) / max(_std(cov, lp_), _EPS),
        "intensity_mean": float(acc.mean[i_]),
        "gains": [_gain(cov, i, i_) for i in range(n_bands)],
    }


def _fit_glp(key: str, blocks: Iterable[_Block], n_bands: int, spec: SensorSpec) -> Coefficients:
    """MTF-GLP's regression gains, or HPM's PAN mean, scales and band means, over the blocks.

    The reference: moments of the PAN-sized LMS and low-passes (used when the caller gives the
    LMS; :func:`pipeline.classical._glp.fit_glp` otherwise)."""
    acc = _Moments()
    gains = list(dict.fromkeys(spec.mtf_ms))  # distinct MTF gains, in band order
    row = {g: n_bands + j for j, g in enumerate(gains)}
    for b in blocks:
        b.lows(gains, lp=True)
        up = b.own_pan(b.up).reshape(n_bands, -1)
        lps = [b.own_pan(b.lp(g)).ravel() for g in gains]
        acc.add([up, *lps, b.own_pan(b.p).ravel()])
    cov = acc.cov
    if key == "mtf-glp":
        return {"gains": [_gain(cov, i, row[g]) for i, g in enumerate(spec.mtf_ms)]}
    return {
        "pan_mean": float(acc.mean[-1]),
        "scales": [_std(cov, i) / max(_std(cov, row[g]), _EPS) for i, g in enumerate(spec.mtf_ms)],
        "band_means": [float(acc.mean[i]) for i in range(n_bands)],
    }


def _apply_block(b: _Block, coeffs: Mapping[str, Any]) -> NDArray[np.float32]:
    """The fusion of the whole window of ``b`` with the global ``coeffs``."""
    key, spec, p = coeffs["method"], b.spec, b.p
    up = b.up
    if key == "brovey":  # float32 throughout (a pixelwise ratio: 1e-7 relative)
        up32 = np.asarray(up, dtype=np.float32)
        pseudo = np.tensordot(np.asarray(coeffs["weights"], dtype=np.float32), up32, axes=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(pseudo != 0, p.astype(np.float32) / pseudo, np.float32(0.0))
        return up32 * ratio
    if key == "gsa":
        inten = np.einsum("b,byx->yx", np.asarray(coeffs["weights"]), up) + coeffs["offset"]
        detail = (p - coeffs["pan_mean"]) * coeffs["pan_scale"] + coeffs["intensity_mean"] - inten
        g = coeffs["gains"]
        return np.stack([band + g[i] * detail for i, band in enumerate(up)]).astype(np.float32)
    b.lows(spec.mtf_ms, lp=True)
    if key == "mtf-glp":  # float32 throughout, like Brovey
        g, p32 = np.asarray(coeffs["gains"], dtype=np.float32), p.astype(np.float32)
        own = b.fast and up.dtype == np.float32  # the LMS computed here: reuse its buffer
        out, detail = (up if own else np.empty(up.shape, np.float32)), np.empty_like(p32)
        b._up = None if own else b._up  # (the block is spent)
        for i in range(len(out)):
            np.subtract(p32, b.lp(spec.mtf_ms[i]), out=detail)
            detail *= g[i]
            if own:
                out[i] += detail  # LMS_i + g_i (PAN - P_LP,i): the same float32 operations
            else:
                np.add(detail, up[i], out=out[i])
        return out
    res = np.empty_like(up)
    for i, band in enumerate(up):
        scale, mean = coeffs["scales"][i], coeffs["band_means"][i]
        p_i = (p - coeffs["pan_mean"]) * scale + mean
        lp_i = (b.lp(spec.mtf_ms[i]) - coeffs["pan_mean"]) * scale + mean
        small = np.abs(lp_i) < _EPS
        with np.errstate(divide="ignore", invalid="ignore"):
            res[i] = np.where(small, band + p_i - lp_i, band * p_i / lp_i)
    return res.astype(np.float32)


def _tiled_source(grid: TileGrid, reader: Reader, spec: SensorSpec, upsampler: str) -> BlockSource:
    def blocks(halo: int) -> Iterator[_Block]:
        for k in grid.keys():  # noqa: SIM118
            yield _Block.read(grid, k, halo, reader, spec, upsampler)

    return blocks


def fit_coefficients(
    method: str,
    ms: Any,
    pan: Any,
    sensor: str | SensorSpec,
    *,
    upsampler: str = DEFAULT_UPSAMPLER,
    weights: Sequence[float] | None = None,
    tile: int | None = None,
) -> Coefficients:
    """The global coefficients of ``method`` on a scene held in memory.

    Parameters
    ----------
    method
        A key of :data:`METHODS`.
    ms, pan
        ``(B, h, w)`` MS and ``(H, W)`` PAN in DN.
    sensor
        Sensor name or spec.
    upsampler
        LMS interpolator, ``"poly23"`` or ``"bicubic"``.
    weights
        Brovey only: explicit band weights (nothing is fitted).
    tile
        Fit block by block over tiles of this edge (PAN pixels, a multiple of the ratio), as
        :func:`fit_coefficients_tiled` does from a store; ``None``: one block.

    Returns
    -------
    dict
        JSON-able: ``method``, ``sensor``, ``ratio``, ``n_bands``, ``upsampler``, ``halo_ms``
        (the tile halo :func:`apply_coefficients` needs) and the method's coefficients.
    """
    key, spec = _key(method), get_sensor(sensor)
    m, p = _check(ms, pan, spec)
    if tile is not None:
        grid = TileGrid((p.shape[0], p.shape[1]), spec.ratio, tile)

        def reader(tr: TileRead) -> tuple[FloatArray, FloatArray]:
            return m[(slice(None), *tr.ms.slices)], p[tr.pan.slices]

        return fit_coefficients_tiled(key, grid, reader, spec, upsampler=upsampler, weights=weights)
    whole = _Block(m, p, spec, upsampler)
    return _fit_blocks(key, lambda _: [whole], m.shape[1:], m.shape[0], spec, upsampler, weights)


def fit_coefficients_tiled(
    method: str,
    grid: TileGrid,
    reader: Reader,
    sensor: str | SensorSpec,
    *,
    upsampler: str = DEFAULT_UPSAMPLER,
    weights: Sequence[float] | None = None,
) -> Coefficients:
    """:func:`fit_coefficients` streaming over ``grid``'s tiles read by ``reader`` (with halo).

    Memory is bounded by one tile plus halo; the result equals the whole-image fit to float
    rounding (see the module docstring). GSA reads the scene twice (regression, then
    statistics), the other methods once.
    """
    key, spec = _key(method), get_sensor(sensor)
    if grid.ratio != spec.ratio:
        raise ConfigError(
            "The grid's ratio is not the sensor's.", expected=spec.ratio, got=grid.ratio
        )
    first = _Block.read(grid, next(iter(grid.keys())), 0, reader, spec, upsampler)
    source = _tiled_source(grid, reader, spec, upsampler)
    return _fit_blocks(key, source, grid.ms_shape_yx, first.m.shape[0], spec, upsampler, weights)


def apply_coefficients(
    method: str,
    ms_window: Any,
    pan_window: Any,
    coeffs: Mapping[str, Any],
    sensor: str | SensorSpec,
) -> NDArray[np.float32]:
    """Fuse one window with the scene's global ``coeffs`` -> ``(B, H', W')`` float32 DN.

    The window is a tile plus ``coeffs["halo_ms"]`` MS pixels of halo each side (clipped at the
    scene edges, :meth:`pipeline.grid.TileGrid.read`); crop the result to the tile
    (``TileRead.crop``) to get exactly the whole-image output there.
    """
    key, spec = _key(method), get_sensor(sensor)
    if coeffs.get("method") != key or int(coeffs.get("ratio", -1)) != spec.ratio:
        raise ConfigError(
            "The coefficients were fitted for another method or sensor.",
            expected=f"{key} / ratio {spec.ratio}",
            got=f"{coeffs.get('method')} / ratio {coeffs.get('ratio')}",
            fix="fit the coefficients for this method and scene (fit_coefficients).",
        )
    # Brovey and MTF-GLP read MS and PAN into float32 only: a float32 window is not widened
    m, p = _check(ms_window, pan_window, spec, keep_float32=key in ("brovey", "mtf-glp"))
    if m.shape[0] != int(coeffs["n_bands"]):
        raise InputError(
            "Band count differs from the fit.", expected=coeffs["n_bands"], got=m.shape[0]
        )
    return _apply_block(_Block(m, p, spec, str(coeffs["upsampler"])), coeffs)
