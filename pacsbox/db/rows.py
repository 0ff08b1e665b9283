"""The store path's SQL: an instance's patient, study, series and instance rows.

``record_in_transaction`` is what one record does inside its transaction:
apply the duplicate policy, find or create the parent rows (latest
non-empty value wins, except over an edit), insert the instance. It runs once per received
image, so it speaks parameterised SQL (``db.sql``) rather than peewee
queries; the rare paths (replace, delete) use the models. The instance
counts are added once per transaction (``apply_counts``), not per record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pacsbox.db.lookup import find_instance, instance_path, stored_digest
from pacsbox.db.models import Instance, Patient, Series, Study, utcnow
from pacsbox.db.sql import all_rows, insert, one, run
from pacsbox.errors import DatasetMismatch, DuplicateRejected
from pacsbox.meta import InstanceAttrs

log = logging.getLogger("pacsbox.db")


@dataclass(frozen=True)
class StoredFile:
    storage_root: str
    folder: str
    file_name: str
    size: int
    digest: str
    native: bool


@dataclass(frozen=True)
class Recorded:
    outcome: str  # "stored" | "duplicate" | "replaced" | "kept-first"
    replaced_path: Path | None = None  # the earlier file, to be moved to holding
    # (series, study, patient row ids, file size) still to be counted: a
    # transaction adds its records' counts once per row, just before COMMIT.
    counts: tuple[int, int, int, int] | None = None


class LocationChanged(Exception):
    """The study already lives elsewhere; the caller moves the file there and retries."""

    def __init__(self, storage_root: str, folder: str) -> None:
        super().__init__(f"{storage_root}/{folder}")
        self.storage_root = storage_root
        self.folder = folder


PATIENT_COLS = (
    "patient_name",
    "patient_name_ci",
    "birth_date",
    "birth_time",
    "sex",
    "age",
    "size",
    "weight",
    "charset",
)
STUDY_COLS = (
    "study_date",
    "study_time",
    "accession_number",
    "study_id",
    "referring_physician",
    "reading_physician",
    "study_description",
    "institution_name",
    "charset",
)
SERIES_COLS = (
    "modality",
    "series_number",
    "series_date",
    "series_time",
    "body_part",
    "series_description",
    "protocol_name",
    "station_name",
)
INSTANCE_COLS = (
    "sop_instance_uid",
    "series_id",
    "sop_class_uid",
    "instance_number",
    "transfer_syntax_uid",
    "file_name",
    "file_size",
    "digest",
    "native",
    "calling_ae",
    "received",
    "creation_date",
    "creation_time",
    "overlay_number",
    "curve_number",
    "lut_number",
    "samples_per_pixel",
    "rows",
    "columns",
    "bits_allocated",
    "bits_stored",
    "pixel_representation",
    "number_of_frames",
)


def edit_marks(marks: str) -> set[str]:
    """The columns named in a row's ``edited`` marks (comma-joined)."""
    return {c for c in marks.split(",") if c}


def edited_columns(marks: str) -> frozenset[str]:
    """The columns a later image must not overwrite: the marks, and what follows them."""
    cols = edit_marks(marks)
    if "patient_name" in cols:
        cols.add("patient_name_ci")  # the search copy follows the name
    return frozenset(cols)


def _merge_row(
    table: str, row_id: int, cols: tuple, current: tuple, new: dict, marks: str = ""
) -> bool:
    """Latest non-empty value wins, except in columns an edit set; one UPDATE only
    when something changed. Returns whether ``new`` differs from an edited
    column, that is, whether the file needs the edit too."""
    kept = edited_columns(marks)
    changes = {
        c: new[c]
        for c, old in zip(cols, current, strict=True)
        if c not in kept and new.get(c) not in ("", None) and new[c] != old
    }
    if changes:
        sets = ", ".join(f"{c} = ?" for c in changes)
        run(f"UPDATE {table} SET {sets} WHERE id = ?", (*changes.values(), row_id))
    return any(
        c in kept and (new.get(c) or "") != (old or "")
        for c, old in zip(cols, current, strict=True)
    )


def _patient_values(attrs: InstanceAttrs) -> dict:
    p = dict(attrs.patient)
    p["patient_name_ci"] = p["patient_name"].upper()
    p["charset"] = attrs.charset
    return p


