"""Edits of patient and study attributes, carried into the stored files (DATA-3).

What leaves the box (C-MOVE, C-GET, WADO, export) is read from the files, and
``rebuild-index`` reads them back, so an edit that changed only the index
would be undone on the way out and by a rebuild. An edit therefore rewrites
every file of the patient or study through ``Archive.rewrite`` (a new
server-named file written durably, its index row swapped in one transaction,
the original kept in ``holding/`` as a replace keeps it), one instance at a
time, as a queue job with progress (``outbound.edits``). The patient or
study row takes the new values in the transaction of the last file, so
until the edit is done the index still holds the values it started from:
running the same edit again after a crash finds the same changes, skips the
files already rewritten and finishes.

A Patient ID that another patient (same issuer) already has is refused:
merging two patients' records is a decision of its own, not a side effect
of an edit. That decision is ``patient_merge`` (an HL7 ADT^A40): the old
patient's files take the surviving patient's ID and demographics by the same
rewrite, and its studies move under the surviving row with the last file.
A patient edit or merge also gives the patient's worklist items the new
values, so the modality's next query shows what the files will carry.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset

from pacsbox import meta
from pacsbox.db import worklist
from pacsbox.db.models import Instance, Patient, Series, Study, utcnow
from pacsbox.db.rows import edit_marks
from pacsbox.db.transaction import write_transaction
from pacsbox.errors import NotFound, UsageError

if TYPE_CHECKING:
    from pacsbox.archive import Archive
    from pacsbox.db.models import SelectOf

log = logging.getLogger("pacsbox.edit")

# The fields the edit pages offer: index column -> longest value (the VR's).
PATIENT_FIELDS: dict[str, int] = {
    "patient_id": 64,
    "patient_name": 324,
    "birth_date": 8,
    "sex": 16,
}
STUDY_FIELDS: dict[str, int] = {
    "study_description": 64,
    "referring_physician": 324,
    "reading_physician": 324,
    "accession_number": 16,
    "study_id": 16,
    "institution_name": 64,
    "study_date": 8,
    "study_time": 16,
}
# Index column -> DICOM keyword: the same table the index is read with.
KEYWORDS: dict[str, str] = {**meta.PATIENT_TAGS, **meta.STUDY_TAGS}
MULTI_VALUED = {"reading_physician"}  # (0008,1060) is 1-n

_TM = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_SEXES = {"", "M", "F", "O"}
# Character sets whose values we can extend; any other takes ASCII only.
_CODECS = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}
UTF8 = "ISO_IR 192"

_one_at_a_time = threading.Lock()  # two edits of one study must not interleave


@dataclass
class Edit:
    """What to change: ``changes`` maps index columns to their new values."""

    level: str  # "patient" | "study"
    row_id: int  # the Patient or Study row
    changes: dict[str, str]
    label: str = ""
    link: str = ""
    into: int = 0  # level "merge": the surviving Patient row

    @property
    def keywords(self) -> dict[str, str]:
        return {KEYWORDS[k]: v for k, v in self.changes.items()}


# -- what an edit may set ---------------------------------------------------------------


def _valid(name: str, value: str, size: int) -> str:
    if len(value) > size:
        raise UsageError(f"{name}: at most {size} characters")
    if any(ord(c) < 32 for c in value):
        raise UsageError(f"{name}: no control characters")
    if "\\" in value and name not in MULTI_VALUED:
        raise UsageError(f"{name}: one value, no backslash")
    if name.endswith("_date") and value:
        try:
            dt.datetime.strptime(value, "%Y%m%d")
        except ValueError:
            raise UsageError(f"{name}: a date as YYYYMMDD") from None
    if name == "study_time" and value and not _TM.match(value):
        raise UsageError(f"{name}: a time as HHMMSS (HH, HHMM and .ffffff allowed)")
    if name == "sex":
        value = value.upper()
        if value not in _SEXES:
            raise UsageError("sex: M, F, O or empty")
    if name == "patient_id" and not value.strip():
        raise UsageError("patient_id: a patient needs an ID")
    return value


def _diff(row: Patient | Study, fields: dict[str, int], posted: dict[str, str]) -> dict[str, str]:
    """The posted fields that differ from the row, checked against their VR."""
    out = {}
    for name, value in posted.items():
        if name not in fields:
            raise UsageError(f"{name}: not a field that can be edited here")
        value = _valid(name, value, fields[name])
        if value != (getattr(row, name) or ""):
            out[name] = value
    return out


def _check_charset(charset: str, changes: dict[str, str]) -> None:
    """Values the files' character set cannot carry are refused before any file changes."""
    wide = [v for v in changes.values() if not v.isascii()]
    if not wide or charset.strip() in ("", "ISO_IR 6", UTF8):
        return  # ASCII-only sets are widened to UTF-8 (a superset) when needed
    codec = _CODECS.get(charset.strip())
    for value in wide:
        try:
            value.encode(codec or "ascii")
        except UnicodeEncodeError:
            raise UsageError(
                f"{value!r} cannot be written in the study's character set {charset}"
            ) from None


