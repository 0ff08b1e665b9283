"""C-FIND / C-MOVE / C-GET identifiers turned into index queries (NET-4, NET-5).

The index answers every key of tables 34 and 35 of the conformance statement
from its own columns (counts and Modalities In Study are kept on write), so a
query never opens a file. Matching follows PS3.4 C.2.2.2: single value,
universal, wild card, date/time range (with combined date and time), and list
of UID. Relational queries are allowed at every level: keys at the query level
and above are matched; keys below it are ignored.

Text values arrive decoded (pydicom applies the identifier's Specific
Character Set), are matched as unicode and answered in ISO_IR 192 whenever a
returned value is not plain ASCII.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field

from peewee import Expression, SqliteDatabase
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset

from pacsbox.db.models import Instance, Patient, Series, Study, database
from pacsbox.errors import IdentifierMismatch, UnableToProcess

PATIENT, STUDY, SERIES, IMAGE = "PATIENT", "STUDY", "SERIES", "IMAGE"
RANK = {PATIENT: 0, STUDY: 1, SERIES: 2, IMAGE: 3}

# Information models (PS3.4 C.6): which levels each allows.
PATIENT_ROOT, STUDY_ROOT, PATIENT_STUDY_ONLY = "patient", "study", "patient-study"
MODEL_LEVELS = {
    PATIENT_ROOT: (PATIENT, STUDY, SERIES, IMAGE),
    STUDY_ROOT: (STUDY, SERIES, IMAGE),
    PATIENT_STUDY_ONLY: (PATIENT, STUDY),
}
UNIQUE_KEY = {
    PATIENT: "PatientID",
    STUDY: "StudyInstanceUID",
    SERIES: "SeriesInstanceUID",
    IMAGE: "SOPInstanceUID",
}


@dataclass(frozen=True)
class Key:
    level: str  # the level the attribute belongs to in the Patient Root model
    column: object  # a peewee field
    kind: str  # text pn uid date time int count mods


# Every key of tables 34 and 35 (plus a few the index also holds).
KEYS: dict[str, Key] = {
    # Patient level (0010,xxxx); at the study level in the Study Root model.
    "PatientName": Key(PATIENT, Patient.patient_name, "pn"),
    "PatientID": Key(PATIENT, Patient.patient_id, "text"),
    "IssuerOfPatientID": Key(PATIENT, Patient.issuer, "text"),
    "PatientBirthDate": Key(PATIENT, Patient.birth_date, "date"),
    "PatientBirthTime": Key(PATIENT, Patient.birth_time, "time"),
    "PatientSex": Key(PATIENT, Patient.sex, "text"),
    "PatientAge": Key(PATIENT, Patient.age, "text"),
    "PatientSize": Key(PATIENT, Patient.size, "text"),
    "PatientWeight": Key(PATIENT, Patient.weight, "text"),
    "NumberOfPatientRelatedStudies": Key(PATIENT, Patient.num_studies, "count"),
    "NumberOfPatientRelatedSeries": Key(PATIENT, Patient.num_series, "count"),
    "NumberOfPatientRelatedInstances": Key(PATIENT, Patient.num_instances, "count"),
    # Study level
    "StudyDate": Key(STUDY, Study.study_date, "date"),
    "StudyTime": Key(STUDY, Study.study_time, "time"),
    "AccessionNumber": Key(STUDY, Study.accession_number, "text"),
    "ModalitiesInStudy": Key(STUDY, Study.modalities, "mods"),
    "ReferringPhysicianName": Key(STUDY, Study.referring_physician, "text"),
    "NameOfPhysiciansReadingStudy": Key(STUDY, Study.reading_physician, "text"),
    "StudyDescription": Key(STUDY, Study.study_description, "text"),
    "InstitutionName": Key(STUDY, Study.institution_name, "text"),
    "StudyInstanceUID": Key(STUDY, Study.study_instance_uid, "uid"),
    "StudyID": Key(STUDY, Study.study_id, "text"),
    "NumberOfStudyRelatedSeries": Key(STUDY, Study.num_series, "count"),
    "NumberOfStudyRelatedInstances": Key(STUDY, Study.num_instances, "count"),
    # Series level
    "SeriesDate": Key(SERIES, Series.series_date, "date"),
    "SeriesTime": Key(SERIES, Series.series_time, "time"),
    "Modality": Key(SERIES, Series.modality, "text"),
    "BodyPartExamined": Key(SERIES, Series.body_part, "text"),
    "SeriesDescription": Key(SERIES, Series.series_description, "text"),
    "ProtocolName": Key(SERIES, Series.protocol_name, "text"),
    "SeriesInstanceUID": Key(SERIES, Series.series_instance_uid, "uid"),
    "SeriesNumber": Key(SERIES, Series.series_number, "int"),
    "NumberOfSeriesRelatedInstances": Key(SERIES, Series.num_instances, "count"),
    # Image level
    "InstanceCreationDate": Key(IMAGE, Instance.creation_date, "date"),
    "InstanceCreationTime": Key(IMAGE, Instance.creation_time, "time"),
    "SOPClassUID": Key(IMAGE, Instance.sop_class_uid, "uid"),
    "SOPInstanceUID": Key(IMAGE, Instance.sop_instance_uid, "uid"),
    "InstanceNumber": Key(IMAGE, Instance.instance_number, "int"),
    "OverlayNumber": Key(IMAGE, Instance.overlay_number, "text"),
    "CurveNumber": Key(IMAGE, Instance.curve_number, "text"),
    "LUTNumber": Key(IMAGE, Instance.lut_number, "text"),
    "SamplesPerPixel": Key(IMAGE, Instance.samples_per_pixel, "int"),
    "Rows": Key(IMAGE, Instance.rows, "int"),
    "Columns": Key(IMAGE, Instance.columns, "int"),
    "BitsAllocated": Key(IMAGE, Instance.bits_allocated, "int"),
    "BitsStored": Key(IMAGE, Instance.bits_stored, "int"),
    "PixelRepresentation": Key(IMAGE, Instance.pixel_representation, "int"),
    "NumberOfFrames": Key(IMAGE, Instance.number_of_frames, "int"),
}

# Date keys and the time key they combine with (PS3.4 C.2.2.2.5.1).
DATE_TIME_PAIRS = {
    "StudyDate": "StudyTime",
    "SeriesDate": "SeriesTime",
    "InstanceCreationDate": "InstanceCreationTime",
    "PatientBirthDate": "PatientBirthTime",
}
# Attributes that are part of the identifier but never matched.
NOT_MATCHED = {"QueryRetrieveLevel", "SpecificCharacterSet", "TimezoneOffsetFromUTC"}
# Answered from the server's state, not from the index.
SERVER_KEYS = {"RetrieveAETitle", "InstanceAvailability"}

_BASE = {PATIENT: Patient, STUDY: Study, SERIES: Series, IMAGE: Instance}
_TIME_MAX = "235959.999999"


@dataclass
class Query:
    """A parsed identifier: the level, the conditions and the keys to return."""

    model: str
    level: str
    conditions: list = field(default_factory=list)
    return_keys: list[str] = field(default_factory=list)
    other_keys: list[str] = field(default_factory=list)  # asked for, not held: returned empty
    matched_keys: int = 0  # keys carrying a non-universal value (for the log line)
    charset: str = ""


def _effective_level(key: Key, model: str) -> str:
    # In the Study Root model the patient's attributes are study attributes.
    if model == STUDY_ROOT and key.level == PATIENT:
        return STUDY
    return key.level


def _is_sqlite() -> bool:
    return isinstance(database.obj, SqliteDatabase)


def _wildcard(column, value: str):
    """PS3.4 C.2.2.2.4 wild card: ``*`` any run, ``?`` one character."""
    if _is_sqlite():
        # GLOB is case-sensitive and can use the column's index for a prefix.
        pattern = value.replace("[", "[[]")
        return Expression(column, "GLOB", pattern)
    pattern = (
        value.replace("\\", "\\\\")
        .replace("%", "\\%")
        .replace("_", "\\_")
        .replace("*", "%")
        .replace("?", "_")
    )
    return Expression(column, "LIKE", pattern)


def _has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


def _text_condition(column, value: str):
    # PS3.4 C.2.2.2.1 single value; C.2.2.2.4 wild card.
    alternatives = [v for v in value.split("\\")] if "\\" in value else [value]
    parts = []
    exact = []
    for v in alternatives:
        if _has_wildcard(v):
            parts.append(_wildcard(column, v))
        else:
            exact.append(v)
    if exact:
        parts.append(column == exact[0] if len(exact) == 1 else column.in_(exact))
    cond = parts[0]
    for p in parts[1:]:
        cond = cond | p
    return cond


def _uid_condition(column, value: str):
    # PS3.4 C.2.2.2.2 list of UID matching (backslash-separated).
    uids = [u.strip() for u in value.split("\\") if u.strip()]
    if not uids:
        return None
    if len(uids) == 1:
        u = uids[0]
        return _wildcard(column, u) if _has_wildcard(u) else column == u
    return column.in_(uids)


def _check_date(d: str, keyword: str) -> str:
    d = d.strip().replace(".", "")
    if d and (len(d) != 8 or not d.isdigit()):
        raise UnableToProcess(f"{keyword}: {d!r} is not a date YYYYMMDD")
    return d


def _check_time(t: str, keyword: str) -> str:
    t = t.strip().replace(":", "")
    head = t.split(".")[0]
    if t and (not head.isdigit() or len(head) not in (2, 4, 6)):
        raise UnableToProcess(f"{keyword}: {t!r} is not a time HHMMSS")
    return t


def _split_range(value: str) -> tuple[str, str, bool]:
    if "-" not in value:
        return value, value, False
    lo, _, hi = value.partition("-")
    return lo, hi, True


def _time_upper(t: str) -> str:
    # "1200" means up to 12:00:59.999999 (the unstated components at their maximum).
    return t + _TIME_MAX[len(t) :] if len(t) < len(_TIME_MAX) else t


def _date_condition(column, value: str, keyword: str):
    # PS3.4 C.2.2.2.5 range matching on DA: "d", "d1-d2", "d1-", "-d2".
    lo, hi, is_range = _split_range(value)
    lo, hi = _check_date(lo, keyword), _check_date(hi, keyword)
    if not is_range:
        return column == lo
    cond = column != ""
    if lo:
        cond &= column >= lo
    if hi:
        cond &= column <= hi
    return cond


def _time_condition(column, value: str, keyword: str):
    # PS3.4 C.2.2.2.5 range matching on TM; a single time covers its precision.
    lo, hi, _ = _split_range(value)
    lo, hi = _check_time(lo, keyword), _check_time(hi, keyword)
    cond = column != ""
    if lo:
        cond &= column >= lo
    if hi:
        cond &= column <= _time_upper(hi)
    return cond


def _date_time_condition(dcol, tcol, dvalue: str, tvalue: str, keyword: str):
    """Both date and time given as ranges: one combined date-time range (C.2.2.2.5.1)."""
    d1, d2, _ = _split_range(dvalue)
    t1, t2, _ = _split_range(tvalue)
    d1, d2 = _check_date(d1, keyword), _check_date(d2, keyword)
    t1, t2 = _check_time(t1, keyword), _check_time(t2, keyword)
    cond = dcol != ""
    if d1:
        cond &= (dcol > d1) | ((dcol == d1) & (tcol >= t1)) if t1 else (dcol >= d1)
    if d2:
        cond &= (dcol < d2) | ((dcol == d2) & (tcol <= _time_upper(t2))) if t2 else (dcol <= d2)
    return cond


def _int_condition(column, value: str, keyword: str):
    try:
        values = [int(v) for v in value.split("\\") if v.strip()]
    except ValueError:
        raise UnableToProcess(f"{keyword}: {value!r} is not a number") from None
    if not values:
        return None
    return column == values[0] if len(values) == 1 else column.in_(values)


def _modalities_condition(value: str):
    # Studies having at least one series of one of the modalities (C.6.2.1.2).
    sub = Series.select(Series.study).where(_text_condition(Series.modality, value))
    return Study.id.in_(sub)


def _value_text(ds: Dataset, keyword: str) -> str:
    elem = ds[keyword]
    value = elem.value
    if value is None:
        return ""
    if elem.VR == "SQ":
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    if isinstance(value, bytes):
        try:
            return value.decode("ascii").strip()
        except UnicodeDecodeError:
            raise UnableToProcess(f"{keyword}: value cannot be decoded") from None
    return str(value).strip()


def _level_of(ds: Dataset, model: str) -> str:
    level = str(ds.get("QueryRetrieveLevel", "") or "").strip().upper()
    if not level:
        raise IdentifierMismatch("identifier has no Query/Retrieve Level (0008,0052)")
    if level not in MODEL_LEVELS[model]:
        raise IdentifierMismatch(f"level {level} is not part of this information model")
    return level


def parse(ds: Dataset, model: str, *, pn_case_insensitive: bool = False) -> Query:
    """Turn a C-FIND/C-MOVE/C-GET identifier into a Query.

    Raises IdentifierMismatch (A900) for a missing or foreign level and
    UnableToProcess (C000) for a value that cannot be matched.
    """
    level = _level_of(ds, model)
    q = Query(model=model, level=level, charset=str(ds.get("SpecificCharacterSet", "") or ""))
    values: dict[str, str] = {}
    try:
        keywords = [elem.keyword for elem in ds if elem.keyword]
        for kw in keywords:
            if kw in NOT_MATCHED:
                continue
            if kw in SERVER_KEYS:
                q.other_keys.append(kw)
                continue
            key = KEYS.get(kw)
            if key is None:
                if ds[kw].VR != "SQ" and ds[kw].tag.group != 0x0002:
                    q.other_keys.append(kw)
                continue
            if RANK[_effective_level(key, model)] > RANK[level]:
                continue  # below the query level: ignored (C.4.1.2.2)
            q.return_keys.append(kw)
            values[kw] = _value_text(ds, kw)
    except (UnicodeError, ValueError, TypeError) as exc:
        raise UnableToProcess(f"identifier cannot be decoded: {exc}") from None
    combined: set[str] = set()
    for dkw, tkw in DATE_TIME_PAIRS.items():
        dv, tv = values.get(dkw, ""), values.get(tkw, "")
        if "-" in dv and "-" in tv:
            dcol, tcol = KEYS[dkw].column, KEYS[tkw].column
            q.conditions.append(_date_time_condition(dcol, tcol, dv, tv, dkw))
            combined.update((dkw, tkw))
            q.matched_keys += 2
    for kw, value in values.items():
        if kw in combined or value in ("", "*"):
            continue  # C.2.2.2.3 universal matching
        cond = _condition(KEYS[kw], kw, value, pn_case_insensitive)
        if cond is not None:
            q.conditions.append(cond)
            q.matched_keys += 1
    return q


def _condition(key: Key, kw: str, value: str, pn_ci: bool):
    kind = key.kind
    if kind == "count":
        return None  # return-only keys
    if kind == "uid":
        return _uid_condition(key.column, value)
    if kind == "date":
        return _date_condition(key.column, value, kw)
    if kind == "time":
        return _time_condition(key.column, value, kw)
    if kind == "int":
        return _int_condition(key.column, value, kw)
    if kind == "mods":
        return _modalities_condition(value)
    if kind == "pn" and pn_ci:
        return _text_condition(Patient.patient_name_ci, value.upper())
    return _text_condition(key.column, value)


def _joined(select, level: str):
    """Join a select on the level's table up to Patient."""
    if RANK[level] >= RANK[IMAGE]:
        select = select.join(Series, on=(Instance.series == Series.id))
    if RANK[level] >= RANK[SERIES]:
        select = select.join(Study, on=(Series.study == Study.id))
    if RANK[level] >= RANK[STUDY]:
        select = select.join(Patient, on=(Study.patient == Patient.id))
    return select


