"""The routing table (SCU-4) and what it has matched, in the index.

Routes are matched against the index, not inside the store path: the
router reads instance rows stored since its last look, so a store pays
nothing for routing, every process's stores are seen, and a crash between
a store and its routing loses nothing (the read position and the matches
commit together). A study is routed once it is stable; images that come
later go in a follow-up job for just those rows.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from peewee import fn

from pacsbox.db.models import (
    Instance,
    Patient,
    Route,
    RoutedStudy,
    RouteScan,
    Series,
    Study,
    database,
    utcnow,
)
from pacsbox.db.transaction import write_transaction
from pacsbox.errors import NotFound, UsageError

# Keys a route may match on, and the index column that holds each.
KEYS: dict[str, Any] = {
    "PatientID": Patient.patient_id,
    "ReferringPhysicianName": Study.referring_physician,
    "InstitutionName": Study.institution_name,
    "StudyDescription": Study.study_description,
    "AccessionNumber": Study.accession_number,
    "ProtocolName": Series.protocol_name,
    "Modality": Series.modality,
    "StationName": Series.station_name,
    "BodyPartExamined": Series.body_part,
    "SeriesDescription": Series.series_description,
}
_AT = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SCAN_BATCH = 2000  # instance rows read per look


@dataclass
class RouteView:
    """A route as callers outside db/ see it."""

    name: str
    destinations: list[str]
    from_ae: str = ""
    match: dict[str, str] = field(default_factory=dict)
    window: str = ""
    at: str = ""
    retries: int = 3
    commit: bool = False
    purge_after: bool = False
    notify: bool = False  # an Instance Availability Notification instead of the images
    enabled: bool = True
    owner: str = ""
    created: str = ""

    def describe(self) -> str:
        """ "CT from CT1 with InstitutionName=NORTH*, 22:00-06:00": a route list's line."""
        parts = [f"from {self.from_ae}"] if self.from_ae else []
        parts += [f"{k}={v}" for k, v in self.match.items()]
        when = self.window or (f"at {self.at}" if self.at else "immediately")
        flags = (("commit", self.commit), ("purge after", self.purge_after),
                 ("notification only", self.notify))  # fmt: skip
        extra = [w for w, on in flags if on]
        what = " and ".join(parts) or "every study"
        return ", ".join([what, when, f"{self.retries} retries", *extra])


def _view(row: Route) -> RouteView:
    return RouteView(
        name=row.name,
        destinations=[d for d in row.destinations.split(",") if d],
        from_ae=row.from_ae,
        match=json.loads(row.match or "{}"),
        window=row.window,
        at=row.at,
        retries=row.retries,
        commit=bool(row.commit),
        purge_after=bool(row.purge_after),
        notify=bool(row.notify),
        enabled=bool(row.enabled),
        owner=row.owner,
        created=row.created.replace(tzinfo=dt.UTC).isoformat() if row.created else "",
    )


# --- the table ----------------------------------------------------------------------


