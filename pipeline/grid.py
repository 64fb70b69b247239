"""Tile identities: aligned PAN/MS windows, halos and scene edges. Pure, no I/O.

A :class:`TileKey` names one PAN-resolution output tile. Because the PAN grid is exactly
``ratio`` times the MS grid and the tile size is a multiple of ``ratio``, PAN tile ``T`` covers
exactly MS tile ``T / ratio``: one task reads one aligned window of each and writes exactly one
output chunk. Halos are counted in MS pixels (so the PAN halo is ``ratio`` times that) and are
clipped at the scene edges, where the model pads (reflect or zero, as the network does) exactly as
it does on the whole image, so tiled output equals whole-image output.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open pixel rectangle ``[y0, y1) x [x0, x1)``."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def shape_yx(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return (self.y1 - self.y0, self.x1 - self.x0)

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(y slice, x slice)`` for NumPy/Zarr indexing of the last two axes."""
        return (slice(self.y0, self.y1), slice(self.x0, self.x1))

    def scaled(self, factor: int) -> Window:
        """This window on a grid ``factor`` times finer."""
        return Window(self.y0 * factor, self.y1 * factor, self.x0 * factor, self.x1 * factor)

    def relative_to(self, outer: Window) -> Window:
        """This window in the coordinates of ``outer`` (which must contain it)."""
        return Window(
            self.y0 - outer.y0, self.y1 - outer.y0, self.x0 - outer.x0, self.x1 - outer.x0
        )


@dataclass(frozen=True, slots=True, order=True)
class TileKey:
    """Identity of one output tile: its row and column in the tile grid."""

    row: int
    col: int

    def __str__(self) -> str:
        return f"{self.row}-{self.col}"

    @classmethod
    def parse(cls, text: str) -> TileKey:
        """Inverse of ``str(key)``."""
        r, c = text.split("-")
        return cls(int(r), int(c))


@dataclass(frozen=True, slots=True)
class TileRead:
    """What one tile task reads and keeps.

    Attributes
    ----------
    key
        The tile.
    ms
        MS window to read (tile plus halo, clipped to the scene), MS pixels.
    pan
        PAN window to read (``ms`` scaled by the ratio), PAN pixels.
    out
        The tile's own output window in scene PAN pixels.
    crop
        ``out`` relative to ``pan``: where the tile's output lies in the model output.
    """

    key: TileKey
    ms: Window
    pan: Window
    out: Window
    crop: Window


#: The largest tile edge (PAN pixels): a 16384-pixel tile of 8 float32 bands is 8 GiB.
MAX_TILE = 16384


@dataclass(frozen=True, slots=True)
class TileGrid:
    """Regular tiling of a scene whose PAN grid is ``ratio`` times its MS grid.

    Parameters
    ----------
    pan_shape_yx
        ``(H, W)`` of the PAN image; both must be multiples of ``ratio``.
    ratio
        PAN/MS pixel-size ratio.
    tile
        Tile edge in PAN pixels; a multiple of ``ratio``. Edge tiles may be smaller.
    """

    pan_shape_yx: tuple[int, int]
    ratio: int
    tile: int

    def __post_init__(self) -> None:
        h, w = self.pan_shape_yx
        if self.ratio < 1:
            raise ConfigError("The ratio must be a positive integer.", got=self.ratio)
        if self.tile <= 0 or self.tile % self.ratio or self.tile > MAX_TILE:
            near = (self.tile if 0 < self.tile <= MAX_TILE else 512) // self.ratio * self.ratio
            raise ConfigError(
                "The tile size must be a positive multiple of the PAN/MS ratio "
                f"up to {MAX_TILE} (one tile is one chunk held in memory).",
                expected=f"a multiple of {self.ratio} in [{self.ratio}, {MAX_TILE}]",
                got=self.tile,
                fix=f"use e.g. --tile {max(self.ratio, near)}.",
            )
        if h <= 0 or w <= 0 or h % self.ratio or w % self.ratio:
            raise ConfigError(
                "The PAN shape must be a positive multiple of the ratio in both axes.",
                expected=f"multiples of {self.ratio}",
                got=self.pan_shape_yx,
            )

    @property
    def ms_shape_yx(self) -> tuple[int, int]:
        """``(h, w)`` of the MS grid."""
        return (self.pan_shape_yx[0] // self.ratio, self.pan_shape_yx[1] // self.ratio)

    @property
    def ms_tile(self) -> int:
        """Tile edge in MS pixels."""
        return self.tile // self.ratio

    @property
    def shape(self) -> tuple[int, int]:
        """Number of tile rows and columns."""
        h, w = self.pan_shape_yx
        return (math.ceil(h / self.tile), math.ceil(w / self.tile))

    def __len__(self) -> int:
        rows, cols = self.shape
        return rows * cols

    def __iter__(self) -> Iterator[TileKey]:
        """Iterate over all tile keys in row-major order (same as :meth:`keys`)."""
        return self.keys()

    def keys(self) -> Iterator[TileKey]:
        """All tile keys in row-major order."""
        rows, cols = self.shape
        for r in range(rows):
            for c in range(cols):
                yield TileKey(r, c)

    def _check(self, key: TileKey) -> None:
        rows, cols = self.shape
        if not (0 <= key.row < rows and 0 <= key.col < cols):
            raise ConfigError("Tile key outside the grid.", expected=f"< {self.shape}", got=key)

    def ms_window(self, key: TileKey) -> Window:
        """The tile's own MS window (no halo)."""
        self._check(key)
        h, w = self.ms_shape_yx
        t = self.ms_tile
        return Window(
            key.row * t, min((key.row + 1) * t, h), key.col * t, min((key.col + 1) * t, w)
        )

    def pan_window(self, key: TileKey) -> Window:
        """The tile's own PAN window (no halo) = its output window."""
        return self.ms_window(key).scaled(self.ratio)

    def read(self, key: TileKey, halo_ms: int) -> TileRead:
        """Windows a task reads for ``key`` with ``halo_ms`` MS pixels of context each side."""
        if halo_ms < 0:
            raise ConfigError("The halo must be >= 0.", got=halo_ms)
        own = self.ms_window(key)
        h, w = self.ms_shape_yx
        ms = Window(
            max(own.y0 - halo_ms, 0),
            min(own.y1 + halo_ms, h),
            max(own.x0 - halo_ms, 0),
            min(own.x1 + halo_ms, w),
        )
        pan = ms.scaled(self.ratio)
        out = own.scaled(self.ratio)
        return TileRead(key=key, ms=ms, pan=pan, out=out, crop=out.relative_to(pan))


def halo_ms_for(receptive_field_pan: int, ratio: int, upsampler_support_ms: int = 0) -> int:
    """MS-pixel halo covering a model's PAN receptive field plus the LMS upsampler's support.

    Parameters
    ----------
    receptive_field_pan
        How many PAN pixels beyond a pixel the model's output at that pixel depends on.
    ratio
        PAN/MS ratio.
    upsampler_support_ms
        How many MS pixels beyond a pixel the MS->PAN upsampler's output depends on.
    """
    return math.ceil(receptive_field_pan / ratio) + upsampler_support_ms


__all__ = ["TileGrid", "TileKey", "TileRead", "Window", "halo_ms_for"]
