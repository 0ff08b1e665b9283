"""Modality Worklist C-FIND identifiers turned into worklist queries and answers (NET-6).

Matching goes through the archive's one PS3.4 matcher (``db/match.py``) with
this module's table of worklist columns; keys inside the Scheduled Procedure
Step Sequence's one item are dotted (sequence matching, C.2.2.2.6). Every
response carries every return key of PS3.4 K.6 (the statement's table 40),
empty when unknown: modalities reject an answer that lacks a type 1 or 2 key.
A key the SCU asks for beyond those comes from the item's ``extra`` (what a
remote worklist SCP returned) or empty.

Steps are returned while SCHEDULED unless the SCU asks for a status: a step
already started elsewhere must not be performed twice (dcm4chee answers
SCHEDULED, ARRIVED and READY by default; pacsbox has no arrived/ready).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.valuerep import PersonName

from pacsbox.db.match import PATIENT, Attr, Condition, match
from pacsbox.db.query import NOT_MATCHED, answer_charset, set_key, value_text
from pacsbox.db.worklist_models import (
    COMPLETED,
    DISCONTINUED,
    IN_PROGRESS,
    SCHEDULED,
    STATES,
    WorklistItem,
)
from pacsbox.errors import IdentifierMismatch, UnableToProcess

W = WorklistItem
SPS = "ScheduledProcedureStepSequence"
LEVEL = "WORKLIST"  # what the C-FIND log line names as the level

# Top-level keys: keyword -> (column, how it matches).
TOP: dict[str, tuple[Any, str]] = {
    "PatientName": (W.patient_name, "pn"),
    "PatientID": (W.patient_id, "text"),
    "IssuerOfPatientID": (W.issuer, "text"),
    "PatientBirthDate": (W.birth_date, "date"),
    "PatientSex": (W.sex, "text"),
    "PatientWeight": (W.weight, "text"),
    "PatientSize": (W.size, "text"),
    "MedicalAlerts": (W.medical_alerts, "text"),
    "Allergies": (W.allergies, "text"),
    "PregnancyStatus": (W.pregnancy_status, "int"),
    "AdmissionID": (W.admission_id, "text"),
    "CurrentPatientLocation": (W.patient_location, "text"),
    "AccessionNumber": (W.accession_number, "text"),
    "ReferringPhysicianName": (W.referring_physician, "text"),
    "RequestingPhysician": (W.requesting_physician, "text"),
    "RequestingService": (W.requesting_service, "text"),
    "PlacerOrderNumberImagingServiceRequest": (W.placer_order, "text"),
    "FillerOrderNumberImagingServiceRequest": (W.filler_order, "text"),
    "RequestedProcedureID": (W.requested_procedure_id, "text"),
    "RequestedProcedureDescription": (W.requested_procedure_description, "text"),
    "RequestedProcedurePriority": (W.requested_procedure_priority, "text"),
    "ReasonForTheRequestedProcedure": (W.reason_for_procedure, "text"),
    "StudyInstanceUID": (W.study_instance_uid, "uid"),
}
# Keys of the Scheduled Procedure Step Sequence's item.
STEP: dict[str, tuple[Any, str]] = {
    "ScheduledStationAETitle": (W.station_ae, "text"),
    "ScheduledProcedureStepStartDate": (W.start_date, "date"),
    "ScheduledProcedureStepStartTime": (W.start_time, "time"),
    "Modality": (W.modality, "text"),
    "ScheduledPerformingPhysicianName": (W.performing_physician, "text"),
    "ScheduledProcedureStepDescription": (W.sps_description, "text"),
    "ScheduledStationName": (W.station_name, "text"),
    "ScheduledProcedureStepLocation": (W.sps_location, "text"),
    "PreMedication": (W.premedication, "text"),
    "ScheduledProcedureStepID": (W.sps_id, "text"),
    "RequestedContrastAgent": (W.contrast_agent, "text"),
}
# Sequences always returned: (keyword, column holding DICOM JSON items or None).
TOP_SEQUENCES = (
    ("ReferencedStudySequence", None),
    ("ReferencedPatientSequence", None),
    ("RequestedProcedureCodeSequence", W.requested_procedure_code),
)
STEP_SEQUENCES = (("ScheduledProtocolCodeSequence", W.protocol_code),)

ATTRS: dict[str, Attr] = {
    **{
        kw: Attr(PATIENT, col, kind, W.patient_name_ci if kw == "PatientName" else None)
        for kw, (col, kind) in TOP.items()
    },
    **{f"{SPS}.{kw}": Attr(PATIENT, col, kind) for kw, (col, kind) in STEP.items()},
}

# Scheduled Procedure Step Status (0040,0020) <-> the item's state.
DICOM_STATUS = {
    SCHEDULED: "SCHEDULED",
    IN_PROGRESS: "STARTED",
    COMPLETED: "COMPLETED",
    DISCONTINUED: "DISCONTINUED",
}
_STATE_OF = {
    "SCHEDULED": SCHEDULED,
    "ARRIVED": SCHEDULED,
    "READY": SCHEDULED,
    "STARTED": IN_PROGRESS,
    "IN PROGRESS": IN_PROGRESS,
    "COMPLETED": COMPLETED,
    "DISCONTINUED": DISCONTINUED,
    "CANCELED": DISCONTINUED,
    "CANCELLED": DISCONTINUED,
}
DEFAULT_STATES = (SCHEDULED,)


@dataclass
class WorklistQuery:
    """A parsed worklist identifier: conditions, states, and what else the SCU asked for."""

    conditions: list = field(default_factory=list)
    states: tuple[str, ...] = DEFAULT_STATES
    top_keys: list[str] = field(default_factory=list)  # asked for beyond the fixed set
    step_keys: list[str] = field(default_factory=list)
    matched_keys: int = 0
    charset: str = ""
    level: str = LEVEL


def _states(value: str) -> tuple[str, ...]:
    """The states a Scheduled Procedure Step Status key selects (empty: the default)."""
    wanted = [v.strip().upper() for v in value.split("\\") if v.strip()]
    if not wanted:
        return DEFAULT_STATES
    if any(v == "*" for v in wanted):
        return STATES
    return tuple(dict.fromkeys(_STATE_OF[v] for v in wanted if v in _STATE_OF))


def parse(ds: Dataset, *, pn_case_insensitive: bool = False) -> WorklistQuery:
    """Turn a Modality Worklist C-FIND identifier into a WorklistQuery.

    Raises UnableToProcess (C000) for a value that cannot be matched (a garbled
    date) and IdentifierMismatch (A900) for a Scheduled Procedure Step Sequence
    that is not one sequence item.
    """
    q = WorklistQuery(charset=str(ds.get("SpecificCharacterSet", "") or ""))
    conds: list[Condition] = []
    fixed_top = set(TOP) | {kw for kw, _ in TOP_SEQUENCES} | {SPS}
    fixed_step = set(STEP) | {kw for kw, _ in STEP_SEQUENCES} | {"ScheduledProcedureStepStatus"}
    try:
        for elem in ds:
            kw = elem.keyword
            if not kw or kw in NOT_MATCHED or elem.tag.group in (0x0000, 0x0002):
                continue
            if kw == SPS:
                items = elem.value if elem.VR == "SQ" else None
                if items is None or len(items) > 1:
                    raise IdentifierMismatch(f"{SPS}: one item to match, not {len(items or [])}")
                for sub in items[0] if items else ():
                    skw = sub.keyword
                    if skw == "ScheduledProcedureStepStatus":
                        q.states = _states(value_text(items[0], skw))
                    elif skw in STEP:
                        conds.append(Condition(f"{SPS}.{skw}", value_text(items[0], skw)))
                    elif skw and skw not in fixed_step:
                        q.step_keys.append(skw)
            elif kw in TOP:
                conds.append(Condition(kw, value_text(ds, kw)))
            elif kw not in fixed_top:
                q.top_keys.append(kw)
    except (UnicodeError, ValueError, TypeError) as exc:
        raise UnableToProcess(f"identifier cannot be decoded: {exc}") from None
    found = match(conds, PATIENT, attrs=ATTRS, pn_case_insensitive=pn_case_insensitive)
    q.conditions, q.matched_keys = found.conditions, found.matched
    q.conditions.append(W.status.in_(q.states))
    return q


def select(q: WorklistQuery) -> Any:
    """The matching items' rows (dicts), by start date and time."""
    sel = W.select()
    for cond in q.conditions:
        sel = sel.where(cond)
    return sel.order_by(W.start_date, W.start_time, W.id).dicts()


