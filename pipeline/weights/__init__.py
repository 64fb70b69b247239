"""Backbone weights: the project's shipped ``.pt`` files (package data) and the registry of every
checkpoint pantailor knows (:mod:`pipeline.weights.registry`): source URL at a pinned commit,
sha256, licence, sensor and bands; fetched into the cache on first use and verified on every load.
"""

from __future__ import annotations

from .registry import (
    ENTRIES,
    WeightsEntry,
    WeightsError,
    cache_dir,
    dlpan_entry,
    entries,
    get,
    resolve,
    status,
)

__all__ = [
    "ENTRIES",
    "WeightsEntry",
    "WeightsError",
    "cache_dir",
    "dlpan_entry",
    "entries",
    "get",
    "resolve",
    "status",
]
