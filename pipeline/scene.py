"""Compatibility home of :func:`open_scene` and :class:`Scene`: both live in :mod:`pipeline.ingest`.

Kept because many callers import ``pipeline.scene.open_scene``; new code imports
:mod:`pipeline.ingest`.
"""

from __future__ import annotations

from .ingest import SUPPORTED_DTYPES, Scene, Transform, open_scene, to_dn, to_float

__all__ = ["SUPPORTED_DTYPES", "Scene", "Transform", "open_scene", "to_dn", "to_float"]
