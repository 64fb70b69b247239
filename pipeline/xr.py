"""Pansharpening for xarray users: lazy rioxarray DataArrays in, a lazy Dask DataArray out.

::

    pan = rioxarray.open_rasterio("PAN.tif", chunks=True)
    ms = rioxarray.open_rasterio("MS.tif", chunks=True)
    out = pipeline.xr.pansharpen(pan, ms, sensor="wv3")   # fits the tailor now, nothing else
    out.rio.to_raster("fused.tif")                       # computes, tile by tile

:func:`fit_scene` reads only the sampled patch windows of the (lazy) inputs and fits the adaptation
eagerly, as ``pantailor run`` does on its store (same patch grid, same seed, same defaults, so
the same tailor). :func:`apply` builds the product's task graph without computing anything: one
task per output tile of the :class:`~pipeline.grid.TileGrid`, each reading its PAN/MS windows
plus the halo the adapted model's receptive field and the LMS upsampler need (clipped at the
scene edges, where the network pads as on the whole image), so every tile equals the whole-image
result. The graph runs on whatever Dask scheduler is active (a ``distributed.Client`` if one
exists). Each tile runs :func:`pipeline.infer.infer_window`, the one inference function the engine's tile
task runs too (normalise, invalid mask, fill, forward, crop, mark invalid, clip); invalid pixels
are filled at the scene's band levels (:func:`scene_gains`), as the ingest records them for the
engine. The grids are checked by the rule ``pantailor run`` applies (:mod:`pipeline.ingest.checks`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from .backbones import Backbone, load, support_ms
from .errors import InputError
from .fit import FitConfig, FitResult, adapt
from .grid import TileGrid, TileKey, Window, halo_ms_for
from .infer import Radiometry, infer_window, model_run, to_dn_float
from .ingest.checks import DEFAULT_TOLERANCE, validate
from .ingest.model import Raster
from .ingest.radiometry import Levels, band_gains
from .losses import LossWeights
from .sampling import SampleConfig, sample_patches
from .sensors import SensorSpec, get_sensor

log = logging.getLogger(__name__)

DEFAULT_TILE = 512


@dataclass(frozen=True, kw_only=True)
class Fitted:
    """An adapted model ready to apply to a scene.

    Attributes
    ----------
    model
        The module to infer with (backbone, tailored or fine-tuned), frozen, in eval mode.
    result
        The fit's :class:`~pipeline.fit.FitResult` (``history`` is the loss curve).
    sensor
        The scene's sensor.
    halo_ms
        MS pixels of context a tile reads on each side.
    dn_max, nodata
        Normalisation and the no-data DN (``None``: none).
    method, weights
        The backbone and its weights as given.
    """

    model: Backbone
    result: FitResult
    sensor: SensorSpec
    halo_ms: int
    dn_max: float
    nodata: float | None
    method: str
    weights: str | None


def _bands_yx(arr: Any, name: str, pan: bool) -> Any:
    """The DataArray as ``(band, y, x)`` (PAN may come as ``(y, x)``)."""
    if arr.ndim == 2 and pan:
        arr = arr.expand_dims("band")
    if arr.ndim != 3 or tuple(arr.dims)[-2:] != ("y", "x"):
        raise InputError(
            f"The {name} DataArray has the wrong dimensions.",
            expected="(band, y, x) as rioxarray.open_rasterio returns"
            + (" or (y, x)" if pan else ""),
            got=f"dims {tuple(arr.dims)}",
            fix="open the file with rioxarray.open_rasterio(path, chunks=True).",
        )
    if pan and arr.shape[0] != 1:
        raise InputError("The PAN must have one band.", expected="1 band", got=arr.shape[0])
    return arr


def _check_grids(pan: Any, ms: Any, spec: SensorSpec) -> tuple[Any, Any]:
    """``pantailor run``'s grid rule (:func:`pipeline.ingest.checks.validate`) on the arrays.

    Same CRS, MS pixels ``ratio`` x the PAN's, origins corner- or centre-aligned within
    ``DEFAULT_TOLERANCE`` PAN pixels, PAN ``ratio`` x the MS shape (a remainder of fewer than
    ``ratio`` trailing PAN rows/columns is cropped with a warning). Returns ``(pan, ms)``.
    """

    def raster(arr: Any) -> Raster:
        a, b, c, d, e, f = (float(v) for v in tuple(arr.rio.transform())[:6])
        grid = (a, b, c, d, e, f)
        return Raster(paths=(), data=arr, crs=arr.rio.crs, transform=grid, nodata=None)

    pan_r, _, _ = validate(raster(pan), raster(ms), spec, DEFAULT_TOLERANCE)
    return pan_r.data, ms


def _prepare(pan: Any, ms: Any, spec: SensorSpec) -> tuple[Any, Any]:
    pan, ms = _bands_yx(pan, "PAN", True), _bands_yx(ms, "MS", False)
    if ms.shape[0] != spec.n_bands:
        raise InputError(
            f"The MS band count does not match {spec.title}.",
            expected=f"{spec.n_bands} bands",
            got=f"{ms.shape[0]} bands",
            fix="select the sensor's bands (.isel(band=[...])) or pass the matching --sensor.",
        )
    return _check_grids(pan, ms, spec)


def _nodata(pan: Any, ms: Any, given: float | None) -> float | None:
    if given is not None:
        return float(given)
    for arr in (pan, ms):
        nd = arr.rio.nodata
        if nd is not None and not np.isnan(nd):
            return float(nd)
    return None


def fit_scene(
    pan: Any,
    ms: Any,
    *,
    sensor: str | SensorSpec,
    method: str = "fusionnet",
    weights: str | None = None,
    adapt_mode: str = "tailor",
    sample: dict[str, Any] | None = None,
    fit_fields: dict[str, Any] | None = None,
    seed: int = 0,
    dn_max: float | None = None,
    nodata: float | None = None,
) -> Fitted:
    """Load the backbone and fit the adaptation on patches sampled from the lazy inputs.

    Only the sampled patch windows are read (computed with the active scheduler). Arguments as
    for :func:`pansharpen`; ``adapt_mode`` is its ``adapt``, ``fit_fields`` its ``fit``.
    """
    spec = get_sensor(sensor)
    pan, ms = _prepare(pan, ms, spec)
    backbone = load(method, weights, n_bands=spec.n_bands, sensor=spec)
    scale = float(dn_max if dn_max is not None else spec.dn_max)
    nd = _nodata(pan, ms, nodata)
    cfg_fields = dict(fit_fields or {})
    if isinstance(cfg_fields.get("weights"), dict):
        cfg_fields["weights"] = LossWeights(**cfg_fields["weights"])
    cfg = FitConfig(**{**cfg_fields, "adapt": adapt_mode})
    backbone = backbone.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    model: Backbone = backbone
    result = FitResult("none", None, None, 0, 0.0, 0.0, {}, {}, [])
    if adapt_mode != "none":
        source = (pan.data[0], ms.data)
        patches = sample_patches(
            source, SampleConfig(**(sample or {})), seed, ratio=spec.ratio, dn_max=scale, nodata=nd
        )
        model, result = adapt(patches, backbone, spec, cfg, "cpu")
    model = model.eval().requires_grad_(False)
    halo = halo_ms_for(model.receptive_field, spec.ratio, support_ms(model.upsampler, spec.ratio))
    log.info("fitted %s (%s) in %d steps; halo %d MS px", method, adapt_mode, result.steps, halo)
    return Fitted(
        model=model,
        result=result,
        sensor=spec,
        halo_ms=halo,
        dn_max=scale,
        nodata=nd,
        method=method,
        weights=weights,
    )


def forward_tile(
    model: Backbone,
    ms_dn: NDArray[Any],
    pan_dn: NDArray[Any],
    crop: Window,
    *,
    dn_max: float,
    ratio: int,
    nodata: float | None,
    clip: bool = True,
    band_gains: Sequence[float] | None = None,
) -> NDArray[np.float32]:
    """One output tile in DN: ms ``(B, h', w')`` and pan ``(r h', r w')`` windows with halo in,
    ``(B, H, W)`` float32 cropped to ``crop`` out (invalid pixels NaN).

    :func:`pipeline.infer.infer_window` on CPU (channels_last), as the engine's tile task runs it;
    ``band_gains`` are the scene's (:func:`scene_gains`), the levels invalid pixels are filled at.
    """
    run = model_run(model, model.upsampler, ratio, memory_format=torch.channels_last)
    gains = None if band_gains is None else tuple(float(g) for g in band_gains)
    rad = Radiometry(dn_max=dn_max, ratio=ratio, nodata=nodata, clip=clip, band_gains=gains)
    out = infer_window(run, np.asarray(ms_dn), np.asarray(pan_dn), rad, crop=crop)
    return to_dn_float(out, rad, None)


def apply(fitted: Fitted, pan: Any, ms: Any, *, tile: int = DEFAULT_TILE, clip: bool = True) -> Any:
    """The lazy product of ``fitted`` on the scene: ``(band, y, x)`` float32 DN on the PAN grid.

    Nothing is computed here. The Dask array has one chunk per output tile of ``tile`` PAN pixels;
    each chunk's task reads its own window plus ``fitted.halo_ms`` MS pixels of context.
    """
    import dask.array as da
    from dask.delayed import delayed

    spec = fitted.sensor
    pan, ms = _prepare(pan, ms, spec)
    pan_d, ms_d = _dask(pan.data[0]), _dask(ms.data)
    grid = TileGrid((int(pan.shape[-2]), int(pan.shape[-1])), spec.ratio, tile)
    model = delayed(fitted.model, name=f"pantailor-model-{uuid.uuid4().hex}", traverse=False)
    gains = scene_gains(pan_d, ms_d, fitted.nodata)
    rows, cols = grid.shape
    blocks: list[list[Any]] = []
    for r in range(rows):
        row = []
        for c in range(cols):
            read = grid.read(TileKey(r, c), fitted.halo_ms)
            task = delayed(forward_tile, pure=True)(
                model,
                ms_d[(slice(None), *read.ms.slices)],
                pan_d[read.pan.slices],
                read.crop,
                dn_max=fitted.dn_max,
                ratio=spec.ratio,
                nodata=fitted.nodata,
                clip=clip,
                band_gains=gains,
            )
            shape = (spec.n_bands, *read.out.shape_yx)
            row.append(da.from_delayed(task, shape=shape, dtype=np.float32))
        blocks.append(row)
    return _wrap(da.block(blocks), pan, ms, fitted)


def scene_gains(pan: Any, ms: Any, nodata: float | None) -> Any:
    """The scene's band gains (:func:`pipeline.ingest.radiometry.band_gains`, as the ingest
    records them for ``pantailor run``), lazily: a Delayed list, or ``None`` when the inputs
    cannot hold an invalid pixel (integers without a no-data value), so nothing needs filling.

    ``pan`` ``(H, W)`` and ``ms`` ``(B, h, w)`` Dask arrays in DN; one pass over both when
    computed (sums of the valid values, in float64).
    """
    import dask.array as da
    from dask.delayed import delayed

    if nodata is None and pan.dtype.kind != "f" and ms.dtype.kind != "f":
        return None

    def valid(a: Any) -> Any:
        ok = da.isfinite(a) if a.dtype.kind == "f" else da.ones_like(a, dtype=bool)
        return ok if nodata is None else da.logical_and(ok, a != nodata)

    ok_p, ok_m = valid(pan), valid(ms)
    sums = (
        da.where(ok_p, pan, 0).sum(dtype=np.float64),
        ok_p.sum(),
        da.where(ok_m, ms, 0).sum(axis=(1, 2), dtype=np.float64),
        ok_m.sum(axis=(1, 2)),
    )
    return delayed(_gains_of, pure=True)(*sums)


def _gains_of(
    pan_total: float, pan_n: int, band_total: NDArray[Any], band_n: NDArray[Any]
) -> list[float] | None:
    lp = Levels(dn_max=1.0, total=float(pan_total), n=int(pan_n))
    lm = Levels(dn_max=1.0, bands=True, band_total=[float(t) for t in band_total],
                band_n=[int(n) for n in band_n])  # fmt: skip
    return band_gains(lp, lm)


def _dask(arr: Any) -> Any:
    import dask.array as da

    return arr if isinstance(arr, da.Array) else da.from_array(arr, chunks=-1)


def _wrap(data: Any, pan: Any, ms: Any, fitted: Fitted) -> Any:
    import xarray as xr

    out = xr.DataArray(
        data,
        dims=("band", "y", "x"),
        coords={"band": ms["band"].values, "y": pan["y"].values, "x": pan["x"].values},
        name="pansharpened",
        attrs={
            "long_name": list(fitted.sensor.bands),
            "units": "DN",
            "pantailor_method": fitted.method,
            "pantailor_weights": str(fitted.weights),
            "pantailor_adapt": fitted.result.adapt,
            "pantailor_fit_steps": int(fitted.result.steps),
            "pantailor_sensor": fitted.sensor.name,
        },
    )
    out = out.rio.write_crs(pan.rio.crs)
    out = out.rio.write_transform(pan.rio.transform())
    return out.rio.write_nodata(np.nan, encoded=False)


def pansharpen(
    pan: Any,
    ms: Any,
    *,
    sensor: str | SensorSpec,
    method: str = "fusionnet",
    weights: str | None = None,
    adapt: str = "tailor",
    tile: int = DEFAULT_TILE,
    sample: dict[str, Any] | None = None,
    fit: dict[str, Any] | None = None,
    seed: int = 0,
    dn_max: float | None = None,
    nodata: float | None = None,
    clip: bool = True,
) -> Any:
    """Pansharpen rioxarray DataArrays lazily; the tailor is fitted now, the product on demand.

    Parameters
    ----------
    pan
        ``(1, H, W)`` or ``(H, W)`` PAN DataArray in DN (``rioxarray.open_rasterio(...,
        chunks=True)``; lazy Dask or in memory).
    ms
        ``(B, H/r, W/r)`` MS DataArray in DN on a grid co-registered with the PAN.
    sensor
        Sensor name or spec (ratio, band count, ``dn_max``).
    method, weights
        Network and its weights (``None``: shipped; ``"dlpan:wv3"``; a path).
    adapt
        ``"tailor"`` (default), ``"finetune"`` or ``"none"``.
    tile
        Output chunk edge in PAN pixels (each chunk is one task with its halo).
    sample, fit
        :class:`~pipeline.sampling.SampleConfig` / :class:`~pipeline.fit.FitConfig` fields.
    seed
        Seed of the patch sampling.
    dn_max, nodata
        Overrides of the sensor's normalisation and of the files' nodata.
    clip
        Clip valid outputs to ``[0, dn_max]`` (as ``pantailor run`` does by default).

    Returns
    -------
    xarray.DataArray
        ``(band, y, x)`` float32 DN, lazy (Dask), on the PAN grid with its CRS and transform;
        invalid pixels NaN. ``.rio.to_raster`` and ``.to_zarr`` compute it tile by tile.
    """
    fitted = fit_scene(
        pan,
        ms,
        sensor=sensor,
        method=method,
        weights=weights,
        adapt_mode=adapt,
        sample=sample,
        fit_fields=fit,
        seed=seed,
        dn_max=dn_max,
        nodata=nodata,
    )
    return apply(fitted, pan, ms, tile=tile, clip=clip)


__all__ = [
    "DEFAULT_TILE",
    "Fitted",
    "apply",
    "fit_scene",
    "forward_tile",
    "pansharpen",
    "scene_gains",
]
