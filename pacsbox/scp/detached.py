"""Detached Study Management notifications: the N-EVENT-REPORTs of table 21 (item 9).

The SOP class (1.2.840.10008.3.1.2.3.1) is retired in the standard but in the
conformance statement: a RIS tells the box a study was created, scheduled,
started, completed and so on. Each notification is answered 0000, logged in
one line and journaled; a "study scheduled" one queues a ``worklist-query``
job, the hook where the Modality Worklist SCU asks the worklist SCPs of the
AE table about that study (statement: "initiate a Modality Worklist - FIND").
pynetdicom has no service class for the retired SOP class, so it is
registered here with one that answers N-EVENT-REPORT.
"""

from __future__ import annotations

import logging

from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian
from pynetdicom import evt
from pynetdicom.presentation import build_context
from pynetdicom.service_class_n import StorageCommitmentServiceClass
from pynetdicom.sop_class import register_uid

from pacsbox.db import DbError, journal, queue
from pacsbox.scp.server import Service

log = logging.getLogger("pacsbox.scp.detached")

SOP_CLASS = "1.2.840.10008.3.1.2.3.1"
# PS3.4-1998 Annex F Detached Study Management event types (the statement's table 21).
EVENTS = {
    1: "study created",
    2: "study scheduled",
    3: "patient arrived",
    4: "study started",
    5: "study completed",
    6: "study verified",
    7: "study read",
    8: "study deleted",
    9: "study updated",
}
STUDY_SCHEDULED = 2
NO_SUCH_EVENT_TYPE = 0x0113
# What each event's information says in the journal line, as the statement lists it.
_DETAIL_KEYS = (
    "ScheduledStudyStartDate",
    "ScheduledStudyStartTime",
    "ScheduledStudyLocation",
    "ScheduledStudyLocationAETitle",
    "RequestedProcedureDescription",
    "StudyArrivalDate",
    "StudyArrivalTime",
    "StudyDate",
    "StudyTime",
    "StudyCompletionDate",
    "StudyCompletionTime",
    "StudyVerifiedDate",
    "StudyVerifiedTime",
    "StudyReadDate",
    "StudyReadTime",
    "StudyStatusID",
)
WORKLIST_QUERY = "worklist-query"  # the queue job kind the worklist SCU handles

register_uid(SOP_CLASS, "DetachedStudyManagement", StorageCommitmentServiceClass)


def make_service() -> Service:
    cx = build_context(SOP_CLASS, [ImplicitVRLittleEndian])  # the statement: Implicit VR only
    cx.scu_role = cx.scp_role = True  # accept a notifying peer's role selection
    return Service(contexts=[cx], handlers=[(evt.EVT_N_EVENT_REPORT, on_event_report)])


def _details(info: Dataset | None) -> dict[str, str]:
    if info is None:
        return {}
    out = {}
    for kw in _DETAIL_KEYS:
        value = info.get(kw)
        if value not in (None, ""):
            out[kw] = str(value)
    return out


def on_event_report(event: evt.Event) -> tuple[int, None]:
    """Answer 0000 to a notification of table 21 (0113 to an unknown event type)."""
    calling = event.assoc.requestor.ae_title.strip()
    request = event.request
    type_id = int(getattr(request, "EventTypeID", 0) or 0)
    study = str(getattr(request, "AffectedSOPInstanceUID", "") or "")
    name = EVENTS.get(type_id)
    if name is None:
        log.warning("Detached Study Management from %s: no event type %d", calling, type_id)
        return NO_SUCH_EVENT_TYPE, None
    try:
        info: Dataset | None = event.event_information
    except Exception as exc:  # noqa: BLE001 - an undecodable data set: the event still counts
        log.warning("Detached Study Management %s from %s: event information unreadable: %s",
                    name, calling, exc)  # fmt: skip
        info = None
    details = _details(info)
    text = ", ".join(f"{k}={v}" for k, v in details.items())
    log.info("Detached Study Management %s from %s for study %s", name, calling, study)
    journal.record("study-" + name.split()[1], calling, target=study, detail=f"{name}; {text}")
    if type_id == STUDY_SCHEDULED:
        try:
            job = queue.submit(WORKLIST_QUERY, "", {"study_uid": study, "from": calling, **details},
                               owner=f"dicom:{calling}", label=f"worklist query for {study}")  # fmt: skip
        except DbError as exc:
            log.warning("worklist query for study %s not queued: %s", study, exc)
        else:
            log.info("study %s scheduled: worklist query job %d queued", study, job)
    return 0x0000, None
