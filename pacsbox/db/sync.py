"""Synchronisation schedules (SCU-8): at which hours each remote AE is pulled.

A schedule names local wall-clock hours ("at 2 and at 14"), like the
queue's windows. Which runs are due is decided from the index alone (the
last hour a run was queued for), so a daemon that was off at 14:00 queues
the missed run once when it comes back, and two processes asking at once
queue it once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pacsbox.db.models import SyncSchedule, utcnow
from pacsbox.db.transaction import write_transaction
from pacsbox.errors import UsageError

MAX_DAYS = 36500


@dataclass
class Schedule:
    """A schedule as callers outside db/ see it."""

    ae_title: str
    hours: list[int]
    days: int  # 0: every study the remote lists
    last_slot: str | None  # ISO, UTC
    owner: str

    def as_dict(self) -> dict:
        return {"ae": self.ae_title, "hours": self.hours, "days": self.days,
                "last_slot": self.last_slot, "owner": self.owner}  # fmt: skip


def parse_hours(text: str) -> list[int]:
    """ "2,14" -> [2, 14]: up to 24 distinct hours 0-23; raises UsageError."""
    hours: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or not 0 <= int(part) <= 23:
            raise UsageError(f"hours {text!r}: whole hours 0-23, separated by commas (2,14)")
        hours.add(int(part))
    return sorted(hours)


def _view(row: SyncSchedule) -> Schedule:
    last = row.last_slot.replace(tzinfo=dt.UTC).isoformat() if row.last_slot else None
    return Schedule(row.ae_title, [int(h) for h in row.hours.split(",")], row.days, last,
                    row.owner)  # fmt: skip


def put(ae_title: str, hours: list[int], days: int = 0, owner: str = "") -> Schedule:
    """Set (or replace) an AE's schedule; hours already past today do not run at once.

    Raises UsageError for no hours, hours outside 0-23 or days below 0.
    """
    if not hours or any(not 0 <= h <= 23 for h in hours):
        raise UsageError("a schedule needs 1 to 24 hours, each 0-23")
    if not 0 <= days <= MAX_DAYS:
        raise UsageError(f"days: 1 to {MAX_DAYS} (or none for every study)")
    now = utcnow()
    text = ",".join(str(h) for h in sorted(set(hours)))
    with write_transaction():
        row = SyncSchedule.get_or_none(SyncSchedule.ae_title == ae_title)
        if row is None:
            row = SyncSchedule.create(ae_title=ae_title, hours=text, days=days, owner=owner[:64],
                                      last_slot=latest_slot(hours, now), created=now)  # fmt: skip
        else:
            row.hours, row.days, row.owner = text, days, owner[:64]
            row.last_slot = latest_slot(hours, now)
            row.save()
    return _view(row)


def schedules() -> list[Schedule]:
    return [_view(r) for r in SyncSchedule.select().order_by(SyncSchedule.ae_title)]


def get(ae_title: str) -> Schedule | None:
    row = SyncSchedule.get_or_none(SyncSchedule.ae_title == ae_title)
    return None if row is None else _view(row)


def remove(ae_title: str) -> bool:
    with write_transaction():
        return int(SyncSchedule.delete().where(SyncSchedule.ae_title == ae_title).execute()) > 0


def latest_slot(hours: list[int], now: dt.datetime) -> dt.datetime:
    """The last scheduled hour at or before ``now`` (naive UTC in, naive UTC out);
    the hours are the box's local wall clock."""
    local = now.replace(tzinfo=dt.UTC).astimezone()
    slots = [
        dt.datetime.combine(local.date() - dt.timedelta(days=back), dt.time(h), local.tzinfo)
        for back in (0, 1)
        for h in hours
    ]
    best = max(s for s in slots if s <= local)
    return best.astimezone(dt.UTC).replace(tzinfo=None)


def take_due(now: dt.datetime) -> list[Schedule]:
    """Schedules with an hour come since their last run, each marked as run for it.

    The mark is a conditional update, so a run is handed out once however
    many ask. Returns the schedules to run now.
    """
    due: list[Schedule] = []
    with write_transaction():
        for row in SyncSchedule.select():
            slot = latest_slot([int(h) for h in row.hours.split(",")], now)
            if row.last_slot is not None and slot <= row.last_slot:
                continue
            marked = SyncSchedule.update(last_slot=slot).where(
                (SyncSchedule.id == row.id) & (SyncSchedule.last_slot == row.last_slot)
                if row.last_slot is not None
                else (SyncSchedule.id == row.id) & SyncSchedule.last_slot.is_null()
            )
            if int(marked.execute()) == 1:
                row.last_slot = slot
                due.append(_view(row))
    return due
