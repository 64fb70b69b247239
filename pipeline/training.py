"""``pantailor train-backbone``: the project's own backbone weights from permissive data only.

Training pairs follow Wald's protocol at ratio 4, cut from scenes whose licences allow it:

* **Landsat-7 FuseBox** (USGS, public domain; 30 crops, PAN 800² at 15 m, MS 400²x6 at 30 m,
  8-bit). Landsat is 1:2, so ratio-4 pairs are *simulated*: the **target** is the original
  30 m MS; the **MS input** is that MS MTF-filtered (Nyquist gain ``ms_gain`` at ratio 4) and
  decimated by 4 (120 m, offset ``ratio // 2`` as :func:`pipeline.mtf.decimate`); the **PAN
  input** is the 15 m PAN MTF-filtered (gain ``pan_gain`` at ratio 2) and reduced by 2 with a
  2x2 block mean, so that its pixels coincide with the 30 m target pixels (corner-aligned
  grids: PAN pixels ``2k, 2k+1`` lie under MS pixel ``k``). PAN/MS is then exactly 4.
* **SpaceNet-6 WorldView-2** (CC BY-SA 4.0; 3 scenes, PAN 600² at 0.5 m, 4-band MS stored
  nearest-upsampled x2: the native 150² at 2 m is ``ms[:, ::2, ::2]``), native ratio 4: target
  = native MS, MS input = MS degraded by 4, PAN input = PAN degraded by 4 (MTF + 4x4 mean).

Band sets (:data:`BAND_SETS`): 4 bands = (blue, green, red, NIR) from both sources; 6 bands =
the six native Landsat-7 bands in the ``landsat7`` sensor's order (blue, green, red, NIR, SWIR1,
SWIR2; FuseBox stores them R, G, B, NIR, SWIR1, SWIR2 and is reordered). There is **no permissive
8-band data**, so the 8-band set is *synthesised* from the six Landsat bands by spectral interpolation
(WorldView order: coastal = 1.25 blue - 0.25 green, blue, green, yellow = (green + red) / 2,
red, red-edge = 0.4 red + 0.6 NIR, NIR1 = NIR, NIR2 = 0.9 NIR + 0.1 SWIR1). It teaches the
network to inject PAN detail into 8 correlated bands; it is not real 8-band radiometry.

Values are ``DN / dn_max`` (255 for Landsat-7, 2047 for SpaceNet). ``lms`` is made once per
scene with the network's upsampler on the whole degraded scene and cropped with the patches.
Patches are random aligned crops (``patch`` target pixels, a multiple of 4) with random
flips/rot90 (seeded), loss L1, Adam with a step decay.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import quality
from .backbones import Backbone, build
from .errors import ConfigError, InputError
from .training_data import FUSEBOX as FUSEBOX
from .training_data import SPACENET as SPACENET
from .training_data import (
    TrainingPair,
    landsat_bands,
    load_pairs,
    sample_batch,
    wald_pair,
)

log = logging.getLogger(__name__)

RATIO = 4
L7_BANDS = ("blue", "green", "red", "nir", "swir1", "swir2")
WV8_BANDS = ("coastal", "blue", "green", "yellow", "red", "red_edge", "nir1", "nir2")
#: Band sets ``train-backbone --bands N`` can build, by band count: the band names, in order.
BAND_SETS: dict[int, tuple[str, ...]] = {4: L7_BANDS[:4], 6: L7_BANDS, 8: WV8_BANDS}


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Training recipe (validated at construction).

    Attributes
    ----------
    name
        Backbone to train (``"fusionnet"``, ...).
    n_bands
        A key of :data:`BAND_SETS`: 4, 6 (native Landsat-7) or 8 (synthetic); see the module
        docstring for how each band set is built.
    steps, batch, patch
        Optimiser steps, patches per step, patch edge in target (PAN-input) pixels.
    lr
        Adam learning rate; multiplied by 0.2 after ``decay_at`` of the steps.
    seed
        Seeds weights, patch positions and augmentation.
    ratio
        PAN/MS ratio of the simulated pairs (4 by default; 2 = Landsat's own ratio: MS input at
        60 m, PAN input and target at 30 m).
    ms_gain, pan_gain
        MTF Nyquist gains of the simulated degradations.
    val_scenes
        FuseBox scene numbers held out for validation (never trained on).
    fusebox_scenes
        FuseBox scene numbers used at all (1..30).
    spacenet
        Add the three SpaceNet WV2 scenes to the 4-band training set.
    """

    name: str = "fusionnet"
    n_bands: int = 4
    steps: int = 1500
    batch: int = 8
    patch: int = 64
    lr: float = 1e-3
    decay_at: float = 0.7
    seed: int = 0
    ratio: int = RATIO
    ms_gain: float = 0.3
    pan_gain: float = 0.15
    val_scenes: tuple[int, ...] = (26, 27, 28, 29, 30)
    fusebox_scenes: tuple[int, ...] = tuple(range(1, 31))
    spacenet: bool = True

    def __post_init__(self) -> None:
        if self.n_bands not in BAND_SETS:
            sets = "; ".join(f"{n}: {', '.join(b)}" for n, b in sorted(BAND_SETS.items()))
            raise ConfigError(
                "The training data has no band set of this size.",
                expected=f"--bands one of {sorted(BAND_SETS)} ({sets})",
                got=self.n_bands,
                fix="--bands 6 for Landsat-7/-8-like sensors, 4 for blue/green/red/NIR sensors; "
                "other band counts run the band-group path of pipeline.backbones.groups.",
            )
        if self.ratio not in (2, 4):
            raise ConfigError("The training ratio is 2 or 4.", got=self.ratio, fix="--ratio 4")
        if self.patch % 4 or self.patch < 16:
            raise ConfigError(
                "The patch must be a multiple of 4 of at least 16 pixels.", got=self.patch
            )
        if not set(self.val_scenes) <= set(self.fusebox_scenes):
            raise ConfigError(
                "Validation scenes must be among the FuseBox scenes used.",
                expected=f"a subset of {self.fusebox_scenes}",
                got=self.val_scenes,
            )
        if self.steps < 1 or self.batch < 1 or self.lr <= 0:
            raise ConfigError(
                "steps, batch and lr must be positive.", got=(self.steps, self.batch, self.lr)
            )


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    model: Backbone
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0


