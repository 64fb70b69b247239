"""The one exception tree of pantailor.

Every error raised on user input derives from :class:`PantailorError` and says *what* was
expected, *what* was found, and *how to fix it*, naming the file(s) involved.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike


class PantailorError(Exception):
    """Base class of every error pantailor raises on purpose.

    Parameters
    ----------
    problem
        One sentence saying what is wrong.
    path
        The file(s) or store(s) concerned, if any.
    expected, got
        What was expected and what was found.
    fix
        What the user should do about it.
    """

    def __init__(
        self,
        problem: str,
        *,
        path: str | PathLike[str] | Sequence[str | PathLike[str]] | None = None,
        expected: object = None,
        got: object = None,
        fix: str | None = None,
    ) -> None:
        self.problem = problem
        if path is None:
            self.paths: tuple[str, ...] = ()
        elif isinstance(path, str | PathLike):
            self.paths = (str(path),)
        else:
            self.paths = tuple(str(p) for p in path)
        self.expected = expected
        self.got = got
        self.fix = fix
        super().__init__(self._format())

    def _format(self) -> str:
        parts = [self.problem]
        if self.paths:
            parts.append("File: " + ", ".join(self.paths) + ".")
        if self.expected is not None:
            parts.append(f"Expected: {self.expected}.")
        if self.got is not None:
            parts.append(f"Got: {self.got}.")
        if self.fix:
            parts.append(f"Fix: {self.fix}")
        return " ".join(parts)


class InputError(PantailorError, ValueError):
    """An input file or array is not what pantailor can process."""


class GridMismatchError(InputError):
    """PAN and MS grids disagree (CRS, extent, pixel-size ratio, alignment)."""


class SensorError(PantailorError, KeyError):
    """Unknown sensor name or an invalid sensor definition."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.args[0] if self.args else ""


class ConfigError(PantailorError, ValueError):
    """A configuration value is invalid."""


class CheckpointError(PantailorError, ValueError):
    """A checkpoint or fitted tailor does not fit the model it is loaded into."""


class StoreError(PantailorError):
    """A scene store is missing, incomplete, or would be overwritten."""


class ClusterError(PantailorError):
    """The Dask cluster could not be created or reached."""


class MissingDependencyError(PantailorError, ImportError):
    """An optional dependency is not installed; the message gives the install command."""
