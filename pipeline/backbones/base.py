"""The backbone contract: a pretrained network split into a feature extractor and a mapper.

``F = extract(ms, lms, pan)`` are the fused features at PAN resolution (``feat_channels``
channels); ``out = map(F, ms, lms, pan)`` maps them to the output bands, including the network's
``lms +`` skip where it has one. ``forward`` is ``map(extract(...))``. The feature tailor is
inserted between the two halves.

Inputs are normalised reflectance-like values, ``DN / sensor.dn_max`` (float32), and ``lms`` is
the MS upsampled to PAN size by :func:`pipeline.backbones.upsample` with the method named by the
backbone's ``upsampler`` attribute.

``receptive_field`` is derived from the layers (:func:`conv_chain_radius`): the number of PAN
pixels beyond an output pixel, in each direction, that its value depends on (an MS pixel counts
as ``ratio`` PAN pixels). The tiling halo is computed from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError


def conv_chain_radius(layers: Iterable[nn.Module]) -> int:
    """Sum of the one-sided spatial reach of a chain of stride-1 convolutions.

    Parameters
    ----------
    layers
        Modules in data-flow order; ``nn.Conv2d`` contribute ``dilation * (k - 1) // 2`` per
        axis (the larger axis is taken), everything else (activations, additions) contributes 0.
    """
    total = 0
    for m in layers:
        if isinstance(m, nn.Conv2d):
            if any(s != 1 for s in m.stride):
                raise ConfigError("conv_chain_radius handles stride-1 convs only.", got=m)
            ks = m.kernel_size
            dil = m.dilation
            total += max(d * (k - 1) // 2 for k, d in zip(ks, dil, strict=True))
    return total


class Backbone(nn.Module):
    """Base class of the pansharpening backbones.

    Attributes
    ----------
    name
        Registry name (``"fusionnet"``, ``"pnn"``, ``"pannet"``, ``"dicnn"``, ...).
    n_bands
        Number of MS bands ``B``.
    feat_channels
        ``C_feat``, channels of the features at the extractor/mapper interface.
    receptive_field
        PAN pixels of context each side an output pixel depends on.
    upsampler
        How ``lms`` is made from ``ms``: ``"poly23"`` or ``"bicubic"``.
    ratio
        The PAN/MS ratio the network is built for (only PanNet's transposed conv fixes it).
    """

    name: str = "backbone"
    feat_channels: int = 0
    upsampler: str = "poly23"

    def __init__(self, n_bands: int) -> None:
        super().__init__()
        if n_bands < 1:
            raise ConfigError("A backbone needs at least one band.", got=n_bands)
        self.n_bands = n_bands
        self.ratio: int | None = None
        self.weights_file: str | None = None  # the checkpoint load() read, for reports

    @property
    def receptive_field(self) -> int:
        """PAN pixels of context each side (derived from the layers by the subclass)."""
        raise NotImplementedError

    def extract(self, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        """Fused features ``(N, C_feat, H, W)`` from ms ``(N,B,h,w)``, lms ``(N,B,H,W)``, pan ``(N,1,H,W)``."""
        raise NotImplementedError

    def map(
        self, feats: torch.Tensor, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor
    ) -> torch.Tensor:
        """Output bands ``(N, B, H, W)`` from the features (includes the ``lms`` skip)."""
        raise NotImplementedError

    def forward(self, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        """Pansharpened ``(N, B, H, W)``; ``map(extract(ms, lms, pan), ms, lms, pan)``."""
        self.check_inputs(ms, lms, pan)
        return self.map(self.extract(ms, lms, pan), ms, lms, pan)

    def check_inputs(self, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor) -> None:
        """Raise :class:`ConfigError` on inconsistent input shapes."""
        if lms.dim() != 4 or pan.dim() != 4 or ms.dim() != 4:
            raise ConfigError(
                f"{self.name}: inputs must be (N, C, H, W) tensors.",
                got=f"ms {tuple(ms.shape)}, lms {tuple(lms.shape)}, pan {tuple(pan.shape)}",
            )
        if lms.shape[1] != self.n_bands or ms.shape[1] != self.n_bands or pan.shape[1] != 1:
            raise ConfigError(
                f"{self.name}: band count does not match the network.",
                expected=f"ms/lms with {self.n_bands} bands and a 1-band pan",
                got=f"ms {ms.shape[1]}, lms {lms.shape[1]}, pan {pan.shape[1]}",
                fix="load a backbone built for this sensor's band count.",
            )
        if lms.shape[-2:] != pan.shape[-2:]:
            raise ConfigError(
                f"{self.name}: lms and pan must have the same size.",
                got=f"lms {tuple(lms.shape[-2:])}, pan {tuple(pan.shape[-2:])}",
            )

    def dlpan_state(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map a DLPan-Toolbox state dict to this module's keys (identity by default)."""
        return dict(state)


def rename_keys(
    state: Mapping[str, torch.Tensor], mapping: Mapping[str, str], *, duplicates: str = ""
) -> dict[str, torch.Tensor]:
    """Rename checkpoint keys by prefix; keys under ``duplicates`` must repeat kept tensors.

    Parameters
    ----------
    state
        The checkpoint's state dict.
    mapping
        ``{old_prefix: new_prefix}``; a key matching no prefix is kept as is.
    duplicates
        A prefix whose entries are aliases of other entries (DLPan's ``backbone.i`` are the
        same modules as ``res{i+1}``), given as ``"backbone.{i}.=res{j}."`` rules separated by
        ``;``. They are dropped after checking that they equal their originals.
    """
    rules = dict(r.split("=") for r in duplicates.split(";") if r)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        alias = next((p for p in rules if key.startswith(p)), None)
        if alias is not None:
            orig = rules[alias] + key[len(alias) :]
            if orig not in state or not torch.equal(state[orig], value):
                raise CheckpointError(
                    "A duplicated checkpoint entry differs from its original.",
                    expected=f"{key} == {orig}",
                    got="different or missing tensors",
                    fix="this is not a DLPan-Toolbox checkpoint of this network.",
                )
            continue
        new = key
        for old_p, new_p in mapping.items():
            if key.startswith(old_p):
                new = new_p + key[len(old_p) :]
                break
        out[new] = value
    return out


__all__ = ["Backbone", "conv_chain_radius", "rename_keys"]
