"""pantailor: distributed tiled pansharpening with per-scene residual feature tailoring.

The ``pipeline`` package holds *what* is computed (sensors, scenes, tiling, models, losses,
fitting, metrics, export); the ``workers`` package holds *where* it runs (Dask cluster, worker
plugin, tile kernel). Only :mod:`pipeline.distribute` and :mod:`workers` know about ``distributed``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pantailor")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
