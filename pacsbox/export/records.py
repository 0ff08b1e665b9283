"""Directory records (PS3.3 F.5) made from one instance's header.

The record contents come from pydicom's public ``DIRECTORY_RECORDERS`` (one
function per record type with the keys of PS3.3 F.5, which include every
selection key of the conformance statement's table: Patient Name/ID, Study
UID/ID, Modality, Series Number, Image Number, and the SR DOCUMENT keys).
What this module adds:

* the SOP class -> record type choice (IMAGE, SR DOCUMENT, KEY OBJECT DOC,
  PRESENTATION, ENCAP DOC, RT ..., WAVEFORM, ...), kept here so it does not
  depend on pydicom internals;
* invented values for Type 1 keys that real-world files leave empty (Study
  ID, Series Number, Instance Number, dates), like DCMTK ``dcmmkdir --invent``,
  each one logged, because a DICOMDIR record may not have them empty;
* SR and KO records carry only the HAS CONCEPT MOD items of Content Sequence
  (PS3.3 F.5.24), not the whole report, and Verification DateTime when the
  report is VERIFIED.
"""

from __future__ import annotations

import datetime as _dt
import logging
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.fileset import DIRECTORY_RECORDERS
from pydicom.sequence import Sequence

from pacsbox.errors import MediaError

log = logging.getLogger(__name__)

_STORAGE = "1.2.840.10008.5.1.4.1.1."

# Exact SOP classes first, then prefixes (PS3.3 F.4 / PS3.4 Annex B).
_EXACT = {
    _STORAGE + "88.59": "KEY OBJECT DOC",
    _STORAGE + "481.2": "RT DOSE",
    _STORAGE + "481.3": "RT STRUCTURE SET",
    _STORAGE + "481.4": "RT TREAT RECORD",
    _STORAGE + "481.5": "RT PLAN",
    _STORAGE + "481.6": "RT TREAT RECORD",
    _STORAGE + "481.7": "RT TREAT RECORD",
    _STORAGE + "481.8": "RT PLAN",  # RT Ion Plan
    _STORAGE + "481.9": "RT TREAT RECORD",
    _STORAGE + "4.2": "SPECTROSCOPY",
    _STORAGE + "66": "RAW DATA",
    _STORAGE + "66.1": "REGISTRATION",
    _STORAGE + "66.2": "FIDUCIAL",
    _STORAGE + "66.3": "REGISTRATION",
    _STORAGE + "66.5": "SURFACE",
    _STORAGE + "67": "VALUE MAP",
    _STORAGE + "77.1.5.3": "STEREOMETRIC",
    _STORAGE + "68.1": "SURFACE SCAN",
    _STORAGE + "68.2": "SURFACE SCAN",
    _STORAGE + "66.6": "TRACT",
    _STORAGE + "90.1": "ASSESSMENT",
}
_PREFIXES = (
    (_STORAGE + "88.", "SR DOCUMENT"),
    (_STORAGE + "11.", "PRESENTATION"),
    (_STORAGE + "104.", "ENCAP DOC"),
    (_STORAGE + "9.", "WAVEFORM"),
    (_STORAGE + "78.", "MEASUREMENT"),
    (_STORAGE + "79.", "MEASUREMENT"),
    (_STORAGE + "80.", "MEASUREMENT"),
    (_STORAGE + "81.", "MEASUREMENT"),
    (_STORAGE + "82.", "MEASUREMENT"),
)

# File ID prefix of the leaf file for each record type (2 letters + 6 digits).
LEAF_PREFIX = {
    "IMAGE": "IM",
    "SR DOCUMENT": "SR",
    "KEY OBJECT DOC": "KO",
    "PRESENTATION": "PR",
    "ENCAP DOC": "ED",
    "WAVEFORM": "WV",
    "SPECTROSCOPY": "SP",
    "RAW DATA": "RW",
}

# Type 1 keys that may be invented when a file leaves them empty, and how.
_DATE_FALLBACKS = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
_TIME_FALLBACKS = ("StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime")


def record_type(sop_class_uid: str) -> str:
    """Directory Record Type (0004,1430) of the leaf record for a SOP class."""
    uid = str(sop_class_uid)
    if uid in _EXACT:
        return _EXACT[uid]
    if uid == _STORAGE + "88.71":  # Acquisition Context SR is still an SR
        return "SR DOCUMENT"
    for prefix, kind in _PREFIXES:
        if uid.startswith(prefix):
            return kind
    return "IMAGE"


@dataclass
class InstanceRecords:
    """The four records of one instance plus what the planner needs to know."""

    patient: Dataset
    study: Dataset
    series: Dataset
    leaf: Dataset
    leaf_type: str
    patient_key: str
    study_key: str
    series_key: str
    sop_instance_uid: str
    sop_class_uid: str
    invented: list[str] = field(default_factory=list)


def _has_value(ds: Dataset, keyword: str) -> bool:
    return keyword in ds and ds[keyword].VM > 0


def _first(ds: Dataset, keywords: tuple[str, ...]) -> str | None:
    for kw in keywords:
        if _has_value(ds, kw):
            return str(ds[kw].value)
    return None


