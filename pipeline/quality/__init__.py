"""Pansharpening quality indices, as defined in ``METHOD.md`` ("Quality metrics").

Full resolution (no reference): :func:`full_resolution` -> Khan's ``d_lambda_k``, ``d_s``,
``hqnr``, the classic ``d_lambda`` and ``qnr``, by default exactly as the Matlab pansharpening
toolbox computes them (``convention="toolbox"``; ``"project"`` keeps this project's earlier
variants). Reduced resolution (reference available):
:func:`reduced_resolution` -> ``sam`` (degrees), ``ergas``, ``q2n``, ``scc``. Inputs are DN-scale
``(B, H, W)`` arrays (NumPy, xarray, Dask or torch); argument order is ``(fused, reference)``.
:func:`full_resolution_tiles` / :func:`reduced_resolution_tiles` score a sample of tiles.
"""

from __future__ import annotations

from .full_resolution import (
    CONVENTION_NOTES,
    CONVENTIONS,
    DEFAULT_CONVENTION,
    d_lambda_khan,
    d_lambda_qnr,
    d_s,
    full_resolution,
    interpolate,
    pan_low_pass,
)
from .indices import DEFAULT_BLOCK, q2n, q2n_map, uqi, uqi_map
from .reduced_resolution import ergas, high_pass, reduced_resolution, sam, sam_map, scc
from .tiles import full_resolution_tiles, reduced_resolution_tiles

FULL_RESOLUTION_KEYS = ("d_lambda_k", "d_s", "hqnr", "d_lambda", "qnr")


def conventions(full_resolution: str = DEFAULT_CONVENTION) -> dict[str, str]:
    """The note to store beside full-resolution numbers (reports, benchmarks)."""
    return {"full_resolution": f"{full_resolution}: {CONVENTION_NOTES[full_resolution]}"}


REDUCED_RESOLUTION_KEYS = ("sam", "ergas", "q2n", "scc")

__all__ = [
    "CONVENTIONS",
    "CONVENTION_NOTES",
    "DEFAULT_BLOCK",
    "DEFAULT_CONVENTION",
    "FULL_RESOLUTION_KEYS",
    "REDUCED_RESOLUTION_KEYS",
    "conventions",
    "d_lambda_khan",
    "d_lambda_qnr",
    "d_s",
    "ergas",
    "full_resolution",
    "full_resolution_tiles",
    "high_pass",
    "interpolate",
    "pan_low_pass",
    "q2n",
    "q2n_map",
    "reduced_resolution",
    "reduced_resolution_tiles",
    "sam",
    "sam_map",
    "scc",
    "uqi",
    "uqi_map",
]
