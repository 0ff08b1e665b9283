"""The association log: who called us and whom we called, with the outcome in words.

"My modality cannot send" is the commonest support call for a PACS; the
answer is usually in the A-ASSOCIATE-RQ (an unknown or mistyped AE title,
another address, a SOP class we do not take). Rows come in batches from
``assocbuffer`` (never from an association's own thread), and the table is
kept bounded: the last ``keep`` accepted associations per AE and direction,
everything else only for ``days``, counted on one row per kind and UTC day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pacsbox.db.models import AssociationLog, database, utcnow
from pacsbox.db.transaction import write_transaction

# Outcomes. In: accepted or rejected. Out: also refused (nothing listens on
# the port), timeout (no answer), unreachable (no route, unknown host), aborted.
ACCEPTED = "accepted"
RESULTS = (ACCEPTED, "rejected", "refused", "timeout", "unreachable", "aborted")

# Why an association in was rejected: code -> the words the page and the CLI use.
REASONS = {
    "unknown-calling-ae": "unknown calling AE",
    "wrong-called-ae": "wrong called AE title",
    "address-mismatch": "address mismatch",
    "disabled-ae": "disabled AE",
    "no-context": "no common presentation context",
    "no-transfer-syntax": "no accepted transfer syntax",
    "busy": "too many associations",
}

# A hard ceiling whatever the settings: rows from thousands of distinct
# scanners' titles still cannot fill the disk.
MAX_ROWS = 20000


@dataclass
class Entry:
    """One association (or, once written, one kind of failure on one day)."""

    direction: str  # "in" or "out"
    remote_ae: str
    calling_ae: str
    called_ae: str
    address: str
    service: str = ""
    result: str = ACCEPTED
    reason: str = ""
    detail: str = ""
    at: dt.datetime = field(default_factory=utcnow)

    def key(self) -> tuple[str, ...]:
        return (
            self.direction,
            self.remote_ae,
            self.calling_ae,
            self.called_ae,
            self.address,
            self.service,
            self.result,
            self.reason,
            self.detail,
        )


def _clip(e: Entry) -> Entry:
    """Titles and words as long as the columns; a peer chooses what it sends."""
    return Entry(
        e.direction,
        e.remote_ae.strip()[:16],
        e.calling_ae.strip()[:16],
        e.called_ae.strip()[:16],
        e.address[:300],
        e.service[:16],
        e.result[:16],
        e.reason[:32],
        e.detail[:300],
        e.at,
    )


def _columns(e: Entry) -> dict[str, Any]:
    return {
        "direction": e.direction,
        "remote_ae": e.remote_ae,
        "calling_ae": e.calling_ae,
        "called_ae": e.called_ae,
        "address": e.address,
        "service": e.service,
        "result": e.result,
        "reason": e.reason,
        "detail": e.detail,
    }


def write(entries: Iterable[Entry]) -> None:
    """Add a batch in one transaction: accepted ones a row each, the others counted
    on the day's row of their kind. Raises peewee errors when the index fails."""
    accepted: list[Entry] = []
    failed: dict[tuple[str, ...], list[Entry]] = {}
    for raw in entries:
        e = _clip(raw)
        if e.result == ACCEPTED:
            accepted.append(e)
        else:
            failed.setdefault(e.key() + (e.at.date().isoformat(),), []).append(e)
    with write_transaction():
        if accepted:
            AssociationLog.insert_many(
                [_columns(e) | {"first": e.at, "last": e.at, "count": 1} for e in accepted]
            ).execute()
        for same in failed.values():
            e, last = same[0], max(x.at for x in same)
            day = dt.datetime.combine(e.at.date(), dt.time())
            where = [getattr(AssociationLog, k) == v for k, v in _columns(e).items()]
            n = (
                AssociationLog.update(count=AssociationLog.count + len(same), last=last)
                .where(
                    *where,
                    AssociationLog.first >= day,
                    AssociationLog.first < day + dt.timedelta(days=1),
                )
                .execute()
            )
            if not n:
                AssociationLog.create(
                    **_columns(e), first=min(x.at for x in same), last=last, count=len(same)
                )


