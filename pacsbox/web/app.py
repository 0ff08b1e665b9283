"""The web app factory: an explicit ``Bottle()`` with every page and its JSON twin.

``create_app(cfg, archive)`` is all the daemon and the tests need; the
modules beside this one each register one area of the page.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import bottle

from pacsbox import setupcode
from pacsbox.config import Config
from pacsbox.db.auth_models import ensure_schema
from pacsbox.errors import PacsboxError
from pacsbox.web import (
    aes,
    dicomweb,
    edit,
    exports,
    forward,
    jobs,
    marks,
    notes,
    pages,
    printing,
    remote,
    routes,
    search,
    system,
    upload,
    users,
    viewer,
    wado,
    worklist,
)
from pacsbox.web.auth import COOKIE, CSRF_FIELD, Auth, LoginFailed, Throttled, csrf_ok, ensure_root
from pacsbox.web.core import (
    PUBLIC,
    STATIC,
    Ctx,
    form,
    json_response,
    redirect_after_post,
    secure,
    wants_json,
)

if TYPE_CHECKING:
    from pacsbox.archive import Archive


def create_app(
    cfg: Config, archive: Archive, *, clock: Callable[[], float] = time.time
) -> bottle.Bottle:
    """The web page over an open ``Archive``; gives root a setup code on first start."""
    ensure_schema()
    code_file = setupcode.path(cfg.data_dir)
    ensure_root(clock, code_file)
    app = bottle.Bottle()
    auth = Auth(cfg.IdleLogoutMinutes, cfg.PasswordExpiryDays, clock, code_file)
    ctx = Ctx(cfg=cfg, archive=archive, app=app, auth=auth, clock=clock)
    app.config["pacsbox.ctx"] = ctx
    _register_session_routes(ctx)
    search.register(ctx)
    pages.register(ctx)
    marks.register(ctx)
    edit.register(ctx)
    wado.register(ctx)
    aes.register(ctx)
    system.register(ctx)
    users.register(ctx)
    upload.register(ctx)
    exports.register(ctx)
    forward.register(ctx)
    remote.register(ctx)
    routes.register(ctx)
    jobs.register(ctx)
    notes.register(ctx)
    printing.register(ctx)
    worklist.register(ctx)
    dicomweb.register(ctx)
    viewer.register(ctx)
    return app


def _set_cookie(ctx: Ctx, resp: bottle.BaseResponse, token: str) -> None:
    resp.set_cookie(
        COOKIE,
        token,
        path="/",
        httponly=True,
        samesite="strict",
        secure=bool(ctx.cfg.SecureCookies),
    )


def _same_origin() -> bool:
    """Login has no session (so no CSRF token) yet: refuse a cross-site form post instead."""
    origin: str | None = bottle.request.get_header("Origin")
    if not origin or origin == "null":
        return origin is None
    host: str = bottle.request.get_header("Host", "")
    return origin.split("://", 1)[-1].rstrip("/") == host


def _register_session_routes(ctx: Ctx) -> None:
    app = ctx.app

    @app.route("/static/<path:path>")
    def static(path):
        return secure(bottle.static_file(path, root=str(STATIC)))

    @ctx.page("/", json_twin=False)
    def home(ident):
        return bottle.HTTPResponse(status=303, headers={"Location": "/studies"})

    def login_page(error: str = "", setup_error: str = "", next_url: str = "") -> dict:
        """The login page; while root has no password it leads to /setup first."""
        ident = ctx.identity()
        setup = ctx.auth.setup_pending()
        return {
            "title": "First start" if setup else "Log in",
            "error": error or ("" if setup else setup_error),  # "already set up": log in
            "setup": setup,
            "setup_error": setup_error,
            "need_code": not (ident and ident.setup),
            "csrf": ident.csrf if ident else "",  # a public page: the guard did not add it
            "next": next_url,
        }

    @ctx.page("/login", template="login.tpl", privilege=PUBLIC)
    def login_form(_ident):
        ident = ctx.identity()
        if ident is not None:
            return bottle.HTTPResponse(
                status=303, headers={"Location": "/setup" if ident.setup else "/studies"}
            )
        return login_page(next_url=bottle.request.query.get("next", ""))

    @ctx.page("/login", method="POST", template="login.tpl", privilege=PUBLIC)
    def login(_ident):
        if not _same_origin():
            return json_response({"error": "cross-site login refused"}, 403)
        name, password = form("name"), bottle.request.forms.getunicode("password") or ""
        try:
            token, user = ctx.auth.login(name, password, ctx.address())
        except (LoginFailed, Throttled) as exc:
            if wants_json():
                return json_response({"error": str(exc)}, exc.http_status)
            bottle.response.status = exc.http_status
            return login_page(error=str(exc), next_url=form("next"))
        ident = ctx.auth.from_session(token, ctx.address())
        assert ident is not None  # the session just made
        if wants_json():
            resp = json_response(
                {
                    "ok": True,
                    "user": user.name,
                    "csrf": ident.csrf,
                    "password_expired": ident.expired,
                    "setup": ident.setup,
                }
            )
        elif ident.setup:
            resp = bottle.HTTPResponse(status=303, headers={"Location": "/setup"})
        elif ident.expired:
            resp = bottle.HTTPResponse(status=303, headers={"Location": "/password"})
        else:
            resp = redirect_after_post("/studies")
        _set_cookie(ctx, resp, token)
        return resp

    # -- first start: root chooses its password with the setup code --------------------

    @ctx.page("/setup", template="login.tpl", privilege=PUBLIC)
    def setup_form(_ident):
        if not ctx.auth.setup_pending():
            return bottle.HTTPResponse(status=303, headers={"Location": "/login"})
        return login_page()

    @ctx.page("/setup", method="POST", template="login.tpl", privilege=PUBLIC)
    def setup(_ident):
        if not _same_origin():
            return json_response({"error": "cross-site setup refused"}, 403)
        ident = ctx.identity()
        code: str | None = form("code")
        if ident is not None and ident.setup:
            if not csrf_ok(ident, bottle.request.forms.get(CSRF_FIELD)):
                return json_response({"error": "missing or wrong CSRF token"}, 403)
            code = None  # this session logged in with the setup code
        password = bottle.request.forms.getunicode("new") or ""
        again = bottle.request.forms.getunicode("again") or ""
        try:
            token, user = ctx.auth.set_up_root(code, password, again, ctx.address())
        except PacsboxError as exc:
            if wants_json():
                return json_response({"error": str(exc)}, exc.http_status)
            bottle.response.status = exc.http_status
            return login_page(setup_error=str(exc))
        new = ctx.auth.from_session(token, ctx.address())
        assert new is not None  # the session just made
        if wants_json():
            resp = json_response({"ok": True, "user": user.name, "csrf": new.csrf})
        else:
            resp = redirect_after_post("/studies", "root's password is set")
        _set_cookie(ctx, resp, token)
        return resp

    @ctx.page("/logout", method="POST", allow_expired=True)
    def logout(ident):
        ctx.auth.logout(bottle.request.get_cookie(COOKIE), ctx.address())
        if wants_json():
            resp = json_response({"ok": True})
        else:
            resp = bottle.HTTPResponse(status=303, headers={"Location": "/login?msg=logged+out"})
        resp.delete_cookie(COOKIE, path="/")
        return resp
