"""The one PS3.4 C.2.2.2 matcher: keys in DICOM terms in, index conditions out.

Every query interface matches through ``match(keys, level)`` so a key gives
the same studies to a workstation and to the web page:

- C-FIND (``db/query.py``) parses the identifier (level, information model,
  return keys, character set), leaves out keys below the query level
  (C.4.1.2.2) and hands the rest over as ``{keyword: value}``.
- The web search (``web/search.py``) maps each form field to its keyword;
  form conveniences (an ISO date, a trailing ``*`` on a time) are rewritten
  into DICOM values before they get here.
- QIDO-RS can pass its query parameters as they come: ``resolve()`` takes a
  keyword or a tag (``00100010``) or a dotted path of them; a QIDO value list
  (``a,b``) becomes a backslash-separated value first.
- The Modality Worklist SCP passes its own ``attrs`` table (columns of its
  worklist table); the items of Scheduled Procedure Step Sequence arrive as
  dotted keys (``ScheduledProcedureStepSequence.Modality``), which is sequence
  matching (C.2.2.2.6) for the one item an SCU sends. Date/time pairs inside
  a sequence item combine like top-level ones.

Keys of a level above the query level are matched on the joined parent rows
(``joined()``); keys of a level below it mean "has at least one child that
matches", all in one subquery (Modalities In Study works this way on its own).
Bad values raise ``UnableToProcess`` (DIMSE C000, HTTP 400) naming the key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from peewee import SQL, ColumnBase, Expression, ModelSelect, NodeList, SqliteDatabase
from pydicom.datadict import keyword_for_tag, tag_for_keyword

from pacsbox.db.models import Instance, Patient, Series, Study, database
from pacsbox.errors import UnableToProcess

PATIENT, STUDY, SERIES, IMAGE = "PATIENT", "STUDY", "SERIES", "IMAGE"
LEVELS = (PATIENT, STUDY, SERIES, IMAGE)
RANK = {lv: n for n, lv in enumerate(LEVELS)}
TABLE: dict[str, type[Patient] | type[Study] | type[Series] | type[Instance]] = {
    PATIENT: Patient,
    STUDY: Study,
    SERIES: Series,
    IMAGE: Instance,
}
_PARENT = {STUDY: Study.patient, SERIES: Series.study, IMAGE: Instance.series}
_TIME_MAX = "235959.999999"

_Select = TypeVar("_Select", bound="ModelSelect[Any]")


@dataclass(frozen=True)
class Attr:
    """One matchable attribute: the level of its table, its column and how it matches."""

    level: str
    column: Any  # a peewee field
    kind: str  # text pn uid date time int count mods
    folded: Any = None  # an upper-cased copy: case-insensitive person name matching


@dataclass(frozen=True)
class Condition:
    """One key: the same keyword may come twice (both must match)."""

    keyword: str
    value: str


@dataclass
class Match:
    conditions: list = field(default_factory=list)
    matched: int = 0  # keys carrying a non-universal value (for log lines)


# Every key of tables 34 and 35 (plus a few the index also holds), at the
# level of the table that holds it (the Patient Root model's levels).
KEYS: dict[str, Attr] = {
    "PatientName": Attr(PATIENT, Patient.patient_name, "pn", Patient.patient_name_ci),
    "PatientID": Attr(PATIENT, Patient.patient_id, "text"),
    "IssuerOfPatientID": Attr(PATIENT, Patient.issuer, "text"),
    "PatientBirthDate": Attr(PATIENT, Patient.birth_date, "date"),
    "PatientBirthTime": Attr(PATIENT, Patient.birth_time, "time"),
    "PatientSex": Attr(PATIENT, Patient.sex, "text"),
    "PatientAge": Attr(PATIENT, Patient.age, "text"),
    "PatientSize": Attr(PATIENT, Patient.size, "text"),
    "PatientWeight": Attr(PATIENT, Patient.weight, "text"),
    "NumberOfPatientRelatedStudies": Attr(PATIENT, Patient.num_studies, "count"),
    "NumberOfPatientRelatedSeries": Attr(PATIENT, Patient.num_series, "count"),
    "NumberOfPatientRelatedInstances": Attr(PATIENT, Patient.num_instances, "count"),
    "StudyDate": Attr(STUDY, Study.study_date, "date"),
    "StudyTime": Attr(STUDY, Study.study_time, "time"),
    "AccessionNumber": Attr(STUDY, Study.accession_number, "text"),
    "ModalitiesInStudy": Attr(STUDY, Study.modalities, "mods"),
    "ReferringPhysicianName": Attr(STUDY, Study.referring_physician, "text"),
    "NameOfPhysiciansReadingStudy": Attr(STUDY, Study.reading_physician, "text"),
    "StudyDescription": Attr(STUDY, Study.study_description, "text"),
    "InstitutionName": Attr(STUDY, Study.institution_name, "text"),
    "StudyInstanceUID": Attr(STUDY, Study.study_instance_uid, "uid"),
    "StudyID": Attr(STUDY, Study.study_id, "text"),
    "NumberOfStudyRelatedSeries": Attr(STUDY, Study.num_series, "count"),
    "NumberOfStudyRelatedInstances": Attr(STUDY, Study.num_instances, "count"),
    "SeriesDate": Attr(SERIES, Series.series_date, "date"),
    "SeriesTime": Attr(SERIES, Series.series_time, "time"),
    "Modality": Attr(SERIES, Series.modality, "text"),
    "BodyPartExamined": Attr(SERIES, Series.body_part, "text"),
    "SeriesDescription": Attr(SERIES, Series.series_description, "text"),
    "ProtocolName": Attr(SERIES, Series.protocol_name, "text"),
    "StationName": Attr(SERIES, Series.station_name, "text"),
    "SeriesInstanceUID": Attr(SERIES, Series.series_instance_uid, "uid"),
    "SeriesNumber": Attr(SERIES, Series.series_number, "int"),
    "NumberOfSeriesRelatedInstances": Attr(SERIES, Series.num_instances, "count"),
    "InstanceCreationDate": Attr(IMAGE, Instance.creation_date, "date"),
    "InstanceCreationTime": Attr(IMAGE, Instance.creation_time, "time"),
    "SOPClassUID": Attr(IMAGE, Instance.sop_class_uid, "uid"),
    "SOPInstanceUID": Attr(IMAGE, Instance.sop_instance_uid, "uid"),
    "InstanceNumber": Attr(IMAGE, Instance.instance_number, "int"),
    "OverlayNumber": Attr(IMAGE, Instance.overlay_number, "text"),
    "CurveNumber": Attr(IMAGE, Instance.curve_number, "text"),
    "LUTNumber": Attr(IMAGE, Instance.lut_number, "text"),
    "SamplesPerPixel": Attr(IMAGE, Instance.samples_per_pixel, "int"),
    "Rows": Attr(IMAGE, Instance.rows, "int"),
    "Columns": Attr(IMAGE, Instance.columns, "int"),
    "BitsAllocated": Attr(IMAGE, Instance.bits_allocated, "int"),
    "BitsStored": Attr(IMAGE, Instance.bits_stored, "int"),
    "PixelRepresentation": Attr(IMAGE, Instance.pixel_representation, "int"),
    "NumberOfFrames": Attr(IMAGE, Instance.number_of_frames, "int"),
}

# Date keys and the time key they combine with (PS3.4 C.2.2.2.5.1).
DATE_TIME_PAIRS = {
    "StudyDate": "StudyTime",
    "SeriesDate": "SeriesTime",
    "InstanceCreationDate": "InstanceCreationTime",
    "PatientBirthDate": "PatientBirthTime",
    "ScheduledProcedureStepStartDate": "ScheduledProcedureStepStartTime",
}


def resolve(name: str) -> str:
    """A keyword, a tag (``00100010``, ``0010,0010``, ``(0010,0010)``) or a dotted path of them.

    Returns the keyword (path); raises UnableToProcess for a name that is neither.
    """
    parts = []
    for part in name.strip().split("."):
        hexa = part.strip("()").replace(",", "")
        if tag_for_keyword(part) is not None:
            parts.append(part)
        elif len(hexa) == 8 and all(c in "0123456789abcdefABCDEF" for c in hexa):
            kw = keyword_for_tag(int(hexa, 16))
            if not kw:
                raise UnableToProcess(f"{part}: not a tag of the DICOM dictionary")
            parts.append(kw)
        else:
            raise UnableToProcess(f"{part!r}: neither an attribute keyword nor a tag")
    return ".".join(parts)


def match(
    keys: Mapping[str, str] | Iterable[Condition],
    level: str,
    *,
    attrs: Mapping[str, Attr] = KEYS,
    pn_case_insensitive: bool = False,
) -> Match:
    """The conditions that select, at ``level``, the entities matching every key.

    The caller's select must join the level's table to the tables above it
    (``joined()``). Raises UnableToProcess for an unknown key or a value that
    cannot be matched (a garbled date, a non-number for an IS key).
    """
    if isinstance(keys, Mapping):
        keys = [Condition(k, v) for k, v in keys.items()]
    pairs = []
    for c in keys:
        if c.keyword not in attrs:
            raise UnableToProcess(f"{c.keyword}: not a key that can be matched here")
        pairs.append((c.keyword, (c.value or "").strip()))
    out = Match()
    here: list[tuple[str, Any]] = []
    below: list[tuple[str, Any]] = []

    def add(attr: Attr, cond: ColumnBase, n: int = 1) -> None:
        (below if RANK[attr.level] > RANK[level] else here).append((attr.level, cond))
        out.matched += n

    used: set[int] = set()
    for i, (dkw, dv) in enumerate(pairs):
        tkw = _time_key(dkw)
        j = next(
            (j for j, (k, v) in enumerate(pairs) if k == tkw and "-" in v and j not in used), -1
        )
        if "-" in dv and j >= 0 and attrs[dkw].kind == "date":
            dattr, tattr = attrs[dkw], attrs[tkw]
            add(dattr, _date_time(dattr, tattr, dv, pairs[j][1], dkw, tkw), 2)
            used.update((i, j))
    for i, (kw, value) in enumerate(pairs):
        if value in ("", "*") or i in used:
            continue  # C.2.2.2.3 universal matching (or already in a combined range)
        attr = attrs[kw]
        cond = _condition(attr, kw, value, pn_case_insensitive)
        if cond is not None:
            add(attr, cond)
    out.conditions = [c for _, c in here]
    if below:
        out.conditions.append(_has_child(below, level))
    return out


def joined(select: _Select, level: str) -> _Select:
    """``select`` (on the level's table) joined to the tables of the levels above it."""
    for lv in range(RANK[level], 0, -1):
        lower, upper = LEVELS[lv], LEVELS[lv - 1]
        select = select.join(TABLE[upper], on=(_PARENT[lower] == TABLE[upper].id))
    return select


def _has_child(below: list[tuple[str, ColumnBase]], level: str) -> Expression:
    """Entities at ``level`` with one child row (of the deepest level named) matching all."""
    deepest = max((lv for lv, _ in below), key=RANK.__getitem__)
    child = LEVELS[RANK[level] + 1]
    sub = TABLE[deepest].select(_PARENT[child])
    for lv in range(RANK[deepest], RANK[child], -1):
        lower, upper = LEVELS[lv], LEVELS[lv - 1]
        sub = sub.join(TABLE[upper], on=(_PARENT[lower] == TABLE[upper].id))
    for _, cond in below:
        sub = sub.where(cond)
    return TABLE[level].id.in_(sub)


def _time_key(date_key: str) -> str:
    head, _, last = date_key.rpartition(".")
    tkw = DATE_TIME_PAIRS.get(last, "")
    return f"{head}.{tkw}" if head and tkw else tkw


def _condition(attr: Attr, kw: str, value: str, pn_ci: bool) -> ColumnBase | None:
    kind = attr.kind
    if kind == "count":
        return None  # return-only keys
    if kind == "uid":
        return _uid(attr.column, value)
    if kind == "date":
        return _date(attr.column, value, kw)
    if kind == "time":
        return _time(attr.column, value, kw)
    if kind == "int":
        return _int(attr.column, value, kw)
    if kind == "mods":
        # C.6.2.1.2 Modalities In Study: the study has a series of one of them.
        return Study.id.in_(Series.select(Series.study).where(_text(Series.modality, value)))
    if kind == "pn" and pn_ci and attr.folded is not None:
        # C.2.2.2.1 person names may match without regard to case (PersonNameCaseInsensitive).
        return _text(attr.folded, value.upper())
    return _text(attr.column, value)


# -- text: single value, wild card, value lists -----------------------------------------


def _is_sqlite() -> bool:
    return isinstance(database.obj, SqliteDatabase)


def wildcard(column: ColumnBase, value: str) -> ColumnBase:
    """PS3.4 C.2.2.2.4 wild card: ``*`` any run, ``?`` one character, all else literal.

    Case-sensitive like every other DICOM match. SQLite's GLOB is case-sensitive
    and uses the column's index for a prefix (its LIKE ignores ASCII case);
    PostgreSQL has no GLOB and its LIKE is case-sensitive, with ``%`` and
    ``_`` escaped so that they stay literal.
    """
    if _is_sqlite():
        return Expression(column, "GLOB", value.replace("[", "[[]"))
    pattern = (
        value.replace("!", "!!")
        .replace("%", "!%")
        .replace("_", "!_")
        .replace("*", "%")
        .replace("?", "_")
    )
    return NodeList((column, SQL("LIKE"), pattern, SQL("ESCAPE '!'")))


def _has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


def _text(column: ColumnBase, value: str) -> ColumnBase:
    # C.2.2.2.1 single value (an equality: the column's index); C.2.2.2.4 wild card;
    # a backslash-separated list matches any of its values.
    alternatives = value.split("\\")
    parts = [wildcard(column, v) for v in alternatives if _has_wildcard(v)]
    exact = [v for v in alternatives if not _has_wildcard(v)]
    if exact:
        parts.append(column == exact[0] if len(exact) == 1 else column.in_(exact))
    cond = parts[0]
    for p in parts[1:]:
        cond = cond | p
    return cond


def _uid(column: ColumnBase, value: str) -> ColumnBase | None:
    # C.2.2.2.2 list of UID matching (backslash-separated).
    uids = [u.strip() for u in value.split("\\") if u.strip()]
    if not uids:
        return None
    if len(uids) == 1:
        u = uids[0]
        return wildcard(column, u) if _has_wildcard(u) else column == u
    return column.in_(uids)


def _int(column: ColumnBase, value: str, keyword: str) -> Expression | None:
    try:
        values = [int(v) for v in value.split("\\") if v.strip()]
    except ValueError:
        raise UnableToProcess(f"{keyword}: {value!r} is not a number") from None
    if not values:
        return None
    return column == values[0] if len(values) == 1 else column.in_(values)


# -- dates and times: C.2.2.2.5 range matching ------------------------------------------


def _split_range(value: str, keyword: str) -> tuple[str, str, bool]:
    if "-" not in value:
        return value, value, False
    lo, _, hi = value.partition("-")
    if not lo.strip() and not hi.strip():
        raise UnableToProcess(f"{keyword}: a range needs a start, an end or both")
    return lo, hi, True


def _check_date(d: str, keyword: str) -> str:
    d = d.strip().replace(".", "")  # ACR-NEMA's YYYY.MM.DD
    if d and (len(d) != 8 or not d.isdigit()):
        raise UnableToProcess(f"{keyword}: {d!r} is not a date YYYYMMDD")
    return d


def _check_time(t: str, keyword: str) -> str:
    t = t.strip().replace(":", "")
    head = t.split(".")[0]
    if t and (not head.isdigit() or len(head) not in (2, 4, 6)):
        raise UnableToProcess(f"{keyword}: {t!r} is not a time HHMMSS")
    return t


def _time_upper(t: str) -> str:
    # "1200" means up to 12:00:59.999999 (the unstated components at their maximum).
    return t + _TIME_MAX[len(t) :] if len(t) < len(_TIME_MAX) else t


def _date(column: ColumnBase, value: str, keyword: str) -> Expression:
    # "d", "d1-d2", "d1-", "-d2"; a range never matches an empty value.
    lo, hi, is_range = _split_range(value, keyword)
    lo, hi = _check_date(lo, keyword), _check_date(hi, keyword)
    if not is_range:
        return column == lo
    cond = column != ""
    if lo:
        cond &= column >= lo
    if hi:
        cond &= column <= hi
    return cond


def _time(column: ColumnBase, value: str, keyword: str) -> Expression:
    # As dates; a single time covers its precision ("10" is 10:00 to 10:59:59.999999).
    lo, hi, _ = _split_range(value, keyword)
    lo, hi = _check_time(lo, keyword), _check_time(hi, keyword)
    cond = column != ""
    if lo:
        cond &= column >= lo
    if hi:
        cond &= column <= _time_upper(hi)
    return cond


def _date_time(
    dattr: Attr, tattr: Attr, dvalue: str, tvalue: str, dkw: str, tkw: str
) -> Expression:
    # C.2.2.2.5.1: a date range and a time range together are one date-time range.
    dcol: ColumnBase = dattr.column
    tcol: ColumnBase = tattr.column
    d1, d2, _ = _split_range(dvalue, dkw)
    t1, t2, _ = _split_range(tvalue, tkw)
    d1, d2 = _check_date(d1, dkw), _check_date(d2, dkw)
    t1, t2 = _check_time(t1, tkw), _check_time(t2, tkw)
    cond = dcol != ""
    if d1:
        cond &= (dcol > d1) | ((dcol == d1) & (tcol >= t1)) if t1 else (dcol >= d1)
    if d2:
        cond &= (dcol < d2) | ((dcol == d2) & (tcol <= _time_upper(t2))) if t2 else (dcol <= d2)
    return cond


__all__ = [
    "IMAGE",
    "KEYS",
    "PATIENT",
    "SERIES",
    "STUDY",
    "Attr",
    "Condition",
    "Match",
    "joined",
    "match",
    "resolve",
    "wildcard",
]