def patient_edit(pk: int, posted: dict[str, str]) -> Edit:
    """Plan an edit of patient row ``pk``; raises NotFound and UsageError (bad value,
    or a Patient ID another patient has)."""
    pt = Patient.get_or_none(Patient.id == pk)
    if pt is None:
        raise NotFound(f"no patient {pk}")
    changes = _diff(pt, PATIENT_FIELDS, posted)
    if "patient_id" in changes:
        _refuse_taken_id(pt, changes["patient_id"])
    _check_charset(pt.charset, changes)
    # The label reaches the status snapshot, which the public front panel shows:
    # the patient's row number, never their ID or name.
    return Edit("patient", pt.id, changes, f"patient record {pt.id}", f"/patients/{pt.id}")


def study_edit(study_uid: str, posted: dict[str, str]) -> Edit:
    """Plan an edit of a study; raises NotFound and UsageError."""
    st = Study.get_or_none(Study.study_instance_uid == study_uid)
    if st is None:
        raise NotFound(f"no study {study_uid}")
    changes = _diff(st, STUDY_FIELDS, posted)
    _check_charset(st.charset, changes)
    return Edit("study", st.id, changes, f"study {study_uid}", f"/studies/{study_uid}")


def patient_merge(old_pk: int, new_pk: int, values: dict[str, str] | None = None) -> Edit:
    """Plan moving every study of patient ``old_pk`` under patient ``new_pk``: their
    files take the surviving patient's ID and demographics (``values`` first, the
    ones the merge message sent). Raises NotFound and UsageError (a bad value, or
    one the old files' character set cannot carry)."""
    old = Patient.get_or_none(Patient.id == old_pk)
    new = Patient.get_or_none(Patient.id == new_pk)
    if old is None or new is None or old.id == new.id:
        raise NotFound(f"no two patients {old_pk} and {new_pk} to merge")
    changes = {k: getattr(new, k) or "" for k in PATIENT_FIELDS}
    for name, value in (values or {}).items():
        changes[name] = _valid(name, value, PATIENT_FIELDS[name])
    _check_charset(old.charset, changes)
    label = f"patient record {old.id} merged into {new.id}"
    return Edit("merge", old.id, changes, label, f"/patients/{new.id}", into=new.id)


def describe(plan: Edit) -> str:
    """The plan's changes as old -> new values, for the journal (DATA-3)."""
    row: Patient | Study | None
    row = (Study if plan.level == "study" else Patient).get_or_none(id=plan.row_id)
    return "; ".join(
        f"{k}: {(getattr(row, k, '') or '') if row else ''!r} -> {v!r}"
        for k, v in sorted(plan.changes.items())
    )


def _refuse_taken_id(pt: Patient, new_id: str) -> None:
    other = Patient.get_or_none(
        (Patient.patient_id == new_id) & (Patient.issuer == pt.issuer) & (Patient.id != pt.id)
    )
    if other is not None:
        raise UsageError(
            f"Patient ID {new_id} is already the ID of patient {other.patient_name or '?'} "
            f"({other.num_studies} studies); merging patients is not done by an edit"
        )


# -- carrying it out --------------------------------------------------------------------------


