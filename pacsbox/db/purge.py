"""Index side of the watermark purge: mark, list, and delete a study's rows.

A purge is two-phase so a crash at any point leaves the index honest:

1. ``mark_purging`` flags the study (``purge_state = "purging"``) in one
   transaction; from then on the study is on its way out and nothing else
   may un-protect or re-purge it.
2. The caller deletes the files named by ``study_files`` (the watermark
   module does the file system work; this module never touches files).
3. ``delete_instance_rows`` removes exactly those rows in one transaction,
   keeping every counter exact with the same rules as
   ``rows.delete_instance_row`` (empty series, studies and patients go too).

Phase 3 deletes only the rows it is given, so an instance indexed while the
files were being deleted keeps its row and its file; the study then survives
and ``unmark`` returns it to normal. At start-up, studies still marked are
finished by the caller (``purging_studies``), which is why a row is never
left pointing to a deleted file for longer than a crash lasts, and why a file
is never deleted for a study that was not marked first.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from peewee import PeeweeException

from pacsbox.db.models import Instance, Patient, Series, Study, utcnow
from pacsbox.db.transaction import write_transaction
from pacsbox.errors import DatabaseError

PURGING = "purging"
_CHUNK = 500  # ids per IN (...) list: well under SQLite's variable limit


@dataclass(frozen=True)
class DeletedRows:
    instances: int
    size_bytes: int
    study_deleted: bool


def iter_studies(roots: Iterable[str]) -> Iterator[Study]:
    """Every study stored under ``roots`` (storage_root strings), oldest received first."""
    roots = list(roots)
    if not roots:
        return iter(())
    return iter(
        Study.select()
        .where(Study.storage_root.in_(roots))
        .order_by(Study.received, Study.id)
        .iterator()
    )


def iter_candidates(roots: Iterable[str], received_before: dt.datetime) -> Iterator[Study]:
    """Studies the index allows to purge (not protected, not marked, old enough), oldest first.

    Routing rules (must-keep) are applied by the caller on top of this.
    """
    roots = list(roots)
    if not roots:
        return iter(())
    return iter(
        Study.select()
        .where(
            Study.storage_root.in_(roots)
            & (Study.protected == False)  # noqa: E712 - peewee expression
            & (Study.purge_state == "")
            & (Study.received < received_before)
        )
        .order_by(Study.received, Study.id)
        .iterator()
    )


def study_by_uid(study_uid: str) -> Study | None:
    return Study.get_or_none(Study.study_instance_uid == study_uid)


def storage_roots() -> list[str]:
    """Every storage_root string the index uses (as stored, not resolved)."""
    return [r for (r,) in Study.select(Study.storage_root).distinct().tuples()]


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _db_errors(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn peewee's errors into DatabaseError: callers above db/ never import peewee."""

    @functools.wraps(fn)
    def wrapped(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except PeeweeException as exc:
            raise DatabaseError(f"index update failed: {exc}") from None

    return wrapped


@_db_errors
def mark_purging(study_id: int) -> bool:
    """Phase 1: flag the study; False when it vanished, is protected or already marked.

    Raises DatabaseError.
    """
    with write_transaction():
        n: int = (
            Study.update(purge_state=PURGING, updated=utcnow())
            .where(
                (Study.id == study_id)
                & (Study.protected == False)  # noqa: E712
                & (Study.purge_state == "")
            )
            .execute()
        )
    return n == 1


@_db_errors
def unmark(study_id: int) -> None:
    """Return a study that survived phase 3 (instances arrived meanwhile) to normal."""
    with write_transaction():
        Study.update(purge_state="").where(Study.id == study_id).execute()


def purging_studies() -> list[Study]:
    """Studies a purge marked and did not finish (left by a crash or a failed delete)."""
    return list(Study.select().where(Study.purge_state == PURGING).order_by(Study.id))


def is_marked(study_id: int) -> bool:
    return Study.select().where((Study.id == study_id) & (Study.purge_state == PURGING)).exists()


def study_files(study_id: int) -> list[tuple[int, str]]:
    """(instance id, file name) of every instance indexed in the study."""
    return list(
        Instance.select(Instance.id, Instance.file_name)
        .join(Series)
        .where(Series.study == study_id)
        .order_by(Instance.id)
        .tuples()
    )


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]


def _refresh_modalities(study_id: int) -> None:
    mods = sorted(
        {
            m
            for (m,) in Series.select(Series.modality)
            .where((Series.study == study_id) & (Series.modality != ""))
            .tuples()
        }
    )
    Study.update(modalities="\\".join(mods), updated=utcnow()).where(Study.id == study_id).execute()


@_db_errors
def delete_instance_rows(study_id: int, instance_ids: list[int]) -> DeletedRows:
    """Phase 3: delete these instances of the study (those still present) in one transaction.

    Counters follow ``rows.delete_instance_row``: series, study and patient
    instance counts and the study size drop by what was deleted; a series left
    empty goes (study and patient series counts drop), a study left without
    series goes (patient study count drops), a patient left without studies
    goes. Raises DatabaseError when the database fails (nothing is changed).
    """
    with write_transaction():
        study = Study.get_or_none(Study.id == study_id)
        if study is None:
            return DeletedRows(0, 0, True)
        patient_id = study.patient_id
        per_series: Counter[int] = Counter()
        size = 0
        present: list[int] = []
        for chunk in _chunks(sorted(set(instance_ids))):
            rows = (
                Instance.select(Instance.id, Instance.series, Instance.file_size)
                .join(Series)
                .where(Instance.id.in_(chunk) & (Series.study == study_id))
                .tuples()
            )
            for inst_id, series_id, file_size in rows:
                present.append(inst_id)
                per_series[series_id] += 1
                size += file_size or 0
        for chunk in _chunks(present):
            Instance.delete().where(Instance.id.in_(chunk)).execute()
        for series_id, n in per_series.items():
            Series.update(num_instances=Series.num_instances - n).where(
                Series.id == series_id
            ).execute()
        total = len(present)
        if total:
            Study.update(
                num_instances=Study.num_instances - total, size_bytes=Study.size_bytes - size
            ).where(Study.id == study_id).execute()
            Patient.update(num_instances=Patient.num_instances - total).where(
                Patient.id == patient_id
            ).execute()
        series_ids = [
            s for (s,) in Series.select(Series.id).where(Series.study == study_id).tuples()
        ]
        with_instances = (
            {
                s
                for (s,) in Instance.select(Instance.series)
                .where(Instance.series.in_(series_ids))
                .distinct()
                .tuples()
            }
            if series_ids
            else set()
        )
        empty = [s for s in series_ids if s not in with_instances]
        if empty:
            Series.delete().where(Series.id.in_(empty)).execute()
            Study.update(num_series=Study.num_series - len(empty)).where(
                Study.id == study_id
            ).execute()
            Patient.update(num_series=Patient.num_series - len(empty)).where(
                Patient.id == patient_id
            ).execute()
            _refresh_modalities(study_id)
        study_deleted = False
        if not Series.select().where(Series.study == study_id).exists():
            Study.delete().where(Study.id == study_id).execute()
            study_deleted = True
            Patient.update(num_studies=Patient.num_studies - 1).where(
                Patient.id == patient_id
            ).execute()
            if not Study.select().where(Study.patient == patient_id).exists():
                Patient.delete().where(Patient.id == patient_id).execute()
    return DeletedRows(total, size, study_deleted)
