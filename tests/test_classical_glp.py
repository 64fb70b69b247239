"""MTF-GLP's fast path (banded operators, MS-grid moments) against independent references.

The references are independent of the fast path: the upsampler's filter bank
(:func:`pipeline.backbones.upsample`), scipy's filtering (:func:`pipeline.mtf.degrade_np`), and
the reference fit and apply of :mod:`pipeline.classical._core`, which form the PAN-sized LMS and
low-passes explicitly and run whenever the caller gives the LMS.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from pipeline.backbones import upsample
from pipeline.classical import apply_coefficients, fit_coefficients, pansharpen
from pipeline.classical._banded import (
    along_cols,
    along_rows,
    degrade_band,
    gram_band,
    upsampler_band,
)
from pipeline.classical._block import _Block, _check
from pipeline.classical._core import _fit_blocks
from pipeline.grid import TileGrid
from pipeline.mtf import degrade_np
from pipeline.quality import interpolate
from pipeline.sensors import get_sensor
from pipeline.synthetic import make_scene


@pytest.mark.parametrize(("n", "upsampler"), [(1, "poly23"), (5, "poly23"), (37, "poly23"),
                                              (150, "poly23"), (9, "bicubic"), (70, "bicubic")])  # fmt: skip
def test_banded_upsampler_and_its_gram_equal_the_filter_bank(n: int, upsampler: str) -> None:
    """Rows read off the comb responses equal the upsampler applied to each unit impulse (so
    the assumed reach holds, mirrored edges included); the Gram over any run of rows too."""
    eye = torch.eye(n, dtype=torch.float64).view(1, n, n, 1)
    want = upsample(eye, 4, upsampler)[0, :, :, 0].T.numpy()  # (4n, n)
    band = upsampler_band(n, 4, upsampler)
    np.testing.assert_allclose(band.dense()[0], want, rtol=0, atol=1e-13)
    for r0, r1 in ((0, 4 * n), (min(3, n), 4 * n - 5), (2 * n, 2 * n + 4)):
        gram, ones = gram_band(n, 4, upsampler, r0, r1)
        np.testing.assert_allclose(gram.dense()[0], want[r0:r1].T @ want[r0:r1], atol=1e-12)
        np.testing.assert_allclose(ones, want[r0:r1].sum(axis=0), atol=1e-12)


@pytest.mark.parametrize(("shape", "ratio"), [((149, 118), 4), ((30, 45), 4), ((76, 50), 3)])
def test_banded_degradation_equals_scipy_filtering(shape: tuple[int, int], ratio: int) -> None:
    gains = (0.29, 0.34, 0.15)
    x = np.random.default_rng(3).uniform(0, 2047, shape)
    got = along_cols(
        along_rows(torch.from_numpy(x), degrade_band(shape[0], ratio, gains)),
        degrade_band(shape[1], ratio, gains),
    ).numpy()
    want = degrade_np(np.broadcast_to(x, (3, *shape)), gains, ratio)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def _wv2_crop(data_file: Any) -> tuple[np.ndarray, np.ndarray, str]:
    import scipy.io

    d = scipy.io.loadmat(data_file("vhr/grip/imgWV2.mat"))
    ms = d["I_MS"].transpose(2, 0, 1)[:, 37:187, 11:181].astype(np.float64)  # 150 x 170
    return ms, d["I_PAN"][148:748, 44:724].astype(np.float64), "wv2"


@pytest.fixture(params=["real-wv2", "synthetic-wv3"])
def crop(request: Any, data_file: Any) -> tuple[np.ndarray, np.ndarray, str]:
    if request.param == "real-wv2":
        return _wv2_crop(data_file)
    s = make_scene((148, 172), "wv3", seed=5)
    return s.ms.astype(np.float64), s.pan.astype(np.float64), "wv3"


def _reference_fit(method: str, ms: np.ndarray, pan: np.ndarray, sensor: str) -> dict[str, Any]:
    """The reference fit: moments of the explicit PAN-sized LMS and low-passes."""
    spec = get_sensor(sensor)
    m, p = _check(ms, pan, spec)
    lms = interpolate(ms, spec.ratio)
    whole = _Block(m, p, spec, "poly23", lms=lms)
    assert not whole.fast
    return _fit_blocks(method, lambda _: [whole], m.shape[1:], m.shape[0], spec, "poly23")


@pytest.mark.parametrize("method", ["mtf-glp", "mtf-glp-hpm"])
def test_fast_glp_equals_the_reference_fit_and_fusion(method: str, crop: Any) -> None:
    """On a real WV2 crop (and a synthetic WV3 one): the fast fit, whole and tile by tile,
    gives the reference coefficients to float rounding, and the fast fusion, whole and tile by
    tile, the reference image."""
    ms, pan, sensor = crop
    ref = _reference_fit(method, ms, pan, sensor)
    ref_out = pansharpen(method, ms, pan, sensor, lms=interpolate(ms, 4)).astype(np.float64)
    for tile in (None, 128):
        got = fit_coefficients(method, ms, pan, sensor, tile=tile)
        for k in ("gains", "scales", "band_means", "pan_mean"):
            if k in ref:
                np.testing.assert_allclose(got[k], ref[k], rtol=1e-6, err_msg=f"{k} tile={tile}")
    out = pansharpen(method, ms, pan, sensor).astype(np.float64)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=2e-3)
    coeffs = fit_coefficients(method, ms, pan, sensor, tile=128)
    grid = TileGrid(pan.shape, 4, 128)
    tiled = np.full_like(out, np.nan)
    for key in grid:
        tr = grid.read(key, coeffs["halo_ms"])
        win = apply_coefficients(
            method, ms[(slice(None), *tr.ms.slices)], pan[tr.pan.slices], coeffs, sensor
        )
        tiled[(slice(None), *tr.out.slices)] = win[(slice(None), *tr.crop.slices)]
    np.testing.assert_allclose(tiled, ref_out, rtol=1e-5, atol=2e-3)