def parse_match(pairs: list[str]) -> dict[str, str]:
    """``["Modality=CT", "InstitutionName=NORTH*"]`` as a dict; UsageError on a key a
    route cannot match on or a pair without ``=``."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, eq, pattern = pair.partition("=")
        key = key.strip()
        if not eq or not pattern.strip():
            raise UsageError(f"--match {pair!r}: expected KEY=PATTERN")
        if key not in KEYS:
            raise UsageError(f"--match: cannot route on {key!r}; keys: {', '.join(KEYS)}")
        out[key] = pattern.strip()
    return out


def check(view: RouteView, window_check: Callable[[str], object]) -> None:
    """Raise UsageError for a route that cannot work (``window_check`` is the queue's)."""
    if not _NAME.match(view.name):
        raise UsageError(f"route name {view.name!r}: letters, digits, '_', '.', '-' (64 at most)")
    if not view.destinations:
        raise UsageError("a route needs a destination (--to AE)")
    if view.window and view.at:
        raise UsageError("give a time window or a fixed hour, not both")
    if view.at and not _AT.match(view.at):
        raise UsageError(f"--at {view.at!r}: expected HH:MM")
    window_check(view.window)
    if view.notify and (view.commit or view.purge_after):
        raise UsageError("a notification route sends no images: no --commit or --purge-after")
    if view.retries < 0:
        raise UsageError("--retries must be 0 or more")
    if len(view.from_ae) > 16:
        raise UsageError(f"--from-ae {view.from_ae!r} is longer than 16 characters")
    for key in view.match:
        if key not in KEYS:
            raise UsageError(f"cannot route on {key!r}")


def add(view: RouteView) -> RouteView:
    """Add (or replace) a route; it matches images stored from now on."""
    with write_transaction():
        since = Instance.select(fn.MAX(Instance.id)).scalar() or 0
        values = {
            "destinations": ",".join(view.destinations),
            "from_ae": view.from_ae,
            "match": json.dumps(view.match, sort_keys=True),
            "window": view.window,
            "at": view.at,
            "retries": view.retries,
            "commit": view.commit,
            "purge_after": view.purge_after,
            "notify": view.notify,
            "enabled": view.enabled,
            "owner": view.owner[:64],
        }
        row = Route.get_or_none(Route.name == view.name)
        if row is None:
            row = Route.create(name=view.name, since=since, **values)
        else:
            Route.update(**values).where(Route.id == row.id).execute()
            row = Route.get_by_id(row.id)
    return _view(row)


def remove(name: str) -> None:
    """Remove a route; jobs it queued stay in the queue and run."""
    with write_transaction():
        if not Route.delete().where(Route.name == name).execute():
            raise NotFound(f"no route named {name}")


def get(name: str) -> RouteView | None:
    row = Route.get_or_none(Route.name == name)
    return None if row is None else _view(row)


def all_routes() -> list[RouteView]:
    return [_view(r) for r in Route.select().order_by(Route.name)]


# --- matching ------------------------------------------------------------------------


def _pattern(pattern: str) -> re.Pattern[str]:
    """A route's ``*``/``?`` pattern, case-insensitive (a user types "north*" for
    "NORTH CLINIC"); a backslash separates alternatives as in a C-FIND key."""
    alternatives = [fnmatch.translate(p.replace("[", "[[]")) for p in pattern.split("\\")]
    return re.compile("|".join(f"(?:{a})" for a in alternatives), re.IGNORECASE)


@dataclass
class _Compiled:
    id: int
    since: int
    from_ae: re.Pattern[str] | None
    match: dict[str, re.Pattern[str]]

    def matches(self, values: dict[str, str]) -> bool:
        if self.from_ae is not None and not self.from_ae.match(values["calling_ae"]):
            return False
        return all(p.match(values[k] or "") for k, p in self.match.items())


def _compiled() -> list[_Compiled]:
    return [
        _Compiled(
            r.id,
            r.since,
            _pattern(r.from_ae) if r.from_ae else None,
            {k: _pattern(v) for k, v in json.loads(r.match or "{}").items() if k in KEYS},
        )
        for r in Route.select().where(Route.enabled == True)  # noqa: E712 - peewee
    ]


def scan(lag_seconds: float = 0.0, batch: int = SCAN_BATCH) -> int:
    """Match instance rows stored since the last look; returns how many were read.

    The read position and the matches commit together, so a crash re-reads
    rather than skips. ``lag_seconds`` leaves rows younger than that for the
    next look (PostgreSQL may commit ids out of order; SQLite never does).
    """
    with write_transaction():
        cursor = RouteScan.get_or_none(RouteScan.id == 1)
        after = cursor.last_instance if cursor is not None else 0
        routes = _compiled()
        if not routes:
            # Nothing to match: move past what is stored, so the first route does
            # not start by reading the whole archive.
            top = Instance.select(fn.MAX(Instance.id)).scalar() or 0
            _move(cursor, top)
            return 0
        query = (
            Instance.select(
                Instance.id,
                Instance.calling_ae,
                Instance.received,
                Study.study_instance_uid,
                *KEYS.values(),
            )
            .join(Series, on=(Instance.series == Series.id))
            .join(Study, on=(Series.study == Study.id))
            .join(Patient, on=(Study.patient == Patient.id))
            .where(Instance.id > after)
            .order_by(Instance.id)
            .limit(batch)
        )
        if lag_seconds > 0:
            query = query.where(Instance.received <= utcnow() - dt.timedelta(seconds=lag_seconds))
        names = ["id", "calling_ae", "received", "study_uid", *KEYS]
        rows = [dict(zip(names, r, strict=True)) for r in query.tuples()]
        hits: dict[tuple[int, str], tuple[int, dt.datetime]] = {}
        for row in rows:
            for route in routes:
                if row["id"] > route.since and route.matches(row):
                    key = (route.id, row["study_uid"])
                    upto, seen = hits.get(key, (0, row["received"]))
                    hits[key] = (max(upto, row["id"]), max(seen, row["received"]))
        for (route_id, study_uid), (upto, seen) in hits.items():
            _matched(route_id, study_uid, upto, seen)
        if rows:
            _move(cursor, rows[-1]["id"])
        return len(rows)


def _move(cursor: RouteScan | None, to: int) -> None:
    if cursor is None:
        RouteScan.create(id=1, last_instance=to)
    elif to > cursor.last_instance:
        RouteScan.update(last_instance=to).where(RouteScan.id == 1).execute()


def _matched(route_id: int, study_uid: str, upto: int, seen: dt.datetime) -> None:
    row = RoutedStudy.get_or_none(
        (RoutedStudy.route == route_id) & (RoutedStudy.study_uid == study_uid)
    )
    if row is None:
        RoutedStudy.create(route=route_id, study_uid=study_uid, last_seen=seen, upto=upto)
        return
    RoutedStudy.update(
        upto=max(row.upto, upto), last_seen=max(row.last_seen, seen), purged=False
    ).where((RoutedStudy.route == route_id) & (RoutedStudy.study_uid == study_uid)).execute()


# --- studies due -----------------------------------------------------------------------


@dataclass
class Due:
    """A routed study stable long enough: send rows (after, upto] to the route's AEs."""

    route: RouteView
    study_uid: str
    after: int
    upto: int
    follow_up: bool


def due(now: dt.datetime, stable_seconds: float) -> list[Due]:
    """Routed studies with unsent images and none newer than ``stable_seconds``."""
    quiet = now - dt.timedelta(seconds=stable_seconds)
    query = (
        RoutedStudy.select(RoutedStudy, Route)
        .join(Route)
        .where((RoutedStudy.upto > RoutedStudy.queued_upto) & (RoutedStudy.last_seen <= quiet))
        .order_by(RoutedStudy.last_seen)
    )
    return [
        Due(_view(r.route), r.study_uid, r.queued_upto, r.upto, r.queued_upto > 0) for r in query
    ]


def queued(item: Due, submit: Callable[[str], int]) -> list[int]:
    """Make the jobs of a due study (``submit(destination) -> job id``) and mark its
    rows covered, in one transaction: a crash makes both or neither."""
    with write_transaction():
        ids = [submit(d) for d in item.route.destinations]
        route_id = Route.select(Route.id).where(Route.name == item.route.name).scalar()
        row = RoutedStudy.get(
            (RoutedStudy.route == route_id) & (RoutedStudy.study_uid == item.study_uid)
        )
        jobs = [j for j in row.jobs.split(",") if j] + [str(i) for i in ids]
        RoutedStudy.update(queued_upto=item.upto, jobs=",".join(jobs)).where(
            (RoutedStudy.route == route_id) & (RoutedStudy.study_uid == item.study_uid)
        ).execute()
    return ids


def waiting_studies() -> dict[str, str]:
    """Study UID -> route name, for studies a route matched and has not queued all of
    (the purge keeps them: their jobs are not rows yet)."""
    query = (
        RoutedStudy.select(RoutedStudy.study_uid, Route.name)
        .join(Route)
        .where(RoutedStudy.upto > RoutedStudy.queued_upto)
        .tuples()
    )
    return dict(query)


def purge_candidates() -> list[tuple[RouteView, str, list[int]]]:
    """(route, study UID, every job the route made for it) for the studies of
    purge-after routes that every matched image has a job for."""
    query = (
        RoutedStudy.select(RoutedStudy, Route)
        .join(Route)
        .where(
            (Route.purge_after == True)  # noqa: E712 - peewee
            & (RoutedStudy.purged == False)  # noqa: E712
            & (RoutedStudy.upto == RoutedStudy.queued_upto)
            & (RoutedStudy.jobs != "")
        )
    )
    return [(_view(r.route), r.study_uid, [int(j) for j in r.jobs.split(",") if j]) for r in query]


def mark_purged(route_name: str, study_uid: str) -> None:
    """The study's purge-after is settled (purged, or kept by another rule: said once)."""
    route_id = Route.select(Route.id).where(Route.name == route_name)
    with write_transaction():
        RoutedStudy.update(purged=True).where(
            (RoutedStudy.route.in_(route_id)) & (RoutedStudy.study_uid == study_uid)
        ).execute()


def is_sqlite() -> bool:
    """Whether instance ids commit in order (the scan needs no lag)."""
    return bool(database.obj.param == "?")
