"""The web app factory: an explicit ``Bottle()`` with every page and its JSON twin.

``create_app(cfg, archive)`` is all the daemon and the tests need; the
modules beside this one each register one area of the page.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import bottle

from pacsbox.config import Config
from pacsbox.db.auth_models import ensure_schema
from pacsbox.web import aes, edit, exports, marks, pages, search, system, upload, users, wado
from pacsbox.web.auth import COOKIE, Auth, LoginFailed, Throttled, ensure_root
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


def create_app(cfg: Config, archive, *, clock: Callable[[], float] = time.time) -> bottle.Bottle:
    """The web page over an open ``Archive``; creates root (one-time password) on first start."""
    ensure_schema()
    ensure_root(clock)
    app = bottle.Bottle()
    auth = Auth(cfg.IdleLogoutMinutes, cfg.PasswordExpiryDays, clock)
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
    origin = bottle.request.get_header("Origin")
    if not origin or origin == "null":
        return origin is None
    host = bottle.request.get_header("Host", "")
    return origin.split("://", 1)[-1].rstrip("/") == host


def _register_session_routes(ctx: Ctx) -> None:
    app = ctx.app

    @app.route("/static/<path:path>")
    def static(path):
        return secure(bottle.static_file(path, root=str(STATIC)))

    @ctx.page("/", json_twin=False)
    def home(ident):
        return bottle.HTTPResponse(status=303, headers={"Location": "/studies"})

    @ctx.page("/login", template="login.tpl", privilege=PUBLIC)
    def login_form(_ident):
        if ctx.identity() is not None:
            return bottle.HTTPResponse(status=303, headers={"Location": "/studies"})
        return {"title": "Log in", "error": "", "next": bottle.request.query.get("next", "")}

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
            return {"title": "Log in", "error": str(exc), "next": form("next")}
        ident = ctx.auth.from_session(token, ctx.address())
        if wants_json():
            resp = json_response(
                {
                    "ok": True,
                    "user": user.name,
                    "csrf": ident.csrf,
                    "password_expired": ident.expired,
                }
            )
        elif ident.expired:
            resp = bottle.HTTPResponse(status=303, headers={"Location": "/password"})
        else:
            resp = redirect_after_post("/studies")
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
