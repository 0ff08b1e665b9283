"""The /viewer pages over a small stand-in for the OHIF build (the real one is
exercised in Chromium by tests/interop/test_viewer.py)."""

from __future__ import annotations

import gzip
import http.client
import urllib.parse

import pytest

from pacsbox.web import users
from pacsbox.web.app import create_app
from pacsbox.web.server import start_web
from pacsbox.web.viewer_fetch import STAMP, stamp_text
from tests.integration.web.conftest import PASSWORD, login, store

SCRIPT = "app.bundle.0123456789abcdef.js"
WASM = "fedcba9876543210.wasm"


@pytest.fixture
def viewer_dir(tmp_path):
    d = tmp_path / "ohif"
    d.mkdir()
    (d / "index.html").write_text("<!doctype html><title>OHIF Viewer</title>")
    (d / SCRIPT).write_text("console.log(1)")
    (d / WASM).write_bytes(b"\0asm\1\0\0\0")
    (d / "app.bundle.css").write_text("body{}")
    (d / "assets").mkdir()
    (d / "assets" / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (d / STAMP).write_text(stamp_text() + "\n")
    return d


@pytest.fixture
def viewer_app(cfg, archive, clock, viewer_dir):
    return create_app(cfg.replace(ViewerDirectory=str(viewer_dir)), archive, clock=clock)


def test_anonymous_visit_goes_to_login(viewer_app):
    b = login(viewer_app, "root")
    b.t.reset()  # the cookie jar emptied: an anonymous browser
    r = b.get("/viewer/viewer?StudyInstanceUIDs=1.2.3", expect_errors=True)
    assert r.status_int == 303
    assert r.headers["Location"] == "/login?next=/viewer/viewer%3FStudyInstanceUIDs%3D1.2.3"
    assert b.get("/viewer/app-config.js", expect_errors=True).status_int == 303


def test_files_types_and_cache(viewer_app):
    b = login(viewer_app, "root")
    r = b.get("/viewer/")
    assert r.content_type == "text/html" and "OHIF Viewer" in r.text
    assert r.headers["Cache-Control"] == "no-cache"
    assert "connect-src 'self'" in r.headers["Content-Security-Policy"]
    r = b.get("/viewer/" + SCRIPT)
    assert r.content_type == "text/javascript"
    assert "immutable" in r.headers["Cache-Control"]
    r = b.get("/viewer/" + WASM)
    assert r.content_type == "application/wasm" and "immutable" in r.headers["Cache-Control"]
    assert b.get("/viewer/app.bundle.css").content_type == "text/css"
    r = b.get("/viewer/assets/logo.svg")
    assert r.content_type == "image/svg+xml" and r.headers["Cache-Control"] == "no-cache"


def test_app_routes_fall_back_to_index_and_missing_files_do_not(viewer_app):
    b = login(viewer_app, "root")
    for route in ("/viewer", "/viewer/viewer?StudyInstanceUIDs=1.2.3", "/viewer/viewer/1.2.3"):
        r = b.get(route)
        assert r.content_type == "text/html" and "OHIF Viewer" in r.text, route
    for missing in ("/viewer/nothing.js", "/viewer/x.wasm", "/viewer/assets/none.png"):
        r = b.get(missing, expect_errors=True)
        assert r.status_int == 404 and "no such viewer file" in r.text, missing
    for escape in ("/viewer/../auth.py", "/viewer/%2e%2e/%2e%2e/config.py"):
        assert b.get(escape, expect_errors=True).status_int == 404, escape


def test_app_config_points_at_this_box(viewer_app):
    b = login(viewer_app, "root")
    r = b.get("/viewer/app-config.js")
    assert r.content_type == "text/javascript"
    js = r.text
    assert 'routerBasename": "/viewer"' in js
    assert "window.location.origin + '/dicom-web'" in js
    assert "http://" not in js and "https://" not in js  # no outside server
    assert "pacsbox PACSBOX" in js  # the data source is named after this AE


def test_not_installed_says_so(app, cfg, archive, tmp_path):
    empty = create_app(cfg.replace(ViewerDirectory=str(tmp_path / "none")), archive)
    b = login(empty, "root")
    for path in (
        "/viewer",
        "/viewer/",
        "/viewer/viewer?StudyInstanceUIDs=1",
        "/viewer/app-config.js",
    ):
        r = b.get(path, expect_errors=True)
        assert r.status_int == 503 and "the viewer is not installed: run make viewer" in r.text


def test_study_page_and_search_rows_link_the_viewer(viewer_app, cfg, archive, tmp_path):
    uid = store(archive, description="LINKED CT").study_instance_uid
    link = f'href="/viewer/viewer?StudyInstanceUIDs={uid}"'
    b = login(viewer_app, "root")
    assert link in b.get(f"/studies/{uid}").text
    assert link in b.get("/studies", params={"study_description": "LINKED*"}).text
    # Without the viewer the same places say so instead of linking.
    bare = create_app(cfg.replace(ViewerDirectory=str(tmp_path / "none")), archive)
    b = login(bare, "root")
    for page in (f"/studies/{uid}", "/studies"):
        html = b.get(page).text
        assert "viewer not installed" in html and "/viewer/viewer" not in html, page


def test_a_browser_that_takes_gzip_gets_the_file_unpacked_gzipped(cfg, archive, viewer_dir):
    """Over the daemon's real HTTP server (webtest would decode the body itself)."""
    big = "chunk.0123456789abcdef.js"
    text = "console.log('pacsbox');\n" * 400
    (viewer_dir / big).write_text(text)
    (viewer_dir / (big + ".gz")).write_bytes(gzip.compress(text.encode()))
    users.set_password("root", PASSWORD)
    handle = start_web(cfg.replace(ViewerDirectory=str(viewer_dir)), archive, port=0)

    def get(path: str, **headers: str) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=30)
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        r.body = r.read()  # type: ignore[attr-defined]
        conn.close()
        return r

    try:
        conn = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=30)
        form = urllib.parse.urlencode({"name": "root", "password": PASSWORD})
        conn.request("POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"})
        cookie = conn.getresponse().getheader("Set-Cookie").split(";")[0]
        conn.close()
        r = get("/viewer/" + big, Cookie=cookie, **{"Accept-Encoding": "gzip, deflate"})
        assert r.status == 200 and r.getheader("Content-Encoding") == "gzip"
        assert r.getheader("Content-Type").startswith("text/javascript")
        assert gzip.decompress(r.body).decode() == text and r.getheader("Vary") == "Accept-Encoding"
        r = get("/viewer/" + big, Cookie=cookie)
        assert r.getheader("Content-Encoding") is None and r.body.decode() == text
        r = get("/viewer/" + SCRIPT, Cookie=cookie, **{"Accept-Encoding": "gzip"})  # no .gz
        assert r.getheader("Content-Encoding") is None and r.body == b"console.log(1)"
    finally:
        handle.stop()
