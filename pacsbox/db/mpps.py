"""Modality Performed Procedure Steps in the index (NET-8).

The state machine of PS3.4 F.7.2 lives here, not in the DIMSE handler, so a
step refused over the network would be refused the same way from anywhere: a
step is created IN PROGRESS, may be changed while it is IN PROGRESS, and is
frozen once COMPLETED or DISCONTINUED. The worklist item it performs follows
its status in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pacsbox.db import worklist
from pacsbox.db.models import utcnow
from pacsbox.db.transaction import write_transaction
from pacsbox.db.worklist_models import PerformedStep, WorklistItem

IN_PROGRESS, COMPLETED, DISCONTINUED = "IN PROGRESS", "COMPLETED", "DISCONTINUED"
STATES = (IN_PROGRESS, COMPLETED, DISCONTINUED)
_ITEM_STATUS = {
    IN_PROGRESS: worklist.IN_PROGRESS,
    COMPLETED: worklist.COMPLETED,
    DISCONTINUED: worklist.DISCONTINUED,
}
# Columns an N-SET may change; the rest identify the step and stay as created.
SETTABLE = frozenset(
    {"status", "pps_description", "end_date", "end_time", "dataset", "study_instance_uid"}
)


class StepError(Exception):
    """A request the state machine refuses; ``status`` is the DIMSE status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


# PS3.7 C.4: the statuses an MPPS SCP answers with.
DUPLICATE_INSTANCE = 0x0111
INVALID_VALUE = 0x0106
PROCESSING_FAILURE = 0x0110
# Issue 18 names 0119 for an N-SET on an instance the SCP does not know (PS3.7's
# general list calls it "class-instance conflict"; 0112 is "no such instance").
UNKNOWN_INSTANCE = 0x0119


@dataclass(frozen=True)
class Scheduled:
    """What the modality says it performed: one item of Scheduled Step Attributes."""

    study_instance_uid: str = ""
    accession_number: str = ""
    sps_id: str = ""


def _item_for(refs: list[Scheduled]) -> WorklistItem | None:
    """The worklist item a step performs: by study, else by accession; the one with the
    step's ID when the order has several."""
    for ref in refs:
        for found in (
            worklist.find_order(study_uid=ref.study_instance_uid),
            worklist.find_order(accession=ref.accession_number),
        ):
            if found:
                exact = [i for i in found if i.sps_id == ref.sps_id]
                return (exact or found)[0]
    return None


def _follow(item_id: int, status: str) -> None:
    """Move the worklist item with its step; an item already further along stays."""
    if not item_id:
        return
    item = WorklistItem.get_or_none(WorklistItem.id == item_id)
    wanted = _ITEM_STATUS[status]
    if item is not None and wanted in worklist.next_states(item.status):
        WorklistItem.update(status=wanted, updated=utcnow()).where(
            WorklistItem.id == item_id
        ).execute()


def create(
    sop_instance_uid: str, fields: Mapping[str, Any], refs: list[Scheduled]
) -> PerformedStep:
    """Record an N-CREATE. Raises StepError (0111 duplicate, 0106 not IN PROGRESS)."""
    status = str(fields.get("status", ""))
    if status != IN_PROGRESS:
        raise StepError(INVALID_VALUE, f"a new step must be IN PROGRESS, not {status!r}")
    with write_transaction():
        if PerformedStep.get_or_none(PerformedStep.sop_instance_uid == sop_instance_uid):
            raise StepError(DUPLICATE_INSTANCE, f"step {sop_instance_uid} exists already")
        item = _item_for(refs)
        row = dict(fields)
        row["worklist_item"] = item.id if item else 0
        if item is not None and not row.get("study_instance_uid"):
            row["study_instance_uid"] = item.study_instance_uid
        PerformedStep.insert(sop_instance_uid=sop_instance_uid, **row).execute()
        _follow(row["worklist_item"], IN_PROGRESS)
        return PerformedStep.get(PerformedStep.sop_instance_uid == sop_instance_uid)


def get(sop_instance_uid: str) -> PerformedStep | None:
    return PerformedStep.get_or_none(PerformedStep.sop_instance_uid == sop_instance_uid)


def change(sop_instance_uid: str, fields: Mapping[str, Any]) -> PerformedStep:
    """Apply an N-SET. Raises StepError: 0119 unknown step, 0110 a finished step,
    0106 a status that is not one of the three."""
    unknown = set(fields) - SETTABLE
    if unknown:
        raise ValueError(f"not settable: {', '.join(sorted(unknown))}")
    status = fields.get("status")
    if status is not None and status not in STATES:
        raise StepError(INVALID_VALUE, f"Performed Procedure Step Status {status!r} unknown")
    with write_transaction():
        step = get(sop_instance_uid)
        if step is None:
            raise StepError(UNKNOWN_INSTANCE, f"no performed procedure step {sop_instance_uid}")
        if step.status != IN_PROGRESS:
            raise StepError(
                PROCESSING_FAILURE,
                f"Performed Procedure Step Object may no longer be updated: it is {step.status}",
            )
        PerformedStep.update(**fields, updated=utcnow()).where(
            PerformedStep.id == step.id
        ).execute()
        if status:
            _follow(step.worklist_item, status)
        return PerformedStep.get(PerformedStep.id == step.id)


def of_study(study_instance_uid: str) -> list[PerformedStep]:
    """The steps that performed a study, oldest first (the study page)."""
    return list(
        PerformedStep.select()
        .where(PerformedStep.study_instance_uid == study_instance_uid)
        .order_by(PerformedStep.created, PerformedStep.id)
    )


def summary(step: PerformedStep) -> dict[str, Any]:
    """A step as the study page's JSON twin shows it."""
    return {
        "sop_instance_uid": step.sop_instance_uid,
        "status": step.status,
        "pps_id": step.pps_id,
        "description": step.pps_description,
        "modality": step.modality,
        "station_ae": step.station_ae,
        "calling_ae": step.calling_ae,
        "start": f"{step.start_date} {step.start_time}".strip(),
        "end": f"{step.end_date} {step.end_time}".strip(),
        "worklist_item": step.worklist_item or None,
    }
