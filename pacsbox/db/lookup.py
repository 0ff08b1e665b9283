"""Reading the index: where an instance's file is, what a folder holds, totals.

The per-image look-ups (``stored_digest``, ``study_location``) and the status
counts run as plain SQL (``db.sql``); the rest use the models.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from peewee import ColumnBase, fn

from pacsbox.db.models import ApplicationEntity, Instance, Patient, Series, Study
from pacsbox.db.sql import one
from pacsbox.db.stored import STORED_COLUMNS, StoredInstance, stored_row


def instance_path(inst: Instance) -> Path:
    study = inst.series.study
    return Path(study.storage_root) / study.folder / inst.file_name


def study_location(study_uid: str) -> tuple[str, str] | None:
    """(storage root, folder) of an indexed study, or None."""
    row = one("SELECT storage_root, folder FROM study WHERE study_instance_uid = ?", (study_uid,))
    return (row[0], row[1]) if row else None


def find_instance(sop_instance_uid: str) -> Instance | None:
    return Instance.get_or_none(Instance.sop_instance_uid == sop_instance_uid)


def stored_digest(sop_instance_uid: str) -> str | None:
    """The digest of the stored object with this UID, or None (a cheap duplicate pre-check)."""
    row = one("SELECT digest FROM instance WHERE sop_instance_uid = ?", (sop_instance_uid,))
    return row[0] if row else None


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


def study_folders() -> list[tuple[str, str]]:
    """(storage root, folder) of every indexed study."""
    return list(Study.select(Study.storage_root, Study.folder).tuples())


def archive_roots(default: Path) -> list[Path]:
    """Every archive root, resolved: ``default``, each AE's archivedir, each study's root."""
    roots = {default.resolve()}
    for ae in ApplicationEntity.select(ApplicationEntity.archivedir):
        if ae.archivedir:
            roots.add(Path(ae.archivedir).resolve())
    for (root,) in Study.select(Study.storage_root).distinct().tuples():
        roots.add(Path(root).resolve())
    return sorted(roots)


def _selection(
    patient_ids: list[str] | None,
    study_uids: list[str] | None,
    series_uids: list[str] | None,
    sop_uids: list[str] | None = None,
) -> ColumnBase | None:
    """The union of the given patients, studies, series and instances, as one condition."""
    conds = []
    if patient_ids:
        conds.append(Patient.patient_id.in_(patient_ids))
    if study_uids:
        conds.append(Study.study_instance_uid.in_(study_uids))
    if series_uids:
        conds.append(Series.series_instance_uid.in_(series_uids))
    if sop_uids:
        conds.append(Instance.sop_instance_uid.in_(sop_uids))
    if not conds:
        return None
    where = conds[0]
    for c in conds[1:]:
        where = where | c
    return where


def select_instances(
    patient_ids: list[str] | None = None,
    study_uids: list[str] | None = None,
    series_uids: list[str] | None = None,
) -> list[Instance]:
    """Instances of the given patients, studies and series (union), in a stable order."""
    where = _selection(patient_ids, study_uids, series_uids)
    if where is None:
        return []
    q = (
        Instance.select(Instance, Series, Study)
        .join(Series)
        .join(Study)
        .join(Patient)
        .where(where)
        .order_by(Patient.id, Study.id, Series.series_number, Series.id, Instance.instance_number)
    )
    return list(q)


def stored_selection(
    patient_ids: list[str] | None = None,
    study_uids: list[str] | None = None,
    series_uids: list[str] | None = None,
    sop_uids: list[str] | None = None,
    rows_after: int = 0,
    rows_upto: int = 0,
) -> list[tuple[int, StoredInstance]]:
    """(instance row id, what a sender needs) for a selection, in the order stored;
    only rows in (rows_after, rows_upto] when those are given (a route's round)."""
    where = _selection(patient_ids, study_uids, series_uids, sop_uids)
    if where is None:
        return []
    if rows_after:
        where = where & (Instance.id > rows_after)
    if rows_upto:
        where = where & (Instance.id <= rows_upto)
    rows = (
        Instance.select(*STORED_COLUMNS)
        .join(Series)
        .join(Study)
        .join(Patient)
        .where(where)
        .order_by(Instance.id)
        .tuples()
    )
    return [stored_row(row) for row in rows]


def count_selection(
    patient_ids: list[str] | None = None,
    study_uids: list[str] | None = None,
    series_uids: list[str] | None = None,
    sop_uids: list[str] | None = None,
) -> int:
    """How many instances ``stored_selection`` would give, without reading them."""
    where = _selection(patient_ids, study_uids, series_uids, sop_uids)
    if where is None:
        return 0
    return int(Instance.select().join(Series).join(Study).join(Patient).where(where).count())


def study_inventory(study_uid: str) -> list[tuple[str, str, str]]:
    """(Series, SOP Class, SOP Instance UID) of every instance of a study, as stored."""
    rows = (
        Instance.select(
            Series.series_instance_uid, Instance.sop_class_uid, Instance.sop_instance_uid
        )
        .join(Series)
        .join(Study)
        .where(Study.study_instance_uid == study_uid)
        .order_by(Series.id, Instance.id)
        .tuples()
    )
    return [(str(a), str(b), str(c)) for a, b, c in rows]


def study_uids_of(
    patient_ids: list[str] | None = None,
    study_uids: list[str] | None = None,
    series_uids: list[str] | None = None,
    sop_uids: list[str] | None = None,
) -> set[str]:
    """The studies a selection touches (what a job that sends it still needs on disk)."""
    where = _selection(patient_ids, study_uids, series_uids, sop_uids)
    if where is None:
        return set()
    rows = (
        Study.select(Study.study_instance_uid)
        .join(Series, on=(Series.study == Study.id))
        .join(Instance, on=(Instance.series == Series.id))
        .switch(Study)
        .join(Patient)
        .where(where)
        .distinct()
        .tuples()
    )
    return {uid for (uid,) in rows}


# -- counts for status and logs ----------------------------------------------


def totals() -> dict[str, int]:
    """Archive-wide counts from the patient rows' counters (one scan of the smallest table)."""
    row = one(
        "SELECT COUNT(*), COALESCE(SUM(num_studies), 0), COALESCE(SUM(num_series), 0), "
        "COALESCE(SUM(num_instances), 0) FROM patient",
        (),
    )
    return {"patients": row[0], "studies": row[1], "series": row[2], "instances": row[3]}


def last_study() -> dict | None:
    """The most recently received study, for the status snapshot (no patient data)."""
    row = one(
        "SELECT study_instance_uid, calling_ae, modalities, study_description, received "
        "FROM study ORDER BY received DESC LIMIT 1",
        (),
    )
    if row is None:
        return None
    received = row[4] if isinstance(row[4], str) else str(row[4])
    return {
        "study_uid": row[0],
        "calling_ae": row[1],
        "modality": row[2],
        "description": row[3],
        "received_utc": received,
    }


def studies_received_since(utc_naive: dt.datetime) -> int:
    n: int = one("SELECT COUNT(*) FROM study WHERE received >= ?", (str(utc_naive),))[0]
    return n


def newest_instance_id() -> int:
    """The highest instance row id: an O(1) sign that something was stored."""
    newest: int = one("SELECT COALESCE(MAX(id), 0) FROM instance", ())[0]
    return newest


def series_touched_since(after_id: int, limit: int = 1000) -> list[tuple[int, int]]:
    """(series row id, newest instance row id) of the series with instances above
    ``after_id``, oldest first: what changed since a reader last looked."""
    newest = fn.MAX(Instance.id)
    q = (
        Instance.select(Instance.series, newest.alias("newest"))
        .where(Instance.id > after_id)
        .group_by(Instance.series)
        .order_by(newest)
        .limit(limit)
        .tuples()
    )
    return [(int(s), int(n)) for s, n in q]


def series_instances(series_id: int) -> Iterator[Instance]:
    """One series' instances (series and study loaded), in a viewer's order, one at a
    time (a 10,000-image series is not held as models)."""
    q = (
        Instance.select(Instance, Series, Study)
        .join(Series, on=(Instance.series == Series.id))
        .join(Study, on=(Series.study == Study.id))
        .where(Series.id == series_id)
        .order_by(Instance.instance_number, Instance.id)
    )
    return q.iterator()


# A viewer's order: series by number, then images by number (row ids break ties).
VIEWER_ORDER = (Series.series_number, Series.id, Instance.instance_number, Instance.id)


def _in_study(
    q: Any,
    study_id: int | None,
    series_uid: str = "",
    sop_uid: str = "",
    series_id: int | None = None,
) -> Any:
    """Narrow an instance query joined to Series to a study, a series or an instance."""
    if study_id is not None:
        q = q.where(Series.study == study_id)
    if series_uid:
        q = q.where(Series.series_instance_uid == series_uid)
    if series_id is not None:
        q = q.where(Series.id == series_id)
    if sop_uid:
        q = q.where(Instance.sop_instance_uid == sop_uid)
    return q.order_by(*VIEWER_ORDER)


def instance_keys(
    study_id: int | None = None, series_uid: str = "", series_id: int | None = None
) -> list[tuple]:
    """(series row id, series UID, instance row id, SOP Instance UID, file name, digest,
    size, transfer syntax) of a study's or a series' instances, in a viewer's order:
    enough to tell whether a cached rendering of them is still current, without
    building a model per row."""
    q = Instance.select(
        Series.id, Series.series_instance_uid, Instance.id, Instance.sop_instance_uid,
        Instance.file_name, Instance.digest, Instance.file_size, Instance.transfer_syntax_uid,
    ).join(Series, on=(Instance.series == Series.id))  # fmt: skip
    return list(_in_study(q, study_id, series_uid, series_id=series_id).tuples())


def stored_in_study(study_id: int, series_uid: str = "", sop_uid: str = "") -> list[StoredInstance]:
    """What a sender needs of a study's (or one series' or instance's) instances, in a
    viewer's order, as tuples: a 500-image retrieve builds no model per row."""
    q = (
        Instance.select(*STORED_COLUMNS)
        .join(Series, on=(Instance.series == Series.id))
        .join(Study, on=(Series.study == Study.id))
    )
    return [stored_row(row)[1] for row in _in_study(q, study_id, series_uid, sop_uid).tuples()]
