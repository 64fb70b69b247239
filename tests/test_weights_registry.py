"""The weights registry: files served from PANTAILOR_DATA over a local HTTP server (127.0.0.1
only): download, cache hit, checksum mismatch refused naming the file, offline mirrors."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import threading
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.backbones import load
from pipeline.cli import main
from pipeline.weights import registry
from pipeline.weights.registry import WeightsError

NAME = "dlpan-fusionnet-wv3"


class Server:
    """A local HTTP server serving ``routes`` (URL path -> file); counts the requests."""

    def __init__(self, routes: Mapping[str, Path]) -> None:
        self.routes = dict(routes)
        self.hits: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits.append(self.path)
                path = outer.routes.get(self.path)
                if path is None:
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[list[Server]]:
    servers: list[Server] = []
    yield servers
    for s in servers:
        s.close()


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_root: Path) -> Path:
    """A user without the test data: empty PANTAILOR_DATA, a fresh cache, no mirror, no proxy."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("PANTAILOR_WEIGHTS_MIRROR", raising=False)
    monkeypatch.setenv("PANTAILOR_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("PANTAILOR_CACHE", str(tmp_path / "cache"))
    return data_root


def _point(monkeypatch: pytest.MonkeyPatch, name: str, url: str) -> registry.WeightsEntry:
    """Make entry ``name`` download from ``url`` (the local server) instead of GitHub."""
    entry = replace(registry.ENTRIES[name], url=url)
    monkeypatch.setitem(registry.ENTRIES, name, entry)
    return entry


def test_download_then_cache_hit_then_load(
    user: Path, serve: list[Server], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    entry = registry.ENTRIES[NAME]
    server = Server({"/wv3/fusionnet.pth": user / entry.data_path})
    serve.append(server)
    _point(monkeypatch, NAME, server.base + "/wv3/fusionnet.pth")
    model = load("fusionnet", "dlpan:wv3", sensor="wv3")  # what `--weights dlpan:wv3` calls
    assert server.hits == ["/wv3/fusionnet.pth"]
    cached = tmp_path / "cache" / entry.file
    assert registry.file_sha256(cached) == entry.sha256
    assert sorted(p.name for p in cached.parent.iterdir()) == [entry.file]  # no temp file left
    again = load("fusionnet", "dlpan:wv3", sensor="wv3")
    assert server.hits == ["/wv3/fusionnet.pth"]  # the cache answered
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert (a == b).all()


def test_download_with_wrong_bytes_is_refused_naming_the_file(
    user: Path, serve: list[Server], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wrong = user / registry.ENTRIES["dlpan-fusionnet-wv2"].data_path  # right format, wrong file
    server = Server({"/f.pth": wrong})
    serve.append(server)
    _point(monkeypatch, NAME, server.base + "/f.pth")
    with pytest.raises(WeightsError) as err:
        registry.resolve(registry.ENTRIES[NAME])
    msg = str(err.value)
    assert "dlpan-fusionnet-wv3.pth" in msg and "mismatch" in msg.lower()
    assert registry.ENTRIES[NAME].sha256 in msg
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_corrupt_cache_file_is_refused_on_load(
    user: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    entry = registry.ENTRIES[NAME]
    (tmp_path / "cache").mkdir()
    bad = tmp_path / "cache" / entry.file
    data = bytearray((user / entry.data_path).read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in a tensor
    bad.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=re.escape(str(bad))):
        load("fusionnet", "dlpan:wv3", sensor="wv3")


def test_offline_with_a_mirror_directory(
    user: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    entry = _point(monkeypatch, NAME, "http://127.0.0.1:9/never")  # port 9: nothing listens
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copyfile(user / entry.data_path, mirror / entry.file)
    monkeypatch.setenv("PANTAILOR_WEIGHTS_MIRROR", str(mirror))
    assert registry.resolve(entry) == mirror / entry.file
    other = registry.ENTRIES["dlpan-pnn-wv3"]
    with pytest.raises(
        WeightsError, match=re.escape("dlpan-pnn-wv3.pth")
    ):  # not in the mirror: no download
        registry.resolve(other)


def test_offline_with_a_mirror_url(
    user: Path, serve: list[Server], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    entry = _point(monkeypatch, NAME, "http://127.0.0.1:9/never")
    server = Server({f"/mirror/{entry.file}": user / entry.data_path})
    serve.append(server)
    monkeypatch.setenv("PANTAILOR_WEIGHTS_MIRROR", server.base + "/mirror/")
    path = registry.resolve(entry)
    assert path == tmp_path / "cache" / entry.file
    assert server.hits == [f"/mirror/{entry.file}"]
    registry.resolve(entry)
    assert len(server.hits) == 1


def test_the_data_folder_copy_is_used_and_every_entry_matches_it(data_root: Path) -> None:
    dlpan = [e for e in registry.entries() if e.url]
    assert {(e.sensor, e.network) for e in dlpan} == {
        (s, n) for s in ("qb", "wv2", "wv3", "wv4") for n in ("fusionnet", "pnn", "pannet", "dicnn")
    }
    for e in dlpan:
        path = registry.resolve(e, download=False)
        assert path == data_root / e.data_path
        assert e.url.startswith("https://raw.githubusercontent.com/liangjiandeng/DLPan-Toolbox/")
        assert len(e.url.split("/")[5]) == 40  # a pinned commit, not a branch
        assert load(e.network, path, n_bands=e.bands).n_bands == e.bands
    for e in registry.entries():
        if not e.url:  # shipped in the package
            assert registry.resolve(e, download=False).parent == registry.PACKAGE_DIR


def test_cli_list_json_and_verify(
    user: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["weights", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"name", "file", "sha256", "url", "licence", "sensor", "bands"} <= set(rows[0])
    wv3 = next(r for r in rows if r["name"] == NAME)
    assert (wv3["bands"], wv3["sensor"], wv3["file"]) == (8, "wv3", "dlpan-fusionnet-wv3.pth")
    assert "GPL" in wv3["licence"]
    assert main(["weights", "verify"]) == 0  # shipped ones ok, the rest missing: not an error
    capsys.readouterr()
    entry = registry.ENTRIES[NAME]
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / entry.file).write_bytes(b"not a checkpoint")
    assert main(["weights", "verify", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["mismatch"] == [NAME] and out["entries"][NAME]["cache"] == "MISMATCH"
    assert main(["weights", "fetch", NAME]) == 2  # refused, not loaded
    assert entry.file in capsys.readouterr().err


def test_cli_fetch_into_the_cache(
    user: Path, serve: list[Server], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    entry = registry.ENTRIES["dlpan-pnn-qb"]
    server = Server({"/pnn.pth": user / entry.data_path})
    serve.append(server)
    _point(monkeypatch, entry.name, server.base + "/pnn.pth")
    assert main(["weights", "fetch", entry.name]) == 0
    assert registry.file_sha256(tmp_path / "cache" / entry.file) == entry.sha256
    assert main(["weights", "verify", entry.name]) == 0


def _write_pair(tmp: Path) -> tuple[Path, Path]:
    """A small synthetic WorldView-2 pair as georeferenced GeoTIFFs (a user's own files)."""
    import rasterio
    from rasterio.transform import from_origin

    from pipeline.synthetic import make_scene

    syn = make_scene((128, 128), "wv2", seed=1)
    paths = []
    for name, arr, res in (("pan", syn.pan[None], 0.5), ("ms", syn.ms, 2.0)):
        path = tmp / f"{name}.tif"
        with rasterio.open(
            path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1],
            count=arr.shape[0], dtype=arr.dtype, crs="EPSG:32631",
            transform=from_origin(590000.0, 5750000.0, res, res),
        ) as f:  # fmt: skip
            f.write(arr)
        paths.append(path)
    return paths[0], paths[1]


@pytest.mark.slow
def test_a_user_without_the_data_runs_with_dlpan_wv3(
    user: Path,
    serve: list[Server],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`pantailor run PAN.tif MS.tif --sensor wv2 --weights dlpan:wv3`: fetched, verified, used
    by the client's check and by the worker processes (which find it in the same cache)."""
    entry = registry.ENTRIES[NAME]
    server = Server({"/f.pth": user / entry.data_path})
    serve.append(server)
    _point(monkeypatch, NAME, server.base + "/f.pth")
    pan, ms = _write_pair(tmp_path)
    out = tmp_path / "x.tif"
    argv = ["run", str(pan), str(ms), "--sensor", "wv2", "--weights", "dlpan:wv3"]
    argv += ["--adapt", "none", "--workers", "1", "--tile", "64", "-o", str(out), "--json"]
    assert main(argv) == 0
    assert server.hits == ["/f.pth"]  # downloaded once, then the cache served the workers
    assert registry.file_sha256(tmp_path / "cache" / entry.file) == entry.sha256
    assert json.loads(capsys.readouterr().out)["outputs"]["cog"] == str(out)
    assert out.is_file()
