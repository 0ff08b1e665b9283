"""Automatic routing (SCU-4, DATA-7): stored studies go to the routes' AEs by themselves.

The router is a thread of the daemon. Each turn it matches the images
stored since its last turn (``db.routes.scan``), turns every routed study
that has been quiet for ``StableStudySeconds`` into one queue job per
destination (a study that arrives in two associations is one job; images
that come later, a follow-up job), and deletes the local copy of a study
whose purge-after route has delivered it everywhere. Sending is the
forward's: a route job is a forward of rows of one study.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from pacsbox.config import Config
from pacsbox.db import commitments, journal, queue, routes
from pacsbox.db.models import utcnow
from pacsbox.outbound.runner import wake
from pacsbox.periodic import Periodic

log = logging.getLogger("pacsbox.outbound")

TURN_SECONDS = 1.0
PG_LAG_SECONDS = 10.0  # PostgreSQL may commit instance ids out of order: read behind

# (study UID, why) -> "purged", "kept" (another rule keeps it: ask again later)
# or "never" (protected, or gone already)
Purge = Callable[[str, str], str]


def next_at(at: str, now: dt.datetime) -> dt.datetime | None:
    """The next local HH:MM at or after ``now`` (naive UTC), as naive UTC; None for ""."""
    if not at:
        return None
    hour, minute = (int(p) for p in at.split(":"))
    local = now.replace(tzinfo=dt.UTC).astimezone()
    when = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if when < local:
        when += dt.timedelta(days=1)
    return when.astimezone(dt.UTC).replace(tzinfo=None)


def release(item: routes.Due, now: dt.datetime) -> list[int]:
    """Queue the jobs of a routed study that is due; returns their ids."""
    route = item.route
    what = "follow-up of study" if item.follow_up else "study"
    if route.notify:
        what = "availability of study"

    def submit(destination: str) -> int:
        payload = {
            "studies": [item.study_uid],
            "after": item.after,
            "upto": item.upto,
            "route": route.name,
            "commit": route.commit,
        }
        return queue.submit(
            "ian" if route.notify else "route", destination, payload, owner=f"route {route.name}",
            label=f"{what} by route {route.name} to {destination}",
            retries=route.retries, window=route.window, not_before=next_at(route.at, now),
        )  # fmt: skip

    ids = routes.queued(item, submit)
    for job_id, destination in zip(ids, route.destinations, strict=True):
        log.info("route %s: %s %s to %s queued as job %d", route.name, what, item.study_uid,
                 destination, job_id)  # fmt: skip
    return ids


def settle_purges(purge: Purge) -> int:
    """Delete the local copy of studies every destination of a purge-after route has
    delivered; returns how many went."""
    gone = 0
    for route, study_uid, job_ids in routes.purge_candidates():
        route_name = route.name
        views = [queue.get(j) for j in job_ids]
        if not views or any(v is None or v.state != "done" for v in views):
            continue
        if route.commit and not set(route.destinations) <= set(commitments.committed_by(study_uid)):
            continue  # delivered, not committed everywhere yet (or a commitment failed)
        why = f"route {route_name} delivered it to every destination (purge after route)"
        if route.commit:
            why = f"route {route_name} delivered it and every destination committed it"
        result = purge(study_uid, why)
        if result == "purged":
            gone += 1
            journal.record("purge", f"route {route_name}", target=study_uid, detail=why)
        if result != "kept":
            routes.mark_purged(route_name, study_uid)
    return gone


class Router(Periodic):
    """The routing thread: scan, release the stable studies, settle purge-after routes."""

    name = "router"
    interval = TURN_SECONDS

    def __init__(
        self,
        cfg: Config,
        purge: Purge | None = None,
        *,
        heartbeat: Callable[[], None] | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        super().__init__(heartbeat)
        self.cfg = cfg
        self.purge = purge
        self.clock = clock

    def turn(self) -> int:
        """One turn; returns the jobs queued. Safe to call by hand (tests, the CLI)."""
        lag = 0.0 if routes.is_sqlite() else PG_LAG_SECONDS
        while routes.scan(lag) == routes.SCAN_BATCH:
            if self.heartbeat is not None:
                self.heartbeat()
        now = self.clock()
        made = 0
        for item in routes.due(now, float(self.cfg.StableStudySeconds)):
            made += len(release(item, now))
        if made:
            wake()
        if self.purge is not None:
            settle_purges(self.purge)
        return made
