"""CORS for ``/dicom-web``: which browser pages elsewhere may call DICOMweb (DicomWebCorsOrigins).

A viewer served from another origin (OHIF on its own port, a research
tool) may read and store through the browser only when the administrator
lists its origin; an empty list (the default) adds no CORS header at all,
so browsers keep other pages out. Credentials are not allowed cross-origin
(no ``Access-Control-Allow-Credentials``): the session cookie stays with the
box's own page, and such a page logs in with Basic or an API token, which
it sends itself in the Authorization header the preflight allows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bottle

from pacsbox.web.core import PUBLIC, Ctx, error_response
from pacsbox.web.dicomweb.common import BASE

ALLOW_METHODS = "GET, HEAD, POST, OPTIONS"
ALLOW_HEADERS = "Authorization, Accept, Content-Type, X-CSRF-Token"
EXPOSE_HEADERS = "Content-Type, Content-Location, Location, Warning"
MAX_AGE = "600"  # seconds a browser may keep a preflight's answer


def allowed_origin(ctx: Ctx) -> str | None:
    """The request's Origin when DicomWebCorsOrigins lists it, else None."""
    origin: str | None = bottle.request.get_header("Origin")
    if origin and origin.rstrip("/").lower() in ctx.cfg.DicomWebCorsOrigins:
        return origin
    return None


def _dicomweb() -> bool:
    path: str = bottle.request.path
    return path == BASE or path.startswith(BASE + "/")


def plugin(ctx: Ctx) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A bottle plugin adding the CORS headers to every /dicom-web answer for a listed origin."""

    def apply(callback: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kw: Any) -> Any:
            result = callback(*args, **kw)
            if not ctx.cfg.DicomWebCorsOrigins or not _dicomweb():
                return result
            target = result if isinstance(result, bottle.HTTPResponse) else bottle.response
            target.set_header("Vary", "Origin")  # the answer differs by Origin: caches must know
            origin = allowed_origin(ctx)
            if origin:
                target.set_header("Access-Control-Allow-Origin", origin)
                target.set_header("Access-Control-Expose-Headers", EXPOSE_HEADERS)
            return result

        return wrapper

    return apply


def register(ctx: Ctx) -> None:
    ctx.app.install(plugin(ctx))

    @ctx.page(BASE + "/<path:path>", method="OPTIONS", privilege=PUBLIC, json_twin=False,
              note="CORS preflight: no credentials, by the browser's rules")  # fmt: skip
    def preflight(_ident, path):
        if allowed_origin(ctx) is None:
            origin = bottle.request.get_header("Origin") or "(none)"
            return error_response(403, f"origin {origin} may not call /dicom-web "
                                       "(DicomWebCorsOrigins)", True)  # fmt: skip
        return bottle.HTTPResponse(
            status=204,
            headers={
                "Access-Control-Allow-Methods": ALLOW_METHODS,
                "Access-Control-Allow-Headers": ALLOW_HEADERS,
                "Access-Control-Max-Age": MAX_AGE,
            },
        )
