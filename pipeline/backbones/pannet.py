"""PanNet (Yang et al., ICCV 2017): residual net on high-passed inputs, ``out = lms + net``.

The high-pass of an image is the image minus its 5x5 box mean (mirror-extended borders), taken
on the MS grid for ``ms`` and on the PAN grid for ``pan``. The MS high-pass is brought to PAN
size by a learned transposed convolution (8x8, stride 4, padding 2, so the net is tied to ratio
4), concatenated with the PAN high-pass, then ``relu(conv 3x3, 32 ch)``, four residual blocks,
and the mapper's last 3x3 conv plus the ``lms`` skip. Upsampler: the 23-tap polynomial
interpolator (``lms`` is only used by the skip).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .base import Backbone, conv_chain_radius, rename_keys
from .blocks import ResBlock, chain_of, dlpan_resblock_mapping
from .upsample import pad_reflect

N_BLOCKS = 4
CHANNELS = 32
BOX = 5
RATIO = 4


def high_pass(x: torch.Tensor, size: int = BOX) -> torch.Tensor:
    """``x`` minus its ``size`` x ``size`` box mean (mirror borders); ``(N, C, H, W)``."""
    r = size // 2
    return x - F.avg_pool2d(pad_reflect(x, r), size, stride=1)


class PanNet(Backbone):
    """PanNet split at the last convolution. Inputs ``DN / dn_max``; needs ratio 4.

    Parameters
    ----------
    n_bands
        Number of MS bands ``B``.
    """

    name = "pannet"
    feat_channels = CHANNELS
    upsampler = "poly23"

    def __init__(self, n_bands: int) -> None:
        super().__init__(n_bands)
        self.ratio = RATIO
        self.deconv = nn.ConvTranspose2d(n_bands, n_bands, 8, stride=RATIO, padding=2)
        self.head = nn.Conv2d(n_bands + 1, CHANNELS, 3, padding=1)
        self.blocks = nn.Sequential(*(ResBlock(CHANNELS) for _ in range(N_BLOCKS)))
        self.tail = nn.Conv2d(CHANNELS, n_bands, 3, padding=1)

    def _chain_radius(self) -> int:
        return conv_chain_radius([self.head, *chain_of(self.blocks), self.tail])

    @property
    def ms_receptive_field(self) -> int:
        """MS pixels of ``ms`` context each side of the MS pixel under an output pixel.

        An output pixel at PAN ``q0`` sees transposed-conv outputs ``q0 ± R`` (``R`` the conv
        chain's radius); output ``q`` of a transposed conv (kernel K, stride s, padding p) reads
        inputs ``ceil((q + p - K + 1) / s) .. floor((q + p) / s)``; the box high-pass adds
        ``BOX // 2``. The worst case over the ``s`` positions of ``q0`` in its MS pixel is taken.
        """
        s, k, p = RATIO, int(self.deconv.kernel_size[0]), int(self.deconv.padding[0])
        r = self._chain_radius()
        left = -math.ceil((-r + p - k + 1) / s)  # q0 = s*m
        right = (s - 1 + r + p) // s  # q0 = s*m + s - 1
        return max(left, right) + BOX // 2

    @property
    def pan_receptive_field(self) -> int:
        """PAN pixels of ``pan`` context each side: conv chain plus box radius (12)."""
        return self._chain_radius() + BOX // 2

    @property
    def receptive_field(self) -> int:
        """max(PAN path, MS path in PAN pixels): 20 for the published net."""
        return max(self.pan_receptive_field, self.ms_receptive_field * RATIO)

    def extract(self, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        """``(N, 32, H, W)`` features of the high-passed MS (transposed-conv up) and PAN."""
        up = self.deconv(high_pass(ms))
        x = torch.relu(self.head(torch.cat([up, high_pass(pan)], dim=1)))
        out: torch.Tensor = self.blocks(x)
        return out

    def map(
        self, feats: torch.Tensor, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor
    ) -> torch.Tensor:
        """``lms + tail(feats)``, ``(N, B, H, W)``."""
        out: torch.Tensor = lms + self.tail(feats)
        return out

    def check_inputs(self, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor) -> None:
        """Also require ``pan`` to be exactly 4 times ``ms``."""
        super().check_inputs(ms, lms, pan)
        if tuple(pan.shape[-2:]) != (RATIO * ms.shape[-2], RATIO * ms.shape[-1]):
            from ..errors import ConfigError

            raise ConfigError(
                "PanNet needs pan exactly 4 times the size of ms.",
                got=f"ms {tuple(ms.shape[-2:])}, pan {tuple(pan.shape[-2:])}",
            )

    def dlpan_state(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """DLPan keys ``conv1``/``res{i}``/``conv3`` -> ``head``/``blocks``/``tail``."""
        mapping, dups = dlpan_resblock_mapping(N_BLOCKS)
        mapping = {"conv1.": "head.", "conv3.": "tail.", **mapping}
        return rename_keys(state, mapping, duplicates=dups)


__all__ = ["PanNet", "high_pass"]
