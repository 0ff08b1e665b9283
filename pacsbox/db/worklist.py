"""Worklist items in the index: the one place every source of orders writes them.

The CLI, the order-entry page, HL7 orders and the worklist poll all call
``add``/``update``/``set_status`` here, so an item looks the same whoever made
it: a Study Instance UID is always set (generated when the order has none),
the requested procedure and step IDs default to the accession number, and the
status moves only forward (a completed or discontinued step is never
reopened).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from pacsbox.db.models import utcnow
from pacsbox.db.transaction import write_transaction
from pacsbox.db.worklist_models import (
    COMPLETED,
    DISCONTINUED,
    IN_PROGRESS,
    SCHEDULED,
    STATES,
    PerformedStep,
    WorklistItem,
)
from pacsbox.errors import NotFound, UsageError

log = logging.getLogger("pacsbox.db")

__all__ = [
    "COMPLETED",
    "DISCONTINUED",
    "FIELDS",
    "IN_PROGRESS",
    "SCHEDULED",
    "STATES",
    "PerformedStep",
    "WorklistItem",
    "add",
    "expire",
    "find_order",
    "get",
    "items",
    "mirror",
    "new_uid",
    "next_states",
    "remove",
    "set_status",
    "summary",
    "update",
]

# Columns a caller may set (everything but the bookkeeping ones).
FIELDS = frozenset(
    f.name
    for f in WorklistItem._meta.sorted_fields
    if f.name not in ("id", "created", "updated", "patient_name_ci")
)
# Forward moves only: a finished step stays finished (PS3.4 F.7.2.1 for MPPS).
_NEXT = {
    SCHEDULED: {SCHEDULED, IN_PROGRESS, COMPLETED, DISCONTINUED},
    IN_PROGRESS: {IN_PROGRESS, COMPLETED, DISCONTINUED},
    COMPLETED: {COMPLETED},
    DISCONTINUED: {DISCONTINUED},
}
_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")


def new_uid() -> str:
    """A UID under 2.25 (PS3.5 B.2): unique without a registered root."""
    return f"2.25.{uuid.uuid4().int}"


def _check(values: Mapping[str, Any]) -> dict[str, str]:
    unknown = set(values) - FIELDS
    if unknown:
        raise UsageError(f"not a worklist field: {', '.join(sorted(unknown))}")
    out = {k: "" if v is None else str(v).strip() for k, v in values.items()}
    if out.get("status", SCHEDULED) not in STATES:
        raise UsageError(f"status {out['status']!r}: one of {', '.join(STATES)}")
    for key in ("start_date", "birth_date"):
        if out.get(key) and not _DATE.match(out[key]):
            raise UsageError(f"{key} {out[key]!r}: a date YYYYMMDD")
    if out.get("start_time") and not _TIME.match(out["start_time"].replace(":", "")):
        raise UsageError(f"start_time {out['start_time']!r}: a time HHMM or HHMMSS")
    if "start_time" in out:
        out["start_time"] = out["start_time"].replace(":", "")
    for key, limit in (("station_ae", 16), ("modality", 16), ("accession_number", 16)):
        if len(out.get(key, "")) > limit:
            raise UsageError(f"{key} {out[key]!r}: at most {limit} characters")
    return out


def add(values: Mapping[str, Any], *, source: str = "") -> int:
    """Store a new scheduled step; returns its id. Raises UsageError for a bad value."""
    row = _check(values)
    if not row.get("patient_id") and not row.get("patient_name"):
        raise UsageError("a worklist item needs a patient ID or a patient name")
    if not row.get("modality"):
        raise UsageError("a worklist item needs a modality")
    row.setdefault("study_instance_uid", "")
    row["study_instance_uid"] = row["study_instance_uid"] or new_uid()
    accession = row.get("accession_number", "")
    row["requested_procedure_id"] = row.get("requested_procedure_id") or accession[:16]
    row["sps_id"] = row.get("sps_id") or accession[:16]
    row["patient_name_ci"] = row.get("patient_name", "").upper()
    if source:
        row["source"] = source
    with write_transaction():
        return int(WorklistItem.insert(**row).execute())


def update(item_id: int, values: Mapping[str, Any]) -> None:
    """Change an item's fields (a status only forward). Raises NotFound, UsageError."""
    row = _check(values)
    with write_transaction():
        item = get(item_id)
        if "status" in row and row["status"] not in _NEXT[item.status]:
            raise UsageError(
                f"worklist item {item_id} is {item.status}: it cannot become {row['status']}"
            )
        if "patient_name" in row:
            row["patient_name_ci"] = row["patient_name"].upper()
        WorklistItem.update(**row, updated=utcnow()).where(WorklistItem.id == item_id).execute()


def set_status(item_id: int, status: str) -> None:
    """Move an item to ``status``. Raises NotFound, or UsageError for a move backwards."""
    update(item_id, {"status": status})


def next_states(status: str) -> frozenset[str]:
    """The states an item in ``status`` may move to (itself included)."""
    return frozenset(_NEXT[status])


def get(item_id: int) -> WorklistItem:
    item = WorklistItem.get_or_none(WorklistItem.id == item_id)
    if item is None:
        raise NotFound(f"no worklist item {item_id}")
    return item


