"""``pacsbox route add/list/remove``: the routing table from a shell.

The web page's routing page calls the same ``add_route``/``remove_route``,
so a route is checked, journaled and described the same way from both.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TextIO

from pacsbox.db import journal, queue, routes
from pacsbox.outbound.deliver import peer_of


def add_route(view: routes.RouteView, *, user: str, address: str = "") -> routes.RouteView:
    """Check a route (its AEs must be in the AE table with an address), save it and
    journal who made it. Raises UsageError or NotFound with the reason."""
    routes.check(view, queue.check_window)
    for destination in view.destinations:
        peer_of(destination)
    saved = routes.add(view)
    journal.record("route", user, address, target=saved.name,
                   detail=f"to {', '.join(saved.destinations)}: {saved.describe()}")  # fmt: skip
    return saved


def remove_route(name: str, *, user: str, address: str = "") -> None:
    routes.remove(name)
    journal.record("route", user, address, target=name, detail="removed")


def route_command(
    action: str, view: routes.RouteView | None, name: str, as_json: bool, user: str, out: TextIO
) -> int:
    if action == "add":
        assert view is not None
        saved = add_route(view, user=user)
        print(f"route {saved.name} to {', '.join(saved.destinations)}: {saved.describe()}",
              file=out)  # fmt: skip
        return 0
    if action == "remove":
        remove_route(name, user=user)
        print(f"route {name} removed", file=out)
        return 0
    table = routes.all_routes()
    if as_json:
        print(json.dumps([asdict(r) for r in table], indent=1), file=out)
        return 0
    for r in table:
        state = "" if r.enabled else " (disabled)"
        print(f"{r.name:16} to {','.join(r.destinations):24} {r.describe()}{state}", file=out)
    return 0
