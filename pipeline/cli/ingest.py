"""The ``pantailor ingest`` subcommand: arguments and the call; no logic here."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._base import Subparsers


def add(
    sub: Subparsers,
) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "ingest",
        help="validate a PAN/MS pair and write it into a Zarr scene store",
        description="Inputs: PAN.tif MS.tif | PAN.tif B1.tif B2.tif ... | SCENE.mat | PAN.mat MS.mat",
    )
    p.add_argument("inputs", nargs="+", help="PAN then MS file(s), or a .mat/.h5 container")
    p.add_argument("--sensor", required=True, help="sensor name, e.g. wv3, ge1, landsat8")
    p.add_argument("--sensor-file", help="YAML file adding sensors (see pipeline.sensors)")
    p.add_argument("-o", "--output", required=True, help="target store, e.g. scene.zarr")
    p.add_argument("--tile", type=int, default=512, help="tile edge in PAN pixels (default 512)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--nodata", type=float, help="no-data DN overriding the files'")
    p.add_argument("--dn-max", type=float, help="DN mapped to 1.0 (default: the sensor's)")
    p.add_argument(
        "--ms-decimate",
        type=int,
        default=1,
        help="keep every K-th MS pixel, for MS stored upsampled by K (SpaceNet: 2)",
    )
    p.add_argument("--patch", type=int, help="patch index for containers holding N patches")
    p.set_defaults(handler=cmd)
    return p


def cmd(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..scene import open_scene
    from ..sensors import load_sensor_file
    from ..store import write_scene

    if Path(args.output).suffix.lower() in (".tif", ".tiff"):
        raise InputError(
            "ingest writes a Zarr scene store (a folder), not a GeoTIFF.",
            path=args.output,
            expected="a store path such as scene.zarr",
            got="a GeoTIFF name",
            fix=f"pass -o {Path(args.output).with_suffix('.zarr')}; pantailor run writes "
            "the GeoTIFF.",
        )
    if args.sensor_file:
        load_sensor_file(args.sensor_file)
    scene = open_scene(
        args.inputs,
        args.sensor,
        nodata=args.nodata,
        dn_max=args.dn_max,
        ms_decimate=args.ms_decimate,
        patch=args.patch,
        rows=args.tile,
    )
    store = write_scene(scene, args.output, tile=args.tile, overwrite=args.overwrite)
    m = store.meta
    print(
        f"{store.path}: {m.sensor}, PAN {m.pan_shape_yx[0]}x{m.pan_shape_yx[1]}, "
        f"{m.n_bands} bands, ratio {m.ratio}, tile {m.tile}, {m.alignment}-aligned, "
        f"{'CRS set' if m.georeferenced else 'not georeferenced'}, dn_max {m.dn_max:g}"
    )
    for action in m.radiometry.get("actions", []):
        print(f"  normalised: {action}")
    return 0
