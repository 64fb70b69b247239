"""DiCNN1 (He et al., IEEE JSTARS 2019): detail injection, ``out = lms + net(cat(lms, pan))``.

Three 3x3 zero-padded convolutions (64 channels, ReLU after the first two); the mapper is the
last convolution plus the ``lms`` skip. Upsampler: the 23-tap polynomial interpolator.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Backbone, conv_chain_radius

CHANNELS = 64


class DiCNN(Backbone):
    """DiCNN1 split before its last convolution. Inputs ``DN / dn_max``; ms is unused.

    Parameters
    ----------
    n_bands
        Number of MS bands ``B``.
    """

    name = "dicnn"
    feat_channels = CHANNELS
    upsampler = "poly23"

    def __init__(self, n_bands: int) -> None:
        super().__init__(n_bands)
        self.conv1 = nn.Conv2d(n_bands + 1, CHANNELS, 3, padding=1)
        self.conv2 = nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1)
        self.conv3 = nn.Conv2d(CHANNELS, n_bands, 3, padding=1)

    @property
    def receptive_field(self) -> int:
        """Three 3x3 convs: 3 PAN pixels."""
        return conv_chain_radius([self.conv1, self.conv2, self.conv3])

    def extract(self, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        """``(N, 64, H, W)`` features of ``cat(lms, pan)``."""
        x = torch.relu(self.conv1(torch.cat([lms, pan], dim=1)))
        return torch.relu(self.conv2(x))

    def map(
        self, feats: torch.Tensor, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor
    ) -> torch.Tensor:
        """``lms + conv3(feats)``, ``(N, B, H, W)``."""
        out: torch.Tensor = lms + self.conv3(feats)
        return out


__all__ = ["DiCNN"]
