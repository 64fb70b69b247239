"""The speed paths of the toolbox indices' torch engine (issue 12 item 4) against plain paths.

* :func:`pipeline.quality.strips.strip_moments` with ``split`` (only Q2n's cross moments and
  variances) and without its NaN pass (rerun with it when a rounded stack holds NaN);
* :func:`pipeline.quality.fast.mtf_filter`'s CPU inverse FFT (SciPy, in place) against torch's
  inverse and the NumPy reference.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.quality import fast, strips
from pipeline.quality import toolbox as tb
from pipeline.quality.fast import block_moments, to_uint16


def _stacks(shape: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(11)
    a = torch.from_numpy(rng.uniform(0.0, 2047.0, (3, *shape)))
    b = torch.from_numpy(rng.uniform(0.0, 2047.0, (3, *shape)).astype(np.float32))
    return a, b


@pytest.mark.parametrize("shape", [(64, 96), (70, 94)])
def test_split_group_keeps_cross_moments_and_variances(
    shape: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = _stacks(shape)
    monkeypatch.setattr(strips, "_STRIP_BYTES", 1)  # one block row per strip
    (gm, gs), (hm, hs) = strips.strip_moments(
        [[(a, True), (b, True)], [(b, False)]], 32, split=(3, None)
    )
    wm, ws = block_moments([to_uint16(a), to_uint16(b.double())], 32)
    torch.testing.assert_close(gm, wm, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(gs[:, :3, 3:], ws[:, :3, 3:], rtol=1e-12, atol=1e-6)
    diag = torch.diagonal(gs, dim1=1, dim2=2)
    torch.testing.assert_close(diag, torch.diagonal(ws, dim1=1, dim2=2), rtol=1e-12, atol=1e-6)
    off = ~torch.eye(6, dtype=torch.bool)
    off[:3, 3:] = False
    assert torch.isnan(gs[:, off]).all()  # never read by Q2n: NaN, so a misuse shows
    vm, vs = block_moments(b.double(), 32)  # the unsplit group is whole
    torch.testing.assert_close(hm, vm, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(hs, vs, rtol=1e-12, atol=1e-6)


def test_nan_rounds_to_zero_in_rounded_stacks_and_stays_nan_elsewhere() -> None:
    a, b = _stacks((64, 64))
    a[0, 40, 50] = float("nan")  # block (1, 1) of a rounded stack
    c = b.double().clone()
    c[1, 5, 5] = float("nan")  # block (0, 0) of a plain stack
    (gm, gs), (pm, _) = strips.strip_moments([[(a, True), (b, True)], [(c, False)]], 32)
    wm, ws = block_moments([to_uint16(a), to_uint16(b.double())], 32)
    assert torch.isfinite(gm).all()
    torch.testing.assert_close(gm, wm, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(gs, ws, rtol=1e-12, atol=1e-6)
    assert torch.isnan(pm[0, 1]) and torch.isfinite(pm[1:]).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_mtf_filter_cpu_inverse_equals_torch_inverse(dtype: torch.dtype) -> None:
    rng = np.random.default_rng(3)
    x = rng.uniform(0.0, 2047.0, (3, 52, 44))
    gains = [0.3, 0.25, 0.35]
    xt = torch.from_numpy(x).to(dtype)
    keep = xt.clone()
    got = fast.mtf_filter(xt, gains, 4)  # CPU: SciPy's inverse
    torch_path = fast.mtf_filter(xt.clone().requires_grad_(True), gains, 4)  # torch's inverse
    assert got.dtype == dtype and torch.equal(xt, keep)
    want = tb.mtf_filter(x.astype(np.float32) if dtype == torch.float32 else x, gains, 4)
    tol = 1e-9 if dtype == torch.float64 else 2e-3
    np.testing.assert_allclose(got.numpy(), want, atol=tol)
    np.testing.assert_allclose(got.numpy(), torch_path.detach().numpy(), atol=tol)
