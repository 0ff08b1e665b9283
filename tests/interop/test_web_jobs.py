"""The web page's jobs on a running daemon (issue 17 item 1): an export started from the
page is a queue row, the status snapshot (the front panel) lists it while it runs, and a
kill -9 half-way loses nothing: after the restart it runs again and its ZIP downloads."""

from __future__ import annotations

import http.cookiejar
import io
import json
import urllib.parse
import urllib.request
import zipfile

from pacsbox.archive import Archive
from pacsbox.config import load
from tests.helpers import Server, cli, free_port, poll, write_config
from tests.integration.web.conftest import PASSWORD
from tests.synth import make_instance

STUDY = "1.2.826.0.1.3680043.8.498.616161.1"
IMAGES = 800  # about 7 s of export on the test machine: time to look and to cut


class Page:
    """The daemon's web page as a logged-in browser sees it (cookies, CSRF token)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )
        self.csrf = self.post("/login.json", name="root", password=PASSWORD)["csrf"]

    def get(self, path: str) -> bytes:
        with self.opener.open(self.url + path, timeout=30) as r:
            return r.read()

    def post(self, path: str, **fields: str) -> dict:
        if hasattr(self, "csrf"):
            fields["csrf_token"] = self.csrf
        body = urllib.parse.urlencode(fields).encode()
        with self.opener.open(self.url + path, body, timeout=30) as r:
            return json.load(r)

    def job(self, job_id: int) -> dict:
        (job,) = json.loads(self.get(f"/jobs/{job_id}.json"))["jobs"]
        return job


def test_an_export_survives_kill9_of_the_daemon_and_then_downloads(tmp_path):
    port = free_port()
    ini = write_config(tmp_path / "box", SyncWrites="no", WebPort=port)
    cfg = load(ini)
    archive = Archive(cfg)
    try:
        for n in range(IMAGES):
            data = make_instance(study_uid=STUDY, rows=256, columns=256, instance_number=n + 1,
                                 pixel_seed=n)  # fmt: skip
            archive.store(data, source="test")
    finally:
        archive.close()
    cli(ini, "user", "passwd", "root", input=PASSWORD + "\n")
    server = Server(ini).start()
    try:
        page = Page(f"http://127.0.0.1:{port}")
        job_id = page.post(f"/studies/{STUDY}/export.json")["job"]

        def listed():
            snap = json.loads(cfg.status_path.read_text())
            return [j for j in snap["jobs"] if j["kind"] == "export" and j["state"] == "running"]

        (shown,) = poll(listed, 30, what="the running export in the status snapshot")
        assert shown["total"] == 1000 and "TEST STUDY" in shown["label"]  # no patient name
        poll(lambda: 0 < (j := page.job(job_id))["done"] < j["total"], 30,
             what="the export half-way")  # fmt: skip
        server.kill9()
        server = Server(ini).start()
        page = Page(f"http://127.0.0.1:{port}")
        job = poll(lambda: (j := page.job(job_id))["state"] == "done" and j, 120,
                   what="the export run again after the restart")  # fmt: skip
        assert job["attempts"] == 2 and job["download"] == f"/jobs/{job_id}/download"
        assert "jobs left running by the last run are queued again" in server.output()
        # A restart more: the ZIP stays, and so does its link.
        server.stop()
        server = Server(ini).start()
        page = Page(f"http://127.0.0.1:{port}")
        with zipfile.ZipFile(io.BytesIO(page.get(job["download"]))) as z:
            names = z.namelist()
            assert z.testzip() is None
    finally:
        server.stop()
    assert "DICOMDIR" in names and len(names) == IMAGES + 1
    assert not list((cfg.data_dir / "exports" / str(job_id)).glob("work*"))  # no half-made rest
