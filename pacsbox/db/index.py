"""Writes to the index: one transaction per stored instance, counters kept exact.

``record_instance`` is the only way an instance enters the index. It runs in
one IMMEDIATE transaction (the SQLite writer lock is taken up front, so two
senders of the same SOP Instance UID serialise here and never create two
rows) and applies the duplicate policy inside it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from peewee import SqliteDatabase, fn

from pacsbox.db.models import (
    ApplicationEntity,
    DirtyFolder,
    Instance,
    Patient,
    Series,
    Study,
    database,
    utcnow,
)
from pacsbox.errors import DuplicateRejected
from pacsbox.meta import InstanceAttrs


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


class LocationChanged(Exception):
    """The study already lives elsewhere; the caller moves the file there and retries."""

    def __init__(self, storage_root: str, folder: str) -> None:
        super().__init__(f"{storage_root}/{folder}")
        self.storage_root = storage_root
        self.folder = folder


@contextlib.contextmanager
def write_transaction() -> Iterator[None]:
    """A transaction that takes the writer lock at once (SQLite IMMEDIATE)."""
    db = database.obj
    if isinstance(db, SqliteDatabase):
        with db.atomic("IMMEDIATE"):
            yield
    else:
        with db.atomic():
            yield


def instance_path(inst: Instance) -> Path:
    study = inst.series.study
    return Path(study.storage_root) / study.folder / inst.file_name


def study_location(study_uid: str) -> tuple[str, str] | None:
    row = (
        Study.select(Study.storage_root, Study.folder)
        .where(Study.study_instance_uid == study_uid)
        .first()
    )
    return (row.storage_root, row.folder) if row else None


def find_instance(sop_instance_uid: str) -> Instance | None:
    return Instance.get_or_none(Instance.sop_instance_uid == sop_instance_uid)


def _merge(target, values: dict[str, str]) -> bool:
    """Latest non-empty value wins; returns True when something changed."""
    changed = False
    for k, v in values.items():
        if v and getattr(target, k) != v:
            setattr(target, k, v)
            changed = True
    return changed


def _upsert_patient(attrs: InstanceAttrs, private: bool) -> Patient:
    p = attrs.patient
    patient = Patient.get_or_none(
        (Patient.patient_id == p["patient_id"]) & (Patient.issuer == p["issuer"])
    )
    values = dict(p)
    values["patient_name_ci"] = p["patient_name"].upper()
    if attrs.charset:
        values["charset"] = attrs.charset
    if patient is None:
        return Patient.create(private=private, **values)
    if _merge(patient, {k: v for k, v in values.items() if k not in ("patient_id", "issuer")}):
        patient.save()
    return patient


def _upsert_study(
    attrs: InstanceAttrs, patient: Patient, f: StoredFile, calling_ae: str, private: bool
):
    study = Study.get_or_none(Study.study_instance_uid == attrs.study_instance_uid)
    if study is None:
        study = Study.create(
            study_instance_uid=attrs.study_instance_uid,
            patient=patient,
            storage_root=f.storage_root,
            folder=f.folder,
            calling_ae=calling_ae,
            charset=attrs.charset,
            private=private,
            **attrs.study,
        )
        Patient.update(num_studies=Patient.num_studies + 1).where(
            Patient.id == patient.id
        ).execute()
        return study, True
    if (study.storage_root, study.folder) != (f.storage_root, f.folder):
        raise LocationChanged(study.storage_root, study.folder)
    changed = _merge(study, attrs.study)
    if attrs.charset and study.charset != attrs.charset:
        study.charset = attrs.charset
        changed = True
    if changed:
        study.save()
    return study, False


def _upsert_series(attrs: InstanceAttrs, study: Study) -> tuple[Series, bool]:
    series = Series.get_or_none(Series.series_instance_uid == attrs.series_instance_uid)
    if series is None:
        series = Series.create(
            series_instance_uid=attrs.series_instance_uid,
            study=study,
            series_number=attrs.series_number,
            **attrs.series,
        )
        Study.update(num_series=Study.num_series + 1).where(Study.id == study.id).execute()
        Patient.update(num_series=Patient.num_series + 1).where(
            Patient.id == study.patient_id
        ).execute()
        return series, True
    changed = _merge(series, attrs.series)
    if attrs.series_number is not None and series.series_number != attrs.series_number:
        series.series_number = attrs.series_number
        changed = True
    if changed:
        series.save()
    return series, False


def _refresh_modalities(study_id: int) -> None:
    mods = sorted(
        {
            m
            for (m,) in Series.select(Series.modality)
            .where((Series.study == study_id) & (Series.modality != ""))
            .tuples()
        }
    )
    Study.update(modalities="\\".join(mods), updated=utcnow()).where(
        Study.id == study_id
    ).execute()


def _insert_instance(attrs: InstanceAttrs, series: Series, f: StoredFile, calling_ae: str) -> None:
    Instance.create(
        sop_instance_uid=attrs.sop_instance_uid,
        series=series,
        sop_class_uid=attrs.sop_class_uid,
        instance_number=attrs.instance_number,
        transfer_syntax_uid=attrs.transfer_syntax_uid,
        file_name=f.file_name,
        file_size=f.size,
        digest=f.digest,
        native=f.native,
        calling_ae=calling_ae,
        **attrs.instance,
    )
    Series.update(num_instances=Series.num_instances + 1).where(Series.id == series.id).execute()
    Study.update(
        num_instances=Study.num_instances + 1, size_bytes=Study.size_bytes + f.size
    ).where(Study.id == series.study_id).execute()
    Patient.update(num_instances=Patient.num_instances + 1).where(
        Patient.id == Study.select(Study.patient).where(Study.id == series.study_id)
    ).execute()


def record_instance(
    attrs: InstanceAttrs,
    f: StoredFile,
    *,
    calling_ae: str = "",
    policy: str = "replace",
    private: bool = False,
) -> Recorded:
    """Index a stored file in one transaction, applying the duplicate policy.

    Raises DuplicateRejected (policy "reject"), LocationChanged (the study
    lives in another folder), and peewee errors when the database fails.
    """
    with write_transaction():
        existing = find_instance(attrs.sop_instance_uid)
        replaced: Path | None = None
        if existing is not None:
            if existing.digest == f.digest:
                return Recorded("duplicate")
            if policy == "keep-first":
                return Recorded("kept-first")
            if policy == "reject":
                raise DuplicateRejected(
                    f"SOP Instance {attrs.sop_instance_uid} is already stored with other content"
                )
            replaced = instance_path(existing)
            _delete_instance_rows(existing)
        patient = _upsert_patient(attrs, private)
        study, _ = _upsert_study(attrs, patient, f, calling_ae, private)
        series, new_series = _upsert_series(attrs, study)
        _insert_instance(attrs, series, f, calling_ae)
        if new_series or replaced is not None:
            _refresh_modalities(study.id)
        return Recorded("replaced" if replaced is not None else "stored", replaced)


def _delete_instance_rows(inst: Instance) -> None:
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
        Patient.update(num_series=Patient.num_series - 1).where(
            Patient.id == patient_id
        ).execute()
        _refresh_modalities(study.id)
        if not Series.select().where(Series.study == study.id).exists():
            Study.delete().where(Study.id == study.id).execute()
            Patient.update(num_studies=Patient.num_studies - 1).where(
                Patient.id == patient_id
            ).execute()
            if not Study.select().where(Study.patient == patient_id).exists():
                Patient.delete().where(Patient.id == patient_id).execute()


def delete_instance(inst: Instance) -> Path:
    """Remove an instance from the index; returns its file path for the caller to delete."""
    with write_transaction():
        path = instance_path(inst)
        _delete_instance_rows(inst)
    return path


def instance_files(query) -> Iterator[tuple[Instance, Path]]:
    """(instance, path) for every instance of a select on Instance joined to its study."""
    for inst in query:
        yield inst, instance_path(inst)


def indexed_names(storage_root: str, folder: str) -> dict[str, str]:
    """{file name: SOP Instance UID} of the instances indexed in one study folder."""
    rows = (
        Instance.select(Instance.file_name, Instance.sop_instance_uid)
        .join(Series)
        .join(Study)
        .where((Study.storage_root == storage_root) & (Study.folder == folder))
        .tuples()
    )
    return dict(rows)


# -- dirty folders: what the start-up check must look at --------------------


def mark_dirty(storage_root: str, folder: str) -> None:
    with write_transaction():
        DirtyFolder.insert(storage_root=storage_root, folder=folder).on_conflict_ignore().execute()


def dirty_folders() -> list[tuple[str, str]]:
    return list(DirtyFolder.select(DirtyFolder.storage_root, DirtyFolder.folder).tuples())


def clear_dirty(folders: list[tuple[str, str]]) -> None:
    with write_transaction():
        for root, folder in folders:
            DirtyFolder.delete().where(
                (DirtyFolder.storage_root == root) & (DirtyFolder.folder == folder)
            ).execute()


# -- counts for status and logs ----------------------------------------------


def totals() -> dict[str, int]:
    return {
        "patients": Patient.select().count(),
        "studies": Study.select().count(),
        "series": Series.select().count(),
        "instances": Study.select(fn.COALESCE(fn.SUM(Study.num_instances), 0)).scalar() or 0,
    }


# -- the AE table -------------------------------------------------------------


def ae_get(title: str) -> ApplicationEntity | None:
    return ApplicationEntity.get_or_none(ApplicationEntity.title == title)


def ae_list() -> list[ApplicationEntity]:
    return list(ApplicationEntity.select().order_by(ApplicationEntity.title))


def ae_upsert(title: str, **fields) -> ApplicationEntity:
    with write_transaction():
        ae = ae_get(title)
        if ae is None:
            return ApplicationEntity.create(title=title, **fields)
        for k, v in fields.items():
            setattr(ae, k, v)
        ae.save()
        return ae


def ae_remove(title: str) -> bool:
    with write_transaction():
        return ApplicationEntity.delete().where(ApplicationEntity.title == title).execute() > 0


# -- selections for export, forward and delete ---------------------------------


def select_instances(
    patient_ids: list[str] | None = None,
    study_uids: list[str] | None = None,
    series_uids: list[str] | None = None,
) -> list[Instance]:
    """Instances of the given patients, studies and series (union), in a stable order."""
    conds = []
    if patient_ids:
        conds.append(Patient.patient_id.in_(patient_ids))
    if study_uids:
        conds.append(Study.study_instance_uid.in_(study_uids))
    if series_uids:
        conds.append(Series.series_instance_uid.in_(series_uids))
    if not conds:
        return []
    where = conds[0]
    for c in conds[1:]:
        where = where | c
    q = (
        Instance.select(Instance, Series, Study)
        .join(Series)
        .join(Study)
        .join(Patient)
        .where(where)
        .order_by(Patient.id, Study.id, Series.series_number, Series.id, Instance.instance_number)
    )
    return list(q)
