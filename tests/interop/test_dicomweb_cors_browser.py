"""CORS as a real browser applies it: a page on another origin calls /dicom-web with a token.

Headless Chromium loads a blank page from a second loopback server (another
origin); its script fetches QIDO-RS from pacsbox with ``Authorization:
Bearer``, which makes the browser send a preflight first. Only the origin
listed in DicomWebCorsOrigins gets the answer; the browser blocks the other.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pacsbox import config
from pacsbox.archive import Archive
from pacsbox.db.models import Study
from pacsbox.web import tokens, users
from pacsbox.web.server import start_web
from tests.helpers import write_config
from tests.integration.web.conftest import PASSWORD, make_dicom
from tests.interop.test_browser import browser, pytestmark  # noqa: F401 - fixture and marks

FETCH = """
const done = arguments[arguments.length - 1];
fetch(arguments[0], {headers: {"Authorization": "Bearer " + arguments[1],
                               "Accept": "application/dicom+json"}})
  .then(r => r.json().then(j => done("status " + r.status + " studies " + j.length)))
  .catch(e => done("blocked " + e.name));
"""


class _Blank(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        body = b"<!doctype html><title>other origin</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 - http.server's signature
        pass


@pytest.fixture
def pages():
    """Two blank pages on two loopback origins; stopped after the test."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Blank) for _ in range(2)]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    yield [f"http://127.0.0.1:{s.server_address[1]}" for s in servers]
    for s in servers:
        s.shutdown()
        s.server_close()


def test_a_listed_origin_reads_with_a_token_and_another_is_blocked(tmp_path, browser, pages):  # noqa: F811 - fixture
    allowed, other = pages
    ini = write_config(tmp_path / "box", SyncWrites="no", DicomWebCorsOrigins=allowed)
    cfg = config.load(ini)
    archive = Archive(cfg)
    handle = None
    try:
        archive.store(make_dicom(), source="test")
        Study.update(private=False).execute()
        users.add_user("viewer", ["view"], PASSWORD)
        token = tokens.create("viewer", "browser")
        handle = start_web(cfg, archive, port=0)
        qido = f"http://127.0.0.1:{handle.port}/dicom-web/studies"
        browser.set_script_timeout(20)
        browser.get(allowed + "/")
        assert browser.execute_async_script(FETCH, qido, token) == "status 200 studies 1"
        browser.get(other + "/")
        assert browser.execute_async_script(FETCH, qido, token) == "blocked TypeError"
    finally:
        if handle is not None:
            handle.stop()
        archive.close()