def run(archive: Archive, edit: Edit, progress: Callable[[int, int], None] | None = None) -> str:
    """Rewrite every file of the edit's patient or study, then its row; returns a summary.

    Instances stored meanwhile are picked up before the edit ends. Raises
    UsageError (a value a file cannot carry), OutOfResources (A700) and
    database errors; what was rewritten before stays rewritten, and running
    the same edit again finishes it.
    """
    with _one_at_a_time:
        rewritten = seen = cursor = 0
        total = _instances(edit).count()
        while True:
            pending = _after(edit, cursor)
            inst = next(pending, None)
            if inst is None and seen:
                break
            if inst is None:  # nothing stored under it: the row alone
                with write_transaction():
                    _update_row(edit, cursor)
                break
            while inst is not None:
                following = next(pending, None)
                # The row changes in the transaction of the last file.
                rewritten += _edit_instance(archive, inst, edit, last=following is None)
                seen += 1
                cursor = inst.id
                if progress:
                    progress(seen, max(total, seen))
                inst = following
        fields = ", ".join(sorted(edit.changes))
        log.info(
            "edited %s (%s): %d of %d files rewritten, the others already carried the values",
            edit.label,
            fields,
            rewritten,
            seen,
        )
        return f"{fields} changed; {rewritten} files rewritten, originals kept in holding"


def _instances(edit: Edit) -> SelectOf[Instance]:
    q = Instance.select(Instance, Series, Study).join(Series).join(Study)
    if edit.level in ("patient", "merge"):
        return q.where(Study.patient == edit.row_id)
    return q.where(Study.id == edit.row_id)


def _after(edit: Edit, cursor: int, batch: int = 500) -> Iterator[Instance]:
    """The edit's instances with a row id above ``cursor``, read a batch at a time."""
    while True:
        rows = list(_instances(edit).where(Instance.id > cursor).order_by(Instance.id).limit(batch))
        yield from rows
        if len(rows) < batch:
            return
        cursor = rows[-1].id


def _edit_instance(archive: Archive, inst: Instance, edit: Edit, last: bool) -> bool:
    """One file, rewritten unless it already carries the values (a re-run)."""
    also = (lambda: _update_row(edit, inst.id)) if last else None
    return _rewrite(archive, inst, edit.keywords, also)


def _rewrite(
    archive: Archive, inst: Instance, keywords: dict[str, str], also: Callable[[], None] | None
) -> bool:
    """Rewrite one file with ``keywords`` set, ``also`` in the swap's transaction;
    False when the file already carries them (``also`` then runs on its own)."""
    ds = pydicom.dcmread(io.BytesIO(archive.read_part10(inst)), force=True)
    if all(_value(ds, kw) == v for kw, v in keywords.items()):
        if also:
            with write_transaction():
                also()
        return False
    _set_values(ds, keywords)
    out = io.BytesIO()
    ds.save_as(out)
    data = out.getvalue()
    chunks = [data[meta.parse(data).dataset_offset :]] if inst.native else [data]
    if archive.rewrite(inst, chunks, also):
        return True
    log.warning(
        "SOP Instance %s changed while being rewritten; left as it is", inst.sop_instance_uid
    )
    if also:
        with write_transaction():
            also()
    return False


def _update_row(edit: Edit, last_id: int) -> None:
    """The row takes the values and remembers which columns an edit set, so a later
    image neither overwrites them nor leaves the box without them. An image stored
    after the edit's last file was read is marked for the follow-up."""
    changes: dict[str, object] = dict(edit.changes)
    row: Patient | Study
    if edit.level == "merge":
        _merge_rows(edit, last_id)
        return
    if edit.level == "patient":
        row = Patient.get_by_id(edit.row_id)
        if "patient_id" in edit.changes:
            _refuse_taken_id(row, edit.changes["patient_id"])
        if "patient_name" in edit.changes:
            changes["patient_name_ci"] = edit.changes["patient_name"].upper()
        changes["edited"] = _marks(row.edited, edit.changes)
        update_worklist(row.patient_id, edit.changes)
        Patient.update(**changes).where(Patient.id == edit.row_id).execute()
    else:
        row = Study.get_by_id(edit.row_id)
        changes["edited"] = _marks(row.edited, edit.changes)
        Study.update(updated=utcnow(), **changes).where(Study.id == edit.row_id).execute()
    _mark_late(edit, last_id)


def _mark_late(edit: Edit, last_id: int) -> None:
    first: dict[int, int] = {}  # study row -> its first image stored after last_id
    for inst in _instances(edit).where(Instance.id > last_id).order_by(Instance.id):
        first.setdefault(inst.series.study_id, inst.id)
    for study_id, inst_id in first.items():
        Study.update(edit_from=inst_id).where(
            (Study.id == study_id) & (Study.edit_from == 0)
        ).execute()


