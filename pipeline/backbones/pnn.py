"""PNN (Masi et al., Remote Sensing 2016): three valid convolutions on ``cat(lms, pan)``.

9x9 (64 ch), 5x5 (32 ch), 5x5 (B ch), ReLU after the first two, no skip, no padding (the
published net shrinks its input by 8 pixels each side). Here the input is mirror-padded by 6
pixels before the extractor and the 32-channel features by 2 before the mapper's last conv, so
features and output have the input's size ``(H, W)`` and the receptive field stays 8.
Upsampler: the 23-tap polynomial interpolator.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Backbone, conv_chain_radius
from .upsample import pad_reflect


class PNN(Backbone):
    """PNN split before its last convolution. Inputs ``DN / dn_max``; ms is unused.

    Parameters
    ----------
    n_bands
        Number of MS bands ``B``.
    """

    name = "pnn"
    feat_channels = 32
    upsampler = "poly23"

    def __init__(self, n_bands: int) -> None:
        super().__init__(n_bands)
        self.conv1 = nn.Conv2d(n_bands + 1, 64, 9)
        self.conv2 = nn.Conv2d(64, 32, 5)
        self.conv3 = nn.Conv2d(32, n_bands, 5)

    @property
    def _pad_in(self) -> int:
        return conv_chain_radius([self.conv1, self.conv2])

    @property
    def receptive_field(self) -> int:
        """4 + 2 + 2 = 8 PAN pixels."""
        return conv_chain_radius([self.conv1, self.conv2, self.conv3])

    def extract(self, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        """``(N, 32, H, W)`` features of the mirror-padded ``cat(lms, pan)``."""
        x = pad_reflect(torch.cat([lms, pan], dim=1), self._pad_in)
        return torch.relu(self.conv2(torch.relu(self.conv1(x))))

    def map(
        self, feats: torch.Tensor, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor
    ) -> torch.Tensor:
        """``conv3`` of the mirror-padded features, ``(N, B, H, W)``."""
        out: torch.Tensor = self.conv3(pad_reflect(feats, self.receptive_field - self._pad_in))
        return out


__all__ = ["PNN"]