def _study_values(attrs: InstanceAttrs) -> dict:
    st = dict(attrs.study)
    st["charset"] = attrs.charset
    return st


def _series_values(attrs: InstanceAttrs) -> dict:
    se: dict[str, object] = dict(attrs.series)
    se["series_number"] = attrs.series_number
    return se


_KNOWN_SERIES_SQL = (
    "SELECT se.id, st.id, p.id, st.study_instance_uid, p.patient_id, p.issuer, st.storage_root, "
    "st.folder, st.edited, p.edited, "
    + ", ".join(
        [
            *(f"se.{c}" for c in SERIES_COLS),
            *(f"st.{c}" for c in STUDY_COLS),
            *(f"p.{c}" for c in PATIENT_COLS),
        ]
    )
    + " FROM series se JOIN study st ON st.id = se.study_id JOIN patient p ON p.id = st.patient_id"
    " WHERE se.series_instance_uid = ?"
)


def _known_series(attrs: InstanceAttrs, f: StoredFile) -> tuple[int, int, int, bool] | None:
    """(series, study, patient) ids, and whether the file needs an edit, when the
    series is indexed under this study and patient.

    The usual case (every image of a series after its first) costs one SELECT
    instead of three; anything unusual returns None and takes the general path.
    Raises LocationChanged.
    """
    row = one(_KNOWN_SERIES_SQL, (attrs.series_instance_uid,))
    if row is None:
        return None
    series_id, study_id, patient_id, study_uid, pid, issuer, root, folder = row[:8]
    study_marks, patient_marks = row[8:10]
    if study_uid != attrs.study_instance_uid or (pid, issuer) != (
        attrs.patient["patient_id"],
        attrs.patient["issuer"],
    ):
        return None
    if (root, folder) != (f.storage_root, f.folder):
        raise LocationChanged(root, folder)
    a = 10 + len(SERIES_COLS)
    b = a + len(STUDY_COLS)
    _merge_row("series", series_id, SERIES_COLS, row[10:a], _series_values(attrs))
    needs = _merge_row("study", study_id, STUDY_COLS, row[a:b], _study_values(attrs), study_marks)
    needs |= _merge_row(
        "patient", patient_id, PATIENT_COLS, row[b:], _patient_values(attrs), patient_marks
    )
    return series_id, study_id, patient_id, needs


def _patient_row(attrs: InstanceAttrs, private: bool) -> int:
    p = _patient_values(attrs)
    row = one(
        f"SELECT id, {', '.join(PATIENT_COLS)} FROM patient WHERE patient_id = ? AND issuer = ?",
        (p["patient_id"], p["issuer"]),
    )
    if row is None:
        values = {c: p.get(c, "") for c in ("patient_id", "issuer", *PATIENT_COLS)}
        values.update(
            num_studies=0,
            num_series=0,
            num_instances=0,
            private=bool(private),
            created=str(utcnow()),
            edited="",
        )
        return insert("patient", values)
    _merge_row("patient", row[0], PATIENT_COLS, row[1:], p)
    patient_id: int = row[0]
    return patient_id


def _study_row(
    attrs: InstanceAttrs, f: StoredFile, calling_ae: str, private: bool
) -> tuple[int, int, bool]:
    """(study row id, its patient row id, whether the file needs an edit).

    A study already indexed keeps its patient: an image that names another
    patient (the one an edit renamed, or a modality's mistake) joins the study
    as it is and creates no patient row of its own. Raises LocationChanged.
    """
    st = _study_values(attrs)
    row = one(
        f"SELECT id, patient_id, storage_root, folder, edited, {', '.join(STUDY_COLS)} FROM study "
        "WHERE study_instance_uid = ?",
        (attrs.study_instance_uid,),
    )
    if row is None:
        patient_id = _patient_row(attrs, private)
        now = str(utcnow())
        values = {c: st.get(c, "") for c in STUDY_COLS}
        values.update(
            study_instance_uid=attrs.study_instance_uid,
            patient_id=patient_id,
            modalities="",
            num_series=0,
            num_instances=0,
            size_bytes=0,
            storage_root=f.storage_root,
            folder=f.folder,
            calling_ae=calling_ae,
            received=now,
            updated=now,
            private=bool(private),
            read=False,
            protected=False,
            purge_state="",
            edited="",
            edit_from=0,
        )
        study_id = insert("study", values)
        run("UPDATE patient SET num_studies = num_studies + 1 WHERE id = ?", (patient_id,))
        return study_id, patient_id, False
    study_id, patient_id, root, folder, marks = row[:5]
    if (root, folder) != (f.storage_root, f.folder):
        raise LocationChanged(root, folder)
    needs = _merge_row("study", study_id, STUDY_COLS, row[5:], st, marks)
    return study_id, patient_id, _join_patient(attrs, patient_id) or needs


