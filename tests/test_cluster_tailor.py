"""The cluster tests can see the fitted tailor: on the cluster scene, with the cluster settings,
products with the tailor, without it and of other fits differ by far more than rounding, and the
local cluster's product is, pixel for pixel, the in-process product of the tailor it fitted.

Every deployment test (scheduler, TLS, SLURM) compares its COG byte for byte with the local run's
and with the in-process product (``tests.clusters.assert_product_of_the_tailor``), so a tailor
dropped between the fit and the workers fails each of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pipeline.tailor import read_tailor_file
from tests.clusters import FIT_STEPS, assert_product_of_the_tailor, in_process_product

pytestmark = pytest.mark.slow


def _moved(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    """Largest |a - b| in DN and the share of values that differ."""
    d = np.abs(a.astype(np.int64) - b.astype(np.int64))
    return int(d.max()), float((d > 0).mean())


def test_the_cluster_settings_tell_the_tailor_and_other_fits_apart(
    cluster_scene: tuple[Path, Path], in_process: dict[str, Any]
) -> None:
    tailored, untailored = in_process["tailored"], in_process["untailored"]
    assert tailored.dtype == np.uint16 and tailored.shape == (4, 256, 384)
    # the tailor moves most pixels by several DN: a dropped tailor cannot go unseen
    most, share = _moved(tailored, untailored)
    assert most >= 5 and share > 0.5, (most, share)
    # ... and the products of other fits (another seed, another budget) differ from it too
    for other in ({"seed": 1}, {"steps": 2 * FIT_STEPS}):
        product, _ = in_process_product(*cluster_scene, **other)  # type: ignore[arg-type]
        most, share = _moved(product, tailored)
        assert most >= 3 and share > 0.2, (other, most, share)
    # the tailor was fitted: not its zero-initialised (identity) last layer
    assert in_process["tailor_state"]["conv_b.weight"].abs().max() > 0


def test_the_local_cluster_product_is_the_in_process_product_of_its_tailor(
    local_run: Path, in_process: dict[str, Any]
) -> None:
    fitted = read_tailor_file(local_run.with_suffix(".work") / "adapter.pt")["state_dict"]
    mine = in_process["tailor_state"]
    assert sorted(fitted) == sorted(mine)
    assert all(torch.equal(fitted[k], mine[k]) for k in mine)  # the same fit, on a worker
    assert_product_of_the_tailor(local_run, in_process["tailored"], in_process["untailored"])
