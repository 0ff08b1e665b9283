"""First start: root's setup code, shown by the front panel, leads on the web page to root's password.

The web app runs in-process over a real archive; the code is read from the
file the front panel reads, as a person reads it off the display.
"""

from __future__ import annotations

import logging
import re
import stat

import pytest
import webtest

from pacsbox import config, setupcode
from pacsbox.archive import Archive
from pacsbox.db.auth_models import Journal, User
from pacsbox.web import users
from pacsbox.web.app import create_app
from pacsbox.web.auth import MAX_FAILURES, THROTTLE_WINDOW
from tests.helpers import cli, write_config
from tests.integration.web.conftest import Clock, csrf_of

NEW = "our clinic's own root pass"
HINT = "enter the setup code shown on the box's display"


@pytest.fixture
def box(tmp_path):
    """A fresh box: a data folder with an INI (for the CLI too) and no users yet."""
    ini = write_config(tmp_path / "box", SyncWrites="no")
    cfg = config.load(ini)
    archive = Archive(cfg)
    yield cfg, ini
    archive.close()


def first_start(cfg, capsys, clock=None):
    """Start the web app as the daemon does; (app, the code the panel shows, stderr)."""
    app = create_app(cfg, None, clock=clock or Clock())
    err = capsys.readouterr().err
    return app, setupcode.read(setupcode.path(cfg.data_dir)), err


def lowercase_without_dash(code: str) -> str:
    return code.replace("-", " ").lower()  # as someone might type it


def test_first_start_makes_a_code_for_the_panel_only_its_user_may_read(box, capsys, caplog):
    cfg, _ = box
    with caplog.at_level(logging.DEBUG):
        app, code, err = first_start(cfg, capsys)
    assert re.fullmatch(r"[2-9A-HJKMNP-Z]{4}-[2-9A-HJKMNP-Z]{4}", code), code
    mode = setupcode.path(cfg.data_dir).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    # Printed once to the console (standard error), never through the log.
    assert err.count(code) == 1 and f"one-time password {code} " in err
    assert code not in caplog.text
    # The status snapshot (world-readable) is not where the code lives.
    assert not cfg.status_path.exists() or code not in cfg.status_path.read_text()
    # A restart keeps the same code (the one on the display) and does not print it again.
    with caplog.at_level(logging.DEBUG):
        _, again, err = first_start(cfg, capsys)
    assert again == code and code not in err and code not in caplog.text
    assert "setup code is on the front panel" in caplog.text


def test_the_login_page_says_what_to_do_and_leads_to_roots_password(box, capsys):
    cfg, _ = box
    app, code, _ = first_start(cfg, capsys)
    t = webtest.TestApp(app)
    page = t.get("/login")
    assert HINT in page.text and 'action="/setup"' in page.text
    assert code not in page.text
    assert t.get("/login.json").json["setup"] is True
    r = t.post("/setup", {"code": lowercase_without_dash(code), "new": NEW, "again": NEW})
    assert r.status_int == 303 and r.headers["Location"].startswith("/studies")
    assert t.get("/studies").status_int == 200  # logged in as root
    assert t.get("/users.json").json["users"][0]["name"] == "root"
    # The code is gone from the panel's file and no longer works; the password does.
    assert setupcode.read(setupcode.path(cfg.data_dir)) is None
    fresh = webtest.TestApp(app)
    page = fresh.get("/login")
    assert HINT not in page.text and 'action="/login"' in page.text
    assert fresh.get("/login.json").json["setup"] is False
    r = fresh.post("/setup", {"code": code, "new": NEW, "again": NEW}, expect_errors=True)
    assert r.status_int == 409 and "this box is set up" in r.text
    r = fresh.post("/login.json", {"name": "root", "password": code}, expect_errors=True)
    assert r.status_int == 401
    assert fresh.post("/login.json", {"name": "root", "password": NEW}).json["ok"]
    assert Journal.select().where(Journal.action == "setup").count() == 1
    # Never again, even after a restart.
    _, code_after, err = first_start(cfg, capsys)
    assert code_after is None and "one-time password" not in err


def test_a_wrong_code_is_throttled_like_a_password(box, capsys):
    cfg, _ = box
    clock = Clock()
    app, code, _ = first_start(cfg, capsys, clock)
    t = webtest.TestApp(app)
    for _ in range(MAX_FAILURES - 1):
        r = t.post("/setup", {"code": "2222-2222", "new": NEW, "again": NEW}, expect_errors=True)
        assert r.status_int == 401 and "wrong setup code" in r.text
    r = t.post("/login.json", {"name": "root", "password": "nope"}, expect_errors=True)
    assert r.status_int == 401  # logins as root count towards the same limit
    r = t.post("/setup.json", {"code": code, "new": NEW, "again": NEW}, expect_errors=True)
    assert r.status_int == 429 and "try again" in r.json["error"]
    assert setupcode.read(setupcode.path(cfg.data_dir)) == code  # still on the panel
    clock.advance(THROTTLE_WINDOW + 1)
    r = t.post("/setup.json", {"code": code, "new": NEW, "again": NEW})
    assert r.json["ok"] and r.json["user"] == "root"