def _where(select, conditions: list):
    for cond in conditions:
        select = select.where(cond)
    return select


def count(q: Query) -> int:
    base = _BASE[q.level]
    return _where(_joined(base.select(base.id), q.level), q.conditions).count()


def _response_value(kind: str, keyword: str, value):
    if value is None:
        return None
    if kind == "mods":
        return [m for m in value.split("\\") if m] or None
    if isinstance(value, str) and "\\" in value and keyword != "PatientName":
        return value.split("\\")
    return value


def find(q: Query, *, ae_title: str = "") -> Iterator[Dataset]:
    """Yield one response identifier per match, built from index columns only.

    Raises peewee errors when the database fails (the handler answers C000).
    """
    base = _BASE[q.level]
    columns = [KEYS[kw].column for kw in q.return_keys]
    select = _where(
        _joined(base.select(*columns) if columns else base.select(base.id), q.level), q.conditions
    )
    if q.level == IMAGE:
        select = select.order_by(Instance.instance_number)
    keys = q.return_keys
    for row in select.tuples().iterator():
        ds = Dataset()
        ds.QueryRetrieveLevel = q.level
        non_ascii = False
        for kw, value in zip(keys, row, strict=False) if columns else ():
            value = _response_value(KEYS[kw].kind, kw, value)
            if isinstance(value, str) and not value.isascii():
                non_ascii = True
            _set(ds, kw, value)
        for kw in q.other_keys:
            if kw == "RetrieveAETitle":
                ds.RetrieveAETitle = ae_title
            elif kw == "InstanceAvailability":
                ds.InstanceAvailability = "ONLINE"
            else:
                _set(ds, kw, None)
        if non_ascii:
            ds.SpecificCharacterSet = "ISO_IR 192"
        elif q.charset:
            ds.SpecificCharacterSet = q.charset
        yield ds


