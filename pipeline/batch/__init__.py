"""Archive batches: many scenes on one cluster, resumable, every scene's fate recorded.

``pantailor batch SOURCE -o OUTDIR`` reads a manifest, a STAC catalog or a glob
(:mod:`.sources`, :mod:`.stac`), plans against OUTDIR's database (:mod:`.plan`, :mod:`.state`),
runs the scenes through :func:`pipeline.runner.run_scene` on one shared engine (:mod:`.run`) and
writes the summaries and the products' STAC ItemCollection (:mod:`.outputs`);
``pantailor status OUTDIR`` reads the database (:mod:`.status`).
"""

from .plan import BatchConfig, PlannedScene, make_plan, plan_summary
from .run import BatchResult, run_batch
from .sources import ManifestError, SceneSpec, glob_scenes, read_manifest
from .stac import read_stac
from .state import BatchState, BatchStateError
from .status import batch_status, format_status

__all__ = [
    "BatchConfig",
    "BatchResult",
    "BatchState",
    "BatchStateError",
    "ManifestError",
    "PlannedScene",
    "SceneSpec",
    "batch_status",
    "format_status",
    "glob_scenes",
    "make_plan",
    "plan_summary",
    "read_manifest",
    "read_stac",
    "run_batch",
]
