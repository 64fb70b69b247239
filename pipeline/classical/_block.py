"""One window of a scene for the classical methods, with its LMS and PAN low-passes cached."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from ..grid import TileGrid, TileRead, Window
from ..quality.inputs import as_bands, as_plane, upsampled
from ..sensors import SensorSpec
from ._stats import FloatArray, _lms_of, _low_of

#: Reads one tile's windows: ``TileRead -> (MS (B, h', w'), PAN (r h', r w'))`` in DN.
Reader = Callable[[TileRead], tuple[Any, Any]]


def _check(
    ms: Any, pan: Any, spec: SensorSpec, *, keep_float32: bool = False
) -> tuple[FloatArray, FloatArray]:
    """MS ``(B, h, w)`` and PAN ``(r h, r w)`` as float64 (float32 inputs kept as they are with
    ``keep_float32``, for a fusion that only reads them into float32), sizes checked."""
    m = as_bands(ms, "ms", keep_float32=keep_float32)
    p = as_bands(pan, "pan", keep_float32=keep_float32)
    p = p[0] if p.shape[0] == 1 else as_plane(pan, "pan")  # (as_plane names the error)
    r = spec.ratio
    if p.shape != (r * m.shape[1], r * m.shape[2]):
        raise InputError(
            "PAN and MS sizes do not match the sensor ratio.",
            expected=f"PAN ({r * m.shape[1]}, {r * m.shape[2]}) for MS {tuple(m.shape)}",
            got=tuple(p.shape),
            fix=f"pass a PAN exactly {r} times the MS size (see pipeline.scene).",
        )
    return m, p


def _lms(m: FloatArray, lms: Any, spec: SensorSpec, upsampler: str) -> NDArray[np.floating[Any]]:
    if lms is None:
        return _lms_of(m, spec.ratio, upsampler)
    return upsampled(lms, m, spec.ratio, "lms")


class _Block:
    """One window of the scene (a tile plus halo, or the whole scene) and its derived images.

    ``own`` is the part this block stands for, in MS pixels relative to the window; ``origin``
    is the scene MS position of its top-left pixel. Derived images are computed once per block.
    """

    def __init__(
        self,
        m: FloatArray,
        p: FloatArray,
        spec: SensorSpec,
        upsampler: str,
        *,
        own: Window | None = None,
        origin: tuple[int, int] = (0, 0),
        lms: Any = None,
    ) -> None:
        self.m, self.p, self.spec, self.upsampler = m, p, spec, upsampler
        self.own = own if own is not None else Window(0, m.shape[1], 0, m.shape[2])
        self.origin = origin
        self._lms_given = lms
        self._up: NDArray[np.floating[Any]] | None = None
        self._low: dict[float, FloatArray] = {}
        self._lp: dict[float, NDArray[np.floating[Any]]] = {}

    @classmethod
    def read(
        cls, grid: TileGrid, key: Any, halo: int, reader: Reader, spec: SensorSpec, upsampler: str
    ) -> _Block:
        tr = grid.read(key, halo)
        ms, pan = reader(tr)
        m, p = _check(ms, pan, spec)
        own = grid.ms_window(key)
        return cls(m, p, spec, upsampler, own=own.relative_to(tr.ms), origin=(own.y0, own.x0))

    @property
    def fast(self) -> bool:
        """Whether the GLP methods may skip the LMS (it is computed here, not given)."""
        return self._lms_given is None

    @property
    def up(self) -> NDArray[np.floating[Any]]:
        """LMS of the window ``(B, H', W')``."""
        if self._up is None:
            self._up = _lms(self.m, self._lms_given, self.spec, self.upsampler)
        return self._up

    def low(self, gain: float) -> FloatArray:
        """The PAN MTF-filtered (``gain`` at Nyquist) and decimated to the MS grid ``(h', w')``."""
        self.lows((gain,))
        return self._low[gain]

    def lows(self, gains: Sequence[float], lp: bool = False) -> None:
        """Compute :meth:`low` (and :meth:`lp` if ``lp``) of every gain not cached, batched."""
        new = tuple(g for g in dict.fromkeys(gains) if g not in self._low)
        if new:
            for g, low in zip(new, _low_of(self.p, new, self.spec.ratio), strict=True):
                self._low[g] = low.astype(np.float64)
        todo = [g for g in dict.fromkeys(gains) if g not in self._lp] if lp else []
        if todo:
            lows = np.stack([self._low[g] for g in todo])
            for g, up in zip(todo, _lms_of(lows, self.spec.ratio, self.upsampler), strict=True):
                self._lp[g] = up

    def lp(self, gain: float) -> NDArray[np.floating[Any]]:
        """``P_LP``: :meth:`low` re-interpolated to the PAN grid ``(H', W')`` (as the LMS)."""
        self.lows((gain,), lp=True)
        return self._lp[gain]

    def own_ms(self, x: NDArray[Any]) -> NDArray[Any]:
        """``x``'s pixels (last two axes, MS grid) inside :attr:`own`."""
        return x[(..., *self.own.slices)]

    def own_pan(self, x: NDArray[Any]) -> NDArray[Any]:
        """``x``'s pixels (last two axes, PAN grid) inside :attr:`own`."""
        return x[(..., *self.own.scaled(self.spec.ratio).slices)]


BlockSource = Callable[[int], Iterable[_Block]]

R = TypeVar("R")

#: Threads of a fit's per-block work (:func:`per_block`). The fit runs alone on one worker while
#: the tile map waits for its coefficients, so a second thread takes the products of the next
#: block on an otherwise idle core; the blocks are read by the calling thread meanwhile.
FIT_THREADS = 2


def per_block(
    fn: Callable[[_Block], R], blocks: Iterable[_Block], threads: int = FIT_THREADS
) -> Iterator[R]:
    """``fn(b)`` of every block, in the blocks' order, computed on ``threads`` threads.

    The blocks are taken (read) by the calling thread, at most ``threads + 1`` ahead of the
    results; the caller merges the results in order, so the fit's float arithmetic does not
    depend on ``threads`` (``fn`` must only touch its own block). ``threads <= 1``: inline.
    """
    if threads <= 1:
        yield from map(fn, blocks)
        return
    import torch

    # torch's intra-op thread count is per thread (OpenMP): a new thread would use every core,
    # and a product split differently rounds differently. The pool keeps the caller's.
    same = torch.get_num_threads()
    with ThreadPoolExecutor(threads, initializer=torch.set_num_threads, initargs=(same,)) as pool:
        pending: deque[Future[R]] = deque()
        try:
            for b in blocks:
                pending.append(pool.submit(fn, b))
                if len(pending) > threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()


__all__ = ["FIT_THREADS", "BlockSource", "Reader", "per_block"]
