"""What every route shares: the app context, the guard, JSON twins and templates.

A route is declared once with ``ctx.page(path, privilege=...)``; that
registers the HTML page and its ``.json`` twin (ARCHITECTURE rule 9),
checks the session, the password's age, the CSRF token of state-changing
requests and the privilege, and turns ``PacsboxError`` into its HTTP status.
Every declaration is also recorded in ``ctx.routes`` so the tests can walk
the whole privilege grid from the same table the app uses.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import bottle

from pacsbox.config import Config
from pacsbox.db.aes import ae_destinations
from pacsbox.errors import AccessDenied, PacsboxError
from pacsbox.scu.film import FILM_SIZES
from pacsbox.web.auth import COOKIE, CSRF_FIELD, CSRF_HEADER, Auth, Identity, csrf_ok
from pacsbox.web.privileges import Principal, Requirement, describe
from pacsbox.web.viewer import view_url
from pacsbox.web.viewer_fetch import installed as viewer_installed

log = logging.getLogger("pacsbox.web")

HERE = Path(__file__).parent
VIEWS = str(HERE / "views")
# One list for every render: bottle caches compiled templates by the lookup list's
# identity, so a new list per call compiles (and keeps) the template again.
LOOKUP = [VIEWS]
STATIC = HERE / "static"
PUBLIC = "public"  # privilege marker: no login needed
# Paths whose tools log in with HTTP Basic or an API token instead of a session (no
# CSRF token then: a browser form cannot send DICOMweb's content types, and a script
# has no cookie).
BASIC_PATHS = ("/dicom-web/",)


@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str
    privilege: Requirement  # None: any logged-in user; "root"; PUBLIC; a key; a Need
    json_twin: bool
    note: str = ""
    anonymous: bool = False  # served to DICOMweb's anonymous reader when enabled


@dataclass
class Ctx:
    cfg: Config
    archive: Any
    app: bottle.Bottle
    auth: Auth
    clock: Callable[[], float]
    routes: list[RouteSpec] = field(default_factory=list)

    # -- the request's user ------------------------------------------------------

    @staticmethod
    def address() -> str:
        return bottle.request.environ.get("REMOTE_ADDR", "") or ""

    def identity(self) -> Identity | None:
        cached: Identity | Literal[False] | None = bottle.request.environ.get(
            "pacsbox.identity", False
        )
        if cached is not False:
            return cached
        ident = self.auth.from_session(bottle.request.get_cookie(COOKIE), self.address())
        if ident is None and bottle.request.path.startswith(BASIC_PATHS):
            # Raises LoginFailed (401) or Throttled (429) for wrong credentials.
            ident = self.auth.from_header(
                bottle.request.get_header("Authorization"), self.address()
            )
            if ident is not None and ident.principal.wado_only:
                raise AccessDenied("a WADO-only account may only use /wado")
        bottle.request.environ["pacsbox.identity"] = ident
        return ident

    def journal(self, action: str, target: str = "", detail: str = "") -> None:
        ident = self.identity()
        user = ident.principal.name if ident else ""
        self.auth.journal(action, user, self.address(), target=target, detail=detail)

    # -- declaring routes -----------------------------------------------------------

    def page(
        self,
        path: str,
        *,
        method: str = "GET",
        privilege: Requirement = None,
        template: str | None = None,
        json_twin: bool = True,
        allow_expired: bool = False,
        note: str = "",
        anonymous: bool = False,
        csp: str | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare a route; ``anonymous``: a read that DicomWebAnonymous opens to everyone."""
        if anonymous and method != "GET":
            raise ValueError("only a read (GET) may be served anonymously")

        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(fn)
            def wrapper(**kw: Any) -> Any:
                return secure(inner(**kw), csp)

            def inner(**kw: Any) -> Any:
                as_json = wants_json()
                try:
                    ident = None
                    if privilege != PUBLIC:
                        ident = self._guard(method, privilege, allow_expired, as_json, anonymous)
                        if not isinstance(ident, Identity):
                            return ident  # a redirect or an error response
                    result = fn(ident, **kw)
                except PacsboxError as exc:
                    return error_response(exc.http_status, str(exc), as_json)
                except OverflowError:
                    # A number in the path or a parameter past what the index
                    # can hold (SQLite's 64 bits): no such row, the user's typo.
                    return error_response(400, "a number in the request is too large", as_json)
                if isinstance(result, dict):
                    if as_json:
                        return json_response(result)
                    if template is None:
                        return json_response(result)
                    return self.render(template, result, ident)
                return result

            self.app.route(path, method, wrapper)
            if json_twin:
                self.app.route(path + ".json", method, wrapper)
            self.routes.append(RouteSpec(method, path, privilege, json_twin, note, anonymous))
            return fn

        return deco

    def _guard(
        self,
        method: str,
        privilege: Requirement,
        allow_expired: bool,
        as_json: bool,
        anonymous: bool = False,
    ) -> Identity | bottle.HTTPResponse:
        ident = self.identity()
        if ident is None and anonymous and self.cfg.DicomWebAnonymous:
            # No credentials at all (wrong ones were refused above): the public reader.
            ident = Identity.anonymous_reader(self.address())
            bottle.request.environ["pacsbox.identity"] = ident
        if ident is None:
            if as_json or method != "GET":
                return error_response(401, "log in first", True)
            target = bottle.request.fullpath
            if bottle.request.query_string:
                target += "?" + bottle.request.query_string
            return bottle.HTTPResponse(
                status=303, headers={"Location": "/login?next=" + urllib.parse.quote(target)}
            )
        if method not in ("GET", "HEAD") and ident.session_id is not None:
            try:
                supplied = bottle.request.get_header(CSRF_HEADER) or _form_field(CSRF_FIELD)
            except ValueError as exc:  # bottle refuses control characters in a part's header
                return error_response(400, f"the form cannot be read: {exc}", as_json)
            if not csrf_ok(ident, supplied):
                log.warning("CSRF token missing or wrong for %s %s", method, bottle.request.path)
                return error_response(403, "missing or wrong CSRF token; reload the page", as_json)
        if ident.setup and bottle.request.path.removesuffix(".json") != "/logout":
            # Root logged in with the setup code: /setup (which also ends the
            # front panel's code) is the one way to a password, /password is not.
            if as_json or method != "GET":
                return error_response(403, "first start: choose root's password at /setup", True)
            return bottle.HTTPResponse(status=303, headers={"Location": "/setup"})
        if ident.expired and not allow_expired:
            if as_json:
                return error_response(403, "password expired: change it at /password", True)
            return bottle.HTTPResponse(status=303, headers={"Location": "/password"})
        if not ident.anonymous and not ident.principal.has(privilege):
            return error_response(403, f"this needs the {describe(privilege)} privilege", as_json)
        return ident

    # -- templates ---------------------------------------------------------------------

    def render(self, name: str, data: dict[str, Any], ident: Identity | None) -> str:
        p: Principal | None = ident.principal if ident else None
        common = {
            "me": p,
            "csrf": ident.csrf if ident else "",
            "can": (lambda priv: bool(p and p.has(priv))),
            "ae_title": self.cfg.ApplicationEntityTitle,
            "q": bottle.request.query,
            "title": data.get("title", ""),
            "flash": bottle.request.query.get("msg", ""),
            "url": url,
            "forward_to": ae_destinations,  # called by the pages with a Forward form
            "film_sizes": FILM_SIZES,  # the pages with a Print form
            # "Open in viewer" links: the study's viewer address, or "" without the viewer.
            "viewer_url": (
                view_url if viewer_installed(self.cfg.viewer_dir) else (lambda _uid: "")
            ),
        }
        common.update(data)
        html: str = bottle.template(name, template_lookup=LOOKUP, **common)
        return html


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


