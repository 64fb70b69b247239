"""The feature tailor: a small residual module between a frozen backbone's extractor and mapper.

``F' = F + T(F)`` where ``F = backbone.extract(ms, lms, pan)`` are the backbone's fused features
``(N, C, H, W)`` and ``T`` is tiny (``conv k x k C -> C_t``, activation, ``conv k x k C_t -> C``).
The last layer of ``T`` is zero-initialised, so an unfitted :class:`TailoredModel` reproduces the
pretrained network exactly. Fitting (``pipeline.fit``) trains only ``T``.

A fitted tailor is saved to a small file together with the checksum of the backbone it was fitted
for (:func:`pipeline.backbones.checksum`); :func:`load_tailor` refuses it on any other backbone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .backbones import Backbone, checksum
from .backbones.base import conv_chain_radius
from .errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

FORMAT = "pantailor-tailor/1"
KERNELS = (1, 3)


@dataclass(frozen=True, kw_only=True)
class TailorSpec:
    """Architecture of a :class:`FeatureTailor`.

    Attributes
    ----------
    channels
        ``C``, the backbone's ``feat_channels``.
    width
        ``C_t``, hidden channels of the tailor (``1 <= C_t <= C``).
    kernel
        Spatial kernel of both convolutions: 3 (default) or 1 (pointwise tailor).
    """

    channels: int
    width: int = 16
    kernel: int = 3

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise ConfigError("The tailor needs at least one feature channel.", got=self.channels)
        if not 1 <= self.width <= self.channels:
            raise ConfigError(
                "The tailor width must lie in [1, feature channels].",
                expected=f"1..{self.channels}",
                got=self.width,
                fix=f"use e.g. width={min(16, self.channels)}.",
            )
        if self.kernel not in KERNELS:
            raise ConfigError("The tailor kernel must be 1 or 3.", got=self.kernel)


class FeatureTailor(nn.Module):
    """Residual feature tailor ``F' = F + conv_b(leaky_relu(conv_a(F)))``; ``conv_b`` zero-init.

    Parameters
    ----------
    spec
        Channels, width and kernel size.

    Notes
    -----
    Shapes ``(N, C, H, W) -> (N, C, H, W)``. Both convolutions zero-pad ("same"), so the tailor
    adds ``receptive_field`` pixels of context to the backbone's.
    """

    def __init__(self, spec: TailorSpec) -> None:
        super().__init__()
        self.spec = spec
        pad = spec.kernel // 2
        self.conv_a = nn.Conv2d(spec.channels, spec.width, spec.kernel, padding=pad)
        self.conv_b = nn.Conv2d(spec.width, spec.channels, spec.kernel, padding=pad)
        with torch.no_grad():  # zero last layer: an unfitted tailor is the identity
            self.conv_b.weight.zero_()
            if self.conv_b.bias is not None:
                self.conv_b.bias.zero_()

    @property
    def receptive_field(self) -> int:
        """Pixels of context each side that ``T`` adds (2 for two 3x3 convs, 0 for 1x1)."""
        return conv_chain_radius([self.conv_a, self.conv_b])

    def delta(self, feats: torch.Tensor) -> torch.Tensor:
        """The residual ``T(F)``, ``(N, C, H, W)``."""
        out: torch.Tensor = self.conv_b(nn.functional.leaky_relu(self.conv_a(feats), 0.1))
        return out

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Tailored features ``F + T(F)``, ``(N, C, H, W)``."""
        return feats + self.delta(feats)

    @classmethod
    def from_state(cls, state: Mapping[str, torch.Tensor]) -> FeatureTailor:
        """Rebuild a tailor from its state dict (architecture read from the weight shapes)."""
        try:
            w = state["conv_a.weight"]
            tailor = cls(TailorSpec(channels=w.shape[1], width=w.shape[0], kernel=w.shape[-1]))
            tailor.load_state_dict(dict(state), strict=True)
        except (KeyError, RuntimeError, ConfigError) as exc:
            raise CheckpointError(
                "The tailor state does not describe a FeatureTailor.",
                expected="keys conv_a.weight/bias, conv_b.weight/bias",
                got=f"{sorted(state)} ({exc})",
                fix="save tailors with pipeline.tailor.save_tailor.",
            ) from exc
        return tailor


