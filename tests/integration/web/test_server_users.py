"""The threaded server on a free port, the user functions behind the CLI, upload."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from pacsbox.db.models import Study
from pacsbox.errors import NotFound, UsageError
from pacsbox.web import users
from pacsbox.web.server import start_web
from tests.integration.web.conftest import PASSWORD, Browser, make_dicom


def test_start_web_serves_concurrently_and_stops(cfg, archive):
    assert start_web(cfg.replace(WebPort=0), archive) is None  # disabled in config
    handle = start_web(cfg, archive, port=0)
    try:
        base = f"http://127.0.0.1:{handle.port}"

        def fetch(path):
            try:
                return urllib.request.urlopen(base + path, timeout=10).status
            except urllib.error.HTTPError as e:
                return e.code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(fetch, ["/login"] * 8 + ["/studies.json"] * 8))
        assert codes == [200] * 8 + [401] * 8
    finally:
        handle.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{handle.port}/login", timeout=2)


def test_user_functions(archive, clock):
    pw = users.add_user("tech", ["import", "Mark Study"], first_name="Ann", last_name="Lee")
    assert len(pw) >= 12
    listed = {u["name"]: u for u in users.list_users()}
    assert listed["tech"]["privileges"] == ["import", "mark"] and listed["tech"]["must_change"]
    with pytest.raises(UsageError):
        users.add_user("tech", [])
    with pytest.raises(UsageError):
        users.add_user("x", ["nonsense"])
    with pytest.raises(UsageError):
        users.add_user("bad name", [])
    with pytest.raises(UsageError):
        users.set_password("tech", "short")
    with pytest.raises(NotFound):
        users.set_password("ghost")
    assert users.set_password("tech", PASSWORD) == PASSWORD
    assert not {u["name"]: u for u in users.list_users()}["tech"]["must_change"]
    # root can always be (re)set from the command line, even before the first start.
    users.set_password("root", PASSWORD)
    assert {u["name"] for u in users.list_users()} >= {"root", "tech"}


def test_root_manages_users_through_the_page(app):
    users.set_password("root", PASSWORD)
    root = Browser(app, "root")
    html = root.post("/users", {"name": "nurse", "priv_view": "1", "first_name": "N"}).text
    assert 'id="new-password"' in html
    assert [u for u in users.list_users() if u["name"] == "nurse"][0]["privileges"] == ["view"]
    root.post("/users/nurse", {"priv_mark": "1", "first_name": "N", "last_name": "", "group": ""})
    assert [u for u in users.list_users() if u["name"] == "nurse"][0]["privileges"] == ["mark"]
    root.post("/users/nurse/delete")
    assert "nurse" not in {u["name"] for u in users.list_users()}


def test_upload_goes_through_the_archive(app):
    users.add_user("importer", ["import"], PASSWORD)
    b = Browser(app, "importer")
    good = make_dicom()
    r = b.t.post(
        "/upload.json",
        {"csrf_token": b.csrf},
        upload_files=[("files", "a.dcm", good), ("files", "notes.txt", b"hello")],
    )
    report = r.json["report"]
    assert len(report["imported"]) == 1 and report["imported"][0]["name"] == "a.dcm"
    assert [f["name"] for f in report["rejected"]] == ["notes.txt"]
    assert Study.select().count() == 1
    assert json.dumps(report)  # serialisable


def test_ping_a_real_peer_through_c_echo(server):
    """Ping from the AE table page: our own daemon answers C-ECHO."""

    from pacsbox.archive import Archive
    from pacsbox.db.aes import ae_upsert
    from pacsbox.web.app import create_app

    archive = Archive(server.cfg)
    try:
        ae_upsert(server.ae_title, hostname="127.0.0.1", port=server.port)
        ae_upsert("DEAD", hostname="127.0.0.1", port=1)
        users.set_password("root", PASSWORD)
        b = Browser(create_app(server.cfg, archive), "root")
        r = b.post(f"/aes/{server.ae_title}/ping.json").json
        assert r["ok"] is True and "succeeded" in r["message"]
        r = b.post("/aes/DEAD/ping.json").json
        assert r["ok"] is False
        html = b.post(f"/aes/{server.ae_title}/ping").text
        assert 'id="ping-result"' in html
    finally:
        archive.close()


def test_users_tables_appear_even_if_a_later_migration_ran_first(cfg):
    """Migration 10 must not be skipped on a database another process took past it."""
    from pacsbox.db import close_database, open_database
    from pacsbox.db.auth_models import AUTH_MODELS, ensure_schema
    from pacsbox.db.models import SchemaVersion, database

    open_database(cfg.database_url)
    try:
        database.obj.drop_tables(AUTH_MODELS)
        SchemaVersion.delete().where(SchemaVersion.version == 10).execute()
        SchemaVersion.create(version=99, name="someone else's later migration")
        ensure_schema()
        users.add_user("late", [], PASSWORD)
        assert SchemaVersion.get_or_none(SchemaVersion.version == 10) is not None
    finally:
        close_database()
