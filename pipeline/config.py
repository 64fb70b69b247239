"""Frozen, validated configuration objects and the project-wide settings.

``PANTAILOR_DATA`` is the one setting that locates the real data set (default ``../shared/data``
relative to the repository root).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Return the directory holding the real data (``PANTAILOR_DATA``, default ``../shared/data``).

    The directory may not exist (a user's fresh machine); callers that need it check and skip or
    raise with a clear message.
    """
    env = os.environ.get("PANTAILOR_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT / ".." / "shared" / "data").resolve()


def require_data(relative: str) -> Path:
    """Return ``data_dir() / relative`` or raise :class:`ConfigError` naming the setting."""
    path = data_dir() / relative
    if not path.exists():
        raise ConfigError(
            "Real data file not found.",
            path=path,
            expected="the pantailor data set under PANTAILOR_DATA",
            got="no such file",
            fix="set PANTAILOR_DATA to the folder holding the data (default ../shared/data).",
        )
    return path


#: Tile edge in PAN pixels of a file input's store (``RunConfig.tile`` ``None``).
DEFAULT_TILE = 512

#: The :func:`pipeline.scene.open_scene` options a run may pass through ``RunConfig.ingest``.
INGEST_OPTIONS = ("nodata", "dn_max", "ms_decimate", "patch", "tolerance")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """One scene's run.

    Attributes
    ----------
    inputs
        PAN then MS file(s), a container, or one existing scene store (``*.zarr``).
    output
        The COG to write (``OUT.tif``).
    sensor
        Sensor name (optional for a store input: taken from it).
    method
        A method of :data:`pipeline.methods.METHODS` (a network or a classical method).
    weights
        Backbone weights: ``None`` (shipped), ``dlpan:<SENSOR>`` or a path.
    adapt
        An adapt mode of :data:`pipeline.methods.ADAPT_MODES` (``tailor``, ``none``,
        ``finetune``).
    work_dir
        Where the store, journal, lock and adapter live (default ``OUT.work``).
    tile
        Tile edge in PAN pixels for ingest; ``None``: :data:`DEFAULT_TILE`. A store input keeps
        its own, and a different ``tile`` given with one is refused.
    overwrite, dry_run
        Start over (removing what this run's journal says it created) / only validate and plan.
    seed
        Seed of sampling and fitting.
    sample, fit
        :class:`pipeline.sampling.SampleConfig` / :class:`pipeline.fit.FitConfig` fields.
    quality_tiles
        Tiles scored for the report (0: none).
    ingest
        Extra :func:`pipeline.scene.open_scene` options, keys of :data:`INGEST_OPTIONS`
        (``nodata``, ``dn_max``, ``ms_decimate``, ``patch``, ``tolerance``).
    sensor_file
        A sensor YAML file adding ``sensor`` (see :func:`pipeline.sensors.load_sensor_file`).
    clip
        Clip valid outputs to ``[0, dn_max]`` (default; ``--no-clip`` keeps the network's range).
    adapter_file
        A fitted adapter (tailor, or fine-tuned file, per ``adapt``) to use instead of fitting:
        the run journals it (path and SHA-256) as its fit record, and recomputes its tiles when
        the file's content changes. ``pantailor batch --tailor-scope group`` passes its group's.
    speculate
        While a tailor is fitted, tiles per spare worker thread whose backbone features are
        extracted meanwhile (:mod:`workers.speculate`; about 50 MB each for FusionNet at tile
        512); 0 turns it off. The product is the same either way (not part of the run's identity).
        Default 8 since the default fit doubled: 2048² end to end x0.93 of 4's (16: x0.94;
        ``benchmarks/results/fit_default_e2e.md``).
    """

    inputs: tuple[str, ...]
    output: str
    sensor: str | None = None
    method: str = "fusionnet"
    weights: str | None = None
    adapt: str = "tailor"
    work_dir: str | None = None
    tile: int | None = None
    overwrite: bool = False
    dry_run: bool = False
    seed: int = 0
    sample: Mapping[str, Any] = field(default_factory=dict)
    fit: Mapping[str, Any] = field(default_factory=dict)
    quality_tiles: int = 4
    ingest: Mapping[str, Any] = field(default_factory=dict)
    sensor_file: str | None = None
    clip: bool = True
    adapter_file: str | None = None
    speculate: int = 8

    def __post_init__(self) -> None:
        from .methods import adapt_mode, method

        method(self.method)
        adapt_mode(self.adapt)
        if not self.inputs:
            raise ConfigError("No inputs given.", fix="pass PAN and MS files or a scene store.")
        if not str(self.output).lower().endswith((".tif", ".tiff")):
            raise ConfigError(
                "The output must be a GeoTIFF path.",
                path=str(self.output),
                expected="a file name ending in .tif or .tiff",
                got=self.output,
                fix="pass e.g. -o out.tif (out.report.json, out.quicklook.png and the work "
                "folder out.work/ are written beside it).",
            )
        if self.speculate < 0:
            raise ConfigError(
                "--speculate must be >= 0 (tiles per spare worker thread).",
                got=self.speculate,
                fix="pass --speculate 0 to turn speculation off, or a count such as 4 (the "
                "default).",
            )
        unknown = sorted(set(self.ingest) - set(INGEST_OPTIONS))
        if unknown:
            raise ConfigError(
                "Unknown ingest option.",
                expected=", ".join(INGEST_OPTIONS),
                got=", ".join(unknown),
                fix="use the ingest options of `pantailor run --help`.",
            )
        if self.adapter_file is not None and not adapt_mode(self.effective_adapt).fits:
            raise ConfigError(
                "A fitted adapter file is given to a run that fits none.",
                expected="--adapt tailor or finetune with a network",
                got=f"method {self.method}, adapt {self.effective_adapt}",
            )

    @property
    def effective_adapt(self) -> str:
        """``none`` for classical methods (nothing to adapt), else :attr:`adapt`."""
        from .methods import effective_adapt

        return effective_adapt(self.method, self.adapt)

    @property
    def ingest_tile(self) -> int:
        """The tile edge a file input is ingested with (``tile``, else :data:`DEFAULT_TILE`)."""
        return DEFAULT_TILE if self.tile is None else self.tile

    def fingerprint(self) -> dict[str, Any]:
        """What makes two runs the same run (compared on resume; weights by checksum later)."""
        given = (
            {"adapter_file": str(Path(self.adapter_file).resolve())} if self.adapter_file else {}
        )
        return {
            **given,
            "inputs": [str(Path(p).resolve()) for p in self.inputs],
            "sensor": self.sensor,
            "sensor_file": str(Path(self.sensor_file).resolve()) if self.sensor_file else None,
            "method": self.method,
            "weights": self.weights,
            "adapt": self.effective_adapt,
            "tile": self.ingest_tile,
            "seed": self.seed,
            "sample": dict(self.sample),
            "fit": dict(self.fit),
            "ingest": dict(self.ingest),
            "clip": self.clip,
        }
