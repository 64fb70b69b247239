"""Building blocks shared by several backbones (a residual block of two 3x3 convolutions)."""

from __future__ import annotations

import torch
from torch import nn


class ResBlock(nn.Module):
    """``x + conv_b(relu(conv_a(x)))`` with 3x3 zero-padded convolutions; no activation after.

    Shapes ``(N, C, H, W) -> (N, C, H, W)``.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_b = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual update of ``x``."""
        out: torch.Tensor = x + self.conv_b(torch.relu(self.conv_a(x)))
        return out

    def chain(self) -> list[nn.Module]:
        """The convolutions in data-flow order (for receptive-field computation)."""
        return [self.conv_a, self.conv_b]


def chain_of(blocks: nn.Sequential) -> list[nn.Module]:
    """The convolutions of a sequence of :class:`ResBlock` in data-flow order."""
    return [conv for b in blocks if isinstance(b, ResBlock) for conv in b.chain()]


def dlpan_resblock_mapping(n_blocks: int) -> tuple[dict[str, str], str]:
    """Key prefixes of DLPan's ``res{i}.conv20/conv21`` -> ``blocks.{i-1}.conv_a/conv_b``.

    Returns the rename mapping and the duplicate rules for DLPan's ``backbone.{i}`` aliases.
    """
    mapping: dict[str, str] = {}
    for i in range(n_blocks):
        mapping[f"res{i + 1}.conv20."] = f"blocks.{i}.conv_a."
        mapping[f"res{i + 1}.conv21."] = f"blocks.{i}.conv_b."
    dups = ";".join(f"backbone.{i}.=res{i + 1}." for i in range(n_blocks))
    return mapping, dups


__all__ = ["ResBlock", "chain_of", "dlpan_resblock_mapping"]
