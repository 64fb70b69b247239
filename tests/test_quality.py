"""Quality indices: hand-checkable cases, invariants, perturbations, and agreement with sewar.

sewar (MIT, test-only dependency) is the independent implementation. Where the definitions
coincide the numbers must agree: ``sewar.q2n`` (same blocks, band padding, normalisation),
``sewar.sam`` (radians), ``sewar.ergas`` (``r = 1 / ratio``) and ``sewar.ssim`` with vanishing
constants (SSIM with ``C1 = C2 = 0`` *is* the UQI; sliding windows, stride 1). ``sewar.uqi`` is
not used: it combines window means with window-sum formulas (``N * mean_xy - mean_x * mean_y``),
which is not Wang & Bovik's index.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from pipeline.classical import pansharpen
from pipeline.errors import ConfigError, InputError
from pipeline.quality import (
    d_lambda_khan,
    d_lambda_qnr,
    d_s,
    ergas,
    full_resolution,
    full_resolution_tiles,
    interpolate,
    q2n,
    reduced_resolution,
    reduced_resolution_tiles,
    sam,
    scc,
    uqi,
)
from pipeline.quality.hypercomplex import conjugate, multiply, norm, pad_components
from pipeline.synthetic import make_scene

sewar = pytest.importorskip("sewar")


def _hwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(x, 0, -1))


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """A reference (B=4, 96x80) and a perturbed copy in DN-like values."""
    rng = np.random.default_rng(3)
    ref = 300 + 200 * rng.random((4, 96, 80))
    return ref, ref + rng.normal(0, 40, ref.shape) + 15


@pytest.fixture(scope="module")
def scene():  # type: ignore[no-untyped-def]
    return make_scene((128, 160), "wv3", seed=5)


# ----------------------------------------------------------------------- hypercomplex algebra


def test_two_components_are_complex_numbers() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 5)), rng.normal(size=(2, 5))
    z = (x[0] + 1j * x[1]) * (y[0] + 1j * y[1])
    np.testing.assert_allclose(multiply(x, y), np.stack([z.real, z.imag]), atol=1e-12)


def test_quaternion_units_multiply_like_hamilton() -> None:
    one, i, j, k = np.eye(4)
    np.testing.assert_array_equal(multiply(i[:, None], j[:, None])[:, 0], k)
    np.testing.assert_array_equal(multiply(j[:, None], i[:, None])[:, 0], -k)
    np.testing.assert_array_equal(multiply(i[:, None], i[:, None])[:, 0], -one)


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_norm_is_multiplicative_up_to_octonions(n: int) -> None:
    rng = np.random.default_rng(n)
    x, y = rng.normal(size=(n, 50)), rng.normal(size=(n, 50))
    np.testing.assert_allclose(norm(multiply(x, y)), norm(x) * norm(y), rtol=1e-12)
    np.testing.assert_allclose(
        conjugate(multiply(x, y)), multiply(conjugate(y), conjugate(x)), atol=1e-12
    )


def test_sedenions_lose_the_multiplicative_norm() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(16, 200)), rng.normal(size=(16, 200))
    assert not np.allclose(norm(multiply(x, y)), norm(x) * norm(y), rtol=1e-6)


def test_bands_pad_to_a_power_of_two() -> None:
    assert pad_components(np.ones((3, 2))).shape == (4, 2)
    assert pad_components(np.ones((5, 2)))[5:].sum() == 0
    with pytest.raises(ConfigError):
        multiply(np.ones((3, 1)), np.ones((3, 1)))


@pytest.mark.parametrize("ratio", [2, 3, 4])
def test_fast_degradation_equals_filter_then_decimate(ratio: int) -> None:
    """The strided float32 degradation matches pipeline.mtf.degrade_np (float64, full filter)."""
    from pipeline.mtf import degrade_np
    from pipeline.quality.full_resolution import mtf_degrade

    x = 2000 * np.random.default_rng(ratio).random((3, 70, 91))
    gains = [0.3, 0.2, 0.35]
    np.testing.assert_allclose(mtf_degrade(x, gains, ratio), degrade_np(x, gains, ratio), atol=0.01)


# ----------------------------------------------------------------------- hand-checkable cases


def test_uqi_hand_cases() -> None:
    x = np.array([[1.0, 3.0], [1.0, 3.0]])  # mean 2, variance 1
    assert uqi(x, x + 2, block=2) == pytest.approx(2 * 2 * 4 / (4 + 16))  # bias: 0.8
    assert uqi(x, 2 * x, block=2) == pytest.approx(16 / 25)  # gain 2: 0.64
    assert uqi(x, -x + 4, block=2) == pytest.approx(-1.0)  # same means, anti-correlated
    flat = np.full((2, 2), 3.0)
    assert uqi(flat, flat + 1, block=2) == pytest.approx(2 * 3 * 4 / (9 + 16))


def test_sam_ergas_hand_cases() -> None:
    ref = np.ones((2, 3, 3))
    fused = np.zeros((2, 3, 3))
    fused[0] = 1.0  # spectra (1, 0) vs (1, 1): 45 degrees
    assert sam(fused, ref) == pytest.approx(45.0)
    assert sam(3 * ref, ref) == pytest.approx(0.0, abs=1e-6)
    one = np.full((1, 4, 4), 100.0)
    assert ergas(one + 10, one, ratio=4) == pytest.approx(100 / 4 * 0.1)
    assert ergas(one + 10, one, ratio=2) == pytest.approx(100 / 2 * 0.1)


def test_identical_images_score_perfectly(pair: tuple[np.ndarray, np.ndarray]) -> None:
    ref, _ = pair
    rr = reduced_resolution(ref, ref, "qb")
    assert rr["q2n"] == pytest.approx(1.0)
    assert rr["sam"] == pytest.approx(0.0, abs=1e-6)
    assert rr["ergas"] == 0.0
    assert rr["scc"] == pytest.approx(1.0)
    assert uqi(ref, ref) == pytest.approx(1.0)


def test_scc_invariants(pair: tuple[np.ndarray, np.ndarray]) -> None:
    ref, noisy = pair
    assert scc(3 * ref + 7, ref) == pytest.approx(1.0)
    assert scc(-ref, ref) == pytest.approx(-1.0)
    yy, xx = np.mgrid[0:96, 0:80]
    ramp = ref + 0.5 * yy + 0.3 * xx  # low frequencies: (nearly) invisible to the Laplacian
    assert scc(ramp, ref) > 0.99 > scc(noisy, ref)


# ----------------------------------------------------------------------- sewar agreement


@pytest.mark.parametrize("bands", [1, 3, 4, 8])
def test_q2n_agrees_with_sewar(bands: int) -> None:
    rng = np.random.default_rng(bands)
    ref = 50 + 100 * rng.random((bands, 70, 45))  # awkward sizes: mirror completion
    fused = ref + rng.normal(0, 12, ref.shape) + rng.normal(0, 5, (bands, 1, 1))
    want = sewar.q2n(_hwc(ref), _hwc(fused), ws=32)
    assert q2n(fused, ref, block=32) == pytest.approx(want, rel=1e-10)


def test_uqi_agrees_with_sewar_ssim_without_constants() -> None:
    rng = np.random.default_rng(7)
    x = rng.random((37, 41))
    y = 0.7 * x + 0.4 * rng.random((37, 41)) + 0.2
    want, _ = sewar.ssim(x, y, ws=8, K1=1e-12, K2=1e-12, MAX=1.0)
    assert uqi(y, x, block=8, stride=1) == pytest.approx(want, rel=1e-8)


def test_sam_and_ergas_agree_with_sewar(pair: tuple[np.ndarray, np.ndarray]) -> None:
    ref, fused = pair
    assert sam(fused, ref) == pytest.approx(np.degrees(sewar.sam(_hwc(ref), _hwc(fused))))
    assert ergas(fused, ref, ratio=4) == pytest.approx(sewar.ergas(_hwc(ref), _hwc(fused), r=0.25))


# ----------------------------------------------------------------------- perturbations (reference)


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return np.stack([gaussian_filter(b, sigma) for b in x])


def test_reduced_resolution_perturbations_move_indices_the_right_way(scene) -> None:  # type: ignore[no-untyped-def]
    gt = scene.truth
    base = reduced_resolution(gt + np.random.default_rng(0).normal(0, 2, gt.shape), gt, "wv3")
    blur1, blur2 = (reduced_resolution(_blur(gt, s), gt, "wv3") for s in (1.0, 2.0))
    assert base["ergas"] < blur1["ergas"] < blur2["ergas"]
    assert base["scc"] > blur1["scc"] > blur2["scc"]
    assert base["q2n"] > blur1["q2n"] > blur2["q2n"]
    gain = gt.copy()
    gain[0] *= 1.3
    biased = reduced_resolution(gain, gt, "wv3")
    assert biased["sam"] > base["sam"] and biased["ergas"] > base["ergas"]
    assert biased["q2n"] < base["q2n"]
    swapped = reduced_resolution(gt[[1, 0, *range(2, 8)]], gt, "wv3")
    assert swapped["sam"] > base["sam"] and swapped["q2n"] < base["q2n"]
    shifted = reduced_resolution(np.roll(gt, 2, axis=2), gt, "wv3", edge=4)
    assert shifted["q2n"] < base["q2n"] and shifted["scc"] < base["scc"]


# ----------------------------------------------------------------------- full resolution


def test_truth_beats_interpolation_and_blur_at_full_resolution(scene) -> None:  # type: ignore[no-untyped-def]
    truth, ms, pan = scene.truth, scene.ms, scene.pan
    good = full_resolution(truth, ms, pan, "wv3")
    exp = full_resolution(interpolate(ms.astype(float), 4), ms, pan, "wv3")
    blurred = full_resolution(_blur(truth, 1.5), ms, pan, "wv3")
    assert good["hqnr"] > blurred["hqnr"] > exp["hqnr"]
    assert good["d_s"] < blurred["d_s"] < exp["d_s"]
    for res in (good, exp, blurred):
        assert 0 <= res["d_lambda_k"] <= 1 and 0 <= res["d_s"] <= 1
        assert res["hqnr"] == pytest.approx((1 - res["d_lambda_k"]) * (1 - res["d_s"]))
        assert res["qnr"] == pytest.approx((1 - res["d_lambda"]) * (1 - res["d_s"]))


def test_spectral_errors_raise_spectral_distortion(scene) -> None:  # type: ignore[no-untyped-def]
    truth, ms = scene.truth, scene.ms
    base_k = d_lambda_khan(truth, ms, "wv3")
    base_q = d_lambda_qnr(truth, ms, "wv3")
    gain = truth.copy()
    gain[3] *= 1.25
    assert d_lambda_khan(gain, ms, "wv3") > base_k
    swapped = truth[[0, 1, 2, 4, 3, 5, 6, 7]]  # a band swap keeps every spatial detail
    assert d_lambda_khan(swapped, ms, "wv3") > base_k
    assert d_lambda_qnr(swapped, ms, "wv3") > base_q


def test_misregistration_raises_spatial_distortion(scene) -> None:  # type: ignore[no-untyped-def]
    truth, ms, pan = scene.truth, scene.ms, scene.pan
    shifted = np.roll(truth, 3, axis=(1, 2))
    assert d_s(shifted, ms, pan, "wv3", edge=8) > d_s(truth, ms, pan, "wv3", edge=8) + 0.02


def test_array_types_give_the_same_numbers(scene) -> None:  # type: ignore[no-untyped-def]
    truth, ms, pan = scene.truth, scene.ms, scene.pan
    want = full_resolution(truth, ms, pan, "wv3", edge=4)
    got = full_resolution(
        xr.DataArray(truth, dims=("band", "y", "x")),
        torch.from_numpy(ms.astype(np.float32))[None],
        torch.from_numpy(pan.astype(np.float64)),
        "wv3",
        edge=4,
    )
    assert got == pytest.approx(want, rel=1e-9)


def test_tile_sample_averages_per_tile_scores(scene) -> None:  # type: ignore[no-untyped-def]
    truth, ms, pan = scene.truth, scene.ms, scene.pan
    tiles = [
        (truth[:, :64, :64], ms[:, :16, :16], pan[:64, :64]),
        (truth[:, 64:, 64:], ms[:, 16:, 16:], pan[64:, 64:]),
    ]
    one, two = (full_resolution(*t, "wv3") for t in tiles)
    got = full_resolution_tiles(tiles, "wv3")
    w = np.array([64 * 64, 64 * 96], dtype=float)
    assert got["n_tiles"] == 2
    assert got["hqnr"] == pytest.approx((w[0] * one["hqnr"] + w[1] * two["hqnr"]) / w.sum())
    rr = reduced_resolution_tiles([(truth, truth)], "wv3")
    assert rr["q2n"] == pytest.approx(1.0) and rr["n_tiles"] == 1


# ----------------------------------------------------------------------- errors


def test_bad_inputs_raise_project_errors(scene) -> None:  # type: ignore[no-untyped-def]
    truth, ms, pan = scene.truth, scene.ms, scene.pan
    with pytest.raises(InputError, match="same shape"):
        sam(truth[:, :10], truth)
    with pytest.raises(InputError, match="do not match"):
        full_resolution(truth[:, :-4], ms, pan, "wv3")
    with pytest.raises(InputError, match="bands"):
        full_resolution(truth[:4], ms[:4], pan, "wv3")
    with pytest.raises(ConfigError, match="edge"):
        reduced_resolution(truth, truth, edge=200)
    with pytest.raises(ConfigError, match="block"):
        q2n(truth, truth, block=1)


# ----------------------------------------------------------------------- the metrics command


def _write_tif(path, data: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    import rasterio

    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype="float32",
    ) as dst:
        dst.write(data.astype(np.float32))


def test_metrics_command_on_geotiff_and_container(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    import scipy.io

    from pipeline.cli import main

    s = make_scene((64, 96), "qb", seed=9)
    mat = tmp_path / "scene.mat"
    scipy.io.savemat(
        mat,
        {
            "pan": s.pan,
            "ms": s.ms.transpose(1, 2, 0),
            "gt": np.rint(s.truth).astype(np.uint16).transpose(1, 2, 0),
        },
    )
    gt = np.rint(s.truth)
    _write_tif(tmp_path / "perfect.tif", gt)
    assert (
        main(
            [
                "metrics",
                str(tmp_path / "perfect.tif"),
                str(mat),
                "--sensor",
                "qb",
                "--json",
                "--method",
                "oracle",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "oracle" and out["sensor"] == "qb"
    assert set(out["timings"]) == {"full_resolution", "reduced_resolution"}
    assert out["conventions"]["full_resolution"].startswith("toolbox: Matlab toolbox")
    m = out["metrics"]
    assert m["q2n"] == pytest.approx(1.0) and m["ergas"] == pytest.approx(0.0, abs=1e-5)
    assert m["hqnr"] == pytest.approx(full_resolution(gt, s.ms, s.pan, "qb")["hqnr"], rel=1e-6)

    blurred = _blur(gt, 1.5)
    _write_tif(tmp_path / "blurred.tif", blurred)
    assert main(["metrics", str(tmp_path / "blurred.tif"), str(mat), "--sensor", "qb"]) == 0
    text = capsys.readouterr().out
    assert "hqnr" in text and "sam" in text

    _write_tif(tmp_path / "small.tif", gt[:, :32])
    assert main(["metrics", str(tmp_path / "small.tif"), str(mat), "--sensor", "qb"]) == 2
    err = capsys.readouterr().err
    assert "does not match" in err and str(tmp_path / "small.tif") in err  # the file is named

    # FUSED PAN MS with the PAN forgotten: named as a missing PAN, not an unknown format
    argv = [
        "metrics",
        str(tmp_path / "blurred.tif"),
        str(tmp_path / "perfect.tif"),
        "--sensor",
        "qb",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Only one GeoTIFF" in err and "perfect.tif" in err and "FUSED.tif PAN.tif MS.tif" in err


def test_metrics_command_on_a_store_output(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    import scipy.io

    from pipeline.cli import main
    from pipeline.grid import Window
    from pipeline.scene import open_scene
    from pipeline.store import write_scene

    s = make_scene((64, 64), "qb", seed=2)
    mat = tmp_path / "scene.mat"
    scipy.io.savemat(mat, {"pan": s.pan, "ms": s.ms.transpose(1, 2, 0)})
    store = write_scene(open_scene(mat, "qb"), tmp_path / "s.zarr", tile=32, hash_sources=False)
    store.create_output("fused", "float32")  # normalised units: DN / dn_max
    store.write_region("fused", Window(y0=0, y1=64, x0=0, x1=64), s.truth / store.meta.dn_max)
    assert main(["metrics", str(tmp_path / "s.zarr"), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)["metrics"]
    want = full_resolution(s.truth, s.ms, s.pan, "qb")
    assert m["hqnr"] == pytest.approx(want["hqnr"], rel=1e-4)
    assert "sam" not in m  # no reference in this store


def test_metrics_command_takes_the_run_ingest_options(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """`metrics` reads what `run` reads (--ms-decimate, --nodata, ... from the same definition):
    an MS stored upsampled x2 needs --ms-decimate 2, and with --nodata the fill is left out."""
    import json

    from pipeline.cli import main

    s = make_scene((256, 256), "qb", seed=4)
    pan, ms = s.pan.astype(np.float32), s.ms.astype(np.float32)
    fused = np.asarray(pansharpen("mtf-glp", s.ms, s.pan, "qb"), dtype=np.float64)
    pan[:, 128:], ms[:, :, 32:] = 0.0, 0.0  # a no-data fill over the right half
    _write_tif(tmp_path / "pan.tif", pan[None])
    _write_tif(tmp_path / "ms.tif", np.repeat(np.repeat(ms, 2, axis=1), 2, axis=2))
    rng = np.random.default_rng(0)
    garbage = fused.copy()
    garbage[:, :, 128:] = rng.uniform(0, 2047, size=garbage[:, :, 128:].shape)
    fused[:, :, 128:] = 0.0
    _write_tif(tmp_path / "zeros.tif", fused)
    _write_tif(tmp_path / "garbage.tif", garbage)
    inputs = [str(tmp_path / "pan.tif"), str(tmp_path / "ms.tif"), "--sensor", "qb"]

    assert main(["metrics", str(tmp_path / "zeros.tif"), *inputs]) == 2  # MS grid is 2x too big
    capsys.readouterr()

    def hqnr(product: str, *opts: str) -> dict[str, float]:
        args = ["metrics", str(tmp_path / product), *inputs, "--ms-decimate", "2", *opts]
        assert main([*args, "--json"]) == 0
        return dict(json.loads(capsys.readouterr().out)["metrics"])

    masked = [hqnr(p, "--nodata", "0") for p in ("zeros.tif", "garbage.tif")]
    assert masked[0]["n_tiles"] == 2.0  # the two 128-px tiles of the left half
    assert masked[0]["hqnr"] == pytest.approx(masked[1]["hqnr"], abs=1e-12)
    unmasked = [hqnr(p) for p in ("zeros.tif", "garbage.tif")]
    assert abs(unmasked[0]["hqnr"] - unmasked[1]["hqnr"]) > 1e-3  # the fill was scored
