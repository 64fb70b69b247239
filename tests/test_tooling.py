"""Packaging and tooling checks: the generic package names resolve here; ruff and mypy pass."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pipeline
import workers

ROOT = Path(__file__).resolve().parent.parent


def test_packages_resolve_inside_this_repository() -> None:
    for mod in (pipeline, workers):
        assert mod.__file__ is not None
        assert Path(mod.__file__).resolve().is_relative_to(ROOT), mod.__file__


def test_console_script_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "pansharpening" in out.stdout


@pytest.mark.parametrize(
    "cmd",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_static_checks(cmd: list[str]) -> None:
    if shutil.which(cmd[0]) is None and not (Path(sys.executable).parent / cmd[0]).exists():
        pytest.fail(f"{cmd[0]} is not installed: pip install -e '.[dev]'")
    exe = str(Path(sys.executable).parent / cmd[0])
    exe = exe if Path(exe).exists() else cmd[0]
    res = subprocess.run([exe, *cmd[1:]], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