def _join_patient(attrs: InstanceAttrs, patient_id: int) -> bool:
    """Merge the file's patient values into the study's patient; True when the
    file needs that patient's edit."""
    row = one(
        f"SELECT patient_id, issuer, edited, {', '.join(PATIENT_COLS)} FROM patient WHERE id = ?",
        (patient_id,),
    )
    pid, issuer, marks = row[:3]
    if (pid, issuer) == (attrs.patient["patient_id"], attrs.patient["issuer"]):
        return _merge_row(
            "patient", patient_id, PATIENT_COLS, row[3:], _patient_values(attrs), marks
        )
    if edited_columns(marks) & {"patient_id", "issuer"}:
        return True  # an image of the patient as they were before the edit
    log.warning(
        "SOP Instance %s names Patient ID %s, but its study %s is indexed under %s; "
        "stored in that study",
        attrs.sop_instance_uid,
        attrs.patient["patient_id"],
        attrs.study_instance_uid,
        pid,
    )
    return False


def _series_row(attrs: InstanceAttrs, study_id: int, patient_id: int) -> tuple[int, bool]:
    """(series row id, whether it is new); raises DatasetMismatch when the series
    is indexed under another study (the file is in this study's folder)."""
    se = _series_values(attrs)
    row = one(
        f"SELECT id, study_id, {', '.join(SERIES_COLS)} FROM series WHERE series_instance_uid = ?",
        (attrs.series_instance_uid,),
    )
    if row is None:
        values = {c: se.get(c, "") for c in SERIES_COLS}
        values.update(
            series_instance_uid=attrs.series_instance_uid, study_id=study_id, num_instances=0
        )
        series_id = insert("series", values)
        run("UPDATE study SET num_series = num_series + 1 WHERE id = ?", (study_id,))
        run("UPDATE patient SET num_series = num_series + 1 WHERE id = ?", (patient_id,))
        return series_id, True
    if row[1] != study_id:
        raise DatasetMismatch(
            f"Series Instance UID {attrs.series_instance_uid} is stored in another study"
        )
    _merge_row("series", row[0], SERIES_COLS, row[2:], se)
    return row[0], False


def _instance_row(attrs: InstanceAttrs, series_id: int, f: StoredFile, calling_ae: str) -> None:
    inst = attrs.instance
    values = (
        attrs.sop_instance_uid,
        series_id,
        attrs.sop_class_uid,
        attrs.instance_number,
        attrs.transfer_syntax_uid,
        f.file_name,
        f.size,
        f.digest,
        bool(f.native),
        calling_ae,
        str(utcnow()),
        inst.get("creation_date", ""),
        inst.get("creation_time", ""),
        inst.get("overlay_number", ""),
        inst.get("curve_number", ""),
        inst.get("lut_number", ""),
        inst.get("samples_per_pixel"),
        inst.get("rows"),
        inst.get("columns"),
        inst.get("bits_allocated"),
        inst.get("bits_stored"),
        inst.get("pixel_representation"),
        inst.get("number_of_frames"),
    )
    run(
        f"INSERT INTO instance ({', '.join(INSTANCE_COLS)}) "
        f"VALUES ({', '.join('?' for _ in INSTANCE_COLS)})",
        values,
    )


