"""Research containers: MATLAB ``.mat`` v5 (scipy), v7.3 (HDF5, h5py) and plain ``.h5``.

Key conventions ``I_PAN``/``I_MS_LR``/``I_MS``, ``pan``/``lrms``/``ms``/``gt`` and
``cropped_gray``/``cropped_im`` (PAN and MS may sit in two files). MATLAB arrays are
``H x W x B``; they are returned as ``(B, H, W)``. Containers are not georeferenced: the PAN grid
is the pixel grid (identity transform), the MS grid has pixel size ``ratio``. A GRIP-style
container states its bit depth (key ``L``), which becomes the scene's ``dn_max``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from ..sensors import SensorSpec
from .model import IDENTITY, Inputs, Raster

log = logging.getLogger(__name__)

SUFFIXES = (".mat", ".h5", ".hdf5", ".he5")
PAN_KEYS = ("I_PAN", "pan", "PAN", "cropped_gray")
MS_KEYS = ("I_MS_LR", "lrms", "ms", "MS", "I_MS", "cropped_im")
GT_KEYS = ("gt", "GT", "I_GT")


def _is_matlab_v73(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(19) == b"MATLAB 7.3 MAT-file"


def _load_container(path: Path) -> dict[str, NDArray[Any]]:
    """All arrays of a container, MATLAB axis order (``H x W x B``, ``N x H x W x B``)."""
    import h5py
    import scipy.io

    try:
        if path.suffix.lower() == ".mat" and not h5py.is_hdf5(path):
            raw = scipy.io.loadmat(path)
            return {k: v for k, v in raw.items() if isinstance(v, np.ndarray) and v.ndim >= 2}
        reverse = _is_matlab_v73(path)  # v7.3 stores MATLAB arrays with reversed axes
        out: dict[str, NDArray[Any]] = {}
        with h5py.File(path, "r") as f:
            for k, v in f.items():
                if isinstance(v, h5py.Dataset) and v.ndim >= 2:
                    a = np.asarray(v[()])
                    out[k] = a.transpose() if reverse else _channels_last(a)
        return out
    except (OSError, ValueError) as exc:
        raise InputError(
            "Cannot read the container.",
            path=path,
            expected="a MATLAB .mat (v5 or v7.3) or HDF5 .h5 file",
            got=str(exc),
            fix="check the path and the file format.",
        ) from exc


def _channels_last(a: NDArray[Any]) -> NDArray[Any]:
    """Plain .h5 files (PanCollection) store ``(N, C, H, W)`` / ``(C, H, W)``: move C last."""
    if a.ndim == 4 or (a.ndim == 3 and a.shape[0] < min(a.shape[1:])):
        return np.moveaxis(a, -3, -1)
    return a


def _pick(arrays: dict[str, NDArray[Any]], keys: Sequence[str]) -> tuple[str, NDArray[Any]] | None:
    for k in keys:
        if k in arrays:
            return k, arrays[k]
    return None


def _to_bhw(a: NDArray[Any], key: str, path: Path, patch: int | None, pan: bool) -> NDArray[Any]:
    """Container array (MATLAB order, optionally with a leading patch axis) -> ``(B, H, W)``."""
    nd_single = 2 if pan else 3
    if pan and a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if pan and a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == nd_single + 1:
        if patch is None or not 0 <= patch < a.shape[0]:
            raise InputError(
                f"Array {key!r} holds {a.shape[0]} patches.",
                path=path,
                expected=f"a patch index 0..{a.shape[0] - 1}",
                got=patch,
                fix="pass patch=<index> (--patch).",
            )
        a = a[patch]
    if a.ndim != nd_single:
        raise InputError(
            f"Array {key!r} has an unexpected number of axes.",
            path=path,
            expected="H x W" if pan else "H x W x B",
            got=a.shape,
            fix="pass a container with the standard layout.",
        )
    return a[None] if pan else np.ascontiguousarray(a.transpose(2, 0, 1))


def _read_containers(paths: Sequence[Path], patch: int | None) -> tuple[Raster, Raster, Any]:
    arrays: dict[str, NDArray[Any]] = {}
    origin: dict[str, Path] = {}
    for p in paths:
        for k, v in _load_container(p).items():
            arrays.setdefault(k, v)
            origin.setdefault(k, p)
    found = {"PAN": _pick(arrays, PAN_KEYS), "MS": _pick(arrays, MS_KEYS)}
    for what, hit in found.items():
        if hit is None:
            raise InputError(
                f"No {what} array found in the container(s).",
                path=list(paths),
                expected="one of " + ", ".join(PAN_KEYS if what == "PAN" else MS_KEYS),
                got=", ".join(sorted(arrays)) or "no arrays",
                fix="pass a container with the standard keys (or PAN and MS files together).",
            )
    (pk, pa), (mk, ma) = found["PAN"], found["MS"]  # type: ignore[misc]
    pan = _to_bhw(pa, pk, origin[pk], patch, pan=True)
    ms = _to_bhw(ma, mk, origin[mk], patch, pan=False)
    g = _pick(arrays, GT_KEYS)
    gt = None if g is None else _to_bhw(g[1], g[0], origin[g[0]], patch, pan=False)
    log.info("container keys: PAN %r, MS %r, reference %r", pk, mk, g and g[0])
    mk_raster = Raster(paths=(origin[mk],), data=ms, crs=None, transform=IDENTITY, nodata=None)
    pk_raster = Raster(paths=(origin[pk],), data=pan, crs=None, transform=IDENTITY, nodata=None)
    return pk_raster, mk_raster, gt


def _container_dn_max(paths: Sequence[Path]) -> float | None:
    """The scale a GRIP-style container states itself (key ``L``: bit depth), else ``None``."""
    import scipy.io

    for p in paths:
        if p.suffix.lower() == ".mat":
            try:
                bits = scipy.io.loadmat(p, variable_names=["L"]).get("L")
            except (OSError, ValueError, NotImplementedError):
                continue
            if bits is not None and np.size(bits) == 1:
                return float(2 ** int(np.asarray(bits).ravel()[0]) - 1)
    return None


class ContainerReader:
    """One container holding PAN and MS (and maybe ``gt``), or ``PAN.mat MS.mat``."""

    name = "container"

    def accepts(self, files: Sequence[Path]) -> bool:
        """One or more ``.mat``/``.h5`` files."""
        return bool(files) and {f.suffix.lower() for f in files} <= set(SUFFIXES)

    def read(
        self, files: Sequence[Path], sensor: SensorSpec, *, patch: int | None, rows: int
    ) -> Inputs:
        """Load the arrays (in memory: research containers are small)."""
        pan, ms, gt = _read_containers(files, patch)
        return Inputs(pan=pan, ms=ms, gt=gt, dn_max=_container_dn_max(files))


__all__ = ["GT_KEYS", "MS_KEYS", "PAN_KEYS", "SUFFIXES", "ContainerReader"]