def prune(now: dt.datetime, days: int, keep: int) -> int:
    """Forget rows older than ``days``, accepted ones beyond the last ``keep`` per AE
    and direction, and the oldest past MAX_ROWS; returns how many went."""
    gone: int = 0
    with write_transaction():
        gone += (
            AssociationLog.delete()
            .where(AssociationLog.last < now - dt.timedelta(days=days))
            .execute()
        )
        # ROW_NUMBER() runs on SQLite (3.25+) and PostgreSQL alike.
        p = database.param
        gone += database.execute_sql(
            "DELETE FROM association_log WHERE id IN (SELECT id FROM ("
            " SELECT id, ROW_NUMBER() OVER (PARTITION BY remote_ae, direction"
            " ORDER BY last DESC, id DESC)"
            f" AS n FROM association_log WHERE result = {p}) AS ranked WHERE n > {p})",
            (ACCEPTED, keep),
        ).rowcount
        newest = AssociationLog.select(AssociationLog.id).order_by(
            AssociationLog.last.desc(), AssociationLog.id.desc()
        )
        gone += (
            AssociationLog.delete().where(AssociationLog.id.in_(newest.offset(MAX_ROWS))).execute()
        )
    return int(gone)


def _row(r: AssociationLog) -> dict[str, Any]:
    return {
        "direction": r.direction,
        "remote_ae": r.remote_ae,
        "calling_ae": r.calling_ae,
        "called_ae": r.called_ae,
        "address": r.address,
        "service": r.service,
        "result": r.result,
        "reason": r.reason,
        "detail": r.detail,
        "first": r.first.isoformat(timespec="seconds"),
        "last": r.last.isoformat(timespec="seconds"),
        "count": r.count,
    }


def recent(title: str, direction: str, limit: int = 10) -> list[dict[str, Any]]:
    """An AE's last associations one way, newest first."""
    rows = (
        AssociationLog.select()
        .where(AssociationLog.remote_ae == title.strip(), AssociationLog.direction == direction)
        .order_by(AssociationLog.last.desc(), AssociationLog.id.desc())
        .limit(limit)
    )
    return [_row(r) for r in rows]


def recent_by_ae(titles: Sequence[str], limit: int = 5) -> dict[str, dict[str, list]]:
    """``recent`` for many AEs in one query: title -> {"in": [...], "out": [...]}."""
    out: dict[str, dict[str, list]] = {t: {"in": [], "out": []} for t in titles}
    if not titles:
        return out
    rows = (
        AssociationLog.select()
        .where(AssociationLog.remote_ae.in_(list(titles)))
        .order_by(AssociationLog.last.desc(), AssociationLog.id.desc())
    )
    for r in rows:
        lst = out[r.remote_ae][r.direction]
        if len(lst) < limit:
            lst.append(_row(r))
    return out


def rejections(since: dt.datetime, title: str | None = None) -> list[dict[str, Any]]:
    """Associations in that were rejected since then (of one calling AE, or all),
    one entry per calling AE, address, called AE and reason, newest first."""
    groups: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    query = AssociationLog.select().where(
        AssociationLog.direction == "in",
        AssociationLog.result == "rejected",
        AssociationLog.last >= since,
    )
    if title is not None:
        query = query.where(AssociationLog.remote_ae == title.strip())
    for r in query.order_by(AssociationLog.last.desc()):
        key = (r.calling_ae, r.address, r.called_ae, r.reason)
        g = groups.get(key)
        if g is None:
            groups[key] = _row(r) | {"words": REASONS.get(r.reason, r.reason)}
        else:
            g["count"] += r.count
            g["first"] = min(g["first"], r.first.isoformat(timespec="seconds"))
    return list(groups.values())