def parse_scenes(text: str) -> tuple[int, ...]:
    """``"1-3,7"`` -> ``(1, 2, 3, 7)``: FuseBox scene numbers (1..30)."""
    out: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            out += range(int(lo), int(hi or lo) + 1)
    except ValueError as exc:
        raise ConfigError(
            "Bad scene list.", got=repr(text), fix="write e.g. 1-25 or 1,2,26."
        ) from exc
    if not out or any(not 1 <= i <= 30 for i in out):
        raise ConfigError("FuseBox scenes are numbered 1..30.", got=repr(text), fix="e.g. 1-30.")
    return tuple(out)


def train(cfg: TrainConfig, pairs: Sequence[TrainingPair]) -> TrainResult:
    """Fit a fresh backbone on ``pairs`` (CPU or the first CUDA device)."""
    if not pairs:
        raise InputError("No training pairs.", fix="check PANTAILOR_DATA.")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build(cfg.name, cfg.n_bands).to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, int(cfg.decay_at * cfg.steps) or 1, gamma=0.2)
    res = TrainResult(model=model)
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        ms, lms, pan, gt = (t.to(dev) for t in sample_batch(pairs, rng, cfg.batch, cfg.patch))
        loss = torch.nn.functional.l1_loss(model(ms, lms, pan), gt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        res.losses.append(loss.item())
        if step % 100 == 0:
            log.info("step %d/%d loss %.5f", step, cfg.steps, res.losses[-1])
    res.seconds = time.perf_counter() - t0
    res.steps = cfg.steps
    model.eval().requires_grad_(False)
    res.model = model.cpu()
    return res


def reduced_resolution_scores(
    model: Backbone, pairs: Sequence[TrainingPair]
) -> dict[str, dict[str, float]]:
    """Mean SAM (deg) and ERGAS of ``model`` and of its ``lms`` (the EXP baseline) on ``pairs``."""
    out: dict[str, list[tuple[float, float]]] = {"model": [], "lms": []}
    for p in pairs:
        with torch.no_grad():
            t = [torch.from_numpy(a)[None] for a in (p.ms, p.lms, p.pan[None])]
            fused = model(*t)[0].double().numpy()
        gt = p.gt.astype(np.float64)
        ratio = p.gt.shape[-1] // p.ms.shape[-1]
        for key, img in (("model", fused), ("lms", p.lms.astype(np.float64))):
            out[key].append((quality.sam(img, gt), quality.ergas(img, gt, ratio)))
    return {
        k: {"sam": float(np.mean([s for s, _ in v])), "ergas": float(np.mean([e for _, e in v]))}
        for k, v in out.items()
    }


def train_and_save(cfg: TrainConfig, out: str | Path, root: Path | None = None) -> dict[str, Any]:
    """Load the permissive pairs, train, score on the held-out scenes, save; return a summary.

    The summary (also stored in the checkpoint's ``meta``) holds the recipe, the training time
    in seconds, the number of training/validation scenes and the validation SAM/ERGAS of the
    model and of its ``lms`` input.
    """
    from .backbones import checksum, save_backbone

    t0 = time.perf_counter()
    train_pairs, val_pairs = load_pairs(cfg, root)
    prep = time.perf_counter() - t0
    res = train(cfg, train_pairs)
    scores = reduced_resolution_scores(res.model, val_pairs)
    summary: dict[str, Any] = {
        "name": cfg.name,
        "n_bands": cfg.n_bands,
        "ratio": cfg.ratio,
        "bands": ",".join(BAND_SETS[cfg.n_bands]),
        "steps": cfg.steps,
        "batch": cfg.batch,
        "patch": cfg.patch,
        "lr": cfg.lr,
        "seed": cfg.seed,
        "threads": torch.get_num_threads(),
        "prepare_seconds": round(prep, 2),
        "train_seconds": round(res.seconds, 2),
        "train_scenes": len(train_pairs),
        "val_scenes": [p.name for p in val_pairs],
        "final_loss": float(np.mean(res.losses[-50:])),
        "val": scores,
    }
    meta = {k: str(v) for k, v in summary.items()}
    save_backbone(res.model, out, meta)
    summary["checksum"] = checksum(res.model)
    summary["path"] = str(out)
    return summary


__all__ = [
    "BAND_SETS",
    "L7_BANDS",
    "TrainConfig",
    "TrainResult",
    "TrainingPair",
    "landsat_bands",
    "load_pairs",
    "parse_scenes",
    "reduced_resolution_scores",
    "sample_batch",
    "train",
    "train_and_save",
    "wald_pair",
]
