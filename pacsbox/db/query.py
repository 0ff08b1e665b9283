"""C-FIND / C-MOVE / C-GET identifiers turned into index queries (NET-4, NET-5).

The index answers every key of tables 34 and 35 of the conformance statement
from its own columns (counts and Modalities In Study are kept on write), so a
query never opens a file. Matching follows PS3.4 C.2.2.2: single value,
universal, wild card, date/time range (with combined date and time), and list
of UID, all through the one matcher (``db/match.py``) that the web search
and the other query interfaces use too; this module only reads identifiers
and builds answers. Relational queries are allowed at every level: keys at
the query level and above are matched; keys below it are ignored.

Text values arrive decoded (pydicom applies the identifier's Specific
Character Set), are matched as unicode and answered in ISO_IR 192 whenever a
returned value is not plain ASCII.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from peewee import ColumnBase, ModelSelect
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset

from pacsbox.db.match import IMAGE, KEYS, PATIENT, RANK, SERIES, STUDY, TABLE, Attr, joined, match
from pacsbox.db.models import Instance, Patient, Series, Study
from pacsbox.db.stored import STORED_COLUMNS, StoredInstance, stored_row
from pacsbox.errors import IdentifierMismatch, UnableToProcess

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

# Attributes that are part of the identifier but never matched.
NOT_MATCHED = {"QueryRetrieveLevel", "SpecificCharacterSet", "TimezoneOffsetFromUTC"}
# Answered from the server's state, not from the index.
SERVER_KEYS = {"RetrieveAETitle", "InstanceAvailability"}


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


def _effective_level(key: Attr, model: str) -> str:
    # In the Study Root model the patient's attributes are study attributes.
    if model == STUDY_ROOT and key.level == PATIENT:
        return STUDY
    return key.level


def value_text(ds: Dataset, keyword: str) -> str:
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
            values[kw] = value_text(ds, kw)
    except (UnicodeError, ValueError, TypeError) as exc:
        raise UnableToProcess(f"identifier cannot be decoded: {exc}") from None
    found = match(values, level, pn_case_insensitive=pn_case_insensitive)
    q.conditions, q.matched_keys = found.conditions, found.matched
    return q


_Select = TypeVar("_Select", bound="ModelSelect[Any]")


def _where(select: _Select, conditions: list) -> _Select:
    for cond in conditions:
        select = select.where(cond)
    return select


def count(q: Query) -> int:
    base = TABLE[q.level]
    return _where(joined(base.select(base.id), q.level), q.conditions).count()


def _response_value(kind: str, keyword: str, value: Any) -> object:
    if value is None:
        return None
    if kind == "mods":
        return [m for m in value.split("\\") if m] or None
    if isinstance(value, str) and "\\" in value and keyword != "PatientName":
        return value.split("\\")
    return value


def find(
    q: Query, *, ae_title: str = "", limit: int | None = None, offset: int = 0
) -> Iterator[Dataset]:
    """Yield one response identifier per match, built from index columns only.

    ``limit``/``offset`` page the matches in a stable order (QIDO-RS).
    Raises peewee errors when the database fails (the handler answers C000).
    """
    base = TABLE[q.level]
    columns = [KEYS[kw].column for kw in q.return_keys]
    select = _where(
        joined(base.select(*columns) if columns else base.select(base.id), q.level), q.conditions
    )
    if q.level == IMAGE:
        select = select.order_by(Instance.instance_number, Instance.id)
    elif limit is not None or offset:
        select = select.order_by(base.id)
    if limit is not None or offset:
        select = select.limit(limit if limit is not None else -1).offset(offset)
    keys = q.return_keys
    for row in select.tuples().iterator():
        ds = Dataset()
        ds.QueryRetrieveLevel = q.level
        non_ascii = False
        for kw, value in zip(keys, row, strict=False) if columns else ():
            value = _response_value(KEYS[kw].kind, kw, value)
            if isinstance(value, str) and not value.isascii():
                non_ascii = True
            set_key(ds, kw, value)
        for kw in q.other_keys:
            if kw == "RetrieveAETitle":
                ds.RetrieveAETitle = ae_title
            elif kw == "InstanceAvailability":
                ds.InstanceAvailability = "ONLINE"
            else:
                set_key(ds, kw, None)
        answer_charset(ds, non_ascii, q.charset)
        yield ds


def answer_charset(ds: Dataset, non_ascii: bool, asked: str) -> None:
    """The response's Specific Character Set: UTF-8 when a value needs it, else the query's."""
    if non_ascii:
        ds.SpecificCharacterSet = "ISO_IR 192"
    elif asked:
        ds.SpecificCharacterSet = asked


@functools.lru_cache(maxsize=512)
def _tag_vr(keyword: str) -> tuple[int, str] | None:
    tag = tag_for_keyword(keyword)
    return None if tag is None else (tag, dictionary_VR(tag))


def set_key(ds: Dataset, keyword: str, value: object) -> None:
    """Add ``keyword`` to a response; an empty value is a zero-length element (type 2)."""
    tv = _tag_vr(keyword)
    if tv is None:
        return
    if isinstance(value, str) and value == "":
        value = None
    ds.add_new(tv[0], tv[1], value)


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


def _instances(q: Query, *columns: ColumnBase) -> ModelSelect[Any]:
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
            _instances(q, *STORED_COLUMNS)
            .where(Instance.id > last)
            .order_by(Instance.id)
            .limit(batch)
        )
        rows = list(sel.tuples())
        if not rows:
            return
        for row in rows:
            last, item = stored_row(row)
            yield item
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
    "answer_charset",
    "count",
    "find",
    "parse",
    "retrieve_count",
    "retrieve_instances",
    "retrieve_query",
    "retrieve_syntaxes",
    "set_key",
    "value_text",
]