def _items(text: str) -> Sequence:
    """A sequence from DICOM JSON items (a list of objects), empty when there are none."""
    if not text:
        return Sequence([])
    try:
        data = json.loads(text)
        return Sequence([Dataset.from_json(item) for item in data])
    except (ValueError, TypeError, KeyError):
        return Sequence([])  # a damaged column must not stop the worklist


def _extra(row: dict[str, Any]) -> Dataset:
    if not row.get("extra"):
        return Dataset()
    try:
        return Dataset.from_json(row["extra"])
    except (ValueError, TypeError, KeyError):
        return Dataset()


@functools.lru_cache(maxsize=128)
def _tag_vr(keyword: str) -> tuple[int, str]:
    tag = tag_for_keyword(keyword)
    assert tag is not None  # the keywords of TOP and STEP are the dictionary's
    return tag, dictionary_VR(tag)


def _fill(ds: Dataset, keys: dict[str, tuple[Any, str]], row: dict[str, Any]) -> bool:
    """Add the columns' keys to ``ds``; True when a value is not plain ASCII.

    Elements are made as already converted: a response of 30 keys per item is the
    cost of a worklist C-FIND, and the index's values are already the right text.
    """
    non_ascii = False
    for kw, (col, _kind) in keys.items():
        tag, vr = _tag_vr(kw)
        value = row[col.name] or ""
        if value and not value.isascii():
            non_ascii = True
        if vr == "PN":
            ds.add(DataElement(tag, vr, PersonName(value), already_converted=True))
        elif vr in _TEXT_VRS:
            ds.add(DataElement(tag, vr, value, already_converted=True))
        else:  # numbers (DS, US): pydicom converts them
            set_key(ds, kw, int(value) if vr == "US" and value.isdigit() else value or None)
    return non_ascii


