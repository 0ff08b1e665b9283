"""Fetching the viewer: the pinned integrity, what is unpacked and rebased, and
that a failure leaves pacsbox building with one line."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from pacsbox.web import viewer_fetch as vf
from tests.helpers import free_port

INDEX = (
    '<script>window.PUBLIC_URL="/"</script><link rel="manifest" href="/manifest.json">'
    '<script src="/app-config.js"></script><script defer src="/app.bundle.1.js"></script>'
)


def tarball(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo("package/" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


BUILD = {
    "dist/index.html": INDEX.encode(),
    "dist/app.bundle.1.js": b'__webpack_require__.p = "/";',
    "dist/app.bundle.css": b"@font-face{src:url(/a.woff2)}",
    "dist/app-config.js": b"window.config = {dataSources: ['https://far.away']}",
    "dist/ort/ort-wasm.wasm": b"x" * 100,
    "dist/app.bundle.1.js.map": b"{}",
    "package.json": b"{}",
}


def test_only_the_pinned_tarball_is_accepted():
    with pytest.raises(vf.FetchError, match="not the pinned one"):
        vf.check_integrity(tarball(BUILD))


def test_unpack_rebases_and_leaves_out_what_is_not_needed(tmp_path):
    dest = tmp_path / "ohif"
    count = vf.unpack(tarball(BUILD), dest)
    assert count == 3
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        ["index.html", "app.bundle.1.js", "app.bundle.css", vf.STAMP]
    )
    index = (dest / "index.html").read_text()
    assert 'window.PUBLIC_URL="/viewer/"' in index
    assert 'src="/viewer/app-config.js"' in index and 'src="/viewer/app.bundle.1.js"' in index
    assert "manifest" not in index
    assert (dest / "app.bundle.1.js").read_bytes() == b'__webpack_require__.p = "/viewer/";'
    assert (dest / "app.bundle.css").read_bytes() == b"@font-face{src:url(/viewer/a.woff2)}"
    assert vf.installed(dest)


def test_installed_viewer_is_not_fetched_again(tmp_path):
    dest = tmp_path / "ohif"
    vf.unpack(tarball(BUILD), dest)
    line = vf.ensure(dest, tarball=tmp_path / "no-such.tgz")  # would fail if read
    assert line == f"viewer: @ohif/app {vf.VERSION} already in {dest}"
    (dest / vf.STAMP).write_text("3.0.0 sha512-old\n")  # another version: replaced
    assert not vf.installed(dest)


def test_no_registry_is_one_line_and_no_failure(tmp_path, capsys, monkeypatch):
    # npm's own setting: a registry on a closed loopback port (no retry, no cache).
    monkeypatch.setenv("npm_config_registry", f"http://127.0.0.1:{free_port()}/")
    monkeypatch.setenv("npm_config_fetch_retries", "0")
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    assert vf.main(["--dest", str(tmp_path / "ohif")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("viewer not installed: npm pack failed: ")
    assert "ECONNREFUSED" in out[0] and out[0].endswith("the rest of pacsbox works without it")
    assert vf.main(["--dest", str(tmp_path / "ohif"), "--strict"]) == 1
    assert not (tmp_path / "ohif").exists()


def test_a_wrong_copy_is_refused(tmp_path, capsys):
    bad = tmp_path / "app.tgz"
    bad.write_bytes(tarball(BUILD))
    assert vf.main(["--dest", str(tmp_path / "ohif"), "--tarball", str(bad)]) == 0
    assert "integrity" in capsys.readouterr().out
    assert not (tmp_path / "ohif").exists()


def test_unpack_keeps_a_gzipped_copy_of_large_text_and_code(tmp_path):
    big = b"var pacsbox = 1;\n" * 200
    build = {**BUILD, "dist/big.js": big, "dist/pic.png": b"\x89PNG" + b"\0" * 4000}
    dest = tmp_path / "ohif"
    vf.unpack(tarball(build), dest)
    assert gzip.decompress((dest / "big.js.gz").read_bytes()) == big
    assert not (dest / "pic.png.gz").exists()  # already compressed
    assert not (dest / "app.bundle.1.js.gz").exists()  # too small to be worth it