def secure(result: Any, csp: str | None = None) -> Any:
    """The same security headers on every answer, whatever its kind.

    ``csp`` replaces the Content-Security-Policy for a page that needs more (the viewer).
    """
    target = result if isinstance(result, bottle.HTTPResponse) else bottle.response
    for k, v in SECURITY_HEADERS.items():
        target.set_header(k, v)
    if csp:
        target.set_header("Content-Security-Policy", csp)
    if not target.get_header("Cache-Control"):
        target.set_header("Cache-Control", "no-store")
    return result


def _form_field(name: str) -> str | None:
    """A form field, without reading a body that is not a form (a STOW upload)."""
    ctype = (bottle.request.content_type or "").split(";")[0].strip().lower()
    if ctype not in ("application/x-www-form-urlencoded", "multipart/form-data", ""):
        return None
    value: str | None = bottle.request.forms.get(name)
    return value


def wants_json() -> bool:
    if bottle.request.path.endswith(".json") or bottle.request.path.startswith(BASIC_PATHS):
        return True
    accept = bottle.request.get_header("Accept", "") or ""
    return accept.startswith("application/json")


def json_response(data: dict[str, Any], status: int = 200) -> bottle.HTTPResponse:
    body = json.dumps(data, default=str)
    return bottle.HTTPResponse(
        body=body, status=status, headers={"Content-Type": "application/json; charset=utf-8"}
    )


def error_response(status: int, message: str, as_json: bool) -> bottle.HTTPResponse:
    if as_json:
        resp = json_response({"error": message, "status": status}, status)
    else:
        html = bottle.template(
            "error.tpl",
            template_lookup=LOOKUP,
            status=status,
            message=message,
            me=None,
            csrf="",
            title=f"Error {status}",
            flash="",
            can=lambda _p: False,
            url=url,
        )
        resp = bottle.HTTPResponse(body=html, status=status)
    if status == 401 and bottle.request.path.startswith("/wado"):
        resp.set_header("WWW-Authenticate", 'Basic realm="pacsbox WADO", charset="UTF-8"')
    elif status == 401 and bottle.request.path.startswith(BASIC_PATHS):
        resp.set_header("WWW-Authenticate", 'Basic realm="pacsbox DICOMweb", charset="UTF-8"')
    return resp


def done(target: str, message: str, **data: Any) -> bottle.HTTPResponse:
    """The answer to a form post: JSON for the JSON twin, else post/redirect/get."""
    if wants_json():
        return json_response({"ok": True, "message": message, **data})
    return redirect_after_post(target, message)


def redirect_after_post(default: str, message: str = "") -> bottle.HTTPResponse:
    """Post/redirect/get; ``next`` must be a local path (no open redirect)."""
    target = bottle.request.forms.get("next") or default
    if not target.startswith("/") or target.startswith("//"):
        target = default
    if message:
        sep = "&" if "?" in target else "?"
        target += sep + "msg=" + urllib.parse.quote(message)
    return bottle.HTTPResponse(status=303, headers={"Location": target})


def url(path: str, **params: Any) -> str:
    clean = {k: v for k, v in params.items() if v not in (None, "")}
    return path + ("?" + urllib.parse.urlencode(clean) if clean else "")


def when(t: float) -> str:
    """A Unix time as the pages show it: local, to the second."""
    return dt.datetime.fromtimestamp(t).isoformat(sep=" ", timespec="seconds")


def form(name: str, default: str = "") -> str:
    value = bottle.request.forms.getunicode(name)
    return default if value is None else value.strip()


def arg(name: str, default: str = "") -> str:
    value = bottle.request.query.getunicode(name)
    return default if value is None else value.strip()


def deny(message: str) -> AccessDenied:
    return AccessDenied(message)
