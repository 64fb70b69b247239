"""FusionNet (Deng et al., IEEE TGRS 2021): residual learning on ``PAN - LMS`` differences.

``F = blocks(relu(head(pan.repeat(B) - lms)))`` with four residual blocks of 3x3 convolutions
(32 channels, zero "same" padding, no activation after the residual additions, none before the
last conv); ``out = lms + tail(F)``. Upsampler: the 23-tap polynomial interpolator.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .base import Backbone, conv_chain_radius, rename_keys
from .blocks import ResBlock, chain_of, dlpan_resblock_mapping

N_BLOCKS = 4
CHANNELS = 32


class FusionNet(Backbone):
    """FusionNet split at the last convolution. Inputs ``DN / dn_max``; ms is unused.

    Parameters
    ----------
    n_bands
        Number of MS bands ``B``.
    """

    name = "fusionnet"
    feat_channels = CHANNELS
    upsampler = "poly23"

    def __init__(self, n_bands: int) -> None:
        super().__init__(n_bands)
        self.head = nn.Conv2d(n_bands, CHANNELS, 3, padding=1)
        self.blocks = nn.Sequential(*(ResBlock(CHANNELS) for _ in range(N_BLOCKS)))
        self.tail = nn.Conv2d(CHANNELS, n_bands, 3, padding=1)

    @property
    def receptive_field(self) -> int:
        """Head + 2 convs per block + tail, 1 PAN pixel each: 10."""
        return conv_chain_radius([self.head, *chain_of(self.blocks), self.tail])

    def extract(self, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        """``(N, 32, H, W)`` features of ``pan - lms``."""
        diff = pan.expand(-1, self.n_bands, -1, -1) - lms
        out: torch.Tensor = self.blocks(torch.relu(self.head(diff)))
        return out

    def map(
        self, feats: torch.Tensor, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor
    ) -> torch.Tensor:
        """``lms + tail(feats)``, ``(N, B, H, W)``."""
        out: torch.Tensor = lms + self.tail(feats)
        return out

    def dlpan_state(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """DLPan keys ``conv1``/``res{i}``/``conv3`` -> ``head``/``blocks``/``tail``."""
        mapping, dups = dlpan_resblock_mapping(N_BLOCKS)
        mapping = {"conv1.": "head.", "conv3.": "tail.", **mapping}
        return rename_keys(state, mapping, duplicates=dups)


__all__ = ["FusionNet"]
