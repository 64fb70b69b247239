"""Frozen, validated configuration objects and the project-wide settings.

``PANTAILOR_DATA`` is the one setting that locates the real data set (default ``../shared/data``
relative to the repository root).
"""

from __future__ import annotations

import os
from pathlib import Path

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