def remove(item_id: int) -> None:
    """Delete an item. Raises NotFound."""
    with write_transaction():
        if not WorklistItem.delete().where(WorklistItem.id == item_id).execute():
            raise NotFound(f"no worklist item {item_id}")


def find_order(
    *, placer: str = "", filler: str = "", accession: str = "", study_uid: str = ""
) -> list[WorklistItem]:
    """Items of one order, by the first identifier given (HL7 cancel, MPPS link)."""
    for column, value in (
        (WorklistItem.placer_order, placer),
        (WorklistItem.filler_order, filler),
        (WorklistItem.accession_number, accession),
        (WorklistItem.study_instance_uid, study_uid),
    ):
        if value:  # ids first: a new order (the common case) costs one small query
            ids = [r.id for r in WorklistItem.select(WorklistItem.id).where(column == value)]
            if not ids:
                return []
            return list(
                WorklistItem.select().where(WorklistItem.id.in_(ids)).order_by(WorklistItem.id)
            )
    return []


def items(statuses: Iterable[str] = (), *, limit: int = 0) -> list[WorklistItem]:
    """Items by start date and time, optionally of some states only."""
    q = WorklistItem.select().order_by(
        WorklistItem.start_date, WorklistItem.start_time, WorklistItem.id
    )
    wanted = list(statuses)
    if wanted:
        q = q.where(WorklistItem.status.in_(wanted))
    if limit:
        q = q.limit(limit)
    return list(q)


def _polled(remote_ae: str, row: dict[str, str]) -> dict[str, str]:
    """A polled row with the defaults ``add`` would give it, made the same on every
    poll: a step without a Study UID gets one derived from its order, not a new one."""
    out = {**row, "remote_ae": remote_ae, "source": f"poll:{remote_ae}"}
    out.pop("status", None)
    accession = out.get("accession_number", "")
    out["requested_procedure_id"] = out.get("requested_procedure_id") or accession[:16]
    out["sps_id"] = out.get("sps_id") or accession[:16]
    if not out.get("study_instance_uid"):
        name = f"{remote_ae}|{accession}|{out['sps_id']}|{out.get('patient_id', '')}"
        out["study_instance_uid"] = f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, name).int}"
    return out


def mirror(
    remote_ae: str, rows: Iterable[Mapping[str, Any]], *, since: str = "", complete: bool = True
) -> tuple[int, int, int, int]:
    """Make the items polled from ``remote_ae`` what it just returned (SCU-6).

    A step seen before (same Study UID and step ID) is updated in place: its
    status and id stay, so an MPPS under way keeps its item; a new one is added.
    With ``complete`` (a full poll) a still scheduled step of that AE from
    ``since`` on that the remote no longer lists is removed: it was cancelled
    there. A row the checks refuse (a garbled date) is skipped and logged.
    Returns (added, updated, removed, skipped).
    """
    polled, skipped = [], 0
    for r in rows:
        try:
            polled.append(_polled(remote_ae, _check(r)))
        except UsageError as exc:
            log.warning("worklist of %s: a step is skipped: %s", remote_ae, exc)
            skipped += 1
    with write_transaction():
        have = {(i.study_instance_uid, i.sps_id): i for i in
                WorklistItem.select().where(WorklistItem.remote_ae == remote_ae)}  # fmt: skip
        added = updated = removed = 0
        seen = set()
        for row in polled:
            key = (row["study_instance_uid"], row["sps_id"])
            seen.add(key)
            if key in have:
                update(have[key].id, row)
                updated += 1
            else:  # the same step twice in one answer is one item
                have[key] = get(add(row, source=row["source"]))
                added += 1
        if complete:
            for key, item in have.items():
                if key in seen or item.status != SCHEDULED or item.start_date < since:
                    continue
                item.delete_instance()
                removed += 1
    return added, updated, removed, skipped


def summary(item: WorklistItem) -> dict[str, Any]:
    """The item as ``pacsbox worklist list --json`` and the page's JSON twin show it."""
    start = item.start_date
    if start and item.start_time:
        t = item.start_time
        start = f"{start[:4]}-{start[4:6]}-{start[6:]}T{t[:2]}:{t[2:4] or '00'}"
    elif start:
        start = f"{start[:4]}-{start[4:6]}-{start[6:]}"
    return {
        "id": item.id,
        "patient_id": item.patient_id,
        "patient_name": item.patient_name,
        "birth_date": item.birth_date,
        "sex": item.sex,
        "accession": item.accession_number,
        "modality": item.modality,
        "station_ae": item.station_ae,
        "start": start,
        "procedure": item.requested_procedure_description,
        "study_instance_uid": item.study_instance_uid,
        "status": item.status,
        "source": item.source,
    }


def expire(keep_days: int, *, now: dt.datetime | None = None) -> int:
    """Delete items scheduled more than ``keep_days`` ago (0 keeps all); returns the count.

    Items still in progress are kept: their MPPS may yet complete them.
    """
    if keep_days <= 0:
        return 0
    cutoff = ((now or utcnow()) - dt.timedelta(days=keep_days)).strftime("%Y%m%d")
    with write_transaction():
        return int(
            WorklistItem.delete()
            .where(
                (WorklistItem.start_date != "")
                & (WorklistItem.start_date < cutoff)
                & (WorklistItem.status != IN_PROGRESS)
            )
            .execute()
        )
