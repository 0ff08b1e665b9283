"""The AE table page driven like a browser: the form's own CSRF token, add, edit,
Ping a real DCMTK peer and a dead port, remove, and bad input (WEB-4, SCU-1)."""

from __future__ import annotations

import subprocess
import urllib.parse

import pytest
import webtest

from pacsbox import config
from pacsbox.archive import Archive
from pacsbox.db import aes as db_aes
from pacsbox.web import users
from pacsbox.web.app import create_app
from tests.helpers import DCMTK_ENV, cli, free_port, poll, require_tools, write_config
from tests.integration.web.conftest import PASSWORD, Clock, csrf_of


@pytest.fixture
def box(tmp_path):
    """An INI-configured box (so `pacsbox ae list --config` sees the same table) and its app."""
    ini = write_config(tmp_path / "box", SyncWrites="no")
    cfg = config.load(ini)
    archive = Archive(cfg)
    app = create_app(cfg, archive, clock=Clock())
    yield ini, app
    archive.close()


def browser(app) -> webtest.TestApp:
    """Logged in through the login form, as a person would."""
    users.set_password("root", PASSWORD)
    t = webtest.TestApp(app)
    login = t.get("/login")
    form = login.forms[0]
    form["name"], form["password"] = "root", PASSWORD
    assert form.submit().status_int == 303
    return t


def submit(t: webtest.TestApp, values: dict[str, str], **kw) -> webtest.TestResponse:
    """Fill the "Add or change an AE" form of the page and send it."""
    page = t.get("/aes")
    form = next(f for f in page.forms.values() if f.action == "/aes")
    for name, value in values.items():
        if name == "allowaccess":
            form[name] = bool(value)
        else:
            form[name] = value
    return form.submit(**kw)


def ae_list(ini) -> dict[str, str]:
    out = cli(ini, "ae", "list").stdout.splitlines()[1:]
    return {line.split()[0]: line for line in out}


def row_of(page_text: str, title: str) -> str:
    start = page_text.index(f"<tr><td>{title}</td>")
    return page_text[start : page_text.index("</tr>", start)]


@pytest.fixture
def storescp():
    """A real DCMTK storescp (it answers C-ECHO) on a free port."""
    require_tools("storescp")
    port = free_port()
    proc = subprocess.Popen(
        ["storescp", "-aet", "PEER", str(port)],
        env=DCMTK_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def listening():
        import socket

        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    poll(listening, what="storescp to listen")
    yield port
    proc.terminate()
    proc.wait(10)


def test_add_edit_ping_remove_through_the_form(box, storescp, tmp_path):
    ini, app = box
    t = browser(app)
    # The token in the form is the one a browser sends back.
    page = t.get("/aes")
    assert csrf_of(page.text)

    r = submit(
        t,
        {
            "title": "CT1",
            "hostname": "127.0.0.1",
            "port": str(storescp),
            "allowaccess": "1",
            "description": "scanner",
        },
    )
    assert r.status_int == 303, r.text
    listed = r.follow()
    assert "AE CT1 saved" in listed.text
    assert "allow" in row_of(listed.text, "CT1") and str(storescp) in row_of(listed.text, "CT1")
    line = ae_list(ini)["CT1"]
    assert str(storescp) in line and "allow" in line

    # Edit: the row's Edit button fills the form with what is stored.
    edit = t.get("/aes?edit=CT1")
    form = next(f for f in edit.forms.values() if f.action == "/aes")
    assert form["title"].value == "CT1" and form["hostname"].value == "127.0.0.1"
    assert form["port"].value == str(storescp) and form["description"].value == "scanner"
    archivedir = str(tmp_path / "ct1-images")
    form["archivedir"] = archivedir
    form["allowaccess"] = False
    assert form.submit().status_int == 303
    ae = db_aes.ae_get("CT1")
    assert (ae.allowaccess, ae.archivedir, ae.hostname, ae.port) == (
        False,
        archivedir,
        "127.0.0.1",
        storescp,
    )
    line = ae_list(ini)["CT1"]
    assert "deny" in line and archivedir in line

    # Ping the live peer: C-ECHO succeeds, shown on the page.
    page = t.get("/aes")
    ping = next(f for f in page.forms.values() if f.action == "/aes/CT1/ping")
    r = ping.submit()
    assert r.status_int == 200
    assert "Ping CT1: C-ECHO to CT1 at 127.0.0.1:" in r.text and "succeeded" in r.text

    # A dead port: "connection refused", not a 500.
    dead = free_port()
    r = submit(t, {"title": "CT1", "hostname": "127.0.0.1", "port": str(dead)})
    assert r.status_int == 303
    page = t.get("/aes")
    r = next(f for f in page.forms.values() if f.action == "/aes/CT1/ping").submit()
    assert r.status_int == 200 and "connection refused" in r.text and "succeeded" not in r.text

    # Remove it.
    page = t.get("/aes")
    r = next(f for f in page.forms.values() if f.action == "/aes/CT1/delete").submit()
    assert r.status_int == 303 and "AE CT1 removed" in r.follow().text
    assert "CT1" not in ae_list(ini)
    assert db_aes.ae_get("CT1") is None


def test_a_title_with_a_slash_or_space_is_reachable(box):
    """Any AE title the standard allows is a usable row: Ping and Delete find it."""
    _ini, app = box
    t = browser(app)
    assert submit(t, {"title": "OR 1/A", "hostname": "127.0.0.1"}).status_int == 303
    page = t.get("/aes")
    quoted = urllib.parse.quote("OR 1/A", safe="")
    ping = next(f for f in page.forms.values() if f.action == f"/aes/{quoted}/ping")
    assert "no host or port" in ping.submit().text
    page = t.get("/aes")
    delete = next(f for f in page.forms.values() if f.action == f"/aes/{quoted}/delete")
    assert delete.submit().status_int == 303
    assert db_aes.ae_get("OR 1/A") is None


@pytest.mark.parametrize(
    "values,words",
    [
        ({"title": ""}, "AE title"),
        ({"title": "   "}, "AE title"),
        ({"title": "A" * 17}, "AE title"),
        ({"title": "BACK\\SLASH"}, "AE title"),
        ({"title": "CT2", "port": "0"}, "port: 1 to 65535"),
        ({"title": "CT2", "port": "70000"}, "port: 1 to 65535"),
        ({"title": "CT2", "port": "eleven"}, "port: a whole number"),
        ({"title": "CT2", "port": "-5"}, "port: 1 to 65535"),
        ({"title": "CT2", "archivedir": "relative/dir"}, "archive folder"),
        ({"title": "CT2", "ipaddr": "not-an-address"}, "IP address"),
        ({"title": "CT2", "hostname": "h" * 300}, "host name"),
    ],
)
def test_bad_input_gets_the_form_back_with_a_message(box, values, words):
    _ini, app = box
    t = browser(app)
    r = submit(t, {"hostname": "127.0.0.1", **values}, expect_errors=True)
    assert r.status_int == 400, r.text[:300]
    assert words in r.text
    # The form again, with what was typed, so it can be corrected.
    form = next(f for f in r.forms.values() if f.action == "/aes")
    assert form["title"].value == values["title"].strip() or values["title"].strip() == ""
    assert db_aes.ae_get("CT2") is None
    # The JSON twin says the same.
    token = csrf_of(t.get("/aes").text)
    r = t.post("/aes.json", {"csrf_token": token, **values}, expect_errors=True)
    assert r.status_int == 400 and words in r.json["error"]
