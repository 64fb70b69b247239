"""Training data of ``pantailor train-backbone`` (:mod:`pipeline.training`): Wald pairs, batches.

Loads the permissive FuseBox Landsat-7 and SpaceNet-6 WorldView-2 scenes, simulates the ratio-4
pairs (see :mod:`pipeline.training` for the protocol) and samples augmented patch batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from numpy.typing import NDArray

from .backbones import build, upsample
from .config import data_dir
from .errors import InputError
from .mtf import filter_np

if TYPE_CHECKING:
    from .training import TrainConfig

FUSEBOX = "landsat/fusebox_landsat7/cropped"
SPACENET = "vhr/spacenet_wv2"
_FB_RGBN = (2, 1, 0, 3)  # FuseBox band order is R, G, B, NIR, SWIR1, SWIR2


@dataclass(frozen=True)
class TrainingPair:
    """One Wald-protocol scene: inputs at ratio 4 and the target, all ``DN / dn_max``.

    Attributes
    ----------
    name
        Source label.
    ms
        ``(B, h, w)`` degraded MS.
    lms
        ``(B, 4h, 4w)`` ``ms`` upsampled by the network's upsampler (whole scene).
    pan
        ``(4h, 4w)`` degraded PAN.
    gt
        ``(B, 4h, 4w)`` target (the original MS).
    """

    name: str
    ms: NDArray[np.float32]
    lms: NDArray[np.float32]
    pan: NDArray[np.float32]
    gt: NDArray[np.float32]


def _block_mean(img: NDArray[np.float64], k: int) -> NDArray[np.float64]:
    h, w = img.shape[-2] // k * k, img.shape[-1] // k * k
    a = img[..., :h, :w]
    return np.asarray(a.reshape(*a.shape[:-2], h // k, k, w // k, k).mean(axis=(-3, -1)))


def wald_pair(
    name: str,
    ms: NDArray[np.floating],
    pan: NDArray[np.floating],
    native_ratio: int,
    cfg: TrainConfig,
    upsampler: str,
) -> TrainingPair:
    """Simulate one ratio-4 training pair from a native pair (see the module docstring).

    Parameters
    ----------
    ms
        ``(B, h0, w0)`` native MS in [0, 1]: the target.
    pan
        ``(native_ratio * h0, native_ratio * w0)`` native PAN in [0, 1].
    native_ratio
        The source's own PAN/MS ratio (2 for Landsat, 4 for WorldView).
    """
    b = ms.shape[0]
    r = cfg.ratio
    h, w = ms.shape[-2] // r * r, ms.shape[-1] // r * r
    gt = np.asarray(ms[:, :h, :w], dtype=np.float64)
    pan_f = filter_np(np.asarray(pan, dtype=np.float64)[None], [cfg.pan_gain], native_ratio)
    pan_t = _block_mean(pan_f[0], native_ratio)[:h, :w]
    o = r // 2
    ms_lr = filter_np(gt, [cfg.ms_gain] * b, r)[:, o::r, o::r]
    lms = upsample(torch.from_numpy(ms_lr)[None], r, upsampler)[0].numpy()
    f32 = np.float32
    return TrainingPair(name, ms_lr.astype(f32), lms.astype(f32), pan_t.astype(f32), gt.astype(f32))


def landsat_bands(ms6: NDArray[np.floating], n_bands: int) -> NDArray[np.float64]:
    """FuseBox ``(6, h, w)`` (R, G, B, NIR, SWIR1, SWIR2) -> the band set :data:`BAND_SETS` names.

    4: blue, green, red, NIR; 6: blue, green, red, NIR, SWIR1, SWIR2 (the ``landsat7`` order);
    8: the synthetic WorldView-like set.
    """
    r, g, b, nir, sw1 = (np.asarray(ms6[i], dtype=np.float64) for i in range(5))
    if n_bands == 4:
        return np.stack([b, g, r, nir])
    if n_bands == 6:
        return np.stack([b, g, r, nir, sw1, np.asarray(ms6[5], dtype=np.float64)])
    coastal = np.clip(1.25 * b - 0.25 * g, 0.0, 1.0)
    return np.stack(
        [coastal, b, g, (g + r) / 2, r, 0.4 * r + 0.6 * nir, nir, 0.9 * nir + 0.1 * sw1]
    )


def _load_mat(path: Path, key: str) -> NDArray[Any]:
    import scipy.io as sio

    if not path.is_file():
        raise InputError(
            "Training scene not found.",
            path=path,
            expected="the permissive training data under PANTAILOR_DATA",
            got="no such file",
            fix="set PANTAILOR_DATA to the data folder.",
        )
    return np.asarray(sio.loadmat(path)[key])


def load_pairs(cfg: TrainConfig, root: Path | None = None) -> tuple[list[TrainingPair], ...]:
    """All training and validation pairs for ``cfg`` as ``(train, val)``."""
    root = data_dir() if root is None else root
    up = build(cfg.name, cfg.n_bands).upsampler
    train: list[TrainingPair] = []
    val: list[TrainingPair] = []
    for i in cfg.fusebox_scenes:
        pan = _load_mat(root / FUSEBOX / f"{i}_pan.mat", "cropped_gray") / 255.0
        ms6 = _load_mat(root / FUSEBOX / f"{i}_ms.mat", "cropped_im").transpose(2, 0, 1) / 255.0
        pair = wald_pair(f"fusebox-{i}", landsat_bands(ms6, cfg.n_bands), pan, 2, cfg, up)
        (val if i in cfg.val_scenes else train).append(pair)
    if cfg.n_bands == 4 and cfg.spacenet:
        train += _spacenet_pairs(root, cfg, up)
    return train, val


def _spacenet_pairs(root: Path, cfg: TrainConfig, upsampler: str) -> list[TrainingPair]:
    import rasterio

    pairs = []
    for i in (1, 2, 3):
        with rasterio.open(root / SPACENET / f"pan{i}.tif") as src:
            pan = src.read(1).astype(np.float64) / 2047.0
        with rasterio.open(root / SPACENET / f"ms{i}.tif") as src:
            ms = src.read().astype(np.float64)[:, ::2, ::2] / 2047.0
        pairs.append(wald_pair(f"spacenet-{i}", ms, pan, 4, cfg, upsampler))
    return pairs


def _augment(arrs: list[NDArray[np.float32]], k: int, flip: bool) -> list[NDArray[np.float32]]:
    out = [np.rot90(a, k, axes=(-2, -1)) for a in arrs]
    return [np.ascontiguousarray(a[..., ::-1] if flip else a) for a in out]


def sample_batch(
    pairs: Sequence[TrainingPair], rng: np.random.Generator, batch: int, patch: int
) -> tuple[torch.Tensor, ...]:
    """Random aligned crops with flips/rot90: ``(ms, lms, pan, gt)`` as NCHW float32 tensors."""
    areas = np.array([p.gt.shape[-2] * p.gt.shape[-1] for p in pairs], dtype=np.float64)
    idx = rng.choice(len(pairs), size=batch, p=areas / areas.sum())
    ratio = pairs[0].gt.shape[-1] // pairs[0].ms.shape[-1]
    q = patch // ratio
    cols: list[list[NDArray[np.float32]]] = [[], [], [], []]
    for i in idx:
        p = pairs[int(i)]
        y = int(rng.integers(0, p.ms.shape[-2] - q + 1))
        x = int(rng.integers(0, p.ms.shape[-1] - q + 1))
        big = (slice(ratio * y, ratio * y + patch), slice(ratio * x, ratio * x + patch))
        crops = [p.ms[:, y : y + q, x : x + q], p.lms[:, big[0], big[1]]]
        crops += [p.pan[None, big[0], big[1]], p.gt[:, big[0], big[1]]]
        aug = _augment(crops, int(rng.integers(0, 4)), bool(rng.integers(0, 2)))
        for c, a in zip(cols, aug, strict=True):
            c.append(a)
    return tuple(torch.from_numpy(np.stack(c)) for c in cols)


__all__ = [
    "TrainingPair",
    "landsat_bands",
    "load_pairs",
    "sample_batch",
    "wald_pair",
]