_TEXT_VRS = frozenset({"AE", "CS", "DA", "TM", "LO", "SH", "UI", "LT", "ST"})


def _asked(ds: Dataset, keywords: list[str], source: Dataset) -> None:
    for kw in keywords:
        if kw in source:
            ds[kw] = source[kw]
        else:
            set_key(ds, kw, None)


def response(q: WorklistQuery, row: dict[str, Any]) -> Dataset:
    """One C-FIND response for one item: every table-40 key, and what else was asked."""
    ds = Dataset()
    extra = _extra(row)
    non_ascii = _fill(ds, TOP, row)
    for kw, col in TOP_SEQUENCES:
        setattr(ds, kw, _items(row[col.name]) if col is not None else Sequence([]))
    step = Dataset()
    non_ascii |= _fill(step, STEP, row)
    step.ScheduledProcedureStepStatus = DICOM_STATUS.get(row["status"], "SCHEDULED")
    for kw, col in STEP_SEQUENCES:
        setattr(step, kw, _items(row[col.name]))
    step_extra = extra.get(SPS)
    _asked(step, q.step_keys, step_extra[0] if step_extra else Dataset())
    ds.ScheduledProcedureStepSequence = Sequence([step])
    _asked(ds, q.top_keys, extra)
    answer_charset(ds, non_ascii or _extra_non_ascii(ds, q), q.charset)
    return ds


def _extra_non_ascii(ds: Dataset, q: WorklistQuery) -> bool:
    if not (q.top_keys or q.step_keys):
        return False
    for elem in ds.iterall():
        if isinstance(elem.value, str) and not elem.value.isascii():
            return True
    return False


def find(q: WorklistQuery) -> Iterator[Dataset]:
    """Yield one response per matching scheduled procedure step."""
    for row in select(q).iterator():
        yield response(q, row)


def full_time(text: str) -> str:
    """A typed time (``09:30``, ``0930``) stored as HHMMSS: the matcher compares times as
    text, so a stored ``0930`` would miss a query range starting ``093000``."""
    t = text.strip().replace(":", "")
    return t + "0" * (6 - len(t)) if t.isdigit() and len(t) in (2, 4) else t


def search(
    keys: dict[str, str], states: tuple[str, ...] = STATES, *, limit: int = 500
) -> list[WorklistItem]:
    """Items matching DICOM keys (``ATTRS`` names) through the same matcher as C-FIND, in
    some states: the worklist page's filter. Raises UnableToProcess for a bad value."""
    found = match(keys, PATIENT, attrs=ATTRS, pn_case_insensitive=True)
    sel = W.select().where(W.status.in_(states))
    for cond in found.conditions:
        sel = sel.where(cond)
    return list(sel.order_by(W.start_date, W.start_time, W.id).limit(limit))


__all__ = [
    "ATTRS",
    "DICOM_STATUS",
    "LEVEL",
    "SPS",
    "WorklistQuery",
    "find",
    "full_time",
    "parse",
    "response",
    "search",
]
