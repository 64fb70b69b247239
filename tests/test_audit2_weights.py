"""Audit round 2: a bad weights mirror or cache is an error naming it, never a traceback.

Found by the round-2 audit (docs/notes/audit.md): ``PANTAILOR_WEIGHTS_MIRROR=http://[::1``
died on urllib's ``ValueError``; ``PANTAILOR_CACHE`` naming a file died on ``FileExistsError``;
a mirror serving a truncated file was refused naming the removed temporary file and telling
the user to delete it. Files are served by a local 127.0.0.1 server only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.weights import registry
from tests.test_weights_registry import NAME, Server, serve, user

__all__ = ["serve", "user"]  # fixtures


def fetch(capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["weights", "fetch", NAME])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_a_mirror_url_that_cannot_be_parsed_is_named(
    user: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PANTAILOR_WEIGHTS_MIRROR", "http://[::1")
    code, err = fetch(capsys)
    assert code == 2
    assert "PANTAILOR_WEIGHTS_MIRROR is not a valid URL" in err and "http://[::1" in err


@pytest.mark.parametrize("mirror", ["ftp://host/weights", "s3://bucket/weights"])
def test_a_mirror_with_a_scheme_that_cannot_be_fetched_is_named(
    user: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], mirror: str
) -> None:
    """Audit #113: an ``ftp://`` mirror was taken for a directory ("not available locally")."""
    monkeypatch.setenv("PANTAILOR_WEIGHTS_MIRROR", mirror)
    code, err = fetch(capsys)
    assert code == 2
    assert "a scheme pantailor cannot fetch from" in err and mirror in err


def test_a_cache_that_is_a_file_is_named(
    user: Path,
    serve: list[Server],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    entry = registry.ENTRIES[NAME]
    serve.append(Server({f"/m/{entry.file}": user / entry.data_path}))
    monkeypatch.setenv("PANTAILOR_WEIGHTS_MIRROR", serve[0].base + "/m")
    in_the_way = tmp_path / "cache-file"
    in_the_way.write_text("not a folder")
    monkeypatch.setenv("PANTAILOR_CACHE", str(in_the_way))
    code, err = fetch(capsys)
    assert code == 2
    assert "Cannot write into the weights cache" in err and str(in_the_way) in err
    assert in_the_way.read_text() == "not a folder"


def test_a_mirror_serving_a_truncated_file_is_named_by_its_url(
    user: Path,
    serve: list[Server],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    entry = registry.ENTRIES[NAME]
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes((user / entry.data_path).read_bytes()[:1000])
    serve.append(Server({f"/m/{entry.file}": truncated}))
    monkeypatch.setenv("PANTAILOR_WEIGHTS_MIRROR", serve[0].base + "/m")
    code, err = fetch(capsys)
    assert code == 2
    url = f"{serve[0].base}/m/{entry.file}"
    assert "Checksum mismatch" in err and f"File: {url}." in err and "replace it there" in err
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir())  # nothing unverified kept
