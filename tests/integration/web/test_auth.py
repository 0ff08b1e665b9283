"""Login, sessions, CSRF, idle logout, password expiry, throttling, first-start root password."""

from __future__ import annotations

import re

import pytest
import webtest

from pacsbox.db.auth_models import Journal, Session, User
from pacsbox.web import users
from pacsbox.web.auth import MAX_FAILURES, THROTTLE_WINDOW, hash_password, verify_password
from pacsbox.web.core import PUBLIC
from tests.integration.web.conftest import PASSWORD, Browser, login, store


def sample_path(path: str, uid: str, pk: int) -> str:
    path = re.sub(r"<(uid|study|series|instance):[^>]+>", uid, path)  # DICOMweb names levels
    path = re.sub(r"<frames:[^>]+>", "1", path)
    path = re.sub(r"<pk:int>", str(pk), path)
    return re.sub(r"<(name|title)>", "x", path)


def test_every_route_needs_a_session(app, web, archive):
    uid = store(archive).study_instance_uid
    ctx = app.config["pacsbox.ctx"]
    assert len(ctx.routes) > 30
    for spec in ctx.routes:
        if spec.privilege == PUBLIC:
            continue
        path = sample_path(spec.path, uid, 1)
        for p in [path] + ([path + ".json"] if spec.json_twin else []):
            if spec.method == "GET":
                r = web.get(p, expect_errors=True)
                if p.endswith(".json"):
                    assert r.status_int == 401, p
                else:
                    assert r.status_int in (303, 401), p
                    if r.status_int == 303:
                        assert r.headers["Location"].startswith("/login?next="), p
            else:
                r = web.post(p, {"csrf_token": "x"}, expect_errors=True)
                assert r.status_int == 401, (spec.method, p)
    # Public: the login page, static files and WADO (which asks for Basic credentials).
    assert web.get("/login").status_int == 200
    assert web.get("/static/pacsbox.css").status_int == 200
    r = web.get("/wado?requestType=WADO", expect_errors=True)
    assert r.status_int == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
    r = web.get("/dicom-web/studies", expect_errors=True)  # DICOMweb asks for Basic too
    assert r.status_int == 401 and r.headers["WWW-Authenticate"].startswith("Basic")


def test_static_refuses_traversal(web):
    for p in ("/static/../auth.py", "/static/%2e%2e/auth.py", "/static/..%2fauth.py"):
        assert web.get(p, expect_errors=True).status_int in (403, 404)


def test_password_hash_is_scrypt_and_salted():
    a, b = hash_password("secret-pass"), hash_password("secret-pass")
    assert a.startswith("scrypt$") and a != b
    assert verify_password("secret-pass", a) and not verify_password("other-pass", a)


def test_login_sets_a_strict_http_only_cookie_and_new_session_each_time(app, cfg):
    users.add_user("alice", [], PASSWORD)
    t = webtest.TestApp(app)
    r = t.post("/login", {"name": "alice", "password": PASSWORD})
    assert r.status_int == 303 and r.headers["Location"] == "/studies"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie.replace("strict", "Strict")
    first = t.cookies["pacsbox_sid"]
    t.post("/login", {"name": "alice", "password": PASSWORD})
    assert t.cookies["pacsbox_sid"] != first
    # Only the hash of the token is stored.
    assert not Session.select().where(Session.token_hash == first).exists()
    assert "text/html" in t.get("/studies").content_type


def test_secure_cookie_setting(cfg, archive, clock):
    from pacsbox.web.app import create_app

    app = create_app(cfg.replace(SecureCookies=True), archive, clock=clock)
    users.add_user("bob", [], PASSWORD)
    r = webtest.TestApp(app).post("/login", {"name": "bob", "password": PASSWORD})
    assert "secure" in r.headers["Set-Cookie"].lower()


def test_wrong_password_and_throttling(app, clock):
    users.add_user("carol", [], PASSWORD)
    t = webtest.TestApp(app)
    for _ in range(MAX_FAILURES):
        r = t.post("/login", {"name": "carol", "password": "wrong-password"}, expect_errors=True)
        assert r.status_int == 401 and "wrong user name or password" in r.text
    # Now even the right password is refused until the window passes.
    r = t.post("/login.json", {"name": "carol", "password": PASSWORD}, expect_errors=True)
    assert r.status_int == 429 and "try again" in r.json["error"]
    clock.advance(THROTTLE_WINDOW + 1)
    assert t.post("/login.json", {"name": "carol", "password": PASSWORD}).json["ok"]
    assert Journal.select().where(Journal.action == "login-failed").count() == MAX_FAILURES + 0


