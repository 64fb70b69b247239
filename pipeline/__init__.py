"""pantailor: distributed tiled pansharpening with per-scene residual feature tailoring.

The ``pipeline`` package holds *what* is computed (sensors, scenes, tiling, models, losses,
fitting, metrics, export) and the scene-job layer that runs it; the ``workers`` package holds
*where* it runs (Dask cluster, worker plugin, tile kernel). Only :mod:`pipeline.distribute` and
:mod:`workers` know about ``distributed``.

The public API is re-exported here, imported on first use (``import pipeline`` stays light):
:func:`run_scene`, :func:`plan`, :func:`demo_config`, :class:`RunConfig`, :func:`open_engine`,
:class:`Engine`, the job specs of :mod:`pipeline.jobs` and the method table of
:mod:`pipeline.methods`. See ``docs/DEVELOPING.md`` for the layer map.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("pantailor")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

#: Public name -> module that defines it.
_EXPORTS = {
    "RunConfig": "config",
    "run_scene": "runner",
    "plan": "runner",
    "demo_config": "runner",
    "RunPaths": "journal",
    "Journal": "journal",
    "RunLock": "lock",
    "STAGES": "stages",
    "Engine": "distribute",
    "open_engine": "distribute",
    "ModelSpec": "jobs",
    "TileTask": "jobs",
    "ClassicalTileTask": "jobs",
    "TileResult": "jobs",
    "FitJob": "jobs",
    "FitOutcome": "jobs",
    "ClassicalFitJob": "jobs",
    "ClassicalFitOutcome": "jobs",
    "QualityJob": "jobs",
    "QualityResult": "jobs",
    "ClassicalSpec": "jobs",
    "METHODS": "methods",
    "ADAPT_MODES": "methods",
    "PantailorError": "errors",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["__version__", *_EXPORTS]
