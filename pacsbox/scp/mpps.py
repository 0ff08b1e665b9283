"""Modality Performed Procedure Step SCP (NET-8): the modality reports what it did.

N-CREATE opens a step IN PROGRESS and N-SET completes or discontinues it;
``db/mpps`` keeps the PS3.4 F.7 state machine and moves the worklist item
along. The handler checks only what the data set itself must carry (the
type 1 attributes of PS3.4 table F.7.2-1) and keeps the whole data set, with
every N-SET applied, so the study page can show the performed series.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.dimse_primitives import N_CREATE, N_SET
from pynetdicom.presentation import build_context

from pacsbox.db import DbError, journal, mpps
from pacsbox.db.worklist import new_uid
from pacsbox.db.worklist_models import PerformedStep
from pacsbox.scp.commitment import failure
from pacsbox.scp.server import Service

log = logging.getLogger("pacsbox.scp.mpps")

SOP_CLASS = "1.2.840.10008.3.1.2.3.3"  # Modality Performed Procedure Step
SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
MISSING_ATTRIBUTE = 0x0120
MISSING_VALUE = 0x0121

# PS3.4 table F.7.2-1: type 1 on N-CREATE (the step's identity and start).
_CREATE_REQUIRED = (
    "ScheduledStepAttributesSequence",
    "PerformedProcedureStepID",
    "PerformedStationAETitle",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "PerformedProcedureStepStatus",
    "Modality",
)
# Set at creation and "not allowed" in an N-SET (table F.7.2-1's N-SET column).
_FIXED = (
    "ScheduledStepAttributesSequence",
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PerformedProcedureStepID",
    "PerformedStationAETitle",
    "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime",
    "Modality",
    "StudyID",
)


def make_service() -> Service:
    return Service(
        contexts=[build_context(SOP_CLASS, SYNTAXES)],
        handlers=[(evt.EVT_N_CREATE, on_create), (evt.EVT_N_SET, on_set)],
    )


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def _scheduled(ds: Dataset) -> list[mpps.Scheduled]:
    return [
        mpps.Scheduled(
            study_instance_uid=_text(item, "StudyInstanceUID"),
            accession_number=_text(item, "AccessionNumber"),
            sps_id=_text(item, "ScheduledProcedureStepID"),
        )
        for item in ds.get("ScheduledStepAttributesSequence") or []
    ]


def _fields(ds: Dataset) -> dict[str, Any]:
    """The columns of a step, from its data set as it stands."""
    refs = _scheduled(ds)
    return {
        "status": _text(ds, "PerformedProcedureStepStatus"),
        "pps_id": _text(ds, "PerformedProcedureStepID")[:16],
        "pps_description": _text(ds, "PerformedProcedureStepDescription")[:64],
        "modality": _text(ds, "Modality")[:16],
        "station_ae": _text(ds, "PerformedStationAETitle")[:16],
        "start_date": _text(ds, "PerformedProcedureStepStartDate")[:8],
        "start_time": _text(ds, "PerformedProcedureStepStartTime")[:16],
        "end_date": _text(ds, "PerformedProcedureStepEndDate")[:8],
        "end_time": _text(ds, "PerformedProcedureStepEndTime")[:16],
        "patient_id": _text(ds, "PatientID")[:64],
        "patient_name": _text(ds, "PatientName")[:324],
        "study_instance_uid": next(
            (r.study_instance_uid for r in refs if r.study_instance_uid), ""
        ),
        "accession_number": next((r.accession_number for r in refs if r.accession_number), "")[:16],
        "dataset": json.dumps(ds.to_json_dict()),
    }


def _missing(ds: Dataset, keywords: tuple[str, ...]) -> Dataset | None:
    for kw in keywords:
        if kw not in ds:
            return failure(MISSING_ATTRIBUTE, f"{kw} missing")
        if ds[kw].VR != "SQ" and ds[kw].is_empty:
            return failure(MISSING_VALUE, f"{kw} has no value")
    for i, item in enumerate(ds.ScheduledStepAttributesSequence or []):
        if not _text(item, "StudyInstanceUID"):
            return failure(MISSING_VALUE, f"Scheduled Step Attributes item {i + 1}: no Study UID")
    if not ds.ScheduledStepAttributesSequence:
        return failure(MISSING_VALUE, "ScheduledStepAttributesSequence has no item")
    return None


def _final_missing(ds: Dataset) -> str | None:
    """Why a step cannot end yet (PS3.4 F.7.2.2.1: the final state's type 1 keys)."""
    for kw in ("PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime"):
        if not _text(ds, kw):
            return f"{kw} is needed to end the step"
    if _text(ds, "PerformedProcedureStepStatus") == mpps.COMPLETED and not ds.get(
        "PerformedSeriesSequence"
    ):
        return "PerformedSeriesSequence is needed to complete the step"
    return None


def _carry_out(
    what: str, uid: str, calling: str, act: Callable[[], PerformedStep]
) -> PerformedStep | Dataset:
    """The step ``act`` made or changed, or the failure to answer: the state machine's
    refusal with its status, or 0110 when the index cannot take it."""
    try:
        return act()
    except mpps.StepError as exc:
        log.warning("MPPS %s %s from %s refused: %s", what, uid, calling, exc)
        return failure(exc.status, str(exc))
    except DbError as exc:
        log.error("MPPS %s %s from %s: the index cannot take it: %s", what, uid, calling, exc)
        return failure(mpps.PROCESSING_FAILURE, "the index cannot take it now")


def on_create(event: evt.Event) -> tuple[int | Dataset, Dataset | None]:
    """Open a step; answer 0000, or the PS3.4 status naming what is wrong."""
    calling = event.assoc.requestor.ae_title.strip()
    ds = event.attribute_list
    request = event.request
    assert isinstance(request, N_CREATE)  # EVT_N_CREATE's primitive
    given = request.AffectedSOPInstanceUID
    uid = str(given) if given else new_uid()
    refused = _missing(ds, _CREATE_REQUIRED)
    if refused is not None:
        log.warning("MPPS N-CREATE from %s refused: %s", calling, refused.ErrorComment)
        return refused, None
    fields = _fields(ds)
    step = _carry_out("N-CREATE", uid, calling,
                      lambda: mpps.create(uid, {**fields, "calling_ae": calling[:16]},
                                          _scheduled(ds)))  # fmt: skip
    if isinstance(step, Dataset):
        return step, None
    item = f"worklist item {step.worklist_item}" if step.worklist_item else "no worklist item"
    log.info("MPPS %s from %s: IN PROGRESS, study %s, %s",
             uid, calling, step.study_instance_uid, item)  # fmt: skip
    journal.record("mpps-created", f"dicom:{calling}", event.assoc.requestor.address,
                   target=uid, detail=f"study {step.study_instance_uid}: {item}")  # fmt: skip
    reply = Dataset()
    if not given:
        reply.AffectedSOPInstanceUID = uid
    return 0x0000, reply


def on_set(event: evt.Event) -> tuple[int | Dataset, Dataset | None]:
    """Change an open step; a finished one is refused (0110), an unknown one 0119."""
    calling = event.assoc.requestor.ae_title.strip()
    request = event.request
    assert isinstance(request, N_SET)  # EVT_N_SET's primitive
    uid = str(request.RequestedSOPInstanceUID or "")
    mods = event.modification_list
    step = mpps.get(uid)
    if step is None:
        log.warning("MPPS N-SET from %s: no step %s", calling, uid)
        return failure(mpps.UNKNOWN_INSTANCE, "no such performed procedure step"), None
    ds = Dataset.from_json(step.dataset) if step.dataset else Dataset()
    for elem in mods:
        if elem.keyword in _FIXED and elem.keyword in ds and ds[elem.tag].value != elem.value:
            reason = f"{elem.keyword} cannot be changed by N-SET"
            log.warning("MPPS N-SET %s from %s refused: %s", uid, calling, reason)
            return failure(mpps.INVALID_VALUE, reason), None
        ds[elem.tag] = elem
    fields = _fields(ds)
    if fields["status"] in (mpps.COMPLETED, mpps.DISCONTINUED):
        why = _final_missing(ds)
        if why:
            log.warning("MPPS N-SET %s from %s refused: %s", uid, calling, why)
            return failure(mpps.PROCESSING_FAILURE, why), None
    settable = {k: v for k, v in fields.items() if k in mpps.SETTABLE and v != ""}
    settable["dataset"] = fields["dataset"]
    changed = _carry_out("N-SET", uid, calling, lambda: mpps.change(uid, settable))
    if isinstance(changed, Dataset):
        return changed, None
    series = len(ds.get("PerformedSeriesSequence") or [])
    log.info("MPPS %s from %s: %s, %d series", uid, calling, changed.status, series)
    journal.record("mpps-set", f"dicom:{calling}", event.assoc.requestor.address,
                   target=uid, detail=f"{changed.status}: {series} series")  # fmt: skip
    return 0x0000, None
