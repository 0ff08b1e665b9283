"""The routing page (SCU-4): the routing table, a form to add a route, and Remove.

It calls what ``pacsbox route`` calls, so a route is checked and journaled
the same way from both. Routes decide where the clinic's images go, so the
page needs System Administration. A rejected form comes back filled in,
with the reason.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import bottle

from pacsbox.db import aes, routes
from pacsbox.errors import PacsboxError
from pacsbox.outbound.route_commands import add_route, remove_route
from pacsbox.web.core import Ctx, done, form, wants_json

NAME = "<name>"  # routes.check keeps names to one path segment


def _from_form() -> routes.RouteView:
    """A route from the form's fields; raises UsageError naming what is wrong."""
    try:
        retries = int(form("retries", "3"))
    except ValueError:
        retries = -1
    lines = [line.strip() for line in form("match").splitlines() if line.strip()]
    when = form("when")
    return routes.RouteView(
        name=form("name"),
        destinations=[d for d in bottle.request.forms.getall("to") if d],
        from_ae=form("from_ae"),
        match=routes.parse_match(lines),
        window=form("window") if when == "window" else "",
        at=form("at") if when == "at" else "",
        retries=retries,
        commit=bool(form("commit")),
        purge_after=bool(form("purge_after")),
        notify=bool(form("notify")),
    )


def register(ctx: Ctx) -> None:
    def page(**extra: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "title": "Routes",
            "routes": [asdict(r) | {"describe": r.describe()} for r in routes.all_routes()],
            "destinations": aes.ae_destinations(),
            "keys": list(routes.KEYS),
            "error": "",
            "values": {"when": "now", "retries": 3},
        }
        data.update(extra)
        return data

    @ctx.page("/routes", template="routes.tpl", privilege="admin")
    def routes_page(ident):
        return page()

    @ctx.page("/routes", method="POST", template="routes.tpl", privilege="admin")
    def route_save(ident):
        try:
            saved = add_route(_from_form(), user=ident.principal.name, address=ctx.address())
        except PacsboxError as exc:
            if wants_json():
                raise
            bottle.response.status = exc.http_status
            typed = {k: form(k) for k in ("name", "from_ae", "match", "when", "window", "at")}
            typed["retries"] = form("retries", "3")
            return page(error=str(exc), values=typed)
        return done("/routes", f"route {saved.name} saved", route=saved.name)

    @ctx.page(f"/routes/{NAME}/delete", method="POST", privilege="admin")
    def route_remove(ident, name):
        remove_route(name, user=ident.principal.name, address=ctx.address())
        return done("/routes", f"route {name} removed")
