"""Cayley–Dickson hypercomplex numbers on arrays: the algebra behind Q2n.

A hypercomplex number with ``n = 2**k`` real components is a pair ``(a, b)`` of numbers with
``n/2`` components; reals are the case ``n = 1``. The Cayley–Dickson construction defines

* conjugate: ``(a, b)* = (a*, -b)`` (for reals ``a* = a``), i.e. the first component is kept and
  all others are negated;
* product: ``(a, b)(c, d) = (a c - d* b, d a + b c*)``;
* norm: ``|x|^2 = x x* = sum of the squared components``.

``n = 2`` gives the complex numbers, ``n = 4`` the quaternions and ``n = 8`` the octonions; the norm
is multiplicative up to ``n = 8`` (``|x y| = |x| |y|``). Arrays hold the components on axis 0,
shape ``(n, ...)``, and every operation is elementwise over the remaining axes.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError

FloatArray = NDArray[np.float64]


def _check_width(n: int) -> None:
    if n < 1 or n & (n - 1):
        raise ConfigError(
            "Hypercomplex numbers need a power-of-two number of components.",
            expected="1, 2, 4, 8, ...",
            got=n,
            fix="pad the components with zeros (see pad_components).",
        )


def conjugate(x: FloatArray) -> FloatArray:
    """Hypercomplex conjugate of ``x`` ``(n, ...)``: component 0 kept, the others negated."""
    out = np.array(x, dtype=np.float64, copy=True)
    out[1:] *= -1.0
    return out


def multiply(x: FloatArray, y: FloatArray) -> FloatArray:
    """Cayley–Dickson product ``x y`` of two ``(n, ...)`` arrays (broadcast over ``...``).

    Costs ``n**2`` elementwise multiplications (four half-size products per level).
    """
    n = x.shape[0]
    if y.shape[0] != n:
        raise ConfigError(
            "Both factors need the same number of components.", expected=n, got=y.shape[0]
        )
    _check_width(n)
    return _mul(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))


def _mul(x: FloatArray, y: FloatArray) -> FloatArray:
    n = x.shape[0]
    if n == 1:
        return x * y
    h = n // 2
    a, b, c, d = x[:h], x[h:], y[:h], y[h:]
    first = _mul(a, c) - _mul(conjugate(d), b)
    second = _mul(d, a) + _mul(b, conjugate(c))
    return np.concatenate([first, second], axis=0)


def norm(x: FloatArray) -> FloatArray:
    """Euclidean norm of each hypercomplex number in ``x`` ``(n, ...)`` -> ``(...)``."""
    return np.asarray(np.sqrt(np.sum(np.square(x), axis=0)), dtype=np.float64)


def padded_width(n: int) -> int:
    """Smallest power of two ``>= n``."""
    if n < 1:
        raise ConfigError("At least one component is required.", got=n)
    return 1 << (n - 1).bit_length()


def pad_components(x: FloatArray) -> FloatArray:
    """Append zero components to ``x`` ``(n, ...)`` up to the next power of two."""
    n = x.shape[0]
    extra = padded_width(n) - n
    if extra == 0:
        return np.asarray(x, dtype=np.float64)
    zeros = np.zeros((extra, *x.shape[1:]), dtype=np.float64)
    return np.concatenate([np.asarray(x, dtype=np.float64), zeros], axis=0)


__all__ = ["conjugate", "multiply", "norm", "pad_components", "padded_width"]
