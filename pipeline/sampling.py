"""Choose the patches a tailor is fitted on: a seeded fraction of the scene, nodata-aware.

The candidate patches are the full cells of a regular patch grid over the scene
(:func:`patch_grid`, a :class:`~pipeline.grid.TileGrid` whose tile is the patch edge); partial
edge cells are not candidates. :func:`sample_keys` visits the candidates in a seeded random order
and keeps those whose no-data share is at most ``max_nodata``; in ``"texture"`` mode it scores a
seeded pool of valid candidates by the mean gradient magnitude of their MS window and draws
equally from ``strata`` texture quantiles (so flat water and busy town are both represented); in
``"coverage"`` mode (:mod:`pipeline.sampling_coverage`) it scores every valid candidate (up to a
cap) and takes one fit patch per texture quantile and held-out patches spread apart from them.
Only the visited windows are read, so this works on a large Zarr store as well as on arrays.

:func:`sample_patches` reads the chosen windows into a :class:`PatchBatch` of normalised torch
tensors (``DN / dn_max``) with validity masks, ready for :func:`pipeline.fit.fit_tailor`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import NDArray

from .errors import ConfigError, InputError
from .grid import MAX_TILE, TileGrid, TileKey, Window
from .infer import invalid_mask
from .sampling_coverage import coverage_draw, pool_size, stratified_draw

log = logging.getLogger(__name__)

MODES = ("random", "texture", "coverage")


@dataclass(frozen=True, kw_only=True)
class SampleConfig:
    """How many and which patches to fit on.

    Attributes
    ----------
    fraction
        Share of the candidate patches to use, in (0, 1].
    patch
        Patch edge in PAN pixels (a multiple of the ratio; 4 * ratio at least).
    mode
        ``"random"``, ``"texture"`` (stratified by MS gradient energy) or ``"coverage"`` (one
        fit patch per texture quantile of the whole scene, spread apart).
    min_patches, max_patches
        Bounds on the number of fit patches after applying ``fraction`` (default 8 and 8: a
        small scene is fitted on as many patches as a large one; measured on the cross-sensor
        pairs, ``benchmarks/results/cross_sensor.md``, label p8r).
    max_nodata
        Largest no-data share (0..1) a patch may hold.
    strata
        Number of texture quantiles in ``"texture"`` mode.
    holdout
        Extra patches held out of the fit, on which the fit scores the toolbox HQNR of its
        states (the stopping rule and the identity fallback of :mod:`pipeline.fit`); fewer
        when the scene has too few patches (the fit patches come first).
    """

    fraction: float = 0.05
    patch: int = 64
    mode: str = "random"
    min_patches: int = 8
    max_patches: int = 8
    max_nodata: float = 0.0
    strata: int = 4
    holdout: int = 4

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction <= 1.0:
            raise ConfigError("fraction must lie in (0, 1].", got=self.fraction, fix="use 0.1.")
        if self.mode not in MODES:
            raise ConfigError("Unknown sampling mode.", expected=MODES, got=self.mode)
        if not 1 <= self.min_patches <= self.max_patches:
            raise ConfigError(
                "Need 1 <= min_patches <= max_patches.",
                got=(self.min_patches, self.max_patches),
            )
        if not 0.0 <= self.max_nodata < 1.0:
            fix = "pass a patch's no-data share, e.g. --max-nodata 0.2 (0: none allowed)."
            raise ConfigError("--max-nodata must lie in [0, 1).", got=self.max_nodata, fix=fix)
        if self.strata < 1:
            raise ConfigError("strata must be >= 1.", got=self.strata)
        if self.holdout < 0:
            raise ConfigError("holdout must be >= 0.", got=self.holdout)


class PatchSource(Protocol):
    """Anything patches can be read from: arrays (:class:`ArraySource`) or a ``SceneStore``."""

    def read_pan(self, window: Window) -> NDArray[Any]:
        """``(H', W')`` PAN DN."""
        ...

    def read_ms(self, window: Window) -> NDArray[Any]:
        """``(B, h', w')`` MS DN (window in MS pixels)."""
        ...


@dataclass(frozen=True)
class ArraySource:
    """In-memory scene: ``pan`` ``(H, W)`` and ``ms`` ``(B, H/r, W/r)`` in DN."""

    pan: NDArray[Any]
    ms: NDArray[Any]

    def read_pan(self, window: Window) -> NDArray[Any]:
        """``(H', W')`` PAN DN of ``window``."""
        return np.asarray(self.pan[window.slices])

    def read_ms(self, window: Window) -> NDArray[Any]:
        """``(B, h', w')`` MS DN of ``window`` (MS pixels)."""
        return np.asarray(self.ms[(slice(None), *window.slices)])


@dataclass(frozen=True)
class PatchBatch:
    """Fit patches as normalised torch tensors.

    Attributes
    ----------
    ms
        ``(N, B, h, w)`` MS, ``DN / dn_max``, float32.
    pan
        ``(N, 1, H, W)`` PAN, ``H = ratio * h``.
    valid
        ``(N, 1, H, W)`` bool, or ``None`` when every pixel is valid.
    valid_ms
        ``(N, 1, h, w)`` bool, or ``None``.
    keys
        The patch-grid keys the patches came from.
    ratio
        PAN/MS ratio.
    holdout
        The last ``holdout`` patches are held out of the fit (scored, not fitted on).
    """

    ms: torch.Tensor
    pan: torch.Tensor
    valid: torch.Tensor | None
    valid_ms: torch.Tensor | None
    keys: tuple[TileKey, ...]
    ratio: int
    holdout: int = 0

    def __len__(self) -> int:
        return int(self.ms.shape[0])

    def split(self) -> tuple[PatchBatch, PatchBatch | None]:
        """``(fit patches, held-out patches or None)``."""
        k = len(self) - self.holdout
        if self.holdout <= 0 or k < 1:
            return dataclasses.replace(self, holdout=0), None
        fit, held = (self._select(sl) for sl in (slice(0, k), slice(k, None)))
        return fit, held

    def _select(self, sl: slice) -> PatchBatch:
        valid, valid_ms = (None if t is None else t[sl] for t in (self.valid, self.valid_ms))
        return PatchBatch(self.ms[sl], self.pan[sl], valid, valid_ms, self.keys[sl], self.ratio)

    def to(self, device: torch.device | str) -> PatchBatch:
        """The same batch on ``device``."""
        valid, valid_ms = (None if t is None else t.to(device) for t in (self.valid, self.valid_ms))
        ms, pan = self.ms.to(device), self.pan.to(device)
        return PatchBatch(ms, pan, valid, valid_ms, self.keys, self.ratio, self.holdout)


def patch_grid(pan_shape_yx: tuple[int, int], ratio: int, patch: int) -> TileGrid:
    """The grid of candidate patches (edge ``patch`` PAN pixels) over a scene."""
    if not 4 * ratio <= patch <= MAX_TILE or patch % ratio:
        raise ConfigError(
            "The fit patch edge must be a multiple of the PAN/MS ratio, 4 ratios at least.",
            expected=f"a multiple of {ratio} in [{4 * ratio}, {MAX_TILE}]",
            got=patch,
            fix=f"use e.g. --fit-patch {max(4 * ratio, patch - patch % ratio)} "
            "(sample patch; default 64).",
        )
    return TileGrid(pan_shape_yx, ratio, patch)


def _full_keys(grid: TileGrid) -> list[TileKey]:
    t = grid.ms_tile
    keys = grid.keys()
    return [k for k in keys if grid.ms_window(k).shape_yx == (t, t)]


def _texture(ms: NDArray[Any]) -> float:
    """Mean gradient magnitude of an MS window ``(B, h, w)`` (DN, NaN-safe)."""
    a = np.nan_to_num(np.asarray(ms, dtype=np.float64))
    gy, gx = np.diff(a, axis=1), np.diff(a, axis=2)
    return float(np.abs(gy).mean() + np.abs(gx).mean())


def _count(cfg: SampleConfig, n_candidates: int) -> int:
    want = max(cfg.min_patches, math.ceil(cfg.fraction * n_candidates))
    return min(want, cfg.max_patches, n_candidates)


def _valid_pool(
    source: PatchSource,
    grid: TileGrid,
    cfg: SampleConfig,
    order: list[TileKey],
    pool_size: int,
    nodata: float | None,
) -> list[tuple[TileKey, float]]:
    """The first ``pool_size`` keys of ``order`` with few enough no-data pixels, and their texture
    (0 in ``"random"`` mode); reads only the windows it visits."""
    pool: list[tuple[TileKey, float]] = []
    for key in order:
        ms = source.read_ms(grid.ms_window(key))
        pan = source.read_pan(grid.pan_window(key))
        if invalid_mask(pan, ms, grid.ratio, nodata).mean() > cfg.max_nodata:
            continue
        pool.append((key, _texture(ms) if cfg.mode != "random" else 0.0))
        if len(pool) >= pool_size:
            break
    return pool


def sample_keys(
    source: PatchSource,
    grid: TileGrid,
    cfg: SampleConfig,
    seed: int,
    *,
    nodata: float | None = None,
    extra: int = 0,
) -> list[TileKey]:
    """Choose patch keys on ``grid`` (a :func:`patch_grid`), seeded and nodata-aware.

    Parameters
    ----------
    source
        Arrays or a store to read windows from (only visited windows are read).
    grid
        Candidate patch grid; its tile is the patch edge.
    cfg
        Fraction, mode and bounds.
    seed
        Same seed, same keys.
    nodata
        No-data DN, if any (NaN always counts as no-data).
    extra
        Up to this many more keys (held-out patches), after the fit keys, sorted apart; only
        what the valid patches left after the fit keys allow.

    Returns
    -------
    list of TileKey
        Sorted fit keys, then sorted extra keys; fewer than asked only when fewer valid
        patches exist.

    Raises
    ------
    InputError
        If no patch of the scene is valid.
    """
    candidates = _candidates(grid)
    rng = np.random.default_rng(seed)
    order = [candidates[i] for i in rng.permutation(len(candidates))]
    k = _count(cfg, len(candidates))
    n = k + extra
    size = {"random": n, "texture": min(len(order), n * 4)}.get(cfg.mode, pool_size(n, len(order)))
    pool = _valid_pool(source, grid, cfg, order, size, nodata)
    if not pool:
        raise InputError(
            "No fit patch has few enough no-data pixels.",
            expected=f"a {grid.tile}-pixel patch with <= {cfg.max_nodata:.0%} no-data",
            got=f"{len(candidates)} candidates, all rejected",
            fix="raise --max-nodata (sample max_nodata), use a smaller --fit-patch, or check "
            "the nodata value.",
        )
    if cfg.mode == "random":
        chosen = [key for key, _ in pool]
    elif cfg.mode == "texture":
        chosen = stratified_draw(pool, n, cfg.strata, rng)
    else:
        chosen = coverage_draw(pool, k, extra, rng)
    if len(chosen) < k:
        log.warning("only %d valid fit patches (wanted %d)", len(chosen), k)
    return sorted(chosen[:k]) + sorted(chosen[k : k + extra])


def _candidates(grid: TileGrid) -> list[TileKey]:
    """The full patches of ``grid``; :class:`InputError` if there is none."""
    candidates = _full_keys(grid)
    if not candidates:
        raise InputError(
            "The scene is smaller than one fit patch.",
            expected=f"PAN of at least {grid.tile} x {grid.tile}",
            got=grid.pan_shape_yx,
            fix="use a smaller --fit-patch.",
        )
    return candidates


def read_patches(
    source: PatchSource,
    grid: TileGrid,
    keys: list[TileKey],
    *,
    dn_max: float,
    nodata: float | None = None,
) -> PatchBatch:
    """Read ``keys``' windows into a :class:`PatchBatch` (``DN / dn_max``, no-data set to 0)."""
    if not keys:
        raise ConfigError("No patch keys to read.", fix="sample at least one patch.")
    pans, mss, bads = [], [], []
    for key in keys:
        ms = np.asarray(source.read_ms(grid.ms_window(key)))
        pan = np.asarray(source.read_pan(grid.pan_window(key)))
        bads.append(invalid_mask(pan, ms, grid.ratio, nodata))
        pans.append(np.nan_to_num(pan.astype(np.float32)) / np.float32(dn_max))
        mss.append(np.nan_to_num(ms.astype(np.float32)) / np.float32(dn_max))
    bad = np.stack(bads)[:, None]
    pan_t = torch.from_numpy(np.stack(pans)[:, None])
    ms_t = torch.from_numpy(np.stack(mss))
    valid = valid_ms = None
    if bad.any():
        r = grid.ratio
        valid = torch.from_numpy(~bad)
        valid_ms = torch.from_numpy(~bad[..., r // 2 :: r, r // 2 :: r])
        pan_t = pan_t * valid
        ms_t = ms_t * valid_ms
    return PatchBatch(ms_t, pan_t, valid, valid_ms, tuple(keys), grid.ratio)


def sample_patches(
    source: PatchSource | tuple[NDArray[Any], NDArray[Any]],
    cfg: SampleConfig,
    seed: int,
    *,
    ratio: int | None = None,
    dn_max: float | None = None,
    nodata: float | None = None,
) -> PatchBatch:
    """Sample and read fit patches from a ``SceneStore`` or ``(pan, ms)`` arrays.

    Parameters
    ----------
    source
        A :class:`pipeline.store.SceneStore` (ratio, dn_max, nodata from its metadata), an
        :class:`ArraySource`, or a ``(pan (H, W), ms (B, H/r, W/r))`` tuple of DN arrays.
    cfg
        Sampling configuration.
    seed
        Random seed.
    ratio, dn_max, nodata
        Required for arrays; for a store they default to its metadata (given values override).

    Returns
    -------
    PatchBatch
        ``N`` patches of ``cfg.patch`` PAN pixels.
    """
    meta = getattr(source, "meta", None)
    if isinstance(source, tuple):
        source = ArraySource(*source)
    ratio = ratio if ratio is not None else getattr(meta, "ratio", None)
    dn_max = dn_max if dn_max is not None else getattr(meta, "dn_max", None)
    nodata = nodata if nodata is not None else getattr(meta, "nodata", None)
    if ratio is None or dn_max is None:
        raise ConfigError(
            "sample_patches needs the ratio and dn_max for array input.",
            fix="pass ratio=sensor.ratio, dn_max=sensor.dn_max.",
        )
    shape = getattr(meta, "pan_shape_yx", None) or _pan_shape(source)
    grid = patch_grid(shape, ratio, cfg.patch)
    keys = sample_keys(source, grid, cfg, seed, nodata=nodata, extra=cfg.holdout)
    n_fit = min(len(keys), _count(cfg, len(_full_keys(grid))))
    batch = read_patches(source, grid, keys, dn_max=dn_max, nodata=nodata)
    return dataclasses.replace(batch, holdout=len(keys) - n_fit)


def _pan_shape(source: PatchSource) -> tuple[int, int]:
    pan = getattr(source, "pan", None)
    if pan is None:
        raise ConfigError("Cannot tell the scene size of this source.", got=type(source).__name__)
    return (int(pan.shape[0]), int(pan.shape[1]))


__all__ = [
    "MODES",
    "ArraySource",
    "PatchBatch",
    "PatchSource",
    "SampleConfig",
    "invalid_mask",
    "patch_grid",
    "read_patches",
    "sample_keys",
    "sample_patches",
]