def n_params(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


class TailoredModel(Backbone):
    """A frozen backbone with a feature tailor between its two halves.

    Same interface as the backbone (``forward(ms, lms, pan)``, ``extract``, ``map``,
    ``receptive_field``, ``upsampler``), so the engine uses it as a drop-in.

    Parameters
    ----------
    backbone
        The pretrained network; its parameters are frozen here.
    tailor
        The tailor; a fresh zero-initialised one of width 16 when ``None``.
    """

    def __init__(self, backbone: Backbone, tailor: FeatureTailor | None = None) -> None:
        super().__init__(backbone.n_bands)
        if tailor is None:
            tailor = FeatureTailor(TailorSpec(channels=backbone.feat_channels))
        if tailor.spec.channels != backbone.feat_channels:
            raise ConfigError(
                "The tailor's channels do not match the backbone's features.",
                expected=backbone.feat_channels,
                got=tailor.spec.channels,
            )
        self.name = backbone.name
        self.feat_channels = backbone.feat_channels
        self.upsampler = backbone.upsampler
        self.ratio = backbone.ratio
        self.backbone = backbone.requires_grad_(False)
        self.tailor = tailor

    @property
    def receptive_field(self) -> int:
        """The backbone's receptive field plus the tailor's (PAN pixels each side)."""
        return int(self.backbone.receptive_field) + self.tailor.receptive_field

    def forward(self, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        """``map(extract(...))``; under the backbone's test-time augmentation when it has one
        (:class:`pipeline.tta.TTABackbone`: the whole tailored network per transform)."""
        mode = getattr(self.backbone, "tta", "none")
        if mode == "none":
            return super().forward(ms, lms, pan)
        from .tta import tta_forward

        self.check_inputs(ms, lms, pan)
        return tta_forward(super().forward, ms, lms, pan, mode)

    def extract(self, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        """Tailored features ``F + T(F)``, ``(N, C, H, W)``."""
        feats: torch.Tensor = self.tailor(self.backbone.extract(ms, lms, pan))
        return feats

    def map(
        self, feats: torch.Tensor, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor
    ) -> torch.Tensor:
        """The backbone's mapper, ``(N, B, H, W)``."""
        out: torch.Tensor = self.backbone.map(feats, ms, lms, pan)
        return out


def save_tailor(
    path: str | Path,
    state: Mapping[str, torch.Tensor],
    backbone_checksum: str,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Save a fitted tailor's state with the checksum of the backbone it belongs to.

    Parameters
    ----------
    path
        Target file (a few tens of kB).
    state
        ``FeatureTailor.state_dict()`` (e.g. ``FitResult.tailor_state``).
    backbone_checksum
        :func:`pipeline.backbones.checksum` of the backbone the tailor was fitted on.
    meta
        JSON-like metadata (sensor, scene, losses, seconds, ...).
    """
    tailor = FeatureTailor.from_state(state)  # validates the state
    obj = {
        "format": FORMAT,
        "backbone_checksum": backbone_checksum,
        "spec": asdict(tailor.spec),
        "meta": dict(meta or {}),
        "state_dict": {k: v.detach().to("cpu", torch.float32).clone() for k, v in state.items()},
    }
    target = Path(path)
    torch.save(obj, target)
    return target


def read_tailor_file(path: str | Path) -> dict[str, Any]:
    """Read a tailor file written by :func:`save_tailor` (``format``, ``backbone_checksum``, ...)."""
    p = Path(path)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(
            "Tailor file not found.", path=p, fix="fit one first (pantailor run)."
        ) from exc
    except Exception as exc:
        raise CheckpointError(
            "Tailor file is unreadable.", path=p, got=repr(exc), fix="fit the tailor again."
        ) from exc
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(
            "Not a pantailor tailor file.",
            path=p,
            expected=f"format {FORMAT!r}",
            got=obj.get("format") if isinstance(obj, dict) else type(obj).__name__,
            fix="save tailors with pipeline.tailor.save_tailor.",
        )
    return obj


def load_tailor(path: str | Path, backbone: Backbone) -> FeatureTailor:
    """Load a tailor saved by :func:`save_tailor`, refusing it for any other backbone.

    Raises
    ------
    CheckpointError
        If the file is missing or unreadable, or was fitted on a backbone whose checksum differs.
    """
    obj = read_tailor_file(path)
    want = checksum(backbone)
    if obj["backbone_checksum"] != want:
        raise CheckpointError(
            "This tailor was fitted on a different backbone (weights or architecture differ).",
            path=path,
            expected=f"backbone checksum {want[:16]}… ({backbone.name})",
            got=f"{str(obj['backbone_checksum'])[:16]}…",
            fix="re-fit the tailor on this scene with this backbone, or load the backbone it was "
            "fitted for.",
        )
    tailor = FeatureTailor.from_state(obj["state_dict"])
    log.info("loaded tailor %s (%d params) from %s", tailor.spec, n_params(tailor), path)
    return tailor


__all__ = [
    "FORMAT",
    "FeatureTailor",
    "TailorSpec",
    "TailoredModel",
    "load_tailor",
    "n_params",
    "read_tailor_file",
    "save_tailor",
]