@pytest.mark.parametrize(
    ("new", "again", "why"),
    [
        (NEW, NEW + "x", "differ"),
        ("short", "short", "at least 8"),
        (None, None, "of your own"),  # the setup code itself
    ],
)
def test_a_bad_new_password_keeps_the_setup_open(box, capsys, new, again, why):
    cfg, _ = box
    app, code, _ = first_start(cfg, capsys)
    new = new or lowercase_without_dash(code)
    again = again or new
    t = webtest.TestApp(app)
    r = t.post("/setup", {"code": code, "new": new, "again": again}, expect_errors=True)
    assert r.status_int == 400 and why in r.text
    assert HINT in r.text  # the form again, with the reason
    assert setupcode.read(setupcode.path(cfg.data_dir)) == code
    assert t.post("/setup.json", {"code": code, "new": NEW, "again": NEW}).json["ok"]


def test_logging_in_with_the_code_leads_to_setup_and_nowhere_else(box, capsys):
    """The printed one-time password works in the login form, but only to reach /setup."""
    cfg, _ = box
    app, code, _ = first_start(cfg, capsys)
    t = webtest.TestApp(app)
    r = t.post("/login", {"name": "root", "password": code})
    assert r.headers["Location"] == "/setup"
    for url in ("/studies", "/password", "/aes", "/login"):
        assert t.get(url).headers["Location"] == "/setup", url
    page = t.get("/setup")
    assert 'name="code"' not in page.text  # the session proved the code
    csrf = csrf_of(page.text)
    r = t.post("/password", {"csrf_token": csrf, "old": code, "new": NEW, "again": NEW}, status=403)
    assert "/setup" in r.text
    assert t.post("/setup", {"new": NEW, "again": NEW}, status=403)  # no CSRF token
    r = t.post("/setup", {"csrf_token": csrf, "new": NEW, "again": NEW})
    assert r.status_int == 303
    assert t.get("/studies").status_int == 200
    assert setupcode.read(setupcode.path(cfg.data_dir)) is None


def test_the_shell_route_ends_the_setup_too(box, capsys):
    cfg, ini = box
    app, code, _ = first_start(cfg, capsys)
    res = cli(ini, "user", "passwd", "root", input=NEW + "\n")
    assert "password of root changed" in res.stdout and code not in res.stdout + res.stderr
    assert not setupcode.path(cfg.data_dir).exists()  # gone from the panel at once
    t = webtest.TestApp(app)
    assert HINT not in t.get("/login").text
    assert t.post("/setup", {"code": code, "new": NEW, "again": NEW}, status=409)
    assert t.post("/login.json", {"name": "root", "password": NEW}).json["ok"]


def test_a_lost_code_file_gets_a_new_code_and_a_stale_one_is_removed(box, capsys):
    cfg, _ = box
    _, code, _ = first_start(cfg, capsys)
    where = setupcode.path(cfg.data_dir)
    where.unlink()  # e.g. a power cut before the file reached the card
    app, new_code, err = first_start(cfg, capsys)
    assert new_code and new_code != code and new_code in err
    t = webtest.TestApp(app)
    assert t.post("/setup", {"code": code, "new": NEW, "again": NEW}, status=401)
    assert t.post("/setup.json", {"code": new_code, "new": NEW, "again": NEW}).json["ok"]
    setupcode.write(where, code)  # a file left behind (a crash right after the password)
    _, left, err = first_start(cfg, capsys)
    assert left is None and not where.exists() and "one-time password" not in err


def test_a_one_time_password_from_the_shell_is_not_replaced_by_a_code(box, capsys):
    """`pacsbox user passwd root --generate` hands a person a one-time password: it stays."""
    cfg, _ = box
    first_start(cfg, capsys)
    one_time = users.set_password("root")
    setupcode.discard(setupcode.path(cfg.data_dir))  # as the command does
    app, code, err = first_start(cfg, capsys)
    assert code is None and "one-time password" not in err
    t = webtest.TestApp(app)
    assert HINT not in t.get("/login").text
    r = t.post("/login", {"name": "root", "password": one_time})
    assert r.headers["Location"] == "/password"  # the ordinary one-time flow
    assert User.get(User.name == "root").must_change