def apply_counts(records: list[Recorded]) -> None:
    """Add the instance counts of a transaction's records, one UPDATE per row touched.

    Counts are sums, so adding them at the end of the transaction gives the
    same rows as adding each at once (a replaced instance's decrement
    included); an UPDATE of a row deleted meanwhile changes nothing.
    """
    series: dict[int, int] = {}
    studies: dict[int, tuple[int, int]] = {}
    patients: dict[int, int] = {}
    for rec in records:
        if rec.counts is None:
            continue
        series_id, study_id, patient_id, size = rec.counts
        series[series_id] = series.get(series_id, 0) + 1
        n, total = studies.get(study_id, (0, 0))
        studies[study_id] = (n + 1, total + size)
        patients[patient_id] = patients.get(patient_id, 0) + 1
    if not series:
        return
    now = str(utcnow())
    for row_id, n in series.items():
        run("UPDATE series SET num_instances = num_instances + ? WHERE id = ?", (n, row_id))
    for row_id, (n, total) in studies.items():
        run(
            "UPDATE study SET num_instances = num_instances + ?, size_bytes = size_bytes + ?, "
            "updated = ? WHERE id = ?",
            (n, total, now, row_id),
        )
    for row_id, n in patients.items():
        run("UPDATE patient SET num_instances = num_instances + ? WHERE id = ?", (n, row_id))


def _refresh_modalities(study_id: int) -> None:
    mods = sorted(
        {
            m
            for (m,) in all_rows(
                "SELECT DISTINCT modality FROM series WHERE study_id = ? AND modality <> ''",
                (study_id,),
            )
        }
    )
    run("UPDATE study SET modalities = ? WHERE id = ?", ("\\".join(mods), study_id))


def record_in_transaction(
    attrs: InstanceAttrs,
    f: StoredFile,
    calling_ae: str,
    policy: str,
    private: bool,
    same: Callable[[str, Path], bool] | None,
) -> Recorded:
    """One record, inside a transaction its caller holds; counts left to ``apply_counts``.

    Raises DuplicateRejected (policy "reject") and LocationChanged.
    """
    replaced: Path | None = None
    digest = stored_digest(attrs.sop_instance_uid)
    if digest is not None:
        existing = find_instance(attrs.sop_instance_uid)
        assert existing is not None  # the row the digest was read from, same transaction
        if same(digest, instance_path(existing)) if same else digest == f.digest:
            return Recorded("duplicate")
        if policy == "keep-first":
            return Recorded("kept-first")
        if policy == "reject":
            raise DuplicateRejected(
                f"SOP Instance {attrs.sop_instance_uid} is already stored with other content"
            )
        replaced = instance_path(existing)
        delete_instance_row(existing)
    known = _known_series(attrs, f) if replaced is None else None
    if known is not None:
        series_id, study_id, patient_id, needs_edit = known
        new_series = False
    else:
        study_id, patient_id, needs_edit = _study_row(attrs, f, calling_ae, private)
        series_id, new_series = _series_row(attrs, study_id, patient_id)
    _instance_row(attrs, series_id, f, calling_ae)
    if needs_edit:  # the daemon rewrites it (edit.follow_up); the mark is durable with the row
        run(
            "UPDATE study SET edit_from = (SELECT id FROM instance WHERE sop_instance_uid = ?) "
            "WHERE id = ? AND edit_from = 0",
            (attrs.sop_instance_uid, study_id),
        )
    if new_series or replaced is not None:
        _refresh_modalities(study_id)
    return Recorded(
        "replaced" if replaced is not None else "stored",
        replaced,
        (series_id, study_id, patient_id, f.size),
    )


def delete_instance_row(inst: Instance) -> None:
    """Remove one instance row and keep every counter exact (empty parents go too)."""
    series = inst.series
    study = series.study
    patient_id = study.patient_id
    inst.delete_instance()
    Series.update(num_instances=Series.num_instances - 1).where(Series.id == series.id).execute()
    Study.update(
        num_instances=Study.num_instances - 1, size_bytes=Study.size_bytes - inst.file_size
    ).where(Study.id == study.id).execute()
    Patient.update(num_instances=Patient.num_instances - 1).where(
        Patient.id == patient_id
    ).execute()
    if not Instance.select().where(Instance.series == series.id).exists():
        series.delete_instance()
        Study.update(num_series=Study.num_series - 1).where(Study.id == study.id).execute()
        Patient.update(num_series=Patient.num_series - 1).where(Patient.id == patient_id).execute()
        _refresh_modalities(study.id)
        if not Series.select().where(Series.study == study.id).exists():
            Study.delete().where(Study.id == study.id).execute()
            Patient.update(num_studies=Patient.num_studies - 1).where(
                Patient.id == patient_id
            ).execute()
            if not Study.select().where(Study.patient == patient_id).exists():
                Patient.delete().where(Patient.id == patient_id).execute()
