"""Inputs of the quality indices: NumPy, xarray, Dask or torch arrays as float64 ``(B, H, W)``."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, InputError

FloatArray = NDArray[np.float64]


def to_numpy(x: Any, *, keep_float32: bool = False) -> FloatArray:
    """Any array-like (NumPy, xarray, Dask, torch on any device) as a float64 NumPy array.

    ``keep_float32``: a float32 input stays float32 (no copy; for the torch engine, which reads
    it exactly into float64 block moments).
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor
        x = x.detach().cpu()
        x = x if keep_float32 and x.dtype.is_floating_point and x.itemsize == 4 else x.double()
        x = x.numpy()
    elif hasattr(x, "values") and hasattr(x, "dims"):  # xarray.DataArray
        x = x.values
    if hasattr(x, "compute") and not isinstance(x, np.ndarray):  # dask.array
        x = x.compute()
    if keep_float32 and np.asarray(x).dtype == np.float32:
        return np.asarray(x)  # type: ignore[return-value]
    return np.asarray(x, dtype=np.float64)


def as_bands(x: Any, name: str, *, keep_float32: bool = False) -> FloatArray:
    """``x`` as ``(B, H, W)`` float64; ``(H, W)`` becomes one band, ``(1, B, H, W)`` is squeezed.

    ``keep_float32``: float32 input stays float32 (:func:`to_numpy`).
    """
    a = to_numpy(x, keep_float32=keep_float32)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise InputError(
            f"{name} must be an image stack.",
            expected="(B, H, W), (H, W) or (1, B, H, W)",
            got=tuple(a.shape),
            fix="pass band-first arrays.",
        )
    return a


def as_plane(x: Any, name: str) -> FloatArray:
    """``x`` as one ``(H, W)`` float64 plane (``(1, H, W)`` and ``(1, 1, H, W)`` accepted)."""
    a = as_bands(x, name)
    if a.shape[0] != 1:
        raise InputError(
            f"{name} must have one band.", expected="(H, W)", got=tuple(a.shape), fix="pass PAN."
        )
    return np.asarray(a[0])


def upsampled(x: Any, ms: FloatArray, ratio: int, name: str) -> FloatArray:
    """A given upsampled MS ``x`` as ``(B, H, W)``, checked to be ``ms`` ``(B, h, w)`` on the
    ``ratio``-times finer grid."""
    up = as_bands(x, name)
    want = (ms.shape[0], ratio * ms.shape[1], ratio * ms.shape[2])
    if up.shape != want:
        raise InputError(f"{name} has the wrong shape.", expected=want, got=tuple(up.shape))
    return up


def same_shape(a: FloatArray, b: FloatArray, names: tuple[str, str]) -> None:
    """Raise :class:`InputError` unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise InputError(
            f"{names[0]} and {names[1]} must have the same shape.",
            expected=tuple(b.shape),
            got=tuple(a.shape),
            fix="compare images on the same grid and band set.",
        )


def cut_edges(x: FloatArray, edge: int) -> FloatArray:
    """Drop ``edge`` pixels on every side of the last two axes (``edge = 0``: unchanged)."""
    if edge < 0:
        raise ConfigError("The edge cut must be >= 0.", got=edge, fix="use e.g. 0 or 21.")
    if edge == 0:
        return x
    if 2 * edge >= min(x.shape[-2:]):
        raise ConfigError(
            "The edge cut leaves no pixels.",
            expected=f"edge < {min(x.shape[-2:]) // 2}",
            got=edge,
            fix="use a smaller edge cut.",
        )
    return x[..., edge:-edge, edge:-edge]


__all__ = ["as_bands", "as_plane", "cut_edges", "same_shape", "to_numpy"]