@functools.lru_cache(maxsize=512)
def _tag_vr(keyword: str) -> tuple[int, str] | None:
    tag = tag_for_keyword(keyword)
    return None if tag is None else (tag, dictionary_VR(tag))


def _set(ds: Dataset, keyword: str, value) -> None:
    tv = _tag_vr(keyword)
    if tv is None:
        return
    if isinstance(value, str) and value == "":
        value = None
    ds.add_new(tv[0], tv[1], value)


@dataclass(frozen=True)
class StoredInstance:
    """What a retrieve needs to send one instance."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    path: str
    native: bool


def retrieve_query(q: Query) -> Query:
    """Check that a C-MOVE/C-GET identifier names what to send (its level's unique key).

    Raises IdentifierMismatch (A900) when no unique key at or above the level has a value.
    """
    uniques = [UNIQUE_KEY[lv] for lv in MODEL_LEVELS[q.model] if RANK[lv] <= RANK[q.level]]
    if q.matched_keys == 0 or not any(k in q.return_keys for k in uniques):
        raise IdentifierMismatch(
            f"retrieve at level {q.level} needs a unique key ({UNIQUE_KEY[q.level]})"
        )
    return q


def _instances(q: Query, *columns):
    sel = Instance.select(*columns).join(Series, on=(Instance.series == Series.id))
    sel = sel.join(Study, on=(Series.study == Study.id))
    sel = sel.join(Patient, on=(Study.patient == Patient.id))
    return _where(sel, q.conditions)


def retrieve_count(q: Query) -> int:
    return _instances(q, Instance.id).count()


def retrieve_syntaxes(q: Query) -> dict[str, set[str]]:
    """{SOP Class UID: {stored transfer syntaxes}} of the instances to send."""
    out: dict[str, set[str]] = {}
    rows = _instances(q, Instance.sop_class_uid, Instance.transfer_syntax_uid).distinct()
    for cls, ts in rows.tuples():
        out.setdefault(cls, set()).add(ts)
    return out


def retrieve_instances(q: Query, batch: int = 500) -> Iterator[StoredInstance]:
    """The instances to send, fetched in batches by id so memory stays flat."""
    last = 0
    while True:
        sel = (
            _instances(
                q,
                Instance.id,
                Instance.sop_class_uid,
                Instance.sop_instance_uid,
                Instance.transfer_syntax_uid,
                Instance.native,
                Instance.file_name,
                Study.storage_root,
                Study.folder,
            )
            .where(Instance.id > last)
            .order_by(Instance.id)
            .limit(batch)
        )
        rows = list(sel.tuples())
        if not rows:
            return
        for iid, cls, uid, ts, native, name, root, folder in rows:
            last = iid
            yield StoredInstance(cls, uid, ts, f"{root}/{folder}/{name}", bool(native))
        if len(rows) < batch:
            return


__all__ = [
    "IMAGE",
    "PATIENT",
    "PATIENT_ROOT",
    "PATIENT_STUDY_ONLY",
    "SERIES",
    "STUDY",
    "STUDY_ROOT",
    "Query",
    "StoredInstance",
    "count",
    "find",
    "parse",
    "retrieve_count",
    "retrieve_instances",
    "retrieve_query",
    "retrieve_syntaxes",
]