def test_csrf_is_required_for_every_state_change(app, archive):
    uid = store(archive).study_instance_uid
    b = login(app, "root")
    for url in (f"/studies/{uid}/read", "/logout", "/aes", "/users"):
        r = b.t.post(url, {"read": "yes"}, expect_errors=True)
        assert r.status_int == 403 and "CSRF" in r.text, url
        r = b.t.post(url, {"csrf_token": "forged"}, expect_errors=True)
        assert r.status_int == 403, url
    # The header works for JSON clients.
    r = b.t.post(f"/studies/{uid}/read.json", {"read": "yes"}, headers={"X-CSRF-Token": b.csrf})
    assert r.json["read"] is True
    # GET never changes state: a GET on an action URL is no route at all.
    assert b.get(f"/studies/{uid}/read", expect_errors=True).status_int in (404, 405)


def test_idle_logout(app, cfg, clock):
    b = login(app, "root")
    clock.advance(cfg.IdleLogoutMinutes * 60 - 10)
    assert b.get("/studies.json").status_int == 200  # activity resets the idle timer
    clock.advance(cfg.IdleLogoutMinutes * 60 - 10)
    assert b.get("/studies.json").status_int == 200
    clock.advance(cfg.IdleLogoutMinutes * 60 + 1)
    assert b.get("/studies.json", expect_errors=True).status_int == 401
    r = b.get("/studies", expect_errors=True)
    assert r.status_int == 303 and "/login" in r.headers["Location"]
    assert Journal.select().where(Journal.action == "logout-idle").exists()


def test_password_expiry_forces_a_new_password(app, cfg, clock):
    b = login(app, "dave", ["view"])
    clock.advance(cfg.PasswordExpiryDays * 86400 + 1)
    b = Browser(app, "dave")  # login still works, but only to change the password
    r = b.get("/studies", expect_errors=True)
    assert r.status_int == 303 and r.headers["Location"] == "/password"
    assert b.get("/studies.json", expect_errors=True).status_int == 403
    assert "has expired" in b.get("/password").text
    r = b.post("/password", {"old": PASSWORD, "new": "short", "again": "short"}, expect_errors=True)
    assert r.status_int == 400
    new = "a brand new password"
    r = b.post("/password", {"old": PASSWORD, "new": new, "again": new})
    assert r.status_int == 303
    assert b.get("/studies.json").status_int == 200


def test_first_start_root_has_a_one_time_password(cfg, archive, clock, capsys):
    """The printed one-time password (the front panel's setup code, test_setup.py) logs in."""
    from pacsbox.web.app import create_app

    User.delete().where(User.name == "root").execute()
    app = create_app(cfg, archive, clock=clock)
    err = capsys.readouterr().err
    pw = re.search(r"one-time password (\S+)", err).group(1)
    b = Browser(app, "root", pw)
    r = b.get("/studies", expect_errors=True)
    assert r.headers["Location"] == "/setup"  # must choose a new one first
    create_app(cfg, archive, clock=clock)
    assert "one-time password" not in capsys.readouterr().err  # printed once only


def test_logout_ends_the_session(app):
    b = login(app, "root")
    r = b.post("/logout")
    assert r.status_int == 303
    assert b.get("/studies.json", expect_errors=True).status_int == 401
    assert Session.select().count() == 0


def test_wado_only_account_cannot_use_the_pages(app):
    users.add_user("wado", ["view"], PASSWORD, wado_only=True)
    r = webtest.TestApp(app).post(
        "/login.json", {"name": "wado", "password": PASSWORD}, expect_errors=True
    )
    assert r.status_int == 401


def test_security_headers(app):
    b = login(app, "root")
    r = b.get("/studies")
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/"])
def test_no_open_redirect_after_login(app, target):
    users.add_user("erin", [], PASSWORD)
    r = webtest.TestApp(app).post("/login", {"name": "erin", "password": PASSWORD, "next": target})
    assert r.headers["Location"] == "/studies"


def test_cross_site_login_is_refused(app):
    users.add_user("frank", [], PASSWORD)
    t = webtest.TestApp(app)
    r = t.post(
        "/login",
        {"name": "frank", "password": PASSWORD},
        headers={"Origin": "http://evil.example"},
        expect_errors=True,
    )
    assert r.status_int == 403 and "pacsbox_sid" not in t.cookies
    r = t.post(
        "/login", {"name": "frank", "password": PASSWORD}, headers={"Origin": "http://localhost:80"}
    )
    assert r.status_int == 303
