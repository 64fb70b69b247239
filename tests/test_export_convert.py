"""The export's conversion to DN (:func:`pipeline.overviews.to_dn`), chunk by chunk."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import overviews


def _block() -> np.ndarray:
    """Normalised values around every edge case: NaN, below 0, above 1, exact half DN."""
    rng = np.random.default_rng(3)
    b = rng.uniform(-0.2, 1.3, (3, 37, 41)).astype(np.float32)
    b[0, 0, :5] = np.nan
    b[2, -1, -3:] = np.nan
    b[1, 4, :8] = (np.arange(8) + 0.5) / 4  # x.5 DN at scale 4
    return b


@pytest.mark.parametrize("dtype", ["uint16", "int16", "uint8"])
@pytest.mark.parametrize("nodata", [None, 0.0, 7.0])
@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_the_converted_block_does_not_depend_on_the_chunk(
    dtype: str, nodata: float | None, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks that split bands, rows and runs of NaN give the one-chunk result value for value."""
    block = _block()
    whole = overviews.to_dn(block, 2047.0, np.dtype(dtype), nodata)  # one chunk (4551 values)
    monkeypatch.setattr(overviews, "TO_DN_CHUNK", chunk)
    got = overviews.to_dn(block, 2047.0, np.dtype(dtype), nodata)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, whole)


def test_conversion_rounds_half_to_even_clips_and_marks_nodata() -> None:
    block = _block()
    out = overviews.to_dn(block, 4.0, np.dtype("uint8"), 7.0)
    assert (out[0, 0, :5] == 7).all() and (out[2, -1, -3:] == 7).all()  # NaN -> nodata
    assert out[1, 4, :8].tolist() == [0, 2, 2, 4, 4, 6, 6, 8]  # 0.5, 1.5, ... half to even
    valid = ~np.isnan(block)
    assert out[valid & (block < 0)].max() == 0  # clipped below
    big = overviews.to_dn(block, 2047.0, np.dtype("uint8"), 7.0)
    assert big[valid & (block > 0.2)].min() == 255  # and above


def test_integer_blocks_convert_without_a_scale() -> None:
    block = np.array([[[0, 255, 256, 4095]]], dtype=np.uint16)
    out = overviews.to_dn(block, 1.0, np.dtype("uint8"), None)
    assert out.tolist() == [[[0, 255, 255, 255]]]
