"""Test-time augmentation: the network applied under the symmetries of the square, averaged.

A convolutional network trained on one sensor is not exactly equivariant to flips and 90°
rotations. Applying it to the flipped / rotated scene, transforming each output back and
averaging is a classic test-time lever (no training, ``n`` forwards instead of one). The three
inputs ``ms``, ``lms`` and ``pan`` are transformed **together** (the same element of the group),
so the PAN/MS geometry is kept: a flip of the PAN grid maps whole ``ratio x ratio`` blocks onto
whole blocks, so the MS grid is flipped with it.

Modes (:data:`MODES`): ``"none"`` (one forward), ``"flips"`` (identity, horizontal, vertical and
both flips: 4 forwards) and ``"d4"`` (the 8 elements of the dihedral group: the flips with and
without a transpose; 8 forwards).

Element ``k`` (0..7) of the group acts as: transpose the last two axes if ``k & 4``, then flip the
last axis if ``k & 1`` and the second-to-last if ``k & 2``. Its inverse undoes the flips, then the
transpose. Outputs are summed pairwise in the fixed order of :func:`elements` (``((y0 + y1) + (y2 + y3))
+ ...``, at most ``log2 n + 1`` partial sums held) and divided by their number (a power of two),
so the result is deterministic, and ``n`` equal outputs average to themselves exactly.

Tiling stays exact: a tile's output pixels lie at least the receptive field away from every
window edge that is not an image edge, and a flip or transpose of the window keeps that distance,
so each transformed tile forward equals the same crop of the transformed whole-image forward.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .backbones import Backbone
from .errors import ConfigError

MODES = ("none", "flips", "d4")
"""Test-time augmentation modes: 1, 4 and 8 forwards."""

Forward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``forward(ms, lms, pan) -> (N, B, H, W)``."""


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`, else a :class:`ConfigError` naming the fix."""
    if mode not in MODES:
        raise ConfigError(
            "Unknown test-time augmentation mode (tta).",
            expected=MODES,
            got=mode,
            fix='use tta="none" (default), "flips" (4 forwards) or "d4" (8 forwards).',
        )
    return mode


def elements(mode: str) -> tuple[int, ...]:
    """The group elements a mode averages over (``0`` is the identity)."""
    check_mode(mode)
    return {"none": (0,), "flips": (0, 1, 2, 3), "d4": tuple(range(8))}[mode]


def cost(mode: str) -> int:
    """Forwards per window under ``mode`` (the inference cost factor)."""
    return len(elements(mode))


def transform(x: torch.Tensor, k: int) -> torch.Tensor:
    """Element ``k`` of the dihedral group applied to the last two axes of ``x``."""
    if k & 4:
        x = x.transpose(-2, -1)
    dims = [d for bit, d in ((1, -1), (2, -2)) if k & bit]
    return x.flip(dims) if dims else x


def inverse(x: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of :func:`transform` ``k``: ``inverse(transform(x, k), k) == x``."""
    dims = [d for bit, d in ((1, -1), (2, -2)) if k & bit]
    if dims:
        x = x.flip(dims)
    return x.transpose(-2, -1) if k & 4 else x


def tta_forward(
    forward: Forward, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor, mode: str
) -> torch.Tensor:
    """Mean over the elements of ``mode`` of ``inverse(forward(T ms, T lms, T pan))``.

    ``mode="none"`` is exactly ``forward(ms, lms, pan)``. Memory format (e.g. channels_last) of
    the inputs is kept for the transformed ones.
    """
    ks = elements(mode)
    if ks == (0,):
        return forward(ms, lms, pan)
    fmt = torch.channels_last if ms.is_contiguous(memory_format=torch.channels_last) else None
    stack: list[tuple[int, torch.Tensor]] = []  # pairwise sum: (level, partial sum)
    for k in ks:
        t = [transform(x, k) for x in (ms, lms, pan)]
        if k and fmt is not None:
            t = [x.contiguous(memory_format=fmt) for x in t]
        elif k:
            t = [x.contiguous() for x in t]
        stack.append((0, inverse(forward(*t), k)))
        while len(stack) > 1 and stack[-1][0] == stack[-2][0]:
            (level, b), (_, a) = stack.pop(), stack.pop()
            stack.append((level + 1, a + b))
    (_, total), *rest = stack  # one partial sum: the counts are powers of two
    assert not rest
    return (total / len(ks)).contiguous()


class TTABackbone(Backbone):
    """A backbone whose ``forward`` averages over :func:`tta_forward`; ``extract`` / ``map`` as
    the wrapped one's (a tailor fits on them unchanged).

    A :class:`pipeline.tailor.TailoredModel` built on it applies the same mode to its own forward
    (extractor, tailor and mapper under each transform).

    Parameters
    ----------
    inner
        The network (not copied).
    mode
        One of :data:`MODES`.
    """

    def __init__(self, inner: Backbone, mode: str) -> None:
        super().__init__(inner.n_bands)
        self.tta = check_mode(mode)
        self.inner = inner
        self.name = inner.name
        self.feat_channels = inner.feat_channels
        self.upsampler = inner.upsampler
        self.ratio = inner.ratio
        self.weights_file = inner.weights_file

    @property
    def receptive_field(self) -> int:
        """The wrapped network's (a transform does not widen it)."""
        return int(self.inner.receptive_field)

    def extract(self, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        """The wrapped network's features (no augmentation)."""
        out: torch.Tensor = self.inner.extract(ms, lms, pan)
        return out

    def map(
        self, feats: torch.Tensor, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor
    ) -> torch.Tensor:
        """The wrapped network's mapper (no augmentation)."""
        out: torch.Tensor = self.inner.map(feats, ms, lms, pan)
        return out

    def forward(self, ms: torch.Tensor, lms: torch.Tensor, pan: torch.Tensor) -> torch.Tensor:
        """The wrapped network under :func:`tta_forward` with this mode."""
        self.check_inputs(ms, lms, pan)
        return tta_forward(self.inner, ms, lms, pan, self.tta)


def with_tta(backbone: Backbone, mode: str) -> Backbone:
    """``backbone`` itself for ``mode="none"``, else a :class:`TTABackbone` around it."""
    return backbone if check_mode(mode) == "none" else TTABackbone(backbone, mode)


__all__ = [
    "MODES",
    "TTABackbone",
    "check_mode",
    "cost",
    "elements",
    "inverse",
    "transform",
    "tta_forward",
    "with_tta",
]