def _merge_rows(edit: Edit, last_id: int) -> None:
    """The old patient's studies go under the surviving row, which adds its counters
    and marks the merged columns (a later image of the old ID is given them);
    the old row goes. Nothing left to move (a re-run) changes nothing."""
    old = Patient.get_or_none(Patient.id == edit.row_id)
    if old is None:
        return
    new = Patient.get_by_id(edit.into)
    _mark_late(edit, last_id)
    update_worklist(old.patient_id, edit.changes)
    Study.update(patient=new.id).where(Study.patient == old.id).execute()
    Patient.update(
        num_studies=Patient.num_studies + old.num_studies,
        num_series=Patient.num_series + old.num_series,
        num_instances=Patient.num_instances + old.num_instances,
        edited=_marks(new.edited, edit.changes),
    ).where(Patient.id == new.id).execute()
    Patient.delete().where(Patient.id == old.id).execute()


def update_worklist(patient_id: str, changes: dict[str, str]) -> int:
    """The patient's scheduled and running worklist items take the new values;
    returns how many did."""
    values = {k: v for k, v in changes.items() if k in PATIENT_FIELDS}
    if not patient_id or not values:
        return 0
    item = worklist.WorklistItem
    open_items = list(
        item.select().where(
            (item.patient_id == patient_id)
            & item.status.in_((worklist.SCHEDULED, worklist.IN_PROGRESS))
        )
    )
    for row in open_items:
        worklist.update(row.id, values)
    return len(open_items)


def _marks(marks: str, changes: dict[str, str]) -> str:
    return ",".join(sorted(edit_marks(marks) | set(changes)))


# -- later images of an edited study -----------------------------------------------------


def pending() -> list[int]:
    """Studies holding images stored after an edit that do not carry it yet."""
    return [s.id for s in Study.select(Study.id).where(Study.edit_from > 0)]


def edited_values(study: Study) -> dict[str, str]:
    """DICOM keyword -> value for every column an edit set on the study or its patient."""
    out = {}
    for row in (study.patient, study):
        for col in edit_marks(row.edited):
            if col in KEYWORDS:
                out[KEYWORDS[col]] = getattr(row, col) or ""
    return out


def follow_up(
    archive: Archive, study_id: int, progress: Callable[[int, int], None] | None = None
) -> str:
    """Give the images stored into an edited study since its edit the edit's values,
    through the same rewrite (originals kept in holding); returns a summary."""
    with _one_at_a_time:
        st = Study.get_or_none(Study.id == study_id)
        if st is None or not st.edit_from:
            return "nothing to rewrite"
        keywords = edited_values(st)
        late = list(
            Instance.select(Instance, Series)
            .join(Series)
            .where((Series.study == study_id) & (Instance.id >= st.edit_from))
            .order_by(Instance.id)
        )
        rewritten = 0
        for i, inst in enumerate(late):
            rewritten += _rewrite(archive, inst, keywords, None)
            if progress:
                progress(i + 1, len(late))
        last = late[-1].id if late else st.edit_from
        with write_transaction():
            newer = (
                Instance.select()
                .join(Series)
                .where((Series.study == study_id) & (Instance.id > last))
                .exists()
            )
            if not newer:  # one stored meanwhile keeps the mark for the next round
                Study.update(edit_from=0).where(Study.id == study_id).execute()
        log.info(
            "study %s: %d later images given its edit (%s)",
            st.study_instance_uid,
            rewritten,
            ", ".join(sorted(keywords)),
        )
        return f"{rewritten} later images rewritten with the edit, originals kept in holding"


def _value(ds: Dataset, keyword: str) -> str:
    if keyword not in ds:
        return ""
    value = ds[keyword].value
    if value is None:
        return ""
    if isinstance(value, pydicom.multival.MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _set_values(ds: Dataset, values: dict[str, str]) -> None:
    charset = ""
    if "SpecificCharacterSet" in ds:
        raw = ds["SpecificCharacterSet"].value
        charset = "\\".join(raw) if isinstance(raw, pydicom.multival.MultiValue) else str(raw)
    if any(not v.isascii() for v in values.values()):
        if charset.strip() in ("", "ISO_IR 6"):
            ds.SpecificCharacterSet = UTF8  # ASCII is a subset: the other values read the same
        else:
            _check_charset(charset, values)
    for keyword, value in values.items():
        if keyword not in ds and not value:
            continue
        parts = value.split("\\") if "\\" in value else value
        if keyword in ds:
            ds[keyword].value = parts
        else:
            ds.add_new(keyword, dictionary_VR(keyword), parts)