def _invent(ds: Dataset, keyword: str, value: str, invented: list[str]) -> None:
    if not _has_value(ds, keyword):
        setattr(ds, keyword, value)
        invented.append(f"{keyword}={value}")


def _fill_type1(ds: Dataset, leaf_type: str, counters: dict[str, int]) -> list[str]:
    """Invent the Type 1 values a DICOMDIR needs and the file lacks (dcmmkdir --invent)."""
    invented: list[str] = []
    today = _dt.date.today().strftime("%Y%m%d")
    _invent(ds, "PatientID", "UNKNOWN", invented)
    _invent(ds, "StudyDate", _first(ds, _DATE_FALLBACKS) or today, invented)
    _invent(ds, "StudyTime", _first(ds, _TIME_FALLBACKS) or "000000", invented)
    if not _has_value(ds, "StudyID"):
        counters["study"] = counters.get("study", 0) + 1
        _invent(ds, "StudyID", str(counters["study"]), invented)
    _invent(ds, "Modality", "OT", invented)
    _invent(ds, "SeriesNumber", "1", invented)
    if not _has_value(ds, "InstanceNumber"):
        counters["instance"] = counters.get("instance", 0) + 1
        _invent(ds, "InstanceNumber", str(counters["instance"]), invented)
    if leaf_type in ("SR DOCUMENT", "KEY OBJECT DOC", "WAVEFORM", "REGISTRATION", "FIDUCIAL"):
        _invent(ds, "ContentDate", ds.StudyDate, invented)
        _invent(ds, "ContentTime", ds.StudyTime, invented)
    if leaf_type == "SR DOCUMENT":
        _invent(ds, "CompletionFlag", "PARTIAL", invented)
        _invent(ds, "VerificationFlag", "UNVERIFIED", invented)
    return invented


def _tidy_sr(record: Dataset, ds: Dataset) -> None:
    """PS3.3 F.5.24/F.5.25: only HAS CONCEPT MOD items; Verification DateTime when VERIFIED."""
    if "ContentSequence" in record:
        mods = [
            it for it in record.ContentSequence if it.get("RelationshipType") == "HAS CONCEPT MOD"
        ]
        if mods:
            record.ContentSequence = Sequence(mods)
        else:
            del record.ContentSequence
    if record.get("VerificationFlag") == "VERIFIED" and "VerificationDateTime" not in record:
        stamps = [
            str(it.VerificationDateTime)
            for it in ds.get("VerifyingObserverSequence", [])
            if _has_value(it, "VerificationDateTime")
        ]
        if stamps:
            record.VerificationDateTime = max(stamps)


def make_records(
    ds: Dataset, source: str, counters: dict[str, int], cache: dict[tuple[str, ...], Dataset]
) -> InstanceRecords:
    """Build PATIENT/STUDY/SERIES/leaf records for one header (pixel data not needed).

    ``ds`` is modified (invented values are set on it); ``source`` names the
    file in errors. PATIENT/STUDY/SERIES records are made once per entity
    (from its first instance) and shared through ``cache``. Raises MediaError when a record cannot be made, naming the
    file and the missing key: an export never drops an instance silently.
    """
    for kw in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        if not _has_value(ds, kw):
            raise MediaError(f"cannot export {source}: {kw} is missing")
    leaf_type = record_type(ds.SOPClassUID)
    invented = _fill_type1(ds, leaf_type, counters)
    records = []
    pid, study, series = str(ds.PatientID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)
    keys = {"PATIENT": (pid,), "STUDY": (pid, study), "SERIES": (pid, study, series)}
    for kind in ("PATIENT", "STUDY", "SERIES", leaf_type):
        key = keys.get(kind) if kind != leaf_type else None
        if key is not None and key in cache:
            records.append(cache[key])
            continue
        try:
            record = DIRECTORY_RECORDERS[kind](ds)
        except (ValueError, KeyError, AttributeError) as exc:
            raise MediaError(f"cannot export {source}: no {kind} record: {exc}") from None
        # Header keys first set here so encoded lengths are final (PS3.3 F.3.2.2).
        record.OffsetOfTheNextDirectoryRecord = 0
        record.RecordInUseFlag = 0xFFFF
        record.OffsetOfReferencedLowerLevelDirectoryEntity = 0
        record.DirectoryRecordType = kind
        if "SpecificCharacterSet" in ds:
            record.SpecificCharacterSet = ds.SpecificCharacterSet
        records.append(record)
        if key is not None:
            cache[key] = record
    if leaf_type in ("SR DOCUMENT", "KEY OBJECT DOC"):
        _tidy_sr(records[3], ds)
    if invented:
        log.warning("export: invented %s for %s", ", ".join(invented), ds.SOPInstanceUID)
    return InstanceRecords(
        patient=records[0],
        study=records[1],
        series=records[2],
        leaf=records[3],
        leaf_type=leaf_type,
        patient_key=str(ds.PatientID),
        study_key=str(ds.StudyInstanceUID),
        series_key=str(ds.SeriesInstanceUID),
        sop_instance_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.SOPClassUID),
        invented=invented,
    )
